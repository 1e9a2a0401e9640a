"""Block diffusion sampling: blocks left to right, an absorbing-graph sampler inside each, finished blocks cached.

For block k the sampler (``ancestral``, ``first_hitting`` or ``confidence``, unchanged) runs on the b tokens of
block k through a ``Predictor`` whose ``context`` holds the finished blocks x^{<k}, so every prediction is
p_theta(x0^k | x_t^k, x^{<k}); with exact block conditionals each block is an exact draw of
p(x^k | x^{<k}) and the sequence one of p(x). Two contexts answer the same question:

* ``KVCacheContext``: the exact KV cache (``model.new_kv_cache()``, ``model.extend_kv_cache``): a finished block's
  clean tokens go through the model once; a noised block then attends to the cache and to itself only.
* ``RecomputeContext``: the finished blocks' tokens, run again with every call over [x^{<k} ; x_t^k]
  (any block-causal model, e.g. an exact oracle; the reference the cache is tested against).

A block's predictions are counted as NFE like any sampler's; the cache adds one forward of b clean tokens per
finished block, not counted there. Rows whose EOS has appeared leave the batch (and the cache).

Beyond the training context (``length`` > max_len) the cache slides: it keeps the last max_len - b tokens'
keys and values, and the recomputing context runs ``sliding_window_forward`` (the same attention, from scratch);
see that function for what this approximates.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from discdiff.model_call import call_model, unwrap_model
from discdiff.nn.blocks import sliding_window_forward
from discdiff.row_random import RowGenerators

from . import SAMPLERS
from .base import SampleOutput
from .conditioning import Condition
from .memory import check_memory, sampling_memory
from .options import SamplerOptions
from .predictor import Predictor

__all__ = ["GuidedContext", "KVCacheContext", "RecomputeContext", "make_context", "sample_blocks"]


def _all_rows(rows: Tensor | None, num_rows: int) -> bool:
    return rows is None or (rows.numel() == num_rows and bool((rows == torch.arange(num_rows, device=rows.device))
                                                               .all()))


class RecomputeContext:
    """The finished blocks as tokens [B, P]; each call runs the model over [prefix ; block] (block-causal)."""

    def __init__(self, num_rows: int, num_clean_states: int, device=None):
        self.prefix = torch.empty(num_rows, 0, dtype=torch.long, device=device)
        self.num_clean_states = num_clean_states

    def logits(self, model, x: Tensor, sigma_bar: Tensor, rows: Tensor | None, label: Tensor | None = None) -> Tensor:
        """The model's output [r, n, S] for the block ``x`` [r, n] of the batch rows ``rows`` (``label`` [r]:
        their class labels, a class-conditional model's)."""
        prefix = self.prefix if _all_rows(rows, len(self.prefix)) else self.prefix[rows]
        tokens = torch.cat([prefix, x], dim=1)
        net = unwrap_model(model)
        if tokens.shape[1] > getattr(getattr(net, "config", None), "max_len", tokens.shape[1]):
            out = sliding_window_forward(net, tokens, label)  # beyond the context: the sliding window, as the cache
        else:
            out = call_model(model, tokens, sigma_bar, num_clean_states=self.num_clean_states, label=label)
        return out[:, prefix.shape[1]:]

    def append(self, clean: Tensor, label: Tensor | None = None) -> None:
        self.prefix = torch.cat([self.prefix, clean], dim=1)

    def keep(self, rows: Tensor) -> None:
        self.prefix = self.prefix[rows]


class KVCacheContext:
    """The exact KV cache of the finished blocks (``discdiff.nn.blocks.KVCache``) of a batch."""

    def __init__(self, model, num_rows: int, num_clean_states: int):
        self.net = unwrap_model(model)
        self.cache = self.net.new_kv_cache()
        self.num_rows, self.num_clean_states = num_rows, num_clean_states

    def logits(self, model, x: Tensor, sigma_bar: Tensor, rows: Tensor | None, label: Tensor | None = None) -> Tensor:
        cache = self.cache if _all_rows(rows, self.num_rows) else self.cache.select(rows)
        out = model(x, sigma_bar, kv_cache=cache, **({} if label is None else {"label": label}))
        if out.shape[:2] != x.shape or out.shape[-1] < self.num_clean_states:
            raise ValueError(f"model must return [B, n, >= {self.num_clean_states}] for a block {tuple(x.shape)}")
        return out

    def append(self, clean: Tensor, label: Tensor | None = None) -> None:
        """The finished block ``clean`` [B, b] of every row still generating, under their ``label`` [B]."""
        self.net.extend_kv_cache(self.cache, clean, **({} if label is None else {"label": label}))

    def keep(self, rows: Tensor) -> None:
        self.cache, self.num_rows = self.cache.select(rows), len(rows)


def make_context(model, num_rows: int, num_clean_states: int, kv_cache: bool | None, device=None):
    """A KV cache when the model has one (``kv_cache`` None or True), else the recomputing context."""
    has_cache = callable(getattr(unwrap_model(model), "new_kv_cache", None))
    if kv_cache and not has_cache:
        raise ValueError("kv_cache=True needs a model with a KV cache (new_kv_cache / extend_kv_cache)")
    if has_cache and kv_cache is not False:
        return KVCacheContext(model, num_rows, num_clean_states)
    return RecomputeContext(num_rows, num_clean_states, device)


class GuidedContext:
    """Classifier-free guidance against the trained null label, for block models: two contexts side by side,
    the finished blocks under the rows' labels and under the null label, and per position of the noised block

        guided = (1 + w) log p(x0^i | x_t^k, x^{<k}, c) - w log p(x0^i | x_t^k, x^{<k}, null)    [r, n, C]

    (renormalised by the reader). Both branches see the same finished blocks (the guided draws), as in
    ``Predictor``'s guidance for full-sequence models; the null branch keeps its own KV cache because the label
    rides in the cached keys and values."""

    def __init__(self, cond, uncond, weight: float, null_label: int, num_clean_states: int):
        self.cond, self.uncond = cond, uncond
        self.weight, self.null_label, self.num_clean_states = weight, null_label, num_clean_states

    def logits(self, model, x: Tensor, sigma_bar: Tensor, rows: Tensor | None, label: Tensor | None = None) -> Tensor:
        C = self.num_clean_states
        cond = torch.log_softmax(self.cond.logits(model, x, sigma_bar, rows, label=label)[..., :C].float(), -1)
        null = torch.full_like(label, self.null_label)
        uncond = torch.log_softmax(self.uncond.logits(model, x, sigma_bar, rows, label=null)[..., :C].float(), -1)
        return cond + self.weight * (cond - uncond)

    def append(self, clean: Tensor, label: Tensor | None = None) -> None:
        self.cond.append(clean, label)
        self.uncond.append(clean, torch.full_like(label, self.null_label))

    def keep(self, rows: Tensor) -> None:
        self.cond.keep(rows)
        self.uncond.keep(rows)


class _Progress:
    """The full state [B, length] seen by ``record``: trajectory and callback, across blocks."""

    def __init__(self, x: Tensor, keep_trajectory: bool, callback):
        self.x, self.callback, self.steps, self.nfe = x, callback, 0, 0
        self.trajectory = [x.clone()] if keep_trajectory else None
        self.rows, self.span, self.pred = None, slice(0), None
        if callback is not None:
            callback(0, x, 0)

    def enter(self, rows: Tensor, span: slice, pred: Predictor) -> None:
        self.rows, self.span, self.pred = rows, span, pred

    def __call__(self, block: Tensor) -> None:
        self.steps += 1
        if self.trajectory is None and self.callback is None:
            return
        state = self.x.clone()
        state[self.rows, self.span] = block
        if self.trajectory is not None:
            self.trajectory.append(state)
        if self.callback is not None:
            self.callback(self.steps, state, self.nfe + self.pred.nfe)


def _block_condition(condition: Condition | None, rows: Tensor, span: slice) -> Condition | None:
    return None if condition is None else Condition(condition.tokens[rows, span], condition.known[rows, span])


class BlockSeeds(NamedTuple):
    """Per-row randomness of a block sampler: ``seeds`` [B, K], row b's seed for block k, drawn up front from
    row b's own generator, so what a row draws in block k never depends on what other rows drew before."""

    seeds: Tensor
    device: torch.device | None


def per_block(generator, num_blocks: int):
    """``BlockSeeds`` from a ``RowGenerators`` (K seeds per row, from the row's generator alone), else
    ``generator`` as it is. A sampler's draws per row depend on the whole batch's progress (ancestral draws
    until *every* row is done), which is harmless inside one sampler run but would leak into the next block."""
    if not isinstance(generator, RowGenerators):
        return generator
    seeds = [torch.randint(0, 2**62, (num_blocks,), generator=g, device=g.device).cpu() for g in generator.generators]
    return BlockSeeds(torch.stack(seeds), generator.generators[0].device)


def block_generator(generator, rows: Tensor, block: int):
    """What block ``block``'s sampler draws from for the batch rows ``rows``: fresh per-row generators seeded
    from ``BlockSeeds``, or the one shared generator."""
    if not isinstance(generator, BlockSeeds):
        return generator
    return RowGenerators.from_seeds(generator.seeds[rows.cpu(), block].tolist(), generator.device)


def sample_blocks(model, graph, schedule, block_size: int, num_samples: int, length: int, sampler: str,
                  opts: SamplerOptions, predictor_options: dict, *, generator=None, condition: Condition | None = None,
                  device=None, callback=None, eos_id: int | None = None, kv_cache: bool | None = None,
                  label: Tensor | None = None, guidance: float = 0.0, null_label: int | None = None) -> SampleOutput:
    """Draw ``num_samples`` sequences of ``length`` tokens block by block (checked arguments: see
    ``BlockDiffusion.sample``). The last block is shorter when b does not divide ``length``. ``label`` [B]: the
    rows' class labels; ``guidance`` w > 0 contrasts them with ``null_label`` (``GuidedContext``); ``generator``
    may be a ``RowGenerators`` (one per row: ``per_block`` seeds each row's
    blocks from it). Returns ``SampleOutput(samples [B, length], nfe, nfe_per_row, trajectory)``; nfe counts block
    predictions."""
    check_memory(sampling_memory(num_samples, length, graph.num_states, steps=opts.steps, guidance=bool(guidance),
                                 trajectory_len=(opts.steps + 2) * -(-length // block_size) if opts.return_trajectory
                                 else 0), device)
    mask_id, C = graph.mask_id, graph.num_clean_states
    x = torch.full((num_samples, length), mask_id, dtype=torch.long, device=device)
    x = condition.apply(x) if condition is not None else x
    rows = torch.arange(num_samples, device=device)  # the rows still generating
    generator = per_block(generator, -(-length // block_size))
    context = make_context(model, num_samples, C, kv_cache, device)
    if guidance:
        context = GuidedContext(context, make_context(model, num_samples, C, kv_cache, device), guidance, null_label, C)
    nfe_per_row = torch.zeros(num_samples, dtype=torch.long, device=device)
    progress = _Progress(x, opts.return_trajectory, callback)
    with torch.no_grad():
        for start in range(0, length, block_size):
            span = slice(start, min(start + block_size, length))
            labels = None if label is None else label[rows]
            pred = Predictor(model, graph, schedule, "denoiser", condition=_block_condition(condition, rows, span),
                             num_rows=len(rows), device=device, context=context, label=labels, **predictor_options)
            pred.start(len(rows))
            progress.enter(rows, span, pred)
            block = pred.pin(torch.full((len(rows), span.stop - start), mask_id, dtype=torch.long, device=device))
            block = SAMPLERS[sampler].run(pred, block, opts, block_generator(generator, rows, start // block_size),
                                          progress)
            x[rows, span] = block
            progress.nfe += pred.nfe
            nfe_per_row[rows] += pred.nfe_per_row
            if span.stop == length:
                break
            context.append(block, labels)
            if eos_id is not None:
                going = ~(x[rows, : span.stop] == eos_id).any(-1)
                if not bool(going.all()):
                    context.keep(going.nonzero().squeeze(-1))
                    rows = rows[going]
                if rows.numel() == 0:
                    break
    if eos_id is not None:  # the record convention `body EOS EOS ...`: everything after the first EOS is EOS
        x = torch.where((x == eos_id).cumsum(-1) > 0, eos_id, x)
    return SampleOutput(x, progress.nfe, nfe_per_row, progress.trajectory)
