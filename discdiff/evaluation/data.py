"""Evaluation data: any of the usual forms -> batches of (tokens, mask), where they came from, a fingerprint.

    load_eval_data("data/shakespeare", context=256, max_sequences=512)   # 512 windows spread over the split
    as_batches(tokens)                      # LongTensor [N, L]: no padding, cut into batches
    as_batches((tokens, mask))              # mask True on real tokens (records: proteins, DNA)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from discdiff.data.splits import SplitSample, open_split, spread_sample

__all__ = ["EvalData", "as_batches", "data_hash", "load_eval_data"]


@dataclass(frozen=True)
class EvalData:
    """Evaluation batches (tokens Long[B, L], mask Bool[B, L]) and how their sequences were drawn.

    ``split_sample``: which examples of a split these are (``load_eval_data``), so intervals are for the
    split's mean; None when the sequences were handed over directly (then they count as independent
    draws from the data distribution). Iterates, indexes and measures like the list of batches.
    """

    batches: list[tuple[Tensor, Tensor]]
    split_sample: SplitSample | None = None
    source: str | None = None
    split: str | None = None
    labels: list[Tensor] | None = None  # LongTensor [B] per batch: the class labels of a labelled split

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]

    def describe(self) -> dict:
        """How the sequences were drawn, as plain values for JSON."""
        drawn = self.split_sample.to_dict() if self.split_sample is not None else {"method": "given"}
        return {"source": self.source, "split": self.split, **drawn}


def as_batches(data, batch_size: int = 32) -> EvalData:
    """Normalise evaluation data to batches of (tokens Long[B, L], mask Bool[B, L]), mask True on real tokens.

    ``data``: a LongTensor [N, L] (no padding), a pair (tokens, mask), a ``discdiff.data.Batch``, an
    ``EvalData`` (returned as it is), or an iterable of those (kept as its own batches). A bare tensor or
    pair is cut into ``batch_size`` rows. Rows without a single real token are dropped (no likelihood).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, EvalData):
        return data
    single = _as_pair(data)
    items = [single] if single is not None else [_as_pair(item) for item in data]
    if any(item is None for item in items):
        raise ValueError("data must be a LongTensor [N, L], a (tokens, mask) pair, a Batch, or an iterable of them")
    out = []
    for tokens, mask in items:
        step = batch_size if single is not None else len(tokens)
        for start in range(0, len(tokens), max(step, 1)):
            x0, m = tokens[start:start + step], mask[start:start + step]
            keep = m.any(-1)
            if keep.any():
                out.append((x0[keep], m[keep]))
    if not out:
        raise ValueError("no data to evaluate: every sequence is empty")
    return EvalData(out)


def _as_pair(item) -> tuple[Tensor, Tensor] | None:
    if hasattr(item, "tokens") and hasattr(item, "mask"):
        tokens, mask = item.tokens, item.mask
    elif isinstance(item, Tensor):
        tokens, mask = item, None
    elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(v, Tensor) for v in item):
        tokens, mask = item
    else:
        return None
    if tokens.ndim != 2 or tokens.dtype not in (torch.long, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"tokens must be an integer tensor [N, L], got {tokens.dtype} {tuple(tokens.shape)}")
    mask = torch.ones_like(tokens, dtype=torch.bool) if mask is None else mask
    if mask.shape != tokens.shape or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a BoolTensor of shape {tuple(tokens.shape)}, got {mask.dtype} "
                         f"{tuple(mask.shape)}")
    return tokens.long(), mask


def data_hash(batches: Sequence[tuple[Tensor, Tensor]]) -> str:
    h = hashlib.sha256()
    for tokens, mask in batches:
        h.update(tokens.masked_fill(~mask, -1).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def load_eval_data(source, *, context: int, vocab_size: int | None = None, split: str = "validation",
                   max_sequences: int | None = None, batch_size: int = 32, seed: int = 0, records: str = "pad",
                   long_records: str = "crop") -> EvalData:
    """``max_sequences`` examples spread over the whole split (every example when None), as batches.

    The examples are a seeded stratified sample (``discdiff.data.splits.spread_sample``): one random draw
    in each of n equal strata of the split, every example equally likely, in split order. So the intervals computed
    on them (``diffusion_nll``, ``ar_nll``) are for the mean over the *whole split*, with the variance of
    that design; the sample (seed, n, N, method) is recorded in every result. ``source`` takes every form
    ``discdiff.data.splits.open_split`` takes: a prepared corpus directory (its ``split``), a token-file
    header, a .npy / .bin of ids, or "synthetic" (held-out synthetic tokens). ``records`` / ``long_records``:
    the record layout the model was trained on (``discdiff.data.RecordDataset``; running text ignores them).
    """
    source = "synthetic-valid" if str(source) == "synthetic" else str(source)
    dataset, vocab, _ = open_split(source, split, context=context, vocab_size=vocab_size, random_offset=False,
                                   records=records, long_records=long_records)
    if vocab_size is not None and vocab != vocab_size:
        raise ValueError(f"{source}: data vocab_size {vocab} != the model's {vocab_size}")
    if len(dataset) == 0:
        raise ValueError(f"{source}: no {split!r} examples of context {context}")
    drawn = spread_sample(len(dataset), max_sequences, seed)
    batch = dataset.get(drawn.indices, 0, randomize=False)
    keep = batch.mask.any(-1)  # as_batches drops empty rows: drop their labels with them
    batches = as_batches((batch.tokens[keep], batch.mask[keep]), batch_size)
    labels = None if batch.labels is None else list(batch.labels[keep].split(batch_size))
    return EvalData(batches.batches, drawn, source, split, labels)
