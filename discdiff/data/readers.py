"""Reading raw files strictly: every problem is a `DataError` (a ValueError) naming the file and line.

Formats: `.txt` (one document per file), `.jsonl` (one document per line, in a `text` field),
FASTA (`.fa`, `.fasta`, `.fsa`, `.faa`, `.fna`, `.ffn`, `.frn`), IDX (`*-ubyte`, the MNIST format), each gzipped or not
(recognised by its magic bytes, not its name). Blank lines between JSONL records or FASTA records are
allowed and carry nothing; nothing that holds data is skipped.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEXT_SUFFIXES = (".txt", ".jsonl")
FASTA_SUFFIXES = (".fa", ".fasta", ".fsa", ".faa", ".fna", ".ffn", ".frn")


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the file (and line where known)."""


class MissingFileError(DataError, FileNotFoundError):
    """A file or directory that is not there. Both a ValueError and a FileNotFoundError."""


@dataclass(frozen=True)
class Document:
    text: str
    where: str  # "path" or "path:line", for messages


@dataclass(frozen=True)
class Record:
    header: str
    sequence: str
    where: str  # "path:line" of the header


def _base_name(path: Path) -> str:
    name = path.name.lower()
    return name[:-3] if name.endswith(".gz") else name


def is_fasta(path: Path) -> bool:
    return _base_name(path).endswith(FASTA_SUFFIXES)


def is_text(path: Path) -> bool:
    return _base_name(path).endswith(TEXT_SUFFIXES)


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped if it is gzip; raises on a missing or empty file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: corrupt gzip data ({e})") from e
    if not data.strip():
        raise DataError(f"{path}: file is empty")
    return data


def read_utf8(path: str | Path) -> str:
    """The file as text; a byte that is not UTF-8 is an error naming its line. CRLF becomes LF."""
    data = read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{line}: bytes are not UTF-8 (byte 0x{data[e.start]:02x} at offset "
                        f"{e.start}); re-encode the file as UTF-8") from e
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def read_documents(path: str | Path) -> list[Document]:
    """Documents of a `.txt` (the whole file) or `.jsonl` file (each line's `text` field)."""
    path = Path(path)
    text = read_utf8(path)
    if not _base_name(path).endswith(".jsonl"):
        return [Document(text, str(path))]
    docs = []
    for where, obj in jsonl_objects(text, path):
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise DataError(f"{where}: each JSONL line must be an object with a string `text` field")
        if not obj["text"]:
            raise DataError(f"{where}: empty `text`")
        docs.append(Document(obj["text"], where))
    return docs


def read_fasta(path: str | Path, alphabet: str | None = None, stop_char: str | None = None) -> list[Record]:
    """Records of a FASTA file. Sequence lines are upper-cased; with `alphabet`, any other character is
    an error naming file, line and column. `stop_char` (e.g. "*") is allowed once, at a record's end,
    and removed there."""
    path = Path(path)
    allowed = (alphabet or "") + (stop_char or "")
    bad_char = re.compile(f"[^{re.escape(allowed)}]") if alphabet else None
    records: list[Record] = []
    header, where, parts = None, "", []

    def close():
        if header is None:
            return
        seq = "".join(parts)
        if stop_char and seq.endswith(stop_char):
            seq = seq[:-1]
        if not seq:
            raise DataError(f"{where}: record {header[:40]!r} has no sequence")
        if stop_char and stop_char in seq:
            raise DataError(f"{where}: {stop_char!r} inside record {header[:40]!r}, not at its end")
        records.append(Record(header, seq, where))

    for number, line in enumerate(read_utf8(path).split("\n"), start=1):
        line = line.strip()
        if line.startswith(">"):
            close()
            header, where, parts = line[1:], f"{path}:{number}", []
        elif line:
            if header is None:
                raise DataError(f"{path}:{number}: sequence before the first '>' header; is this FASTA?")
            line = re.sub(r"\s+", "", line).upper()
            found = bad_char.search(line) if bad_char else None
            if found:
                raise DataError(f"{path}:{number}:{found.start() + 1}: character {found.group()!r} is not "
                                f"in the alphabet {alphabet}")
            parts.append(line)
    close()
    if not records:
        raise DataError(f"{path}: no FASTA records (no line starts with '>')")
    return records


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (MNIST's format) of unsigned bytes, as a uint8 array of its stored shape."""
    data = read_bytes(path)
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def notice(message: str) -> None:
    """Counts of anything cropped, removed or left out: always printed, never silent."""
    print(f"[discdiff.data] {message}", file=sys.stderr, flush=True)


def collect_files(path: str | Path, accept) -> list[Path]:
    """`path` itself, or every accepted file under the directory `path`, in sorted order. Other files
    (hidden ones aside) are left out with a printed count."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MissingFileError(f"{path}: no such file or directory")
    found = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
    files = sorted(p for p in found if accept(p))
    if len(files) < len(found):
        others = sorted({p.suffix or p.name for p in found if not accept(p)})
        notice(f"{path}: left out {len(found) - len(files)} files of other kinds ({', '.join(others[:8])})")
    if not files:
        raise DataError(f"{path}: no files of a known kind ({', '.join(TEXT_SUFFIXES + FASTA_SUFFIXES)}, "
                        "optionally .gz)")
    return files


def jsonl_objects(text: str, path):
    """(``path:line``, parsed object) for every non-blank line of JSONL ``text``; DataError naming the line."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg})") from e
