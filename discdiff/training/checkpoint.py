"""Checkpoints that survive a kill, and the save_pretrained / from_pretrained format.

A training checkpoint is a directory `OUT/checkpoints/step_00001000/`:

    model.safetensors   weights (full, unsharded, float32)
    ema.safetensors     EMA of the weights (when enabled)
    optimizer.pt        optimizer state (torch.save; loaded with weights_only=True)
    state.json          step, config, data position, counters
    rng_rank{r}.pt      each rank's torch / numpy / python RNG states

It is written into a hidden temporary directory, fsynced, then renamed into place with os.replace, and
only then is `OUT/checkpoints/latest` (a one-line file, itself replaced atomically) pointed at it. A kill
at any moment leaves the previous checkpoint intact and `latest` pointing at a complete one. Tensors are
checked for NaN/inf first: a poisoned checkpoint is never written.

A pretrained directory (save_pretrained) holds config.json, model.safetensors and, when given, the
tokenizer under tokenizer/ — everything `from_pretrained` needs to rebuild model, Diffusion and tokenizer.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "latest_checkpoint",
    "load_checkpoint",
    "load_weights",
    "rng_state",
    "save_checkpoint",
    "save_weights",
    "set_rng_state",
    "write_atomic",
]

LATEST = "latest"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a small file so readers see the old or the new content, never a torn one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ weights


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors, with tied tensors stored once and their aliases recorded in the metadata."""
    from safetensors.torch import save_file

    unique, aliases, seen = {}, {}, {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        unique[name] = t.detach().cpu().contiguous()
    save_file(unique, str(path), metadata={"aliases": json.dumps(aliases)})


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    state = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        aliases = json.loads((f.metadata() or {}).get("aliases", "{}"))
    for alias, source in aliases.items():
        state[alias] = state[source]
    return state


def _check_finite(state: dict[str, torch.Tensor], what: str) -> None:
    for name, t in state.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise RuntimeError(f"refusing to write a checkpoint: {what} tensor {name!r} has NaN/inf")


# ------------------------------------------------------------------ RNG


def rng_state() -> dict:
    """This process's global RNG states, in types torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------ training checkpoints


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    pointer = Path(out_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def save_checkpoint(out_dir, step: int, dist, *, model_state, ema_state, optim_state, state: dict,
                    keep: int = 2) -> Path | None:
    """Collective: every rank calls it (each saves its RNG); rank 0 writes the rest and publishes it.

    Saving the step `latest` already holds (a finished run saved again) is a no-op: that checkpoint is
    complete, and replacing it would leave a moment in which `latest` points at nothing.
    """
    root = Path(out_dir) / "checkpoints"
    name = f"step_{step:08d}"
    current = latest_checkpoint(out_dir)
    if current is not None and current.name == name:
        return current
    tmp = root / f".tmp-{name}"
    if dist.is_main:
        _check_finite(model_state, "model")
        _check_finite(ema_state or {}, "EMA")
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    dist.barrier()
    torch.save(rng_state(), tmp / f"rng_rank{dist.rank}.pt")
    dist.barrier()
    final = None
    if dist.is_main:
        save_weights(model_state, tmp / "model.safetensors")
        if ema_state is not None:
            save_weights(ema_state, tmp / "ema.safetensors")
        torch.save(optim_state, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final = root / name
        if final.exists():  # left by a run that died between publishing it and updating `latest`
            stale = root / f".tmp-stale-{name}"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(final, stale)  # `latest` never points here, or we would not be writing this step
        os.replace(tmp, final)
        _fsync_dir(root)
        write_atomic(root / LATEST, name + "\n")
        _prune(root, keep, final)
    dist.barrier()
    return final


def _prune(root: Path, keep: int, current: Path) -> None:
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[: max(0, len(done) - keep)]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(path: Path, rank: int = 0) -> dict:
    """Everything a checkpoint holds; `rng` is None when this rank saved none (world size changed)."""
    path = Path(path)
    rng_file = path / f"rng_rank{rank}.pt"
    ema_file = path / "ema.safetensors"
    return {
        "model": load_weights(path / "model.safetensors"),
        "ema": load_weights(ema_file) if ema_file.is_file() else None,
        "optimizer": torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True),
        "state": json.loads((path / "state.json").read_text()),
        "rng": torch.load(rng_file, weights_only=True) if rng_file.is_file() else None,
    }
