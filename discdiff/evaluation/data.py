"""Evaluation data: any of the usual forms -> a list of (tokens, mask) batches, and a fingerprint of them.

    load_eval_data("data/shakespeare", context=256, max_sequences=512)   # first 512 validation windows
    as_batches(tokens)                      # LongTensor [N, L]: no padding, cut into batches
    as_batches((tokens, mask))              # mask True on real tokens (records: proteins, DNA)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["as_batches", "data_hash", "load_eval_data"]


def as_batches(data, batch_size: int = 32) -> list[tuple[Tensor, Tensor]]:
    """Normalise evaluation data to a list of (tokens Long[B, L], mask Bool[B, L]), mask True on real tokens.

    ``data``: a LongTensor [N, L] (no padding), a pair (tokens, mask), a ``discdiff.data.Batch``, or an
    iterable of those (kept as its own batches). A bare tensor or pair is cut into ``batch_size`` rows.
    Rows without a single real token are dropped (they carry no likelihood).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
    return out


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
                   max_sequences: int | None = None, batch_size: int = 32) -> list[tuple[Tensor, Tensor]]:
    """The first ``max_sequences`` examples of a split, in order (no random offsets), as evaluation batches.

    ``source`` takes every form ``discdiff.training.DataConfig.train`` takes: a prepared corpus directory
    (its ``split``), a token-file header, a .npy / .bin of ids, or "synthetic".
    """
    import numpy as np

    from discdiff.training import DataConfig
    from discdiff.training.data import open_split

    source = "synthetic-valid" if str(source) == "synthetic" else str(source)  # held-out synthetic tokens
    cfg = DataConfig(train=source, context=context, vocab_size=vocab_size)
    dataset, vocab, _ = open_split(source, cfg, split)
    if vocab_size is not None and vocab != vocab_size:
        raise ValueError(f"{source}: data vocab_size {vocab} != the model's {vocab_size}")
    n = len(dataset) if max_sequences is None else min(max_sequences, len(dataset))
    if n == 0:
        raise ValueError(f"{source}: no {split!r} examples of context {context}")
    batch = dataset.get(np.arange(n), 0, randomize=False)
    return as_batches((batch.tokens, batch.mask), batch_size)
