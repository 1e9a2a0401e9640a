"""`discdiff serve`: the web demo for one checkpoint. A command module: HELP, DESCRIPTION,
add_arguments(parser) and run(args), which discdiff/cli.py finds by name ("discdiff.serve.cli") and
imports only when the command runs. It never imports discdiff/cli.py (the dependency points one way).

Needs the web extra: pip install 'discdiff[serve]' (starlette, uvicorn). This module imports neither
until the command runs, so `discdiff serve --help` works without them.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from discdiff import console

from .engine import Limits

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "is_loopback", "listen", "run"]

HELP = "a local web page that shows a model denoise, infill and complete, step by step"

DESCRIPTION = """A local web page that shows one model denoise, infill and complete, step by step
(needs the serve extra: pip install 'discdiff[serve]').

    discdiff serve --checkpoint runs/sc                       # then open http://127.0.0.1:8000
    discdiff serve --checkpoint runs/proteins --port 8080 --max-steps 256 --max-concurrent 2

The checkpoint is fixed for the server's life (no request can name a file); the limits below bound what
one request may ask for. Listening beyond loopback (--host 0.0.0.0) lets anyone on the network use it."""

_LOOPBACK_NAMES = ("localhost",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Limits()
    p.add_argument("--checkpoint", "--model", dest="checkpoint", required=True, type=Path, metavar="DIR",
                   help="a run directory (its pretrained/), a save_pretrained directory or a checkpoint directory "
                   "(fixed for the server's life: no request can name a file)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only; 0.0.0.0 "
                   "lets anyone on the network run generations)")
    p.add_argument("--port", type=console.port, default=8000,
                   help="TCP port, 0-65535 (0: any free one; default: %(default)s)")
    p.add_argument("--device", type=console.device, default="cpu",
                   help="cpu, cuda, cuda:1, mps, or auto (cuda if there is a GPU, else cpu)")
    count = {"type": console.positive_int, "metavar": "N"}
    p.add_argument("--max-length", default=d.max_length, **count,
                   help="most tokens per sample, also capped by the model's max_len (default: %(default)s)")
    p.add_argument("--max-steps", default=d.max_steps, **count,
                   help="most sampler steps per request (default: %(default)s)")
    p.add_argument("--max-samples", default=d.max_samples, **count,
                   help="most samples per request (default: %(default)s)")
    p.add_argument("--max-concurrent", default=d.max_concurrent, **count,
                   help="generations running at once, one worker thread each (default: %(default)s)")
    p.add_argument("--max-queue", type=console.int_at_least(0, "an integer >= 0"), default=d.max_queue, metavar="N",
                   help="requests that may wait for a free worker; more get HTTP 429 (default: %(default)s)")
    p.add_argument("--timeout", type=console.positive_float, default=d.timeout_s, metavar="SECONDS",
                   help="how long a request may take, waiting included, before it is stopped (default: %(default)s)")


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    """Load the checkpoint, bind the port, serve until Ctrl-C. A missing extra (ModuleNotFoundError), bad
    limits, an unreadable checkpoint or a busy port raise for `discdiff` to report in one line."""
    import uvicorn  # the serve extra: checked before the (slower) checkpoint load

    from .app import create_app
    from .engine import Engine

    limits = Limits(max_length=args.max_length, max_steps=args.max_steps, max_samples=args.max_samples,
                    max_concurrent=args.max_concurrent, max_queue=args.max_queue, timeout_s=args.timeout).validate()
    engine = Engine.load(args.checkpoint, limits, device=args.device)
    hosts = None if is_loopback(args.host) else ["*"]
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
    except (OSError, OverflowError) as e:  # taken, not ours, an unknown host name, a port beyond 65535
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
    return sock
