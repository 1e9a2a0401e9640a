"""``BlockDiffusion``: block diffusion (BD3-LM), from autoregressive (b = 1) to full-sequence masked diffusion (b = L).

A sequence of L tokens is cut into K = L / b blocks x^1 .. x^K. The chain rule over blocks,
``log p(x) = sum_k log p(x^k | x^{<k})``, is bounded term by term by a masked-diffusion bound inside block k
with the clean blocks before it as context, so every objective below is a sum over blocks:

    t_dce       sum_k (1 - t_min) sigma(t_k)/(e^{sigma_bar(t_k)} - 1) sum_{i in k, masked} -log p(x0^i | x_t^k, x0^{<k})
    lambda_dce  sum_k (1 - t_min) 1/lambda_k sum_{i in k, masked} -log p(x0^i | x_t^k, x0^{<k}),  mask w.p. lambda_k
    k_dce       sum_k n_k/m_k sum_{i in k, masked} -log p(x0^i | x_t^k, x0^{<k}),  exactly m_k ~ U{1..n_k} masked

(n_k real tokens in block k). The model sees every block's noised tokens and the clean sequence in one pass
(``model(x_t, sigma_bar, x0=x0)``, ``discdiff.nn.blocks``): its output at block k is p(x0^k | x_t^k, x0^{<k}).

Time draws: one per sequence, rotated per block. Row b's time t_b (stratified over the batch, exactly as
``Diffusion.draw_times``) goes to block 0; block k gets t_{b,k} = low + (1 - low) frac(s_b + k phi) with
s_b = (t_b - low)/(1 - low) and phi = (sqrt 5 - 1)/2. frac(U + c) is uniform whenever U is, so every block's
time is marginally U[low, 1]: each block's term has exactly its bound as expectation, and by linearity so has
the sum (the joint law of the K times only changes the variance; the Weyl rotation spreads a sequence's blocks
over the noise range, where one shared time would put them all at the same level). Nothing is clipped: the
estimate is unbiased for the true bound, so ``nll`` and ``discdiff eval`` report it like any other bound.
b = L gives Diffusion's loss draw for draw (block 0 is the whole sequence, with the row's own time); b = 1 with
k_dce is the exact autoregressive NLL (one token per block, always masked, weight 1).

Example::

    >>> import torch, discdiff as dd
    >>> bd = dd.BlockDiffusion(dd.Absorbing(5), dd.LogLinear(), block_size=4)
    >>> model = lambda x_t, sigma_bar, x0=None: torch.zeros(*x_t.shape, 6)   # uniform over 5 tokens
    >>> bd.loss(model, torch.randint(0, 5, (2, 8)), "k_dce")                    # 8 log 5: every token once
    tensor([12.8755, 12.8755])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import losses
from .diffusion import Diffusion
from .graphs import Graph
from .model_call import accepts_label, accepts_padding_mask, is_time_free, num_classes, unwrap_model
from .parameterization import Parameterization
from .row_random import resolve_generator
from .sampling import (
    OPTIONS,
    SAMPLERS,
    SampleOutput,
    check_sample_size,
    resolve_sampler,
    split_options,
)
from .sampling.blocks import sample_blocks
from .schedules import Schedule

__all__ = ["BlockDiffusion", "GOLDEN_ROTATION"]

GOLDEN_ROTATION = (math.sqrt(5.0) - 1.0) / 2.0  # phi: block k's time is the row's stratum shifted by k phi


class BlockDiffusion(Diffusion):
    """Block diffusion over blocks of ``block_size`` tokens: ``loss``, ``nll``, ``draw_times``, ``block_times``,
    ``sample``.

    A ``Diffusion`` whose objectives are sums of per-block masked-diffusion bounds (see the module doc), so the
    trainer, ``discdiff eval`` and the recipe hold it like any Diffusion. Needs an absorbing graph and a
    time-free denoiser: ``model(x_t [B, L], sigma_bar [B], x0=x0 [B, L]) -> [B, L, S]`` whose output at block k
    depends on x_t's block k and x0's blocks < k only (``DiffusionTransformer`` with ``block_size``). The
    ``sigma_bar`` handed over is the mean of the row's block noise levels: a time-free model ignores it.
    """

    def __init__(self, graph: Graph, schedule: Schedule, block_size: int,
                 parameterization: str | Parameterization = "denoiser", t_min: float = 1e-5):
        super().__init__(graph, schedule, parameterization, t_min)
        if graph.mask_id is None:
            raise ValueError("block diffusion masks tokens inside a block: it needs an absorbing graph")
        if self.parameterization.name != "denoiser":
            raise ValueError("block diffusion predicts clean tokens: parameterization must be 'denoiser'")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
        self.block_size = block_size
        self._objectives = {"t_dce": self._block_t_dce, "lambda_dce": self._block_lambda_dce,
                            "k_dce": self._block_k_dce}

    def __repr__(self) -> str:
        return f"BlockDiffusion({self.graph!r}, {self.schedule!r}, block_size={self.block_size})"

    def check_model(self, model) -> None:
        """Refuse a model that declares another block size, none (a full-sequence model) or time conditioning."""
        if is_time_free(model) is False:
            raise ValueError("block diffusion needs a time-free model: blocks are noised to different levels")
        cfg = getattr(unwrap_model(model), "config", None)
        if cfg is None or not hasattr(cfg, "num_states"):
            return  # a plain callable: it declares nothing
        declared = getattr(cfg, "block_size", None)
        if declared is None:
            raise ValueError(f"a full-sequence model (no block_size) cannot be used as a block model of "
                             f"block_size={self.block_size}")
        if declared != self.block_size:
            raise ValueError(f"the model has block_size={declared}, this BlockDiffusion block_size={self.block_size}")

    # --- the public API ---------------------------------------------------------------------------
    def loss(self, model, x0: Tensor, objective: str | None = None, *, t: Tensor | None = None,
             generator: torch.Generator | None = None, padding_mask: Tensor | None = None,
             loss_mask: Tensor | None = None, label: Tensor | None = None) -> Tensor:
        """Per-sequence loss [B] in nats, a sum of per-block bounds; ``t`` [B] is each row's time (block 0's;
        the other blocks' are rotated from it). x0's length must be a multiple of ``block_size``.
        ``loss_mask`` as in ``Diffusion.loss`` (positions outside it are clean context); ``label`` [B] class
        labels of a class-conditional block model (``model(..., x0=x0, label=label)``)."""
        self.check_model(model)
        if label is not None and not accepts_label(model):
            raise ValueError("a label was given but the model takes none (a class-conditional model has a "
                             "`label` parameter, e.g. DiffusionTransformer with model.num_classes set)")
        if isinstance(x0, Tensor) and x0.ndim == 2 and x0.shape[1] % self.block_size:
            raise ValueError(f"sequence length {x0.shape[1]} is not a multiple of block_size={self.block_size}")
        return super().loss(model, x0, objective, t=t, generator=generator, padding_mask=padding_mask,
                            loss_mask=loss_mask, label=label)

    def sample(self, model, num_samples: int, length: int, sampler: str | None = None, *,
               generator: torch.Generator | None = None, condition=None, guidance: float = 0.0, device=None,
               callback=None, eos_id: int | None = None, kv_cache: bool | None = None, label=None, seeds=None,
               **options) -> SampleOutput:
        """Blocks left to right, ``sampler`` (ancestral, first_hitting or confidence) inside each block.

        ``steps`` is per block. ``kv_cache``: None uses the model's exact KV cache when it has one
        (``new_kv_cache``), True requires it, False recomputes the finished blocks at every call. ``condition``
        pins known tokens (a prompt's whole blocks cost no model call; a partial block is pinned inside the
        first noised block). ``eos_id``: a row stops after the block holding its first EOS, and every token
        after that EOS is EOS. ``label``: class labels [num_samples] (or one int for all) of a class-conditional
        block model; ``guidance`` w > 0 with ``label``: classifier-free guidance against the null label,
        per position of each block (``discdiff.sampling.blocks.GuidedContext``). ``seeds``: one integer per
        row instead of ``generator`` (``Diffusion.sample``): row b's
        sample is the same alone or in any batch. See ``discdiff.sampling.blocks.sample_blocks``.
        """
        self.check_model(model)
        null_label = self._check_guidance(model, guidance, label, options)
        sampler = resolve_sampler(sampler, self.graph, self.parameterization)
        if not SAMPLERS[sampler].needs_mask:
            raise ValueError(f"inside a block, sample with ancestral, first_hitting or confidence, not {sampler!r}")
        if options.get("block_length") is not None:
            self.check_block_length(options["block_length"])
            if sampler == "confidence":  # equal to the model's blocks: each block is one confidence block
                options = {**options, "block_length": None}
        split = split_options(sampler, options)
        predictor_options = dict(split.predictor)
        if sampler not in OPTIONS["cache"].samplers:
            predictor_options["cache"] = False
        check_sample_size(num_samples, length)
        if condition is not None:
            condition = condition.validate(num_samples, length, self.graph.num_clean_states).to(device)
        if eos_id is not None and not (isinstance(eos_id, int) and 0 <= eos_id < self.graph.num_clean_states):
            raise ValueError(f"eos_id must be a clean token id in [0, {self.graph.num_clean_states}), got {eos_id!r}")
        generator = resolve_generator(generator, seeds, num_samples, device)
        return sample_blocks(model, self.graph, self.schedule, self.block_size, num_samples, length, sampler,
                             split.loop, predictor_options, generator=generator, condition=condition,
                             device=device, callback=callback, eos_id=eos_id, kv_cache=kv_cache,
                             label=_row_labels(label, num_samples, model, device), guidance=guidance,
                             null_label=null_label)

    @staticmethod
    def _check_guidance(model, guidance: float, label, options: dict) -> int | None:
        """The null label guidance contrasts with (None without guidance); ValueError for what block models
        cannot guide: a prompt alone (its dropped branch would need a cache of masked prompt blocks) or
        ``guidance_mode="infill"``. Pops ``guidance_mode`` from ``options``."""
        mode = options.pop("guidance_mode", "null")
        if not guidance:
            return None
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {guidance}")
        if mode != "null" or label is None:
            raise ValueError("block models are guided against the trained null label only: pass label= to a "
                             "class-conditional block model (guidance_mode='null'); prompt and infill guidance "
                             "are not available for block diffusion")
        null = num_classes(model)
        if null is None:
            raise ValueError("guidance against the null label needs a model that declares num_classes")
        return null

    def check_block_length(self, block_length) -> None:
        """Refuse the confidence sampler's ``block_length`` unless it is None or this model's ``block_size``:
        a block model decodes its own blocks left to right, and other semi-autoregressive blocks would
        contradict them (equal, it changes nothing: each block is one confidence block)."""
        if block_length is not None and block_length != self.block_size:
            raise ValueError(f"block_length={block_length!r} contradicts this block model's block_size="
                             f"{self.block_size}: it decodes its own blocks of {self.block_size} tokens left to "
                             f"right; leave block_length unset (or {self.block_size})")

    # --- per-block pieces ---------------------------------------------------------------------------
    def block_times(self, t: Tensor, num_blocks: int, objective: str | None = None) -> Tensor:
        """[B, K] per-block times from the rows' times ``t`` [B] (in [low, 1]; low = 0 for k_dce, else t_min):

            t_{b,0} = t_b,   t_{b,k} = low + (1 - low) frac((t_b - low)/(1 - low) + k phi),   phi = (sqrt 5 - 1)/2

        Each column is marginally uniform when t is (and stratified over the batch when t is), so each block's
        term is an unbiased estimate of its bound. float64 for k_dce, else clipped to t_min in the default dtype.
        """
        objective = objective or self.default_objective
        low = 0.0 if objective == "k_dce" else self.t_min
        t = t.double()
        shift = torch.arange(1, num_blocks, dtype=torch.float64, device=t.device) * GOLDEN_ROTATION  # [K - 1]
        stratum = (t - low) / (1.0 - low)  # [B] in [0, 1]
        rotated = low + (1.0 - low) * ((stratum[:, None] + shift) % 1.0)  # [B, K - 1]
        times = torch.cat([t[:, None], rotated], dim=1)  # [B, K]
        if objective == "k_dce":
            return times  # u in [0, 1]; floored in float64
        return times.clamp_min(self.t_min).to(torch.get_default_dtype())

    def _block_times(self, t: Tensor | None, x0: Tensor, generator, objective: str) -> Tensor:
        if t is None:
            t = self.draw_times(x0.shape[0], objective, generator=generator, device=x0.device)
        return self.block_times(t, x0.shape[1] // self.block_size, objective)

    def _per_block(self, values: Tensor) -> Tensor:
        """[B, L] -> [B, K]: sums over each block's positions."""
        return values.view(values.shape[0], -1, self.block_size).sum(-1)

    def _per_position(self, values: Tensor) -> Tensor:
        """[B, K] -> [B, L]: each block's value on its positions."""
        return values.repeat_interleave(self.block_size, dim=1)

    def _block_log_probs(self, model, x_t: Tensor, x0: Tensor, block_sigma: Tensor, masks) -> Tensor:
        """log p(x0^i = . | x_t^k, x0^{<k}) [B, L, C] from one call ``model(x_t, sigma_bar, x0=x0)``; a padded
        batch's mask goes to a model that takes ``padding_mask`` (the one padding policy of model_call), the
        rows' labels (``masks.label``) to a class-conditional one."""
        sigma_bar = block_sigma.mean(-1)  # [B]; a time-free model ignores it
        kwargs = {"x0": x0}
        if not bool(masks.visible.all()) and accepts_padding_mask(model):
            kwargs["padding_mask"] = masks.visible
        if masks.label is not None:
            kwargs["label"] = masks.label
        out = model(x_t, sigma_bar, **kwargs)
        if not isinstance(out, Tensor) or out.ndim != 3 or out.shape[:2] != x_t.shape \
                or out.shape[-1] < self.graph.num_clean_states:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"model must return [B, L, >= {self.graph.num_clean_states}] for x_t "
                             f"{tuple(x_t.shape)}, got {got}")
        return self.parameterization.clean_log_probs(out, x_t, sigma_bar, self.graph)

    # --- the objectives: Diffusion's, summed block by block ------------------------------------------
    def _block_t_dce(self, model, x0, masks, t, generator):
        valid = masks.scored  # noised and scored; masks.visible (the attention mask) may be wider
        noise = self.schedule(self._block_times(t, x0, generator, "t_dce"))  # [B, K] each
        x_t = torch.where(valid, self.graph.sample_transition(x0, self._per_position(noise.total), generator), x0)
        log_probs = self._block_log_probs(model, x_t, x0, noise.total, masks)
        ce = self._per_block(losses.masked_ce(log_probs, x0, (x_t == self.graph.mask_id) & valid))  # [B, K]
        return ((1 - self.t_min) * losses.t_dce_weight(noise.total, noise.rate) * ce).sum(-1)

    def _block_lambda_dce(self, model, x0, masks, t, generator):
        valid = masks.scored
        lam = self._block_times(t, x0, generator, "lambda_dce")  # [B, K] masking probabilities
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        masked = (u < self._per_position(lam)) & valid
        ce = self._masked_blocks(model, x0, masked, lam, masks)
        return ((1 - self.t_min) * losses.lambda_dce_weight(lam) * ce).sum(-1)

    def _block_k_dce(self, model, x0, masks, t, generator):
        valid = masks.scored
        real = self._per_block(valid.long())  # [B, K] n_k
        u = self._block_times(t, x0, generator, "k_dce")
        k = (1 + torch.floor(u * real)).clamp_max(real).long()  # m_k ~ U{1..n_k}; 0 for an all-padding block
        keys = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        keys = keys.masked_fill(~valid, 2.0)  # pads sort last and are never masked
        rank = keys.view(x0.shape[0], -1, self.block_size).argsort(-1).argsort(-1).view(x0.shape)
        masked = rank < self._per_position(k)
        ce = self._masked_blocks(model, x0, masked, k / (real + 1.0), masks)
        weight = torch.where(real > 0, losses.k_dce_weight(k.clamp_min(1), real), 0.0)
        return (weight * ce).sum(-1)

    def _masked_blocks(self, model, x0, masked, mask_prob, masks) -> Tensor:
        """Per-block masked cross-entropy [B, K] with ``masked`` positions replaced by MASK."""
        x_t = torch.where(masked, self.graph.mask_id, x0)
        sigma = -torch.log1p(-mask_prob.clamp_max(1 - 1e-6))  # [B, K]
        log_probs = self._block_log_probs(model, x_t, x0, sigma, masks)
        return self._per_block(losses.masked_ce(log_probs, x0, masked))


def _row_labels(label, num_rows: int, model, device) -> Tensor | None:
    """``label`` (an int, [1] or [num_rows]) as LongTensor [num_rows] on ``device``, or None; ValueError for a
    model that takes no label or the wrong count (labels' range: the model's own check)."""
    if label is None:
        return None
    if not accepts_label(model):
        raise ValueError("a label was given but the model takes none (a class-conditional model has a "
                         "`label` parameter, e.g. DiffusionTransformer with model.num_classes set)")
    label = torch.as_tensor(label, dtype=torch.long).reshape(-1)
    if label.numel() not in (1, num_rows):
        raise ValueError(f"label must hold 1 or {num_rows} (num_samples) labels, got {label.numel()}")
    return label.expand(num_rows).to(device)
