"""SIGKILLs at random moments (mid-checkpoint-write included) and two writers on one run directory.

Every trial trains the same tiny configuration (synthetic data, a checkpoint after every step) as one
uninterrupted reference run, so "bit-identical" means: the final checkpoint's and pretrained/'s safetensors
hold exactly the reference's tensors.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

from _reliability_run import (
    SYNTHETIC,
    TINY,
    Case,
    classify,
    discdiff,
    finish,
    first_line,
    kill_group,
    latest_step,
    run,
    run_problems,
    start,
    step_files,
    weights_identical,
)

SEVERITY = ("ok", "clear", "vague", "silent", "traceback", "hang")
# The second writer's refusal must say why: the run is in use (a lock, another process), or, for a second
# run without --resume, that OUT already holds a run and needs --resume / --overwrite. A second `--resume`
# must name the lock / the other process: "pass --resume" would be no reason to a user who passed it.
LOCK_WORDS = ("lock", "another", "in use", "running", "busy", "process")
WRITER_WORDS = LOCK_WORDS + ("--resume", "--overwrite", "empty", "exists")


def worst(*outcomes: str) -> str:
    return max(outcomes, key=SEVERITY.index)


def kill_config(steps: int) -> list[str]:
    sets = TINY + SYNTHETIC + [f"steps={steps}", "save_every=1", "keep_checkpoints=2"]
    return [a for s in sets for a in ("--set", s)]


class Reference:
    """The uninterrupted run every kill trial is compared with."""

    def __init__(self, work: Path, steps: int):
        self.steps = steps
        self.dir = work / "reference"
        argv = discdiff("train", "--out", self.dir, *kill_config(steps))
        t0 = time.monotonic()
        proc = start(argv, work / "logs" / "reference")
        while proc.poll() is None and latest_step(self.dir) is None:
            time.sleep(0.005)
        self.first_save = time.monotonic() - t0  # start-up (imports, data) ends about here
        res = finish(proc, argv, t0, 300)
        if res.rc != 0 or latest_step(self.dir) is None:
            raise SystemExit(f"the reference run failed ({res.rc}): {first_line(res)}\n{res.command}")
        self.seconds = res.seconds
        self.files = step_files(latest_step(self.dir))


def _hidden(checkpoints: Path) -> set[str]:
    try:
        return {e.name for e in os.scandir(checkpoints) if e.name.startswith(".") or "tmp" in e.name}
    except FileNotFoundError:
        return set()


def _kill_mid_write(proc, run_dir: Path, delay: float, t0: float) -> dict:
    """After `delay` seconds, kill as soon as a temporary entry appears under checkpoints/ (a save in progress)."""
    root = run_dir / "checkpoints"
    while proc.poll() is None and time.monotonic() - t0 < delay:
        time.sleep(0.002)
    seen = _hidden(root)
    while proc.poll() is None:
        new = _hidden(root) - seen
        if new:
            kill_group(proc)
            return {"moment": "mid-write", "temporary": sorted(new)[0]}
        seen = _hidden(root)
        time.sleep(0.0005)
    return {"moment": "mid-write"}


def _kill_once(ref: Reference, run_dir: Path, logs: Path, rng: random.Random, mid_write: bool) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.monotonic()
    proc = start(discdiff("train", "--out", run_dir, *kill_config(ref.steps)), logs)
    # a random moment, mostly while training and saving (start-up is half of a tiny run)
    low = ref.first_save * (1.0 if mid_write else 0.8)
    delay = rng.uniform(low, max(low, (0.9 if mid_write else 1.0) * ref.seconds))
    if mid_write:
        info = _kill_mid_write(proc, run_dir, delay, t0)
    else:
        while proc.poll() is None and time.monotonic() - t0 < delay:
            time.sleep(0.002)
        kill_group(proc)
        info = {"moment": "random moment"}
    proc.wait()
    step = latest_step(run_dir)
    return {**info, "planned_delay": round(delay, 3), "killed_at": round(time.monotonic() - t0, 3),
            "exited_before_kill": proc.returncode != -9, "checkpoint_at_kill": step.name if step else None,
            "temporaries_left": sorted(_hidden(run_dir / "checkpoints"))}


def kill_trial(ref: Reference, work: Path, i: int, rng: random.Random, mid_write: bool) -> Case:
    run_dir = work / f"kill{i:02d}"
    for attempt in range(4):  # a run that finished before its kill moment is no kill: try again
        info = _kill_once(ref, run_dir, work / "logs" / f"kill{i:02d}-{attempt}", rng, mid_write)
        if not info["exited_before_kill"]:
            break
    problems = run_problems(run_dir, ref.files)
    resume = discdiff("train", "--out", run_dir, "--resume", *kill_config(ref.steps))
    res = run(resume, work / "logs" / f"kill{i:02d}-resume", 300)
    outcome = classify(res, "succeed")
    identical, why = (False, "resume failed")
    if outcome == "ok":
        problems += [f"after resume: {p}" for p in run_problems(run_dir, ref.files)]
        identical, why = weights_identical(ref.dir, run_dir)
        outcome = "ok" if identical else "silent"
    where = f"{info['killed_at']:.2f} s, {info.get('temporary') or info['checkpoint_at_kill'] or 'before any save'}"
    return Case("SIGKILL + resume", info["moment"], f"kill #{i} at {where}", res.command, "succeed",
                outcome, res.rc, res.seconds, first_line(res), "; ".join(problems + ([why] if why else [])),
                lost=int(bool(problems)), bit_identical=identical, extra=info)


def _lock_held(run_dir: Path) -> bool:
    """True when another process holds OUT/.lock (a shared, non-blocking flock of ours is refused). Ours, if
    granted, is dropped at once; it never blocks the holder."""
    import fcntl

    try:
        fd = os.open(run_dir / ".lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _start_and_pause(argv: list[str], run_dir: Path, logs: Path, rng: random.Random, ref: Reference):
    """Start run A; after its first save (plus a random moment), stop it (SIGSTOP) while it provably holds the
    run lock. Returns (process, t0, pause info), or None when A finished before it could be paused."""
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.monotonic()
    first = start(argv, logs)
    while first.poll() is None and latest_step(run_dir) is None and time.monotonic() - t0 < 120:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.1 * ref.seconds))
    kill_group(first, signal.SIGSTOP)
    if first.poll() is None and _lock_held(run_dir):
        step = latest_step(run_dir)
        return first, t0, {"paused_at": round(time.monotonic() - t0, 3), "first_at": step.name if step else None}
    kill_group(first, signal.SIGCONT)
    finish(first, argv, t0, 300)
    return None


def writers_trial(ref: Reference, work: Path, i: int, rng: random.Random) -> Case:
    """Run A trains into OUT; while A is stopped (SIGSTOP) holding OUT's lock, run B on the same --out (plain,
    or --resume on odd trials) must refuse at once, naming the lock / the other process (a plain B may instead
    say that OUT holds a run and needs --resume / --overwrite); then A continues and must end bit-identical to
    the reference. The pause makes the overlap certain: B starts only while A provably holds the lock."""
    run_dir = work / f"writers{i}"
    argv = discdiff("train", "--out", run_dir, *kill_config(ref.steps))
    for attempt in range(4):  # A finished before it could be paused: no overlap, try again
        paused = _start_and_pause(argv, run_dir, work / "logs" / f"writers{i}-a{attempt}", rng, ref)
        if paused is not None:
            break
    else:  # not a finding about discdiff: the probe could not set the case up
        raise SystemExit(f"two writers, trial #{i}: run A finished before it could be paused, 4 times")
    first, t0, info = paused
    # odd trials: a user resuming the run that is still going; even: another run (another seed) on the same --out
    resume = i % 2 == 1
    second_argv = argv[:4] + (["--resume"] if resume else []) + argv[4:] + ([] if resume else ["--set", "seed=1"])
    try:
        second = run(second_argv, work / "logs" / f"writers{i}-b", 60)
    finally:
        kill_group(first, signal.SIGCONT)
    a = finish(first, argv, t0, 300)
    b_outcome = classify(second, "refuse", LOCK_WORDS if resume else WRITER_WORDS)
    a_outcome = classify(a, "succeed")
    problems = run_problems(run_dir, ref.files) if a_outcome == "ok" else []
    identical, why = weights_identical(ref.dir, run_dir) if a_outcome == "ok" else (False, "first run failed")
    outcome = worst(b_outcome, a_outcome)
    if outcome in ("ok", "clear") and (problems or not identical):
        outcome = "silent"  # the first run's checkpoints were damaged without a word
    if outcome == "ok":
        outcome = "clear"
    mode = "second with --resume" if resume else "second without --resume"
    detail = (f"A paused at {info['paused_at']:.2f} s ({info['first_at']}) holding the lock; "
              f"second: {b_outcome} after {second.seconds:.1f} s (rc {second.rc}); first: {a_outcome} "
              f"(rc {a.rc}: {first_line(a)})" + ("; " + "; ".join(problems) if problems else "")
              + ("" if identical else f"; first run's weights: {why}"))
    return Case("two writers, one --out", mode, f"trial #{i} {mode}", second.command, "refuse", outcome,
                second.rc, second.seconds, first_line(second), detail, lost=int(bool(problems)),
                bit_identical=identical, extra=info)
