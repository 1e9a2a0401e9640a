"""``Predictor``: what the model says at (x_t, sigma_bar). The one object every sampler sees.

It owns the model and how its output is read (parameterization, graph, schedule), the fixed positions of a
``Condition`` and classifier-free guidance, the per-row prediction cache, the draw rule (temperature,
top-k, top-p, float64 draws) and the count of model evaluations (NFE), per batch and per row. Samplers
ask it; they never see a ``Diffusion``. ``Diffusion.sample`` builds one; you can build one yourself::

    >>> import torch, discdiff as dd
    >>> from discdiff.sampling import Predictor, sample
    >>> model = lambda x_t, sigma_bar: torch.zeros(*x_t.shape, 6)      # a uniform time-free denoiser
    >>> pred = Predictor(model, dd.Absorbing(5), dd.LogLinear(), "denoiser", temperature=0.9)
    >>> out = sample(pred, 2, 8, "ancestral", steps=16, generator=torch.Generator().manual_seed(0))
    >>> out.samples.shape, pred.nfe <= 16
    (torch.Size([2, 8]), True)

Where the inputs plug in: block diffusion's finished blocks (an exact KV cache, ``context=``, see
``discdiff.sampling.blocks``) and a class label (``label=``, with guidance against the null label) are both
consulted in ``_evaluate``, the single place that calls the model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from discdiff.categorical import filter_logits, sample_categorical
from discdiff.graphs import Graph
from discdiff.model_call import call_model, is_time_free, num_classes
from discdiff.parameterization import Parameterization, get_parameterization
from discdiff.schedules import Noise, Schedule

from .conditioning import Condition
from .options import check_option
from .steps import noise_at

__all__ = ["Predictor"]


class Predictor:
    """The model's answer at (x_t, sigma_bar), with conditioning, guidance, caching and NFE counting.

    Args:
        model: ``model(x_t [B, L], sigma_bar [B]) -> [B, L, S]`` (see ``discdiff.parameterization``).
        graph, schedule, parameterization: how its output is read ("score" or "denoiser").
        condition: a ``Condition`` already broadcast to the batch (``Condition.validate`` does it): its
            known positions are pinned (``pin``).
        label: LongTensor [B] (or [1], or an int) class labels for a class-conditional model.
        guidance: classifier-free weight w >= 0: guided = (1 + w) cond - w uncond on log-probs (renormalised)
            or log scores. A guided call runs the conditional and unconditional rows in one batch of 2B and
            counts as one NFE.
        guidance_mode: the unconditional branch. "null": the model's trained unconditional branch: the null
            label (with a ``label``), else the condition's known positions (a prompt) masked. "infill": the
            known positions masked, labels kept (needs a condition and an absorbing graph).
        null_label: the null label's id; default ``num_classes`` of the model (``model_call.num_classes``).
        cache: reuse a row's ``clean_log_probs`` while its tokens are unchanged. None (default): on only
            for a denoiser that *declares* itself time-free (``discdiff.model_call.is_time_free``); an
            undeclared model is not cached. True is refused for score models and for a model that declares
            time conditioning. ``log_score`` is never cached (for a denoiser it depends on sigma_bar).
        temperature, top_k, top_p, categorical: the draw rule of ``filtered`` and ``draw``.
        num_rows: the batch size; needed before ``rows=`` calls (``Diffusion.sample`` passes it).
        device: where the counters and the prior live.
        context: block diffusion's finished blocks (``discdiff.sampling.blocks``: an exact KV cache, or the
            clean tokens recomputed): ``context.logits(model, x, sigma_bar, rows)`` replaces the model call.
    """

    def __init__(self, model, graph: Graph, schedule: Schedule, parameterization: str | Parameterization = "score",
                 *, condition: Condition | None = None, guidance: float = 0.0, cache: bool | None = None,
                 label: Tensor | int | None = None, guidance_mode: str = "null", null_label: int | None = None,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 categorical: str = "float64", num_rows: int | None = None, device=None, context=None):
        self.model, self.graph, self.schedule = model, graph, schedule
        self.parameterization = get_parameterization(parameterization)
        self.condition = condition
        self.guidance = check_option("guidance", guidance)
        self.guidance_mode = check_option("guidance_mode", guidance_mode)
        self.label = None if label is None else torch.as_tensor(label, dtype=torch.long).reshape(-1)
        self.null_label = null_label if null_label is not None else num_classes(model)
        self.temperature = check_option("temperature", temperature)
        self.top_k, self.top_p = check_option("top_k", top_k), check_option("top_p", top_p)
        self.categorical = check_option("categorical", categorical)
        if self.guidance:
            self._check_guidance()
        self.cache = self._cache_policy(check_option("cache", cache))
        if context is not None and self.guidance:
            raise ValueError("guidance is not available with a block context")
        self.context = context
        self.device = _checked_device(device)
        self.num_rows = num_rows
        if self.label is not None and num_rows is not None and self.label.numel() not in (1, num_rows):
            raise ValueError(f"label must hold 1 or {num_rows} (num_rows) labels, got {self.label.numel()}")
        if self.label is not None and device is not None:
            self.label = self.label.to(device)
        self.nfe = 0
        self._nfe_per_row: Tensor | None = None
        self._cached_x: Tensor | None = None  # [B, L] the tokens each cached row was evaluated at
        self._cached_log_probs: Tensor | None = None  # [B, L, C]

    def _check_guidance(self) -> None:
        masks_known = self.guidance_mode == "infill" or self.label is None
        if masks_known and (self.condition is None or self.graph.mask_id is None):
            what = "a Condition (a prompt) or a label" if self.guidance_mode == "null" else "a Condition"
            raise ValueError(f"guidance needs {what} (guidance_mode={self.guidance_mode!r}), and an absorbing "
                             "graph to mask the known positions")
        if self.guidance_mode == "null" and self.label is not None and self.null_label is None:
            raise ValueError("guidance against the null label needs null_label= (the model declares no num_classes)")

    def _labels(self, x: Tensor, rows: Tensor | None) -> Tensor | None:
        """[b] the labels of the rows evaluated (None: the model is called without one)."""
        if self.label is None:
            return None
        label = self.label.expand(self.num_rows or x.shape[0]) if self.label.numel() == 1 else self.label
        return label if rows is None else label[rows]

    def _cache_policy(self, cache: bool | None) -> bool:
        declared = is_time_free(self.model)
        allowed = self.parameterization.name == "denoiser" and declared is not False
        if cache and not allowed:
            raise ValueError("cache=True needs a time-free denoiser (parameterization='denoiser', no declared "
                             "time_conditioning); a prediction that depends on t cannot be reused across steps")
        return bool(cache) if cache is not None else (self.parameterization.name == "denoiser" and declared is True)

    # --- NFE counting -------------------------------------------------------------------------------
    def start(self, num_rows: int) -> None:
        """Begin a sampling run of ``num_rows`` rows: zero the counters, empty the per-row cache."""
        self.num_rows, self.nfe = num_rows, 0
        self._nfe_per_row = self._cached_x = self._cached_log_probs = None

    @property
    def nfe_per_row(self) -> Tensor:
        """[num_rows] how many times each row went through the model."""
        if self._nfe_per_row is None:
            if self.num_rows is None:
                raise ValueError("pass num_rows= to the Predictor to count model calls per row")
            self._nfe_per_row = torch.zeros(self.num_rows, dtype=torch.long, device=self.device)
        return self._nfe_per_row

    def _count(self, x: Tensor, rows: Tensor | None) -> None:
        if self.num_rows is None and rows is None:
            self.num_rows = x.shape[0]
        self.nfe += 1
        self.nfe_per_row[rows if rows is not None else slice(None)] += 1

    # --- what the model says --------------------------------------------------------------------------
    def noise(self, t: float, num_rows: int) -> Noise:
        """Noise(sigma_bar [num_rows], sigma [num_rows]) at time t, in the default float dtype."""
        return noise_at(self.schedule, t, num_rows, self.device)

    def _evaluate(self, x: Tensor, sigma_bar: Tensor, rows: Tensor | None, kind: str) -> Tensor:
        """The one place the model is called: guidance doubles the batch, output read as ``kind``."""
        read = self.parameterization.log_score if kind == "score" else self.parameterization.clean_log_probs
        self._count(x, rows)
        label = self._labels(x, rows)
        if self.context is not None:  # block diffusion: the model also sees the finished blocks (and the labels)
            logits = self.context.logits(self.model, x, sigma_bar, rows, **({} if label is None else {"label": label}))
            return read(logits, x, sigma_bar, self.graph)
        if not self.guidance:
            out = call_model(self.model, x, sigma_bar, num_clean_states=self.graph.num_clean_states, label=label)
            return read(out, x, sigma_bar, self.graph)
        uncond_x, uncond_label = x, label
        if self.guidance_mode == "null" and label is not None:
            uncond_label = torch.full_like(label, self.null_label)  # the trained unconditional branch
        else:  # infill, or a prompt dropped: the known positions masked
            known = self.condition.known if rows is None else self.condition.known[rows]
            uncond_x = torch.where(known, self.graph.mask_id, x)
        both_x = torch.cat([x, uncond_x])
        both_sigma = torch.cat([sigma_bar, sigma_bar])
        both_label = None if label is None else torch.cat([label, uncond_label])
        both = call_model(self.model, both_x, both_sigma, num_clean_states=self.graph.num_clean_states,
                          label=both_label)
        cond_out, uncond_out = read(both, both_x, both_sigma, self.graph).chunk(2)
        guided = cond_out + self.guidance * (cond_out - uncond_out)  # (1 + w) cond - w uncond
        return guided if kind == "score" else torch.log_softmax(guided, dim=-1)

    def log_score(self, x: Tensor, sigma_bar: Tensor, rows: Tensor | None = None) -> Tensor:
        """[b, L, S] log concrete scores at x [b, L], sigma_bar [b]; ``rows`` [b] names the batch rows."""
        return self._evaluate(x, sigma_bar, rows, "score")

    def clean_log_probs(self, x: Tensor, sigma_bar: Tensor, rows: Tensor | None = None) -> Tensor:
        """[b, L, C] log p(x0^i = y | x) at x [b, L]; with the cache on, only changed rows reach the model."""
        if not self.cache:
            return self._evaluate(x, sigma_bar, rows, "clean")
        if rows is None:
            self.num_rows = x.shape[0] if self.num_rows is None else self.num_rows
            rows = torch.arange(x.shape[0], device=x.device)
        if self._cached_x is None or self._cached_x.shape[1] != x.shape[1]:
            if self.num_rows is None:
                raise ValueError("pass num_rows= to the Predictor to cache predictions per row")
            self._cached_x = torch.full((self.num_rows, x.shape[1]), -1, dtype=x.dtype, device=x.device)
            self._cached_log_probs = None
        miss = (self._cached_x[rows] != x).any(-1).nonzero().squeeze(-1)
        if miss.numel():
            fresh = self._evaluate(x[miss], sigma_bar[miss], rows[miss], "clean")
            if self._cached_log_probs is None:
                self._cached_log_probs = fresh.new_zeros(self.num_rows, x.shape[1], fresh.shape[-1])
            self._cached_log_probs[rows[miss]] = fresh
            self._cached_x[rows[miss]] = x[miss]
        if rows.numel() == self.num_rows and bool((rows[1:] > rows[:-1]).all()):  # every row, in order
            return self._cached_log_probs  # no gather
        return self._cached_log_probs[rows]

    # --- fixed positions and draws --------------------------------------------------------------------
    def pin(self, x: Tensor, rows: Tensor | None = None) -> Tensor:
        """x with the condition's known positions put back (``rows`` selects a subset of the batch)."""
        return x if self.condition is None else self.condition.apply(x, rows)

    def filtered(self, log_probs: Tensor) -> Tensor:
        """Clean-token log-weights after temperature / top-k / top-p (float64)."""
        return filter_logits(log_probs, self.temperature, self.top_k, self.top_p)

    def draw(self, probs: Tensor, generator, uniform: Tensor | None = None) -> Tensor:
        """One index per row of the non-negative weights ``probs`` [..., K]; ``generator`` is one generator
        or ``RowGenerators`` (per leading row), or ``uniform`` [...] holds float64 uniforms drawn per row."""
        if uniform is not None and self.categorical != "float64":
            raise ValueError("per-row seeds need categorical='float64' (gumbel_fp32 is only a demonstration)")
        return sample_categorical(probs, generator, method=self.categorical, uniform=uniform)

    def __repr__(self) -> str:
        return (f"Predictor({type(self.model).__name__}, {self.graph!r}, {self.schedule!r}, "
                f"{self.parameterization.name!r}, guidance={self.guidance}, guidance_mode={self.guidance_mode!r}, "
                f"cache={self.cache})")


def _checked_device(device) -> torch.device | None:
    """``torch.device(device)``, with a one-line ValueError for a name torch does not know."""
    if device is None or isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
