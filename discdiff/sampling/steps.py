"""Pure reverse-process steps: functions of a model's output, so a user can own the sampling loop.

Each step takes the log concrete score ``log_score`` [B, L, S] the model gave at ``(x, t)`` and moves
``x`` [B, L] from time t to s < t (times are floats in [0, 1]; the noise levels come from ``schedule``):

* ``euler_step``        p(x_s = y | x_t = x) = 1{y = x} + (t - s) sigma(t) R(x -> y), clipped at 0 (SEDD)
* ``tau_leaping_step``  leave x w.p. 1 - exp(-(t - s) R_total), land on y proportionally to R(x -> y)
* ``tweedie_step``      p(x_s = y | x_t = x) ~ [exp(-delta Q) s](y) exp(delta Q)[x, y],
                        delta = sigma_bar(t) - sigma_bar(s)
* ``denoise_step``      the same Tweedie rule from t straight to clean data, over clean tokens only

with R(x -> y) = sigma(t) Q[x, y] s_theta(x, t)_y. The draws are float64 (``method="gumbel_fp32"`` only to
show its bias). A loop of your own that reproduces ``diff.sample(model, B, L, "euler", steps=n,
generator=g)`` token for token::

    >>> import torch, discdiff as dd
    >>> from discdiff.sampling import Predictor, denoise_step, euler_step, time_grid
    >>> graph, schedule = dd.Uniform(4), dd.Geometric()
    >>> model = lambda x_t, sigma_bar: torch.zeros(*x_t.shape, 4)        # any score model
    >>> pred = Predictor(model, graph, schedule, "score")
    >>> g = torch.Generator().manual_seed(0)
    >>> x = graph.sample_prior((2, 5), generator=g)
    >>> grid = time_grid(16, 1e-5)
    >>> for t, s in zip(grid[:-1].tolist(), grid[1:].tolist()):
    ...     x = euler_step(pred.log_score(x, pred.noise(t, 2).total), x, t, s, graph, schedule, g)
    >>> x = denoise_step(pred.log_score(x, pred.noise(1e-5, 2).total), x, 1e-5, graph, schedule, g)
    >>> x.shape
    torch.Size([2, 5])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from discdiff.categorical import NEG_INF, filter_logits, sample_categorical
from discdiff.graphs import Graph
from discdiff.schedules import Noise, Schedule

__all__ = ["denoise_step", "euler_step", "noise_at", "tau_leaping_step", "time_grid", "tweedie_step"]


def time_grid(steps: int, t_end: float, device=None) -> Tensor:
    """steps + 1 times from 1 down to t_end, evenly spaced (float64)."""
    return torch.linspace(1.0, t_end, steps + 1, dtype=torch.float64, device=device)


def noise_at(schedule: Schedule, t: float, batch: int, device=None) -> Noise:
    """Noise(sigma_bar [batch], sigma [batch]) at time t, computed in float64, returned in the default dtype."""
    noise = schedule(torch.full((batch,), t, dtype=torch.float64, device=device))
    dtype = torch.get_default_dtype()
    return Noise(noise.total.to(dtype), noise.rate.to(dtype))


def euler_step(log_score: Tensor, x: Tensor, t: float, s: float, graph: Graph, schedule: Schedule,
               generator: torch.Generator | None = None, *, method: str = "float64") -> Tensor:
    """First-order step of the reverse CTMC from t to s < t; error O(t - s) per step. Returns x_s [B, L].

    ``log_score`` [B, L, S] is the model's at (x, sigma_bar(t)); a loop of these steps is in the module
    docstring of ``discdiff.sampling.steps``."""
    _, sigma = noise_at(schedule, t, x.shape[0], x.device)
    rates = graph.reverse_rates(x, log_score.exp()) * ((t - s) * sigma)[:, None, None]
    probs = F.one_hot(x, graph.num_states).to(rates.dtype) + rates
    return sample_categorical(probs.clamp_min(0), generator, method=method)


def tau_leaping_step(log_score: Tensor, x: Tensor, t: float, s: float, graph: Graph, schedule: Schedule,
                     generator: torch.Generator | None = None, *, method: str = "float64") -> Tensor:
    """Each position jumps at most once, with the reverse rates frozen at t. Returns x_s [B, L]."""
    _, sigma = noise_at(schedule, t, x.shape[0], x.device)
    rates = graph.reverse_rates(x, log_score.exp()).scatter(-1, x[..., None], 0.0).clamp_min(0)
    rates = rates * ((t - s) * sigma)[:, None, None]
    total = rates.sum(-1, keepdim=True)
    leave = -torch.expm1(-total)
    probs = torch.where(total > 0, rates / total.clamp_min(1e-30), 0.0) * leave
    probs = probs.scatter(-1, x[..., None], 1 - leave)
    return sample_categorical(probs, generator, method=method)


def tweedie_step(log_score: Tensor, x: Tensor, t: float, s: float, graph: Graph, schedule: Schedule,
                 generator: torch.Generator | None = None, *, method: str = "float64") -> Tensor:
    """SEDD's analytic step, exact per position for an exact score. Returns x_s [B, L].

    Raises ValueError when exp(-delta Q) has amplified rounding until no state keeps positive weight
    (big steps on uniform / dense graphs): use more steps.
    """
    sigma_t, _ = noise_at(schedule, t, x.shape[0], x.device)
    sigma_s, _ = noise_at(schedule, s, x.shape[0], x.device)
    delta = (sigma_t - sigma_s).clamp_min(0)
    score = log_score.exp()
    probs = graph.staggered_score(score, x, delta) * graph.transposed_transition(x, delta).to(score.dtype)
    probs = probs.clamp_min(0)
    if not (probs.sum(-1) > 0).all():
        raise ValueError(f"the Tweedie step from t={t:.4g} to s={s:.4g} (delta sigma_bar = {delta.max().item():.3g}) "
                         "is numerically ill-conditioned for this graph; use more steps")
    return sample_categorical(probs, generator, method=method)


def denoise_step(log_score: Tensor, x: Tensor, t: float, graph: Graph, schedule: Schedule,
                 generator: torch.Generator | None = None, *, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, method: str = "float64") -> Tensor:
    """Jump from t straight to clean data (SEDD's denoiser), ``log_score`` taken at sigma_bar(t):

        p(x_0 = y | x_t = x) proportional to [exp(-sigma_bar Q) s](y) * exp(sigma_bar Q)[x, y],

    over clean tokens only (never MASK); temperature / top-k / top-p apply. Returns clean x_0 [B, L].
    """
    sigma_bar, _ = noise_at(schedule, t, x.shape[0], x.device)
    score = log_score.exp()
    probs = graph.staggered_score(score, x, sigma_bar) * graph.transposed_transition(x, sigma_bar).to(score.dtype)
    probs = probs.double()[..., : graph.num_clean_states]
    log_w = filter_logits(torch.where(probs > 0, probs.clamp_min(1e-300).log(), NEG_INF), temperature, top_k, top_p)
    return sample_categorical(torch.softmax(log_w, -1), generator, method=method)
