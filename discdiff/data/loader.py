"""Datasets over packed token files and a deterministic, shardable, resumable batch loader.

    train = open_dataset("data/shakespeare/train.json", context=256)   # WindowDataset or RecordDataset
    loader = TokenLoader(train, batch_size=32, seed=0, rank=0, world_size=1)
    for step, batch in zip(range(1000), loader):                        # endless unless epochs= is given
        batch.tokens, batch.mask                                        # LongTensor[B, L], BoolTensor[B, L]
    ckpt["data"] = loader.state_dict()                                  # a few ints
    loader2 = TokenLoader(train, batch_size=32, seed=0); loader2.load_state_dict(ckpt["data"])
    # loader2 now yields exactly the batches loader would have yielded next.

Determinism: epoch e shuffles with a generator seeded by seed_for(seed, e) (discdiff.seeding); every rank
computes the same permutation and takes every world_size-th example from position `rank`, so shards are
disjoint and seeding never depends on the rank alone. Random window offsets and crops are functions of
(seed, epoch, example), so they do not depend on batch size, sharding or resumption either.
"""

from __future__ import annotations

import json
import math
import shlex
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from discdiff.seeding import seed_for, splitmix64_array

from .kinds import load_tokenizer
from .packing import TokenFile
from .tokenizer import PixelTokenizer


class Batch(NamedTuple):
    tokens: torch.Tensor  # LongTensor[B, L]
    mask: torch.Tensor  # BoolTensor[B, L], True = real token, False = padding
    labels: torch.Tensor | None  # LongTensor[B] class labels where the corpus has them, else None
    # BoolTensor[B, L] the positions the loss scores (prompt-response pairs: the response and its EOS
    # padding); None: every real position. The attention mask is `mask`, never this.
    loss_mask: torch.Tensor | None = None


class TruncationWarning(UserWarning):
    """Records longer than the context are cropped; the warning gives the count."""


def _as_token_file(source) -> TokenFile:
    return source if isinstance(source, TokenFile) else TokenFile.open(source)


class WindowDataset:
    """Running text cut into windows of `context` tokens (documents are already separated by EOS).

    Window i of epoch e starts at `offset_e + i * context`, where offset_e in [0, context) is drawn per
    epoch when `random_offset` (so windows straddle different boundaries each epoch) and is 0 otherwise.
    The count is fixed so every epoch has the same number of examples: the last `< 2 * context` tokens
    may go unused in a given epoch (a different tail each epoch when offsets are random)."""

    def __init__(self, source, context: int, random_offset: bool = True):
        self.data = _as_token_file(source)
        if context < 1:
            raise ValueError(f"context must be positive, got {context}")
        n = self.data.tokens.size
        self.random_offset = random_offset and n >= 2 * context - 1
        self.context = context
        self.size = (n - context + 1) // context if self.random_offset else n // context
        if self.size < 1:
            raise ValueError(f"{self.data.header_path}: {n} tokens cannot fill one window of {context}")

    def __len__(self) -> int:
        return self.size

    def get(self, indices: np.ndarray, epoch_seed: int, randomize: bool = True) -> Batch:
        offset = seed_for(epoch_seed, 1) % self.context if self.random_offset and randomize else 0
        starts = offset + indices.astype(np.int64) * self.context
        tokens = self.data.tokens[starts[:, None] + np.arange(self.context)]  # (B, L)
        tokens = torch.from_numpy(tokens.astype(np.int64))
        return Batch(tokens, torch.ones_like(tokens, dtype=torch.bool), None)


class RecordDataset:
    """One record per example: EOS appended (when the tokenizer has one), padded with PAD to `context`.
    With `add_bos=True` (an autoregressive baseline's start token) BOS is prepended as well.

    A record (with its EOS) longer than `context` is cropped to a window of `context` tokens: a random
    window per (epoch, record) when the loader shuffles, its start otherwise. The count is printed once
    as a TruncationWarning; pass `long_records="error"` to refuse such records instead."""

    def __init__(self, source, context: int, *, eos_id: int | None = None, pad_id: int | None = None,
                 bos_id: int | None = None, add_bos: bool = False, long_records: str = "crop"):
        self.data = _as_token_file(source)
        if context < 1:
            raise ValueError(f"context must be positive, got {context}")
        if long_records not in ("crop", "error"):
            raise ValueError(f"long_records must be 'crop' or 'error', got {long_records!r}")
        if add_bos and bos_id is None:
            raise ValueError("add_bos=True needs a bos_id")
        self.context, self.eos_id, self.pad_id = context, eos_id, pad_id
        self.bos_id = bos_id if add_bos else None
        self.lengths = self.data.lengths + (eos_id is not None) + (self.bos_id is not None)
        long = np.flatnonzero(self.lengths > context)
        if long.size and long_records == "error":
            raise ValueError(f"{self.data.header_path}: {long.size} records are longer than context {context} "
                             f"(record {long[0]} has {self.lengths[long[0]]} tokens)")
        if long.size:
            warnings.warn(f"{self.data.header_path.name}: {long.size} of {self.lengths.size} records "
                          f"({100 * long.size / self.lengths.size:.1f}%) are longer than context {context} and "
                          "are cropped to a window of that length", TruncationWarning, stacklevel=2)
        if pad_id is None and (self.lengths < context).any():
            raise ValueError(f"{self.data.header_path}: records shorter than context {context} need a pad_id")

    def __len__(self) -> int:
        return self.lengths.size

    def get(self, indices: np.ndarray, epoch_seed: int, randomize: bool = True) -> Batch:
        L = self.context
        tokens = np.full((indices.size, L), self.pad_id if self.pad_id is not None else 0, dtype=np.int64)
        mask = np.zeros((indices.size, L), dtype=bool)
        spare = np.maximum(self.lengths[indices] - L, 0)
        starts = (splitmix64_array(epoch_seed, indices) % (spare + 1).astype(np.uint64)).astype(np.int64)
        if not randomize:
            starts[:] = 0
        for row, (i, start) in enumerate(zip(indices.tolist(), starts.tolist(), strict=True)):
            record = self.data.record(i)
            if self.bos_id is not None:
                record = np.insert(record, 0, self.bos_id)
            if self.eos_id is not None:
                record = np.append(record, self.eos_id)
            window = record[start:start + L]
            tokens[row, :window.size] = window
            mask[row, :window.size] = True
        labels = self.data.labels
        labels = None if labels is None else torch.from_numpy(labels[indices].astype(np.int64))
        return Batch(torch.from_numpy(tokens), torch.from_numpy(mask), labels)


#: layout -> dataset(token_file, context, tokenizer) for layouts defined outside this module
LAYOUT_DATASETS: dict = {}


def open_dataset(header: str | Path, context: int, **kwargs) -> WindowDataset | RecordDataset:
    """The dataset a split's layout calls for; a RecordDataset takes EOS / PAD from the saved tokenizer."""
    data = TokenFile.open(header)
    if data.layout == "stream":
        return WindowDataset(data, context, **kwargs)
    tok = load_tokenizer(data.tokenizer_dir)
    if data.layout in LAYOUT_DATASETS:  # e.g. "pairs" (discdiff.data.pairs registers it)
        return LAYOUT_DATASETS[data.layout](data, context, tok)
    if isinstance(tok, PixelTokenizer):
        _check_image_context(data, tok, context)
    for name in ("eos_id", "pad_id", "bos_id"):
        kwargs.setdefault(name, getattr(tok, name))
    return RecordDataset(data, context, **kwargs)


def _check_image_context(data: TokenFile, tok: PixelTokenizer, context: int) -> None:
    """An image is one whole record: a context of another length would crop or pad it. The error says
    which context fits, and, for a corpus prepared with a `size` option, the command that makes images
    of the requested size (into a directory of their own)."""
    pixels = tok.height * tok.width
    if context == pixels:
        return
    message = (f"{data.header_path}: holds {tok.height}x{tok.width} images ({pixels} tokens each), not {context}; "
               f"set the context to {pixels} (data.context={pixels})")
    side = math.isqrt(context)
    manifest = data.header_path.parent / "manifest.json"
    if side * side == context and manifest.is_file():
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        if "size" in recorded.get("options", {}) and "command" in recorded:
            words = shlex.split(recorded["command"])
            keep = [w for i, w in enumerate(words) if not w.startswith("size=")
                    and not (w == "--opt" and i + 1 < len(words) and words[i + 1].startswith("size="))]
            message += (f", or prepare {side}x{side} images: `{shlex.join(keep + ['--opt', f'size={side}'])}` "
                        "(it prints the directory to train on)")
    raise ValueError(message)


class TokenLoader:
    """Batches of a dataset for one rank: deterministic given `seed`, resumable from `state_dict()`.

    shuffle=True (training): a fresh permutation per epoch, random window offsets / crops, and each rank
    gets `len(dataset) // world_size` examples in whole batches (the permutation's tail, different every
    epoch, waits for a later epoch). shuffle=False (evaluation): examples in order, nothing dropped; the
    last batch may be short and ranks may differ by one batch. `epochs=None` iterates forever."""

    def __init__(self, dataset, batch_size: int, *, seed: int | torch.Generator = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, epochs: int | None = None):
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need batch_size >= 1 and 0 <= rank < world_size; got {batch_size}, {rank}, "
                             f"{world_size}")
        if isinstance(seed, torch.Generator):
            seed = int(torch.randint(0, 2**62, (1,), generator=seed))
        self.dataset, self.batch_size, self.seed, self.shuffle = dataset, batch_size, int(seed), shuffle
        self.rank, self.world_size, self.epochs = rank, world_size, epochs
        self.epoch, self.batch = 0, 0
        if len(self) == 0:
            raise ValueError(f"{len(dataset)} examples make no batch of {batch_size} on each of {world_size} ranks")

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = len(self.dataset)
        if self.shuffle:
            return n // self.world_size // self.batch_size
        mine = len(range(self.rank, n, self.world_size))
        return -(-mine // self.batch_size)

    def _order(self, epoch_seed: int) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(self.rank, n, self.world_size)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed)).numpy()
        return perm[self.rank::self.world_size][: n // self.world_size]

    def __iter__(self) -> Iterator[Batch]:
        while self.epochs is None or self.epoch < self.epochs:
            epoch_seed = seed_for(self.seed, self.epoch)
            order = self._order(epoch_seed)
            while self.batch < len(self):
                indices = order[self.batch * self.batch_size:(self.batch + 1) * self.batch_size]
                self.batch += 1
                yield self.dataset.get(indices, epoch_seed, randomize=self.shuffle)
            self.epoch, self.batch = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "batch_size": self.batch_size,
                "shuffle": self.shuffle, "rank": self.rank, "world_size": self.world_size,
                "num_examples": len(self.dataset)}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("seed", "batch_size", "shuffle", "rank", "world_size", "num_examples"):
            if state[key] != mine[key]:
                raise ValueError(f"cannot resume: saved {key}={state[key]!r} but this loader has {mine[key]!r}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
