"""Shared machinery of benchmarks/reliability.py: run a command with a timeout, classify what it did, and
check run directories (does every checkpoint load, are two runs' weights bit-identical).

Outcomes (one per case):
    ok         the correct, successful behaviour (a resume that continued, a documented safe recovery that
               said so, a race that every process survived with intact data)
    clear      refused with a clear error: non-zero exit, no "Traceback" (HTTP: a 4xx answer; library: ValueError)
    vague      refused without a traceback, but the message does not name the cause (the damaged file / folder;
               for races, the other process): e.g. a race's "No such file" passed through as one line
    traceback  a Python traceback, a death by signal, an HTTP 500 or dropped connection, a non-ValueError exception
    silent     accepted (exit 0 / HTTP 200 / a return value) where it should have refused or recovered visibly
    hang       ran past its timeout
"""

from __future__ import annotations

import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTCOMES = ("ok", "clear", "vague", "traceback", "silent", "hang")
GOOD = ("ok", "clear")
MEMORY_LIMIT = 6 << 30  # address space per child: a runaway allocation fails instead of starving the machine

# Tiny model on every run: 1 layer, width 32, 16-token context, batches of 4.
TINY = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "data.context=16", "batch_size=4",
        "log_every=1", "eval_every=0", "progress=false", "optim.warmup_steps=2", "optim.ema_decay=0.9",
        "threads=1", "device=cpu"]
SYNTHETIC = ["data.vocab_size=16", "data.synthetic_tokens=4000"]

# A resume that falls back to an older checkpoint must say why; any of these words will do. "ignor": the
# resume's line for a bad `latest` is "OUT/checkpoints/latest: names '...', not a checkpoint of this run;
# ignoring it" (checkpoint.py find_resumable), which names the pointer and says it was not used.
RECOVERY_WORDS = re.compile(r"damaged|corrupt|verif|fall(ing|s)? back|fell back|skipp|mismatch|invalid|unreadable"
                            r"|cannot (be )?(load|read)|instead|missing|broken|outside|ignor", re.I)


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b|^(KeyError|StopIteration)\b")


@dataclass
class Result:
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    stopped: bool = False  # ended by us after `stop_when` matched (a server that came up)

    @property
    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr


@dataclass
class Case:
    category: str
    group: str
    case: str
    command: str
    expect: str
    outcome: str
    rc: int | None = None
    seconds: float = 0.0
    message: str = ""
    detail: str = ""
    lost: int = 0
    bit_identical: bool | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def child_env() -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    return env


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def discdiff(*args) -> list[str]:
    return [sys.executable, "-m", "discdiff", *map(str, args)]


def start(argv: list[str], logs: Path) -> subprocess.Popen:
    """A child in its own process group, stdout/stderr into files (no pipe can fill up and block it)."""
    logs.mkdir(parents=True, exist_ok=True)
    out, err = open(logs / "stdout", "w+b"), open(logs / "stderr", "w+b")
    proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=child_env(),
                            preexec_fn=_limit_memory, start_new_session=True)
    proc.logs = logs  # type: ignore[attr-defined]
    out.close(), err.close()
    return proc


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace") if path.is_file() else ""


def kill_group(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def finish(proc: subprocess.Popen, argv: list[str], t0: float, timeout: float,
           stop_when: re.Pattern | None = None) -> Result:
    """Wait for a started child; kill it on timeout, or as soon as its stderr matches `stop_when`."""
    timed_out = stopped = False
    while proc.poll() is None:
        if time.monotonic() - t0 > timeout:
            timed_out = True
        elif stop_when is not None and stop_when.search(_read(proc.logs / "stderr")):
            stopped = True
        else:
            time.sleep(0.05)
            continue
        kill_group(proc)
        proc.wait()
        break
    return Result(argv, None if timed_out else proc.returncode, _read(proc.logs / "stdout"),
                  _read(proc.logs / "stderr"), time.monotonic() - t0, timed_out, stopped)


def run(argv: list[str], logs: Path, timeout: float = 120, stop_when: re.Pattern | None = None) -> Result:
    t0 = time.monotonic()
    return finish(start(argv, logs), argv, t0, timeout, stop_when)


def first_line(res: Result) -> str:
    """The first line of stderr; for a traceback, its last line (the exception), which says more."""
    lines = [ln.strip() for ln in res.stderr.splitlines() if ln.strip()]
    if not lines:
        lines = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()][-1:]
    if any(ln.startswith("Traceback") for ln in lines):
        named = [ln for ln in lines if EXCEPTION_LINE.match(ln)]
        exc, tail = (named or lines)[-1], lines[-1]
        more = f" … {tail}" if tail != exc and len(tail) > 3 else ""  # e.g. load_state_dict's size mismatch
        return f"exception: {exc}{more}"[:300]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return ((errors or lines or [""])[0])[:300]


def has_traceback(res: Result) -> bool:
    return "Traceback (most recent call last)" in res.output or (res.rc is not None and res.rc < 0)


def classify(res: Result, expect: str, names: tuple[str, ...] = (), recovered=None) -> str:
    """expect: "refuse" (a clear non-zero exit), "recover" (refuse, or exit 0 when `recovered(res)` is true),
    or "succeed" (exit 0). `names`: a refusal must mention one of them, or it is "vague"."""
    if res.timed_out:
        return "hang"
    if res.stopped:
        return "silent"  # a server came up although it should have refused
    if has_traceback(res):
        return "traceback"
    if res.rc != 0:
        if names and not any(n.lower() in res.output.lower() for n in names):
            return "vague"
        return "clear"
    if expect == "succeed":
        return "ok"
    if expect == "recover" and recovered is not None and recovered(res):
        return "ok"
    return "silent"


# ------------------------------------------------------------------ run directories


def load_file(path: Path) -> str | None:
    """None when the file loads as what its suffix says (safetensors with finite floats, JSON, torch pickle)."""
    try:
        if path.suffix == ".safetensors":
            import torch
            from safetensors.torch import load_file as load_st

            for name, t in load_st(str(path)).items():
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    return f"{path.name}: {name} is not finite"
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            import torch

            torch.load(path, map_location="cpu", weights_only=True)
        else:
            path.read_bytes()
    except Exception as e:  # noqa: BLE001 - any failure to load is the finding
        return f"{path.name}: {type(e).__name__}: {str(e)[:120]}"
    return None


def step_problems(step: Path, expected: set[str]) -> list[str]:
    if not step.is_dir():
        return [f"{step.name}: missing"]
    have = {p.relative_to(step).as_posix() for p in step.rglob("*") if p.is_file()}
    problems = [f"{step.name}: {name} missing" for name in sorted(expected - have)]
    for name in sorted(have):
        err = load_file(step / name)
        if err:
            problems.append(f"{step.name}/{err}")
    return problems


def latest_step(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    return pointer.parent / pointer.read_text().strip()


def run_problems(run_dir: Path, expected: set[str]) -> list[str]:
    """Lost checkpoints: a `latest` that does not resolve to a complete, loadable step folder inside the run,
    and every published step folder with a missing or unloadable file."""
    root = Path(run_dir) / "checkpoints"
    problems = []
    target = latest_step(run_dir)
    if target is not None:
        inside = target.resolve().parent == root.resolve()
        problems += ([] if inside else [f"latest points outside the run: {target}"])
        problems += [f"latest -> {p}" for p in step_problems(target, expected)]
    for step in sorted(root.glob("step_*")) if root.is_dir() else []:
        problems += [p for p in step_problems(step, expected) if f"latest -> {p}" not in problems]
    return problems


def step_files(step: Path) -> set[str]:
    return {p.relative_to(step).as_posix() for p in step.rglob("*") if p.is_file()}


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file as load_st

    return load_st(str(path))


def weights_identical(run_a: Path, run_b: Path) -> tuple[bool, str]:
    """Every safetensors file of the final checkpoint and of pretrained/: same names, dtypes and bits."""
    import torch

    pairs = []
    for sub in ("pretrained",):
        pairs.append((Path(run_a) / sub, Path(run_b) / sub))
    a_step, b_step = latest_step(run_a), latest_step(run_b)
    if a_step is None or b_step is None:
        return False, "no latest checkpoint"
    pairs.append((a_step, b_step))
    for a, b in pairs:
        files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.safetensors"))
        files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*.safetensors")) if b.is_dir() else []
        if not files_a or files_a != files_b:
            return False, f"{b.name}: safetensors files {files_b} vs {files_a}"
        for name in files_a:
            ta, tb = _tensors(a / name), _tensors(b / name)
            if ta.keys() != tb.keys():
                return False, f"{b.name}/{name}: tensor names differ"
            for key in ta:
                if ta[key].dtype != tb[key].dtype or not torch.equal(ta[key], tb[key]):
                    return False, f"{b.name}/{name}: {key} differs"
    return True, ""
