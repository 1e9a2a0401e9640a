"""`discdiff serve`: the web demo for one checkpoint (registered in discdiff/cli.py as "discdiff.serve.cli:SERVE").

    discdiff serve --checkpoint runs/sc/pretrained            # then open http://127.0.0.1:8000
    discdiff serve --checkpoint runs/proteins --port 8080 --max-steps 256 --max-concurrent 2

Needs the web extra: pip install 'discdiff[serve]' (starlette, uvicorn). This module imports neither
until the command runs, so `discdiff serve --help` works without them.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from discdiff.cli import Command

from .engine import Limits

__all__ = ["SERVE"]

_LOOPBACK_NAMES = ("localhost",)


def _arguments(p: argparse.ArgumentParser) -> None:
    d = Limits()
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="a save_pretrained directory, or a run directory holding pretrained/ (fixed for the "
                   "server's life: no request can name a file)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only; 0.0.0.0 "
                   "lets anyone on the network run generations)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free one)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--max-length", type=int, default=d.max_length,
                   help="most tokens per sample (also capped by the model's max_len)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="most sampler steps per request")
    p.add_argument("--max-samples", type=int, default=d.max_samples, help="most samples per request")
    p.add_argument("--max-concurrent", type=int, default=d.max_concurrent,
                   help="generations running at once (worker threads)")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help="requests that may wait for a free worker; more get HTTP 429")
    p.add_argument("--timeout", type=float, default=d.timeout_s,
                   help="seconds a request may take, waiting included, before it is stopped")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _run(args) -> int:
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:
        print(f"discdiff serve: error: the web demo needs its extra ({e.name} is missing): "
              "pip install 'discdiff[serve]'", file=sys.stderr)
        return 2
    from .engine import Engine

    limits = Limits(max_length=args.max_length, max_steps=args.max_steps, max_samples=args.max_samples,
                    max_concurrent=args.max_concurrent, max_queue=args.max_queue, timeout_s=args.timeout)
    engine = Engine.load(args.checkpoint, limits, device=args.device)
    hosts = None if _is_loopback(args.host) else ["*"]
    if hosts:
        print(f"discdiff serve: warning: listening on {args.host}, not loopback: anyone who can reach this "
              "machine can run generations", file=sys.stderr)
    app = create_app(engine, allowed_hosts=hosts)
    sock = listen(args.host, args.port)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"discdiff serve: {engine.name} ({engine.modality}, samplers: {', '.join(engine.samplers)}) "
          f"on http://{shown}:{sock.getsockname()[1]}/", file=sys.stderr)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket (port 0: a free one, which the caller can read back); raises ValueError if taken."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


SERVE = Command(
    help="a local web page that shows a model denoise, infill and complete, step by step",
    add_arguments=_arguments,
    run=_run,
    description=__doc__,
)
