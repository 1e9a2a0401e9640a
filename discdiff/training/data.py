"""The seam between training and data: a DataConfig -> datasets that discdiff.data.TokenLoader batches.

Accepted `data.train` / `data.valid` forms:

    data/shakespeare            a corpus prepared by `discdiff prepare` (manifest.json; splits train/validation)
    data/shakespeare/train.json a token-file header (discdiff.data.open_dataset: windows or padded records)
    tokens.npy                  a 1-D array of ids (needs data.vocab_size), cut into windows
    tokens.bin                  raw ids of data.dtype (needs data.vocab_size), cut into windows
    synthetic                   a fixed random Markov chain over data.vocab_size tokens (tests, smoke runs)

Everything returned follows discdiff.data's dataset protocol (`len`, `get(indices, epoch_seed, randomize)`
-> Batch(tokens, mask, labels)), so one loader, one resume format and one sharding rule serve them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from discdiff.data import Manifest, TokenFile, WindowDataset, open_dataset

from .config import DataConfig

SYNTHETIC_SEED = 20240601  # the synthetic corpus is the same for every training seed


class Split(NamedTuple):
    dataset: object  # discdiff.data's dataset protocol: len, get(indices, epoch_seed, randomize)
    vocab_size: int
    tokenizer_dir: Path | None


@dataclass
class DataSpec:
    train: object
    valid: object | None
    vocab_size: int
    tokenizer_dir: Path | None


def open_data(cfg: DataConfig) -> DataSpec:
    """Open the training (and validation) data a DataConfig describes."""
    train, vocab, tok_dir = open_split(cfg.train, cfg, split="train")
    valid_source = cfg.valid
    if valid_source is None and cfg.train == "synthetic":
        valid_source = "synthetic-valid"
    if valid_source is None and _is_corpus_dir(cfg.train):
        splits = Manifest.load(cfg.train).splits
        valid_source = str(splits["validation"]) if "validation" in splits else None
    valid = None
    if valid_source is not None:
        valid, valid_vocab, _ = open_split(valid_source, cfg, split="validation")
        if valid_vocab != vocab:
            raise ValueError(f"validation data has vocab_size {valid_vocab}, training data {vocab}")
    return DataSpec(train, valid, vocab, tok_dir)


def _is_corpus_dir(source: str) -> bool:
    return Path(source).is_dir() and (Path(source) / "manifest.json").is_file()


def open_split(source: str, cfg: DataConfig, split: str) -> Split:
    """One source's dataset; `split` picks the split of a corpus directory."""
    if source in ("synthetic", "synthetic-valid"):
        vocab = _need_vocab(cfg, source)
        seed = SYNTHETIC_SEED + (source == "synthetic-valid")
        tokens = markov_tokens(vocab, cfg.synthetic_tokens if split == "train" else 8 * cfg.context * 8, seed)
        return Split(WindowDataset(in_memory_token_file(tokens, vocab), cfg.context), vocab, None)
    path = Path(source)
    if _is_corpus_dir(source):
        manifest = Manifest.load(path)
        header = manifest.splits.get(split)
        if header is None:
            raise ValueError(f"{path}: no {split!r} split (has {sorted(manifest.splits)})")
        return Split(open_dataset(header, cfg.context), manifest.vocab_size, manifest.tokenizer_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such data (see `discdiff prepare --help`)")
    if path.suffix == ".json":
        tf = TokenFile.open(path)
        return Split(open_dataset(path, cfg.context), tf.vocab_size, tf.tokenizer_dir)
    if path.suffix == ".npy":
        tokens = np.load(path, mmap_mode="r")
    elif path.suffix == ".bin":
        tokens = np.memmap(path, dtype=np.dtype(cfg.dtype), mode="r")
    else:
        raise ValueError(f"{path}: expected a corpus directory, a .json header, a .npy or a .bin of ids")
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"{path}: expected a 1-D integer array of ids, got {tokens.dtype} {tokens.shape}")
    vocab = _need_vocab(cfg, str(path))
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(f"{path}: ids outside [0, {vocab}) (data.vocab_size)")
    return Split(WindowDataset(in_memory_token_file(tokens, vocab, path), cfg.context), vocab, None)


def _need_vocab(cfg: DataConfig, source: str) -> int:
    if cfg.vocab_size is None:
        raise ValueError(f"data.vocab_size is required for {source} (only prepared corpora record it)")
    return cfg.vocab_size


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
