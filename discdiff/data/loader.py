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


#: how a record shorter than the context is filled (``RecordDataset(padding=...)``, config ``data.records``)
RECORD_PADDINGS = ("eos", "pad")
#: what happens to a record longer than the context (``long_records=``, config ``data.long_records``)
LONG_RECORDS = ("crop", "drop", "error")


class RecordDataset:
    """One record per example: EOS appended (when the tokenizer has one), then filled to `context`.

    ``padding="eos"`` (LLaDA's recipe, what ``discdiff train`` uses for record corpora): the record is
    ``[BOS] body EOS EOS ... EOS`` and *every* position is a real token (mask all True): the EOS padding is
    noised and predicted like any token, so the model learns where a record ends. ``padding="pad"``: the
    record is followed by PAD, which the mask marks as padding (never trained; a model so trained fills
    the tail with anything). With `add_bos=True` BOS is prepended (the AR baseline's start token; the
    "eos" recipe's pinned first token).

    A record (with its EOS) longer than `context` is cropped to a window of `context` tokens: a random
    window per (epoch, record) when the loader shuffles, its start otherwise. The count is printed once
    as a TruncationWarning; `long_records="drop"` leaves such records out, `"error"` refuses them."""

    def __init__(self, source, context: int, *, eos_id: int | None = None, pad_id: int | None = None,
                 bos_id: int | None = None, add_bos: bool = False, long_records: str = "crop",
                 padding: str = "pad"):
        self.data = _as_token_file(source)
        if context < 1:
            raise ValueError(f"context must be positive, got {context}")
        if long_records not in LONG_RECORDS:
            raise ValueError(f"long_records must be one of {', '.join(LONG_RECORDS)}; got {long_records!r}")
        if padding not in RECORD_PADDINGS:
            raise ValueError(f"padding must be one of {', '.join(RECORD_PADDINGS)}; got {padding!r}")
        if padding == "eos" and eos_id is None:
            raise ValueError("padding='eos' needs an eos_id (a tokenizer with an EOS token)")
        if add_bos and bos_id is None:
            raise ValueError("add_bos=True needs a bos_id")
        self.context, self.eos_id, self.pad_id, self.padding = context, eos_id, pad_id, padding
        self.bos_id = bos_id if add_bos else None
        self.lengths = self.data.lengths + (eos_id is not None) + (self.bos_id is not None)
        self.kept = np.arange(self.lengths.size)  # record ids behind example ids (long_records="drop" thins it)
        if long_records == "drop":
            self.kept = np.flatnonzero(self.lengths <= context)
            if self.kept.size == 0:
                raise ValueError(f"{self.data.header_path}: no record fits context {context} (long_records='drop')")
        long = np.flatnonzero(self.lengths[self.kept] > context)
        if long.size and long_records == "error":
            raise ValueError(f"{self.data.header_path}: {long.size} records are longer than context {context} "
                             f"(record {long[0]} has {self.lengths[long[0]]} tokens)")
        if long.size:
            warnings.warn(f"{self.data.header_path.name}: {long.size} of {self.lengths.size} records "
                          f"({100 * long.size / self.lengths.size:.1f}%) are longer than context {context} and "
                          "are cropped to a window of that length", TruncationWarning, stacklevel=2)
        if padding == "pad" and pad_id is None and (self.lengths < context).any():
            raise ValueError(f"{self.data.header_path}: records shorter than context {context} need a pad_id")

    def __len__(self) -> int:
        return self.kept.size

    def record_lengths(self) -> np.ndarray:
        """[N] each example's real tokens, clipped to the context: [BOS] + record + its one EOS."""
        return np.minimum(self.lengths[self.kept], self.context)

    def record_layout(self) -> dict:
        """How records are laid out, and the body-length histogram (``length_counts[n]`` records of n
        tokens between [BOS] and EOS, those that fit the context): saved with a model so that sampling
        knows where a record starts and ends, and can draw lengths first."""
        offset = int(self.bos_id is not None)
        longest = self.context - offset - 1
        body = self.lengths[self.kept] - offset - (self.eos_id is not None)
        counts = np.bincount(body[body <= longest], minlength=max(longest + 1, 1))
        return {"padding": self.padding, "eos_id": self.eos_id, "bos_id": self.bos_id, "pad_id": self.pad_id,
                "length_counts": counts.tolist()}

    def get(self, indices: np.ndarray, epoch_seed: int, randomize: bool = True) -> Batch:
        L = self.context
        fill = self.eos_id if self.padding == "eos" else self.pad_id if self.pad_id is not None else 0
        tokens = np.full((indices.size, L), fill, dtype=np.int64)
        mask = np.full((indices.size, L), self.padding == "eos", dtype=bool)
        indices = self.kept[np.asarray(indices, dtype=np.int64)]
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


def open_dataset(header: str | Path, context: int, *, records: str = "pad", **kwargs) -> WindowDataset | RecordDataset:
    """The dataset a split's layout calls for; a RecordDataset takes EOS / PAD / BOS from the saved tokenizer.

    ``records``: how records are trained: "eos" (LLaDA: ``[BOS] body EOS ... EOS``, every position real,
    when the tokenizer has an EOS; a tokenizer without one, e.g. pixels, keeps its fixed-size records) or
    "pad" (PAD padding, masked out). Running text ignores it: its windows are packed, documents separated
    by EOS."""
    data = TokenFile.open(header)
    if data.layout == "stream":
        return WindowDataset(data, context, **kwargs)
    if records not in RECORD_PADDINGS:
        raise ValueError(f"records must be one of {', '.join(RECORD_PADDINGS)}; got {records!r}")
    tok = load_tokenizer(data.tokenizer_dir)
    if data.layout in LAYOUT_DATASETS:  # e.g. "pairs" (discdiff.data.pairs registers it)
        return LAYOUT_DATASETS[data.layout](data, context, tok)
    if isinstance(tok, PixelTokenizer):
        _check_image_context(data, tok, context)
    for name in ("eos_id", "pad_id", "bos_id"):
        kwargs.setdefault(name, getattr(tok, name))
    if records == "eos" and kwargs["eos_id"] is not None:
        kwargs.setdefault("padding", "eos")
        kwargs.setdefault("add_bos", kwargs["bos_id"] is not None)
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
