"""Files that are verified before they are trusted: atomic writes, safetensors weights, nested state
(optimizer, RNG) as safetensors + JSON, and the manifest that marks a directory complete.

No pickle: every tensor is stored in safetensors; everything else (the structure of an optimizer state,
Python scalars) is JSON, kept in the safetensors header's metadata under "discdiff.tree".

`manifest.json`, written last into a checkpoint or pretrained directory (its presence marks the
directory complete), lists every file with its size, sha256 and, for safetensors files, every stored
tensor's name, dtype and shape:

    {"format": "discdiff-manifest", "version": 1,
     "files": {"model.safetensors": {"size": 52344, "sha256": "9f2c...",
                                     "tensors": {"head.weight": {"dtype": "F32", "shape": [13, 32]}, ...}},
               "state.json": {"size": 1210, "sha256": "41d0..."}}}

verify_manifest(directory) re-reads every listed file and raises CheckpointError (a ValueError) with one
line naming the first file that differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

import torch

__all__ = [
    "MANIFEST",
    "CheckpointError",
    "ManifestWriter",
    "load_tree",
    "load_weights",
    "require_finite",
    "safetensors_bytes",
    "save_tree",
    "save_weights",
    "verify_manifest",
    "write_atomic",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "discdiff-manifest"
TREE_KEY = "discdiff.tree"
_MAX_HEADER = 100_000_000


class CheckpointError(ValueError):
    """A checkpoint or pretrained directory that is incomplete, damaged or inconsistent (one line naming the file)."""


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a small file so readers see the old or the new content, never a torn one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ weights


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes, with tied tensors stored once and their aliases recorded in the metadata."""
    from safetensors.torch import save

    unique, aliases, seen = {}, {}, {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        unique[name] = t.detach().cpu().contiguous()
    return save(unique, metadata={"aliases": json.dumps(aliases), **(metadata or {})})


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    write_atomic(path, safetensors_bytes(state))


def load_weights(path: Path, entry: dict | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, tied aliases restored (a malformed file is a CheckpointError).

    entry: the file's manifest entry; the bytes loaded are checked against it (so what was verified is
    exactly what is used). Tensors are copies in memory, never views of a file that may change later.
    """
    state, _ = _load_safetensors(path, entry)
    return state


def _load_safetensors(path: Path, entry: dict | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    if entry is not None:
        _check_bytes(data, entry, path)
    try:
        state = {name: t.clone() for name, t in load(data).items()}
        n = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + n]).get("__metadata__") or {}
        for alias, source in json.loads(metadata.get("aliases", "{}")).items():
            state[alias] = state[source]
    except Exception as e:  # safetensors raises its own error types for a malformed file
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    return state, metadata


def _check_bytes(data: bytes, entry: dict, path) -> None:
    if len(data) != entry["size"]:
        raise CheckpointError(f"{path}: {len(data)} bytes, the manifest says {entry['size']}")
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CheckpointError(f"{path}: content differs from the manifest (sha256 mismatch)")


def require_finite(state: dict[str, torch.Tensor], where) -> None:
    """Refuse NaN / inf in floating-point tensors (poisoned weights are never trained on or served)."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: tensor {name!r} has NaN/inf values")


# ------------------------------------------------------------------ nested state: safetensors + JSON


def _encode(obj, path: str, tensors: dict):
    """A JSON skeleton of obj with every tensor moved into `tensors` (dicts keep int keys, tuples stay tuples)."""
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        while key in tensors:
            key += "+"
        tensors[key] = obj
        return {"@tensor": key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in obj):
            raise TypeError(f"cannot store dict keys {list(obj)[:3]} at {path!r}: only str and int keys")
        return {"@dict": [[k, _encode(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
        return {"@tuple": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {path!r} without pickle")


def _decode(node, tensors: dict):
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if isinstance(node, dict):
        if "@tensor" in node:
            return tensors[node["@tensor"]]
        if "@tuple" in node:
            return tuple(_decode(v, tensors) for v in node["@tuple"])
        return {k: _decode(v, tensors) for k, v in node["@dict"]}
    return node


def tree_bytes(obj) -> bytes:
    """A nested structure of dicts, lists, tuples, tensors and JSON scalars as one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(obj, "", tensors)
    return safetensors_bytes(tensors, {TREE_KEY: json.dumps(skeleton)})


def save_tree(obj, path: Path) -> None:
    write_atomic(path, tree_bytes(obj))


def load_tree(path: Path, entry: dict | None = None):
    tensors, metadata = _load_safetensors(path, entry)
    if TREE_KEY not in metadata:
        raise CheckpointError(f"{path}: no {TREE_KEY!r} entry in its metadata (not a discdiff state file)")
    try:
        return _decode(json.loads(metadata[TREE_KEY]), tensors)
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: malformed {TREE_KEY!r} metadata ({_first_line(e)})") from None


# ------------------------------------------------------------------ the manifest


def _tensor_table(header_bytes: bytes, where) -> dict:
    try:
        header = json.loads(header_bytes)
        header.pop("__metadata__", None)
        return {name: {"dtype": v["dtype"], "shape": v["shape"]} for name, v in header.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{where}: malformed safetensors header") from None


def _header_of(data: bytes, where) -> dict:
    n = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < n <= min(_MAX_HEADER, len(data) - 8):
        raise CheckpointError(f"{where}: malformed safetensors header")
    return _tensor_table(data[8:8 + n], where)


def _entry(data: bytes, name: str, where) -> dict:
    entry = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if name.endswith(".safetensors"):
        entry["tensors"] = _header_of(data, where)
    return entry


class ManifestWriter:
    """Writes files into a directory (each fsynced) and records them; finish() writes manifest.json last."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.files: dict[str, dict] = {}

    def write(self, name: str, data: bytes | str) -> None:
        data = data.encode() if isinstance(data, str) else data
        path = self.directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.files[name] = _entry(data, name, path)

    def add_existing(self, name: str) -> None:
        """A file another process (or copytree) wrote into the directory."""
        path = self.directory / name
        with open(path, "rb") as f:
            os.fsync(f.fileno())
            self.files[name] = _entry(f.read(), name, path)

    def finish(self) -> None:
        manifest = {"format": MANIFEST_FORMAT, "version": 1, "files": dict(sorted(self.files.items()))}
        self.write(MANIFEST, json.dumps(manifest, indent=1) + "\n")
        del self.files[MANIFEST]
        fsync_dir(self.directory)


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (an incomplete save, or one written before manifests existed)")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        ok = manifest.get("format") == MANIFEST_FORMAT and isinstance(files, dict) and all(
            isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
            for e in files.values())
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: not a valid {MANIFEST_FORMAT}")
    for name in files:
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts or name == MANIFEST:
            raise CheckpointError(f"{path}: names a file outside its directory ({name!r})")
    return manifest


def verify_manifest(directory: Path, required: tuple[str, ...] = ()) -> dict:
    """Check every file the manifest lists (size, sha256, tensor table) and that `required` ones are listed."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    files = manifest["files"]
    for name in required:
        if name not in files:
            raise CheckpointError(f"{directory / MANIFEST}: does not list {name}")
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {MANIFEST})")
        size = path.stat().st_size
        if size != expected["size"]:
            raise CheckpointError(f"{path}: {size} bytes, the manifest says {expected['size']}")
        if _sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{path}: content differs from the manifest (sha256 mismatch)")
        if "tensors" in expected and _read_header(path) != expected["tensors"]:
            raise CheckpointError(f"{path}: tensor names, dtypes or shapes differ from the manifest")
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < n <= _MAX_HEADER:
            raise CheckpointError(f"{path}: malformed safetensors header")
        return _tensor_table(f.read(n), path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
