"""Open one split of any data source, and draw a seeded spread of its examples for evaluation.

    split = open_split("data/shakespeare", "validation", context=256)   # Split(dataset, vocab_size, tokenizer_dir)
    sample = spread_sample(len(split.dataset), 512, seed=0)             # 512 windows over the whole split
    batch = split.dataset.get(sample.indices, 0, randomize=False)

Accepted sources:

    data/shakespeare            a corpus prepared by `discdiff prepare` (manifest.json; its `split`)
    data/shakespeare/train.json a token-file header (windows or padded records)
    tokens.npy                  a 1-D array of ids (needs vocab_size), cut into windows
    tokens.bin                  raw ids of `dtype` (needs vocab_size), cut into windows
    synthetic                   a fixed random Markov chain over vocab_size tokens (tests, smoke runs);
    synthetic-valid             the same chain, another trajectory (held-out synthetic tokens)

Everything returned follows the dataset protocol of discdiff.data.loader (`len`, `get(indices, epoch_seed,
randomize)` -> Batch(tokens, mask, labels)); with randomize=False example i of a window dataset is the
non-overlapping window [i * context, (i + 1) * context) of the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from discdiff.seeding import seed_for

from .corpora import Manifest
from .loader import WindowDataset, open_dataset
from .packing import TokenFile

__all__ = ["SYNTHETIC_SEED", "Split", "SplitSample", "is_corpus_dir", "markov_tokens", "open_split",
           "spread_sample"]

SYNTHETIC_SEED = 20240601  # the synthetic corpus is the same for every training seed


class Split(NamedTuple):
    dataset: object  # discdiff.data's dataset protocol: len, get(indices, epoch_seed, randomize)
    vocab_size: int
    tokenizer_dir: Path | None


def is_corpus_dir(source) -> bool:
    return Path(source).is_dir() and (Path(source) / "manifest.json").is_file()


def open_split(source: str, split: str, *, context: int, vocab_size: int | None = None, dtype: str = "uint16",
               synthetic_tokens: int = 200_000, random_offset: bool = True, records: str = "pad",
               long_records: str = "crop") -> Split:
    """One source's dataset of ``context``-token examples; ``split`` picks the split of a corpus directory.

    ``vocab_size`` is required for .npy / .bin / synthetic sources (prepared corpora record their own);
    ``synthetic_tokens`` sizes a synthetic "train" split (a synthetic "validation" split has 64 windows).
    ``random_offset`` (running text): True lets training shift the window grid each epoch (the last
    window may then go unused); False counts every whole window [i L, (i + 1) L) of the split (evaluation).
    ``records`` ("eos" or "pad") and ``long_records`` ("crop", "drop" or "error"): how a record corpus is
    laid out (``discdiff.data.RecordDataset``); running text ignores them.
    """
    layout = {"records": records, "long_records": long_records}
    source = str(source)
    if source in ("synthetic", "synthetic-valid"):
        vocab = _need_vocab(vocab_size, source)
        seed = SYNTHETIC_SEED + (source == "synthetic-valid")
        tokens = markov_tokens(vocab, synthetic_tokens if split == "train" else 8 * context * 8, seed)
        return Split(WindowDataset(in_memory_token_file(tokens, vocab), context, random_offset), vocab, None)
    path = Path(source)
    if is_corpus_dir(source):
        manifest = Manifest.load(path)
        header = manifest.header(split)  # a missing split: one line, why and the fix
        return Split(_open_file(header, context, random_offset, **layout), manifest.vocab_size,
                     manifest.tokenizer_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data (see `discdiff prepare --help`)")
    if path.suffix == ".json":
        tf = TokenFile.open(path)
        return Split(_open_file(path, context, random_offset, **layout), tf.vocab_size, tf.tokenizer_dir)
    if path.suffix == ".npy":
        tokens = np.load(path, mmap_mode="r")
    elif path.suffix == ".bin":
        tokens = np.memmap(path, dtype=np.dtype(dtype), mode="r")
    else:
        raise ValueError(f"{path}: expected a corpus directory, a .json header, a .npy or a .bin of ids")
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{path}: expected a 1-D integer array of ids, got {tokens.dtype} {tokens.shape}")
    vocab = _need_vocab(vocab_size, str(path))
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(f"{path}: ids outside [0, {vocab}) (vocab_size)")
    return Split(WindowDataset(in_memory_token_file(tokens, vocab, path), context, random_offset), vocab, None)


def _open_file(header, context: int, random_offset: bool, records: str = "pad", long_records: str = "crop"):
    """A token file's dataset: windows of running text (with the offset policy asked for), or records."""
    if TokenFile.open(header).layout == "stream":
        return WindowDataset(header, context, random_offset)
    return open_dataset(header, context, records=records, long_records=long_records)


def _need_vocab(vocab_size: int | None, source: str) -> int:
    if vocab_size is None:
        raise ValueError(f"data.vocab_size is required for {source} (only prepared corpora record it)")
    return vocab_size


def in_memory_token_file(tokens: np.ndarray, vocab_size: int, path: Path | None = None) -> TokenFile:
    """Wrap a 1-D id array as a 'stream' TokenFile (one record) so discdiff.data's datasets can cut it."""
    return TokenFile(
        header_path=Path(path or "<memory>"),
        tokens=tokens,
        offsets=np.array([0, tokens.size], dtype=np.int64),
        labels=None,
        vocab_size=vocab_size,
        layout="stream",
        tokenizer_dir=Path("."),
    )


def markov_tokens(vocab_size: int, n: int, seed: int, branching: int = 3, chains: int = 64) -> np.ndarray:
    """n ids from a fixed random Markov chain in which each token has `branching` likely successors.

    The chain is the same for every `seed` (which only picks the trajectory), so training and validation
    data share a distribution. Low entropy (about log(branching) nats per token) and real structure, so a
    tiny model's loss visibly falls within a few hundred steps.
    """
    chain_rng = np.random.default_rng(SYNTHETIC_SEED)
    probs = np.full((vocab_size, vocab_size), 1e-3)
    for s in range(vocab_size):
        probs[s, chain_rng.choice(vocab_size, size=min(branching, vocab_size), replace=False)] += 1.0
    cdf = np.cumsum(probs / probs.sum(1, keepdims=True), axis=1)
    rng = np.random.default_rng(seed)
    steps = -(-n // chains)
    out = np.empty((chains, steps), dtype=np.int64)
    state = rng.integers(0, vocab_size, size=chains)
    for i in range(steps):
        out[:, i] = state
        u = rng.random(chains)[:, None]
        state = np.minimum((cdf[state] < u).sum(1), vocab_size - 1)
    return out.reshape(-1)[:n].astype(np.uint16 if vocab_size <= 2**16 else np.uint32)


# ------------------------------------------------------------------ which examples to evaluate


@dataclass(frozen=True)
class SplitSample:
    """Which examples of a split were drawn, and how (recorded beside every number computed on them).

    ``indices`` [n] example indices in split order (window i of a stream split is tokens [i L, (i + 1) L));
    ``population`` N examples in the split; ``method`` "all" (n = N, each once) or "stratified" (one draw
    in each of n equal strata, see ``spread_sample``).
    """

    indices: np.ndarray
    population: int
    seed: int
    method: str

    @property
    def size(self) -> int:
        return int(self.indices.size)

    @property
    def fraction(self) -> float:
        """n / N, the sampling fraction (1 when the whole split is evaluated)."""
        return self.size / self.population

    def to_dict(self) -> dict:
        return {"method": self.method, "examples": self.size, "population": self.population, "seed": self.seed,
                "fraction": self.fraction}


def spread_sample(population: int, n: int | None, seed: int = 0) -> SplitSample:
    """n draws from a split's N examples, one in each of n equal strata, independently placed:

        index_h = floor((h + u_h) N / n),   h = 0..n-1,   u_h ~ U[0, 1) i.i.d. from ``seed``

    A stratified random sample of the split seen as a line [0, N) cut into n strata of length N / n: every
    draw has the same weight, every example the same expected count n / N, so the mean over the draws is
    an unbiased estimate of the mean over the *whole split*, and the draws reach from the split's first
    stratum to its last (never only its opening pages). Indices come in split order (stratum h's draw is
    h-th), which the variance estimate in ``discdiff.evaluation`` relies on. An example that straddles two
    strata can be drawn by both (rare unless n is close to N); it then counts twice, as the design says.
    ``n=None`` or ``n >= N`` takes every example once (method "all").
    """
    if population < 1:
        raise ValueError(f"the split has no examples to draw (population {population})")
    if n is not None and n < 1:
        raise ValueError(f"the number of examples to draw must be >= 1, got {n}")
    if n is None or n >= population:
        return SplitSample(np.arange(population, dtype=np.int64), population, seed, "all")
    offsets = np.random.default_rng(seed_for(seed, 0x5EED)).random(n)  # u_h, from the seed alone
    indices = np.floor((np.arange(n) + offsets) * (population / n)).astype(np.int64)
    return SplitSample(np.minimum(indices, population - 1), population, seed, "stratified")
