"""Ways to damage a run directory, as a crash, a bad disk or a careless user would, for the reliability tests.

Written against the file formats themselves (hashlib, the safetensors header layout), not against
discdiff's own manifest code, so the tests check the checkpoint code rather than repeat it.
"""

import hashlib
import json
from pathlib import Path

import torch


def flip_byte(path: Path, offset_from_end: int = 5) -> None:
    """Flip one byte inside the data (a bit rot that leaves the file parseable)."""
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def edit_json(path: Path, **changes) -> None:
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


def safetensors_table(path: Path) -> dict:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    return {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in header.items()}


def reseal(directory: Path) -> None:
    """Rewrite a manifest so it matches the files as they are now (a crafted file that passes the hashes)."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text())
    for name, entry in manifest["files"].items():
        data = (directory / name).read_bytes()
        entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        if name.endswith(".safetensors"):
            entry["tensors"] = safetensors_table(directory / name)
    manifest_path.write_text(json.dumps(manifest))


def poison_weights(path: Path) -> None:
    """Put a NaN into the first floating-point tensor of a safetensors file, then reseal its directory."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(path))
    reseal(path.parent)


def snapshot(directory: Path) -> dict:
    """{relative path: sha256} of every file under a directory (to prove nothing was changed or deleted)."""
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
