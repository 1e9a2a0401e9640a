"""Helpers for the training tests: a tiny model on tiny synthetic data, and CLI subprocesses.

Imported by name (pytest puts this directory on sys.path)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# d=32, 2 layers, context 32, vocab 12: a step takes milliseconds.
TINY = [
    "data.vocab_size=12",
    "data.context=32",
    "data.synthetic_tokens=20000",
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.cond_dim=16",
    "optim.lr=1e-3",
    "optim.warmup_steps=2",
    "progress=false",
    "threads=1",
    "eval_every=0",
    "log_every=1",
]


def tiny_config(tmp_path, *extra):
    from discdiff.training import load_config

    return load_config(None, [*TINY, f"out_dir={tmp_path}", *extra])


def cli_args(*extra) -> list[str]:
    args = []
    for item in [*TINY, *extra]:
        args += ["--set", item]
    return args


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def launch(args: list[str], env: dict | None = None) -> subprocess.Popen:
    """`python -m discdiff ...` from the repository root."""
    env = {**subprocess_env(), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "discdiff", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def launch_group(args: list[str], nproc: int) -> list[subprocess.Popen]:
    """N `python -m discdiff ...` processes with the environment torchrun gives its workers
    (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), without torchrun's extra agent process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = {"WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    return [launch(args, {**common, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def final_weights(run_dir: Path, name: str = "model") -> dict:
    from discdiff.training.checkpoint import latest_checkpoint, load_weights

    return load_weights(latest_checkpoint(run_dir) / f"{name}.safetensors")
