"""Training checkpoints that survive a kill and are verified before they are trusted; one writer per run.

A run directory OUT holds:

    OUT/.lock                     flock-ed by the one process training into OUT (it holds that pid)
    OUT/metrics.jsonl             one JSON object per line
    OUT/checkpoints/step_00001000/
        model.safetensors         weights (full, unsharded)
        ema.safetensors           EMA of the weights (when enabled)
        optimizer.safetensors     optimizer state: tensors, and its structure as JSON metadata
        rng_rank{r}.safetensors   each rank's torch / CUDA / numpy / python RNG states
        state.json                step, config, data position, counters
        tokenizer/                the data's tokenizer, when it has one (a checkpoint samples on its own)
        manifest.json             written last: every file's size, sha256 and tensor table (artifacts.py)
    OUT/checkpoints/latest        one line naming the newest published checkpoint
    OUT/pretrained/               save_pretrained at the end of fit()

Writing: into `.tmp-step_N-<pid>-<random>` (unique per process), each file fsynced, the manifest last,
read back and verified, renamed into place (os.replace), and only then is `latest` replaced (atomically).
A kill at any moment leaves every earlier checkpoint intact. Pruning deletes only checkpoints older than
the one this process has just written and verified.

Resuming (find_resumable): the newest checkpoint that verifies; every newer one that does not is
reported with its reason and left where it is.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .artifacts import (
    MANIFEST,
    CheckpointError,
    ManifestWriter,
    fsync_dir,
    load_tree,
    load_weights,
    read_manifest,
    require_finite,
    safetensors_bytes,
    save_weights,
    tree_bytes,
    verify_manifest,
    write_atomic,
)
from .config import config_from_dict

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Resumable",
    "find_resumable",
    "latest_checkpoint",
    "load_checkpoint",
    "load_weights",
    "rng_state",
    "save_checkpoint",
    "save_weights",
    "set_rng_state",
    "validate_state",
    "verify_checkpoint",
    "write_atomic",
]

LATEST = "latest"
STEP_DIR = re.compile(r"step_(\d{8,})")
REQUIRED = ("model.safetensors", "optimizer.safetensors", "state.json")


# ------------------------------------------------------------------ RNG


def rng_state() -> dict:
    """This process's global RNG states (torch, CUDA, numpy, python) as tensors and JSON scalars."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


# ------------------------------------------------------------------ verification


def validate_state(state, where) -> dict:
    """state.json's schema: counters are non-negative ints, the config parses, the step is within its steps."""
    def bad(msg: str) -> CheckpointError:
        return CheckpointError(f"{where}: {msg}")

    if not isinstance(state, dict):
        raise bad("not a JSON object")
    for key, low in (("step", 0), ("bad_steps", 0), ("tokens_seen", 0), ("world_size", 1), ("vocab_size", 1)):
        value = state.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise bad(f"{key} must be an integer >= {low}, got {value!r}")
    data = state.get("data")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), int) and data[k] >= 0 for k in ("epoch", "batch")):
        raise bad("data must hold the loader position (non-negative integers epoch and batch)")
    try:
        cfg = config_from_dict(state.get("config"))
    except ValueError as e:
        raise bad(f"config: {e}") from None
    if state["step"] > cfg.steps:
        raise bad(f"step {state['step']} is beyond its config's steps={cfg.steps}")
    return state


def verify_checkpoint(path) -> dict:
    """Check a checkpoint directory against its manifest and validate its state.json; returns the state.

    Raises CheckpointError naming the first file that is missing, differs or does not validate.
    Weights are checked for NaN/inf when they are loaded (load_checkpoint, from_pretrained).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory")
    verify_manifest(path, REQUIRED)
    try:
        state = json.loads((path / "state.json").read_text())
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path / 'state.json'}: not valid JSON") from None
    return validate_state(state, path / "state.json")


@dataclass
class Checkpoint:
    path: Path
    state: dict  # state.json, validated
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    optimizer: dict
    rng: dict | None  # None when this rank saved none (the world size changed)


def load_checkpoint(path, rank: int = 0) -> Checkpoint:
    """Everything a checkpoint holds, verified (manifest, state.json, finite tensors) before it is returned."""
    path = Path(path)
    state = verify_checkpoint(path)
    listed = read_manifest(path)["files"]
    model = load_weights(path / "model.safetensors", listed["model.safetensors"])
    require_finite(model, path / "model.safetensors")
    ema = None
    if "ema.safetensors" in listed:
        ema = load_weights(path / "ema.safetensors", listed["ema.safetensors"])
        require_finite(ema, path / "ema.safetensors")
    optimizer = load_tree(path / "optimizer.safetensors", listed["optimizer.safetensors"])
    require_finite(dict(_tensors_in(optimizer)), path / "optimizer.safetensors")
    rng_name = f"rng_rank{rank}.safetensors"
    rng = load_tree(path / rng_name, listed[rng_name]) if rng_name in listed else None
    return Checkpoint(path, state, model, ema, optimizer, rng)


def _tensors_in(tree, prefix: str = ""):
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from _tensors_in(v, f"{prefix}/{k}")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _tensors_in(v, f"{prefix}/{i}")


def step_dirs(out_dir) -> list[tuple[int, Path]]:
    """(step, directory) of every published checkpoint of a run, newest first."""
    root = Path(out_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in root.glob("step_*") if (m := STEP_DIR.fullmatch(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def latest_checkpoint(out_dir) -> Path | None:
    """The checkpoint `latest` names, when it is a complete checkpoint directory of this run (not verified)."""
    pointer = Path(out_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text(errors="replace").strip()
    if not STEP_DIR.fullmatch(name):
        raise CheckpointError(f"{pointer}: names {name!r}, not a checkpoint of this run")
    path = pointer.parent / name
    return path if (path / MANIFEST).is_file() else None


class Resumable(NamedTuple):
    checkpoint: Checkpoint | None  # the newest checkpoint that verifies, loaded; None when none does
    skipped: list[str]  # one line per newer checkpoint (or `latest` pointer) that was not used, with why


def find_resumable(out_dir, rank: int = 0) -> Resumable:
    """The newest checkpoint of a run that verifies. Nothing is deleted or changed."""
    root = Path(out_dir) / "checkpoints"
    skipped = []
    try:
        if latest_checkpoint(out_dir) is None and (root / LATEST).is_file():
            named = (root / LATEST).read_text(errors="replace").strip()
            skipped.append(f"{root / LATEST}: names {named!r}, which is missing or incomplete; ignoring it")
    except CheckpointError as e:
        skipped.append(f"{e}; ignoring it")
    for _, path in step_dirs(out_dir):
        try:
            return Resumable(load_checkpoint(path, rank), skipped)
        except CheckpointError as e:
            skipped.append(f"checkpoint {path.name} is damaged and was skipped: {e}")
    for stale in root.glob(".tmp-step_*"):
        skipped.append(f"{stale}: an unfinished save (no process finished writing it); ignored")
    return Resumable(None, skipped)


# ------------------------------------------------------------------ writing


def _check_finite(tensors, what: str) -> None:
    for name, t in tensors:
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise RuntimeError(f"refusing to write a checkpoint: {what} tensor {name!r} has NaN/inf")


def save_checkpoint(out_dir, step: int, dist, *, model_state, ema_state, optim_state, state: dict, keep: int = 2,
                    tokenizer_dir=None, damaged: tuple[str, ...] = ()) -> Path | None:
    """Collective: every rank calls it (each saves its RNG); rank 0 writes the rest, verifies and publishes it.

    Saving a step that already has a verified checkpoint (a finished run saved again) is a no-op.
    `damaged` names checkpoints known to fail verification: pruning never counts them as kept copies.
    Returns the published directory on rank 0 (None on the others).
    """
    root = Path(out_dir) / "checkpoints"
    name = f"step_{step:08d}"
    final = root / name
    pid, token, exists = dist.from_main([os.getpid(), int.from_bytes(os.urandom(6), "little"),
                                         int(dist.is_main and name not in damaged and _verifies(final))])
    if exists:
        return final if dist.is_main else None
    tmp = root / f".tmp-{name}-{pid}-{token:012x}"
    if dist.is_main:
        _check_finite(model_state.items(), "model")
        _check_finite((ema_state or {}).items(), "EMA")
        _check_finite(_tensors_in(optim_state), "optimizer")
        validate_state(state, "the state to save")
        root.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    dist.barrier()
    write_atomic(tmp / f"rng_rank{dist.rank}.safetensors", tree_bytes(rng_state()))
    dist.barrier()
    if dist.is_main:
        _write_files(tmp, dist.world_size, model_state, ema_state, optim_state, state, tokenizer_dir)
        _publish(root, tmp, final)
        _prune(root, keep, step, damaged)
    dist.barrier()
    return final if dist.is_main else None


def _verifies(path: Path) -> bool:
    if not path.is_dir():
        return False
    try:
        load_checkpoint(path)  # every check, finite tensors included
        return True
    except CheckpointError:
        return False


def _write_files(tmp: Path, world_size: int, model_state, ema_state, optim_state, state, tokenizer_dir) -> None:
    writer = ManifestWriter(tmp)
    writer.write("model.safetensors", safetensors_bytes(model_state))
    if ema_state is not None:
        writer.write("ema.safetensors", safetensors_bytes(ema_state))
    writer.write("optimizer.safetensors", tree_bytes(optim_state))
    writer.write("state.json", json.dumps(state, indent=1) + "\n")
    for r in range(world_size):
        writer.add_existing(f"rng_rank{r}.safetensors")
    if tokenizer_dir is not None:
        copy_tree_into(writer, Path(tokenizer_dir), "tokenizer")
    writer.finish()
    verify_manifest(tmp, REQUIRED)  # read back what reached the disk


def copy_tree_into(writer: ManifestWriter, source: Path, prefix: str) -> None:
    """Copy a small directory (a tokenizer) into the writer's directory, file by file, recording each."""
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: the data's tokenizer directory is missing")
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        writer.write(f"{prefix}/{file.relative_to(source).as_posix()}", file.read_bytes())


def _publish(root: Path, tmp: Path, final: Path) -> None:
    if final.exists():  # a damaged checkpoint at this step (a verified one returns early): superseded now
        os.replace(final, root / f".tmp-replaced-{tmp.name.removeprefix('.tmp-')}")
    os.replace(tmp, final)
    fsync_dir(root)
    write_atomic(root / LATEST, final.name + "\n")


def _prune(root: Path, keep: int, step: int, damaged) -> None:
    """Keep the newest keep-1 complete checkpoints older than `step`; delete the other older ones.

    Checkpoints newer than `step` are never touched. Leftover temporary folders are removed: the run
    lock guarantees no other process is writing here.
    """
    older = [p for s, p in step_dirs(root.parent) if s < step]
    kept = [p for p in older if p.name not in damaged and (p / MANIFEST).is_file()][: max(keep, 1) - 1]
    for path in older:
        if path not in kept:  # hidden first, then deleted: a kill mid-delete never leaves a half step folder
            doomed = root / f".tmp-pruned-{path.name}-{os.getpid()}"
            os.replace(path, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
    for stale in [*root.glob(".tmp-*"), *root.glob(".*.tmp-*")]:
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
