"""What every sampler shares: the options, the output, the time grid, and a model evaluator that
applies conditioning and guidance and counts model evaluations (NFE) per batch and per row."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from discdiff.categorical import NEG_INF, filter_logits, sample_categorical
from discdiff.schedules import Noise

from .conditioning import Condition

__all__ = ["SampleOutput", "SamplerOptions", "Evaluator", "time_grid"]


@dataclass
class SampleOutput:
    """Samples [B, L] with their cost.

    ``nfe``: model calls for the whole batch (a guided call counts once, though it runs 2B rows).
    ``nfe_per_row``: [B] how many times each row went through the model (caching makes this differ).
    ``trajectory``: the state [B, L] after every step (first entry: the start), when asked for.
    """

    samples: Tensor
    nfe: int
    nfe_per_row: Tensor
    trajectory: list[Tensor] | None = None


@dataclass
class SamplerOptions:
    """Options shared by the samplers; each sampler reads the ones that apply to it.

    temperature / top_k / top_p act where a sampler draws clean tokens (ancestral, first_hitting,
    confidence, and the final denoising step of euler / tau_leaping / tweedie); they never pick MASK.
    """

    steps: int = 128
    t_end: float = 1e-5  # euler / tau_leaping / tweedie stop here, then denoise to t = 0
    denoise: bool = True
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    categorical: str = "float64"  # "gumbel_fp32" only to demonstrate its bias
    cache: bool | None = None  # ancestral: reuse a row's prediction while its tokens are unchanged
    #   (None: on for time-free denoisers, off for score models)
    return_trajectory: bool = False
    extra: dict = field(default_factory=dict)  # sampler-specific options (e.g. confidence's threshold)

    def validate(self) -> None:
        if int(self.steps) != self.steps or self.steps <= 0:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if not 0.0 <= self.t_end < 1.0:
            raise ValueError(f"t_end must lie in [0, 1), got {self.t_end}")
        filter_logits(torch.zeros(2), self.temperature, self.top_k, self.top_p)  # raises on bad values


def time_grid(steps: int, t_end: float, device=None) -> Tensor:
    """steps + 1 times from 1 down to t_end, evenly spaced (float64)."""
    return torch.linspace(1.0, t_end, steps + 1, dtype=torch.float64, device=device)


class Evaluator:
    """Calls the model with conditioning and guidance applied, and counts evaluations.

    ``rows`` (a LongTensor of batch indices) evaluates only those rows: caching samplers use it.
    """

    def __init__(self, diffusion, model, batch_size: int, device, condition: Condition | None,
                 guidance: float, options: SamplerOptions):
        self.diffusion = diffusion
        self.graph = diffusion.graph
        self.model = model
        self.condition = condition
        self.guidance = guidance
        self.options = options
        self.nfe = 0
        self.nfe_per_row = torch.zeros(batch_size, dtype=torch.long, device=device)
        if not math.isfinite(guidance) or guidance < 0:
            raise ValueError(f"guidance must be a finite weight >= 0, got {guidance}")
        if guidance and (condition is None or self.graph.mask_id is None):
            raise ValueError("guidance needs a Condition and an absorbing graph (the unconditional pass masks "
                             "the known positions)")

    @property
    def time_conditioned(self) -> bool:
        """Whether the model declares that its output depends on sigma_bar (``config.time_conditioning``;
        a DDP/FSDP wrapper's ``module`` is looked through)."""
        model = getattr(self.model, "module", self.model)
        return bool(getattr(getattr(model, "config", None), "time_conditioning", False))

    def _output(self, x: Tensor, sigma_bar: Tensor, rows: Tensor | None, kind: str) -> Tensor:
        param = self.diffusion.parameterization
        read = param.log_score if kind == "score" else param.clean_log_probs
        self.nfe += 1
        self.nfe_per_row[rows if rows is not None else slice(None)] += 1
        if not self.guidance:
            return read(self.diffusion.call_model(self.model, x, sigma_bar), x, sigma_bar, self.graph)
        known = self.condition.known if rows is None else self.condition.known[rows]
        uncond = torch.where(known, self.graph.mask_id, x)
        both = self.diffusion.call_model(self.model, torch.cat([x, uncond]), torch.cat([sigma_bar, sigma_bar]))
        both = read(both, torch.cat([x, uncond]), torch.cat([sigma_bar, sigma_bar]), self.graph)
        cond_out, uncond_out = both.chunk(2)
        guided = cond_out + self.guidance * (cond_out - uncond_out)
        return guided if kind == "score" else torch.log_softmax(guided, dim=-1)

    def log_score(self, x: Tensor, sigma_bar: Tensor, rows: Tensor | None = None) -> Tensor:
        """[b, L, S] log concrete scores at x."""
        return self._output(x, sigma_bar, rows, "score")

    def clean_log_probs(self, x: Tensor, sigma_bar: Tensor, rows: Tensor | None = None) -> Tensor:
        """[b, L, C] log p(x0^i = y | x)."""
        return self._output(x, sigma_bar, rows, "clean")

    def pin(self, x: Tensor, rows: Tensor | None = None) -> Tensor:
        return x if self.condition is None else self.condition.apply(x, rows)

    def filtered(self, log_probs: Tensor) -> Tensor:
        """Clean-token log-weights after temperature / top-k / top-p (float64)."""
        o = self.options
        return filter_logits(log_probs, o.temperature, o.top_k, o.top_p)

    def draw(self, probs: Tensor, generator) -> Tensor:
        return sample_categorical(probs, generator, method=self.options.categorical)


class Sampler:
    """A reverse-process sampler. Subclasses set ``name``, ``extras`` (sampler-specific option defaults)
    and ``needs_mask`` (absorbing graphs only), and implement ``run``."""

    name: str = ""
    extras: dict = {}
    needs_mask: bool = False

    def run(self, ev: Evaluator, x: Tensor, opts: SamplerOptions, generator, record) -> Tensor:
        """Turn the prior draw ``x`` [B, L] (known positions pinned) into samples; call ``record(x)``
        after every step."""
        raise NotImplementedError


def final_denoise(ev: Evaluator, x: Tensor, t: float, generator) -> Tensor:
    """Jump from time ``t`` straight to clean data with the Tweedie step (SEDD's denoiser): one NFE.

        p(x_0 = y | x_t = x) proportional to [exp(-sigma_bar Q) s](y) * exp(sigma_bar Q)[x, y],
    with MASK excluded for the absorbing graph; temperature / top-k / top-p apply here.
    """
    graph = ev.graph
    sigma_bar = ev.diffusion.schedule.total(torch.full((x.shape[0],), t, dtype=torch.float64)).to(x.device)
    sigma_bar = sigma_bar.to(torch.get_default_dtype())
    score = ev.log_score(x, sigma_bar).exp()
    probs = graph.staggered_score(score, x, sigma_bar) * graph.transposed_transition(x, sigma_bar).to(score.dtype)
    probs = probs.double()[..., : graph.num_clean_states]
    log_w = ev.filtered(torch.where(probs > 0, probs.clamp_min(1e-300).log(), NEG_INF))
    return ev.pin(ev.draw(torch.softmax(log_w, -1), generator))


def run_time_stepper(ev: Evaluator, x: Tensor, opts: SamplerOptions, generator, record, step) -> Tensor:
    """The loop of euler / tau_leaping / tweedie: ``step(ev, x, t, s, generator)`` from t to s < t over an
    even grid from 1 to ``t_end``, then (by default) a final denoising step."""
    grid = time_grid(opts.steps, opts.t_end)
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        x = ev.pin(step(ev, x, t, s, generator))
        record(x)
    if opts.denoise:
        x = final_denoise(ev, x, opts.t_end, generator)
        record(x)
    return x


def noise_at(ev: Evaluator, t: float, batch: int, device) -> Noise:
    """Noise(sigma_bar [B], sigma [B]) at time t, in the default float dtype."""
    noise = ev.diffusion.schedule(torch.full((batch,), t, dtype=torch.float64, device=device))
    dtype = torch.get_default_dtype()
    return Noise(noise.total.to(dtype), noise.rate.to(dtype))
