"""Token files: ids in a flat memory-mapped `.bin`, plus a small JSON header beside it.

    NAME.bin    ids, back to back: uint8 (vocab_size <= 256), little-endian uint16 (<= 65536) or uint32;
                the header's `dtype` says which, so files written as uint16 by earlier versions still open
    NAME.idx    uint64 offsets of the records (or documents) in NAME.bin: num_records + 1 of them
    NAME.labels int64 per-record class labels (optional; Fashion-MNIST has them; the header's
                `label_names` names them when known)
    NAME.prompts int64 per-record prompt lengths (layout "pairs": record = prompt ids then response ids)
    NAME.json   {"format": "discdiff-tokens", "dtype", "count", "vocab_size", "layout", "num_records",
                 "tokenizer_dir", ...}; relative paths are relative to the header

`layout` says how a loader cuts examples: "stream" (running text; documents end with EOS and are cut into
fixed-length windows regardless of document boundaries), "records" (one example per record) or "pairs"
(one prompt-response pair per record; the prompt is context, the loss covers the response).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "discdiff-tokens"
VERSION = 1
LAYOUTS = ("stream", "records", "pairs")


def dtype_for(vocab_size: int) -> np.dtype:
    if not 1 <= vocab_size <= 2**32:
        raise ValueError(f"vocab_size must be in [1, 2**32], got {vocab_size}")
    if vocab_size <= 2**8:
        return np.dtype("u1")
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


class TokenWriter:
    """Append records of ids; `close()` writes the index and the header. Use as a context manager."""

    def __init__(self, stem: str | Path, vocab_size: int, layout: str, tokenizer_dir: str | Path,
                 label_names: list[str] | None = None):
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.stem = Path(stem)
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        self.vocab_size, self.layout, self.dtype = vocab_size, layout, dtype_for(vocab_size)
        self.tokenizer_dir = Path(tokenizer_dir)
        self.offsets = [0]
        self.labels: list[int] = []
        self.label_names = list(label_names) if label_names is not None else None
        self.prompt_lengths: list[int] = []
        self._file = open(self.stem.with_suffix(".bin"), "wb")

    def add(self, ids, label: int | None = None, prompt_length: int | None = None) -> None:
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError("each record must be a non-empty 1-D sequence of ids")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), got {ids.min()}..{ids.max()}")
        self._file.write(ids.astype(self.dtype).tobytes())
        self.offsets.append(self.offsets[-1] + ids.size)
        if label is not None:
            self.labels.append(int(label))
        if (prompt_length is not None) != (self.layout == "pairs"):
            raise ValueError("layout 'pairs' needs a prompt_length per record, and only it takes one")
        if prompt_length is not None:
            if not 0 <= prompt_length < ids.size:
                raise ValueError(f"prompt_length must lie in [0, {ids.size - 1}] (a response needs a token), "
                                 f"got {prompt_length}")
            self.prompt_lengths.append(int(prompt_length))

    def close(self) -> Path:
        self._file.close()
        n = len(self.offsets) - 1
        if n == 0:
            raise ValueError(f"{self.stem}: no records were written")
        if self.labels and len(self.labels) != n:
            raise ValueError(f"{self.stem}: {len(self.labels)} labels for {n} records")
        np.asarray(self.offsets, dtype="<u8").tofile(self.stem.with_suffix(".idx"))
        if self.labels:
            np.asarray(self.labels, dtype="<i8").tofile(self.stem.with_suffix(".labels"))
        if self.prompt_lengths:
            np.asarray(self.prompt_lengths, dtype="<i8").tofile(self.stem.with_suffix(".prompts"))
        header = {
            "format": FORMAT, "version": VERSION, "dtype": self.dtype.name, "count": self.offsets[-1],
            "vocab_size": self.vocab_size, "layout": self.layout, "num_records": n,
            "bin": self.stem.with_suffix(".bin").name, "index": self.stem.with_suffix(".idx").name,
            "labels": self.stem.with_suffix(".labels").name if self.labels else None,
            "tokenizer_dir": os.path.relpath(self.tokenizer_dir, self.stem.parent),
        }
        if self.label_names is not None:
            header["label_names"] = self.label_names
        if self.prompt_lengths:
            header["prompts"] = self.stem.with_suffix(".prompts").name
        path = self.stem.with_suffix(".json")
        path.write_text(json.dumps(header, indent=1) + "\n", encoding="utf-8")
        return path

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()


@dataclass
class TokenFile:
    """A packed split, memory-mapped: `tokens[offsets[i]:offsets[i+1]]` is record i."""

    header_path: Path
    tokens: np.ndarray  # memmap, [count]
    offsets: np.ndarray  # [num_records + 1]
    labels: np.ndarray | None  # [num_records] or None
    vocab_size: int
    layout: str
    tokenizer_dir: Path
    label_names: list[str] | None = None  # names of the labels 0..C-1, where the corpus records them
    prompt_lengths: np.ndarray | None = None  # [num_records], layout "pairs"

    @classmethod
    def open(cls, header_path: str | Path) -> TokenFile:
        header_path = Path(header_path)
        if header_path.suffix != ".json":
            header_path = header_path.with_suffix(".json")
        if not header_path.is_file():
            raise FileNotFoundError(f"{header_path}: no token-file header here")
        h = json.loads(header_path.read_text(encoding="utf-8"))
        if h.get("format") != FORMAT or h.get("version") != VERSION:
            raise ValueError(f"{header_path}: not a {FORMAT} v{VERSION} header")
        root = header_path.parent
        dtype = np.dtype(h["dtype"]).newbyteorder("<")
        bin_path = root / h["bin"]
        if bin_path.stat().st_size != h["count"] * dtype.itemsize:
            raise ValueError(f"{bin_path}: size {bin_path.stat().st_size} bytes does not match the header's "
                             f"{h['count']} x {dtype.name}; the file is truncated or stale")
        tokens = np.memmap(bin_path, dtype=dtype, mode="r", shape=(h["count"],))
        offsets = np.fromfile(root / h["index"], dtype="<u8").astype(np.int64)
        if offsets.size != h["num_records"] + 1 or offsets[-1] != h["count"]:
            raise ValueError(f"{root / h['index']}: index does not match the header")
        labels = np.fromfile(root / h["labels"], dtype="<i8") if h.get("labels") else None
        prompts = np.fromfile(root / h["prompts"], dtype="<i8") if h.get("prompts") else None
        if prompts is not None and prompts.size != h["num_records"]:
            raise ValueError(f"{root / h['prompts']}: {prompts.size} prompt lengths for {h['num_records']} records")
        return cls(header_path, tokens, offsets, labels, h["vocab_size"], h["layout"],
                   (root / h["tokenizer_dir"]).resolve(), h.get("label_names"), prompts)

    @property
    def num_records(self) -> int:
        return self.offsets.size - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def record(self, i: int) -> np.ndarray:
        return np.asarray(self.tokens[self.offsets[i]:self.offsets[i + 1]])
