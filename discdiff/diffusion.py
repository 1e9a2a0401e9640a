"""``Diffusion``: the one front door. A graph, a schedule and a parameterization; ``loss``, ``nll``, ``sample``.

Every objective returns per-sequence values [B] in nats whose expectation over its noise is an upper
bound on -log p_theta(x0) (except ``"l2"``, a baseline):

    score_entropy   sum_i sigma(t) * SE_i(x_t, x0),                      t ~ U[t_min, 1]     (SEDD)
    t_dce           sigma(t)/(e^{sigma_bar}-1) sum_{i masked} -log p(x0^i | x_t)              (RADD / MDLM)
    lambda_dce      1/lambda sum_{i masked} -log p(x0^i | x_t),  mask w.p. lambda ~ U[t_min, 1] (LLaDA)
    k_dce           L/k sum_{i masked} -log p(x0^i | x_t),  exactly k ~ U{1..L} masked      (any-order AR)

Times are drawn by ``Diffusion.draw_times`` (the one home of that rule): stratified over the batch (one
uniform offset, B evenly spaced strata) and the value is multiplied by (1 - t_min), so the batch mean
estimates the integral over [t_min, 1] without bias. ``Diffusion.nll`` stratifies per sequence instead. With an
exact model, E[loss] = I(x0; x_{t_min}) - I(x0; x_1) (the integral's identity; ``discdiff.exact``
computes both), which is H(p_data) up to the schedule's end points.

Example::

    >>> import torch, discdiff as dd
    >>> diff = dd.Diffusion(dd.Absorbing(vocab_size=5), dd.LogLinear(), parameterization="denoiser")
    >>> model = lambda x_t, sigma_bar: torch.zeros(*x_t.shape, 6)   # uniform guess over 5 tokens
    >>> diff.loss(model, torch.randint(0, 5, (4, 8)), objective="k_dce").shape
    torch.Size([4])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from . import losses
from .graphs import Graph
from .model_call import call_model
from .parameterization import Parameterization, get_parameterization
from .row_random import resolve_generator
from .sampling import Predictor, SampleOutput, check_sample_size, resolve_sampler, run_sampler, split_options
from .sampling.options import OPTIONS
from .schedules import Schedule, check_times

__all__ = ["Diffusion", "NLLEstimate", "stratified_uniform"]

Model = Callable[[Tensor, Tensor], Tensor]


class _Masks(NamedTuple):
    """What one loss call sees: ``visible`` [B, L] real tokens (the attention mask), ``scored`` [B, L]
    the positions noised and scored (inside ``visible``), ``label`` [B] class labels or None."""

    visible: Tensor
    scored: Tensor
    label: Tensor | None

    @classmethod
    def of(cls, padding_mask: Tensor, loss_mask: Tensor | None, label: Tensor | None) -> _Masks:
        if loss_mask is None:
            return cls(padding_mask, padding_mask, label)
        if bool((loss_mask & ~padding_mask).any()):
            raise ValueError("loss_mask marks padding positions; it must lie inside padding_mask (real tokens)")
        return cls(padding_mask, loss_mask, label)


class NLLEstimate(NamedTuple):
    """Monte Carlo NLL bound per sequence: ``mean`` [B] nats and its standard error ``stderr`` [B]."""

    mean: Tensor
    stderr: Tensor


def stratified_uniform(
    n: int, generator: torch.Generator | None = None, device=None, low: float = 0.0
) -> Tensor:
    """n draws in [low, 1], one in each of n equal strata, with a shared random offset (antithetic-like).

    The objective-free primitive; ``Diffusion.draw_times`` says which ``low`` an objective uses.
    """
    return _stratified(n, None, low, generator, device).to(torch.get_default_dtype())


def _stratified(n: int, draws: int | None, low: float, generator, device) -> Tensor:
    """float64 times in [low, 1): [n] sharing one offset u, or [n, draws] with an offset u_b per row.

    t = low + (1 - low) * frac(u + k / K) for k = 0..K-1: one draw in each of K equal strata.
    Drawn on the generator's device (so a CPU generator gives the same times on every device).
    """
    if n < 1 or (draws is not None and draws < 1):
        raise ValueError(f"need n >= 1 and draws >= 1 times to draw, got n={n}, draws={draws}")
    on = generator.device if generator is not None else device
    if draws is None:
        u = torch.rand((), generator=generator, dtype=torch.float64, device=on)
        strata = (u + torch.arange(n, dtype=torch.float64, device=on) / n) % 1.0  # [n]
    else:
        u = torch.rand(n, 1, generator=generator, dtype=torch.float64, device=on)
        strata = (u + torch.arange(draws, dtype=torch.float64, device=on) / draws) % 1.0  # [n, draws]
    return (low + (1.0 - low) * strata).to(device)


class Diffusion:
    """A discrete diffusion model's forward process and objectives.

    Args:
        graph: the forward rate matrix (``Absorbing``, ``Uniform``, ``DenseGraph``).
        schedule: t -> Noise(sigma_bar, sigma).
        parameterization: ``"score"`` (model outputs log concrete scores) or ``"denoiser"`` (clean logits).
        t_min: lower end of the time integral; keeps weights like 1/t finite. The omitted piece
            [0, t_min] costs at most I(x0; x_0) - I(x0; x_{t_min}) nats (about t_min * sum_i H(x0^i)).
    """

    def __init__(
        self,
        graph: Graph,
        schedule: Schedule,
        parameterization: str | Parameterization = "score",
        t_min: float = 1e-5,
    ):
        if not isinstance(graph, Graph):
            raise ValueError(f"graph must be a discdiff Graph, got {type(graph).__name__}")
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a discdiff Schedule, got {type(schedule).__name__}")
        if not 0.0 < t_min < 1.0:
            raise ValueError(f"t_min must lie in (0, 1): weights such as 1/t need t away from 0; got {t_min}")
        self.graph = graph
        self.schedule = schedule
        self.parameterization = get_parameterization(parameterization)
        self.t_min = t_min
        self._objectives = {
            "score_entropy": self._score_entropy,
            "l2": self._l2,
            "t_dce": self._t_dce,
            "lambda_dce": self._lambda_dce,
            "k_dce": self._k_dce,
        }

    def __repr__(self) -> str:
        return f"Diffusion({self.graph!r}, {self.schedule!r}, parameterization={self.parameterization.name!r})"

    @property
    def objectives(self) -> list[str]:
        return list(self._objectives)

    @property
    def default_objective(self) -> str:
        return "score_entropy" if self.parameterization.name == "score" else "t_dce"

    # --- the public API ---------------------------------------------------------------------------
    def loss(
        self,
        model: Model,
        x0: Tensor,
        objective: str | None = None,
        *,
        t: Tensor | None = None,
        generator: torch.Generator | None = None,
        padding_mask: Tensor | None = None,
        loss_mask: Tensor | None = None,
        label: Tensor | None = None,
    ) -> Tensor:
        """Per-sequence loss [B] in nats; its mean over draws bounds -log p_theta(x0) (see module doc).

        Args:
            model: ``model(x_t [B, L], sigma_bar [B]) -> [B, L, S]``.
            x0: clean tokens, LongTensor [B, L].
            objective: one of ``self.objectives``; default score entropy for "score", t-DCE for "denoiser".
            t: times [B] in [0, 1] (or masking probabilities for lambda_dce); drawn stratified if None.
            generator: the source of every random draw, for reproducible (and resumable) training.
            padding_mask: BoolTensor [B, L], True on real tokens. Pad positions are never noised, add 0,
                and no real position attends to them (the attention mask).
            loss_mask: BoolTensor [B, L], True on the positions that are noised and scored (a subset of
                padding_mask; None: every real position). A real position outside it is context: never
                noised, adds 0, always visible, e.g. the prompt of supervised fine-tuning, so the
                expectation bounds -log p_theta(x0[loss_mask] | x0[context]).
            label: LongTensor [B] class labels for a class-conditional model (``call_model`` passes it).
        """
        objective = objective or self.default_objective
        if objective not in self._objectives:
            raise ValueError(f"unknown objective {objective!r}; choose one of {self.objectives}")
        x0 = self.graph.check_tokens(x0, "x0", clean=True)
        if x0.ndim != 2:
            raise ValueError(f"x0 must be [batch, length], got shape {tuple(x0.shape)}")
        masks = _Masks.of(self._valid(padding_mask, x0), self._valid(loss_mask, x0, "loss_mask"), label)
        if t is not None:
            t = check_times(t).to(x0.device)
            if t.shape != (x0.shape[0],):
                raise ValueError(f"t must have shape [{x0.shape[0]}], got {tuple(t.shape)}")
        return self._objectives[objective](model, x0, masks, t, generator)

    def draw_times(
        self,
        n: int,
        objective: str | None = None,
        *,
        draws: int | None = None,
        generator: torch.Generator | None = None,
        device=None,
    ) -> Tensor:
        """Stratified times for ``objective``: the one place that says how each objective draws t.

        k_dce draws u in [0, 1] (it picks k = 1 + floor(u n) masked tokens); every other objective draws
        t in [t_min, 1] (its loss is already scaled by 1 - t_min). Returned in float64 on ``device``:

            draws=None   [n]: one stratified draw over a batch, t_b = low + (1 - low) frac(u + b / n),
                         a single offset u ~ U[0, 1) (training: the batch mean has low variance).
            draws=D      [n, D]: stratified per sequence, t_{b,d} = low + (1 - low) frac(u_b + d / D),
                         independent offsets u_b (evaluation: each sequence's D draws cover [low, 1]).

        Random numbers come from ``generator`` on its own device (CPU generator: identical times on any
        device), then move to ``device``.
        """
        objective = objective or self.default_objective
        if objective not in self._objectives:
            raise ValueError(f"unknown objective {objective!r}; choose one of {self.objectives}")
        low = 0.0 if objective == "k_dce" else self.t_min
        return _stratified(n, draws, low, generator, device)

    def nll(
        self,
        model: Model,
        x0: Tensor,
        objective: str | None = None,
        *,
        num_draws: int = 16,
        generator: torch.Generator | None = None,
        padding_mask: Tensor | None = None,
        loss_mask: Tensor | None = None,
        label: Tensor | None = None,
    ) -> NLLEstimate:
        """Monte Carlo estimate of each sequence's bound on -log p_theta(x0), in nats (float64).

        D = ``num_draws`` times per sequence, stratified per sequence (``draw_times(B, draws=D)``):

            mean_b   = 1/D sum_d loss(x0_b, t_{b,d})                        [B]
            stderr_b = sqrt(var_d loss(x0_b, t_{b,d}) / D)                  [B]

        ``stderr`` treats the D stratified draws as independent, so it over-states the Monte Carlo error
        (stratified draws vary less): an honest, conservative figure. One sequence's interval should use
        Student's t with D - 1 degrees of freedom (few draws, skewed integrands); means over many
        sequences (``discdiff.evaluation``) are close to normal. Every random draw (times, noise)
        comes from ``generator``. Runs under ``torch.no_grad``; the caller sets the model's eval mode.
        ``padding_mask`` [B, L] (True on real tokens), ``loss_mask`` and ``label`` go to ``loss``: pad
        positions add nothing; with a loss mask (a prompt as context) it bounds -log p(response | prompt).
        """
        objective = objective or self.default_objective
        if objective == "l2":
            raise ValueError("objective 'l2' is not a likelihood bound; estimate score_entropy or a DCE instead")
        if num_draws < 2:
            raise ValueError(f"num_draws must be >= 2 to give a standard error, got {num_draws}")
        if x0.ndim != 2:
            raise ValueError(f"x0 must be [batch, length], got shape {tuple(x0.shape)}")
        times = self.draw_times(x0.shape[0], objective, draws=num_draws, generator=generator, device=x0.device)
        with torch.no_grad():
            losses_bd = torch.stack([
                self.loss(model, x0, objective, t=times[:, d], generator=generator, padding_mask=padding_mask,
                          loss_mask=loss_mask, label=label).double()
                for d in range(num_draws)
            ], dim=1)  # [B, D]
        return NLLEstimate(losses_bd.mean(1), (losses_bd.var(1) / num_draws).sqrt())

    def sample(self, model: Model, num_samples: int, length: int, sampler: str | None = None, *,
               generator: torch.Generator | None = None, condition=None, guidance: float = 0.0, device=None,
               callback=None, label=None, seeds=None, **options) -> SampleOutput:
        """Draw ``num_samples`` sequences of ``length`` tokens from the reverse process.

        Args:
            sampler: "euler", "tau_leaping", "tweedie", "ancestral", "first_hitting" or "confidence";
                None picks one that fits the graph (``discdiff.sampling.default_sampler``).
            condition: ``discdiff.sampling.Condition(tokens, known)``, positions pinned to known tokens.
            guidance: classifier-free guidance weight w (needs a label or a condition; ``guidance_mode``
                "null" contrasts with the trained unconditional branch, "infill" masks the known positions).
            label: class labels [num_samples] (or one int for all) of a class-conditional model.
            callback: ``callback(step, state [B, L], nfe)`` at the start (step 0) and after every step.
            seeds: one integer per row instead of ``generator``: row b draws only from a generator seeded
                with seeds[b], so its sample does not depend on the rest of the batch.
            options: the rows of ``discdiff.sampling.OPTIONS``: steps (default 128; first_hitting ignores
                it, confidence splits it over blocks), temperature, top_k, top_p, t_end, denoise, cache,
                categorical, return_trajectory, and the confidence sampler's block_length, threshold,
                remasking, greedy.

        Builds a ``discdiff.sampling.Predictor`` (the model's answer, with conditioning, guidance, caching
        and NFE counting) and runs the sampler on it. Refuses a request that cannot fit in memory.
        Returns ``SampleOutput(samples [B, L], nfe, nfe_per_row [B], trajectory)``.
        """
        sampler = resolve_sampler(sampler, self.graph, self.parameterization)
        split = split_options(sampler, options)
        predictor_options = dict(split.predictor)
        if sampler not in OPTIONS["cache"].samplers:
            predictor_options["cache"] = False  # no other sampler re-asks an unchanged row
        check_sample_size(num_samples, length)
        if condition is not None:
            condition = condition.validate(num_samples, length, self.graph.num_clean_states).to(device)
        predictor = Predictor(model, self.graph, self.schedule, self.parameterization, condition=condition,
                              guidance=guidance, num_rows=num_samples, device=device, label=label,
                              **predictor_options)
        generator = resolve_generator(generator, seeds, num_samples, device)
        return run_sampler(predictor, num_samples, length, sampler, split.loop, generator=generator,
                           callback=callback)

    # --- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _valid(padding_mask: Tensor | None, x0: Tensor, name: str = "padding_mask") -> Tensor | None:
        if padding_mask is None:
            return torch.ones_like(x0, dtype=torch.bool) if name == "padding_mask" else None
        if padding_mask.shape != x0.shape or padding_mask.dtype != torch.bool:
            raise ValueError(
                f"{name} must be a BoolTensor of shape {tuple(x0.shape)}, got "
                f"{padding_mask.dtype} {tuple(padding_mask.shape)}"
            )
        return padding_mask

    def _times(self, t: Tensor | None, x0: Tensor, generator, objective: str = "t_dce") -> Tensor:
        """The objective's times [B]: given ones (clipped to t_min, except k_dce's u), else ``draw_times``."""
        if t is None:
            t = self.draw_times(x0.shape[0], objective, generator=generator, device=x0.device)
        if objective == "k_dce":
            return t  # u in [0, 1]; k_dce floors it in float64
        return t.clamp_min(self.t_min).to(torch.get_default_dtype())

    def _call(self, model, x_t, sigma_bar, masks: _Masks):
        """The model's output on x_t; on a padded batch a model that takes ``padding_mask`` gets the
        attention mask, a class-conditional one its labels (``discdiff.model_call.call_model``)."""
        return call_model(model, x_t, sigma_bar, masks.visible, num_clean_states=self.graph.num_clean_states,
                          label=masks.label)

    def _noised(self, model, x0, masks: _Masks, t, generator):
        t = self._times(t, x0, generator)
        noise = self.schedule(t)
        x_t = torch.where(masks.scored, self.graph.sample_transition(x0, noise.total, generator), x0)
        return noise, x_t, self._call(model, x_t, noise.total, masks)

    def _require_mask(self, objective: str) -> int:
        if self.graph.mask_id is None:
            raise ValueError(f"objective {objective!r} needs an absorbing graph (one with a MASK state)")
        return self.graph.mask_id

    # --- the objectives -------------------------------------------------------------------------------
    def _score_entropy(self, model, x0, masks, t, generator):
        noise, x_t, out = self._noised(model, x0, masks, t, generator)
        if out.shape[-1] != self.graph.num_states and self.parameterization.name == "score":
            raise ValueError(f"a score model must return {self.graph.num_states} values per position")
        log_score = self.parameterization.log_score(out, x_t, noise.total, self.graph)
        per_position = losses.score_entropy(self.graph, log_score, x_t, x0, noise.total)
        return (1 - self.t_min) * noise.rate * (per_position * masks.scored).sum(-1)

    def _l2(self, model, x0, masks, t, generator):
        noise, x_t, out = self._noised(model, x0, masks, t, generator)
        log_score = self.parameterization.log_score(out, x_t, noise.total, self.graph)
        per_position = losses.concrete_score_l2(self.graph, log_score, x_t, x0, noise.total)
        return (1 - self.t_min) * noise.rate * (per_position * masks.scored).sum(-1)

    def _t_dce(self, model, x0, masks, t, generator):
        mask_id = self._require_mask("t_dce")
        noise, x_t, out = self._noised(model, x0, masks, t, generator)
        log_probs = self.parameterization.clean_log_probs(out, x_t, noise.total, self.graph)
        ce = losses.masked_ce(log_probs, x0, (x_t == mask_id) & masks.scored)
        return (1 - self.t_min) * losses.t_dce_weight(noise.total, noise.rate) * ce.sum(-1)

    def _masked_call(self, model, x0, masked, mask_prob, masks):
        """Replace masked positions by MASK and ask the model; sigma_bar = -log(1 - mask_prob)."""
        x_t = torch.where(masked, self.graph.mask_id, x0)
        sigma_bar = -torch.log1p(-mask_prob.clamp_max(1 - 1e-6))
        out = self._call(model, x_t, sigma_bar, masks)
        return self.parameterization.clean_log_probs(out, x_t, sigma_bar, self.graph)

    def _lambda_dce(self, model, x0, masks, t, generator):
        self._require_mask("lambda_dce")
        lam = self._times(t, x0, generator)
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        masked = (u < lam[:, None]) & masks.scored
        log_probs = self._masked_call(model, x0, masked, lam, masks)
        ce = losses.masked_ce(log_probs, x0, masked)
        return (1 - self.t_min) * losses.lambda_dce_weight(lam) * ce.sum(-1)

    def _k_dce(self, model, x0, masks, t, generator):
        self._require_mask("k_dce")
        length = masks.scored.sum(-1)
        if (length == 0).any():
            raise ValueError("k_dce needs at least one scored (real, in the loss mask) token in every row")
        u = self._times(t, x0, generator, "k_dce")
        k = (1 + torch.floor(u.double() * length)).clamp_max(length).long()  # k ~ U{1..n}
        keys = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        keys = keys.masked_fill(~masks.scored, 2.0)  # pads and context sort last and are never masked
        rank = keys.argsort(-1).argsort(-1)
        masked = rank < k[:, None]
        log_probs = self._masked_call(model, x0, masked, k / (length + 1.0), masks)
        ce = losses.masked_ce(log_probs, x0, masked)
        return losses.k_dce_weight(k, length) * ce.sum(-1)
