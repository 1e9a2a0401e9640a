"""One writer per run directory, and where a run starts: a new run, a verified checkpoint, or a refusal.

    start = open_run("runs/x", dist, resume=True, overwrite=False, log=print)
    start.checkpoint      # the newest checkpoint that verifies (None: a new run)
    start.lock.release()  # the OS also drops the lock when the process dies (even by SIGKILL)

Rules: training into a directory that holds a run (checkpoints/ or pretrained/) needs resume (continue it)
or overwrite (delete it first); resume never starts from scratch over existing checkpoints and never
deletes one; a second process on the same directory fails at once (fcntl.flock on OUT/.lock).

The lock file holds the pid of the process holding the lock (for the error message of the next one);
it is never deleted, since deleting a flock-ed file lets a third process lock a different inode.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import NamedTuple

from .artifacts import CheckpointError, write_atomic
from .checkpoint import LATEST, STEP_DIR, Checkpoint, find_resumable, step_dirs

__all__ = ["RunDirectoryError", "RunLock", "RunStart", "clear_run", "open_run", "run_contents", "trim_metrics"]

LOCK = ".lock"


class RunDirectoryError(ValueError):
    """The run directory cannot be used: not a directory, held by another process, or holds a run already."""


class RunLock:
    """An exclusive, non-blocking lock on OUT/.lock, held while a process trains into OUT."""

    def __init__(self, out_dir):
        self.out = Path(out_dir)
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> RunLock:
        """Take the lock (a no-op when this object holds it); RunDirectoryError when another process does."""
        import fcntl

        if self._file is not None:
            return self
        if self.out.exists() and not self.out.is_dir():
            raise RunDirectoryError(f"{self.out}: exists and is not a directory (--out / out_dir names the run "
                                    "directory)")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            f = open(self.out / LOCK, "a+")
        except OSError as e:
            raise RunDirectoryError(f"{self.out}: cannot use it as a run directory ({e.strerror})") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise RunDirectoryError(f"{self.out}: {who} is training into this directory (it holds {LOCK}); "
                                    "wait for it to finish or choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_contents(out_dir) -> list[str]:
    """What of an earlier run a directory holds: 'checkpoints/' and / or 'pretrained/'."""
    out = Path(out_dir)
    found = []
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir() and any(p.name == LATEST or STEP_DIR.fullmatch(p.name) for p in checkpoints.iterdir()):
        found.append("checkpoints/")
    if (out / "pretrained").is_dir() and any((out / "pretrained").iterdir()):
        found.append("pretrained/")
    return found


def clear_run(out_dir) -> None:
    """Remove an earlier run's checkpoints/, pretrained/ and metrics.jsonl (call it holding the lock)."""
    out = Path(out_dir)
    for sub in ("checkpoints", "pretrained"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)


# ------------------------------------------------------------------ where a run starts


class RunStart(NamedTuple):
    lock: RunLock  # held by rank 0 (the other ranks' is never acquired)
    checkpoint: Checkpoint | None  # the verified checkpoint to resume from; None for a new run
    damaged: tuple[str, ...]  # newer checkpoints that failed verification: kept, never counted as good


def open_run(out_dir, dist, *, resume: bool, overwrite: bool, log) -> RunStart:
    """Lock OUT (rank 0; collective) and decide where training starts, or refuse with one line.

    resume: the newest checkpoint that verifies (each newer damaged one is logged and kept); with no
    checkpoint at all a new run starts (logged); with checkpoints or pretrained/ but none verifying, a
    CheckpointError. overwrite: delete the earlier run first. Neither: refuse a directory holding a run.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other (--resume continues the run in OUT, "
                         "--overwrite deletes it and starts over)")
    out = Path(out_dir)
    lock, error = RunLock(out), None
    if dist.is_main:
        try:
            lock.acquire()
        except RunDirectoryError as e:
            error = e
    if dist.from_main([error is not None])[0]:
        raise error or RunDirectoryError(f"{out}: rank 0 could not lock the run directory")
    try:
        checkpoint, damaged = _start_point(out, dist, resume, overwrite, log)
    except BaseException:
        lock.release()
        raise
    return RunStart(lock, checkpoint, damaged)


def _start_point(out: Path, dist, resume: bool, overwrite: bool, log):
    existing = run_contents(out)
    if overwrite or not resume:
        if existing and not overwrite:
            raise RunDirectoryError(f"{out} already holds a run ({' and '.join(existing)}); pass --resume to "
                                    "continue it, or --overwrite to delete it and start over")
        if dist.is_main:
            if existing:
                log(f"overwrite: deleting the earlier run in {out} ({' and '.join(existing)})")
            clear_run(out)  # also the metrics of a run that died before its first checkpoint
        dist.barrier()
        return None, ()
    found = find_resumable(out, dist.rank)
    for line in found.skipped:
        log(line)
    if found.checkpoint is None:
        if existing:
            why = found.skipped[-1] if found.skipped else f"it holds {' and '.join(existing)} but no checkpoint"
            raise CheckpointError(f"{out}: nothing to resume from ({why}); move damaged checkpoints away, or "
                                  "pass --overwrite to start over")
        log(f"no checkpoint in {out}: starting a new run")
        if dist.is_main:
            clear_run(out)
        dist.barrier()
        return None, ()
    step = found.checkpoint.state["step"]
    return found.checkpoint, tuple(p.name for s, p in step_dirs(out) if s > step)


def trim_metrics(path: Path, step: int) -> str | None:
    """Keep the metrics rows of steps <= `step` (a resumed run forgets what the dead one logged later).

    A torn last line (no newline: the process died while writing it) is dropped, and the returned message
    says so; any other malformed line is a ValueError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        return None
    *lines, tail = path.read_text(encoding="utf-8", errors="replace").split("\n")
    keep = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            row_step = row["step"]
            if not isinstance(row_step, int):
                raise TypeError("step is not an integer")
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{number}: not a metrics row ({e})") from None
        if row_step <= step:
            keep.append(line + "\n")
    write_atomic(path, "".join(keep))
    if tail.strip():
        return f"{path}: dropped a torn last line (the run was killed while writing it): {tail[:60]!r}"
    return None
