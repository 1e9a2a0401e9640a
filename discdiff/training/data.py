"""The seam between training and data: a DataConfig -> datasets that discdiff.data.TokenLoader batches.

Accepted `data.train` / `data.valid` forms:

    data/shakespeare            a corpus prepared by `discdiff prepare` (manifest.json; splits train/validation)
    data/shakespeare/train.json a token-file header (discdiff.data.open_dataset: windows or padded records)
    tokens.npy                  a 1-D array of ids (needs data.vocab_size), cut into windows
    tokens.bin                  raw ids of data.dtype (needs data.vocab_size), cut into windows
    synthetic                   a fixed random Markov chain over data.vocab_size tokens (tests, smoke runs)

Each source is opened by discdiff.data.splits.open_split (its home: evaluation opens splits the same way
without needing training). Everything returned follows discdiff.data's dataset protocol (`len`,
`get(indices, epoch_seed, randomize)` -> Batch(tokens, mask, labels)), so one loader, one resume format and
one sharding rule serve them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from discdiff.data import Manifest
from discdiff.data.splits import is_corpus_dir, open_split

from .config import DataConfig


@dataclass
class DataSpec:
    train: object
    valid: object | None
    vocab_size: int
    tokenizer_dir: Path | None


def open_data(cfg: DataConfig) -> DataSpec:
    """Open the training (and validation) data a DataConfig describes."""
    train, vocab, tok_dir = open_split(cfg.train, "train", **_split_options(cfg))
    valid_source = cfg.valid
    if valid_source is None and cfg.train == "synthetic":
        valid_source = "synthetic-valid"
    if valid_source is None and is_corpus_dir(cfg.train):
        splits = Manifest.load(cfg.train).splits
        valid_source = str(splits["validation"]) if "validation" in splits else None
    valid = None
    if valid_source is not None:
        # every whole window of the split, on the fixed grid (validation never shifts its windows)
        valid, valid_vocab, _ = open_split(valid_source, "validation", random_offset=False, **_split_options(cfg))
        if valid_vocab != vocab:
            raise ValueError(f"validation data has vocab_size {valid_vocab}, training data {vocab}")
    return DataSpec(train, valid, vocab, tok_dir)


def _split_options(cfg: DataConfig) -> dict:
    return {"context": cfg.context, "vocab_size": cfg.vocab_size, "dtype": cfg.dtype,
            "synthetic_tokens": cfg.synthetic_tokens, "records": cfg.records, "long_records": cfg.long_records}
