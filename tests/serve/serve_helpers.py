"""Helpers for the web demo tests: tiny checkpoints, a slow model wrapper, a live server, HTTP and SSE clients."""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from pathlib import Path

import pytest
import torch

from discdiff.serve import Engine, Limits
from discdiff.training import DiffusionConfig, ModelConfig, build_model, save_pretrained

TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings and "
        "arrows of outrageous fortune, or to take arms against a sea of troubles and by opposing end them.\n"
        "ROMEO: But soft, what light through yonder window breaks? It is the east, and Juliet is the sun.\n")
TINY = ModelConfig(d_model=32, n_layers=1, n_heads=2, cond_dim=16)


def make_checkpoint(directory: Path, tokenizer, context: int, diffusion: DiffusionConfig | None = None,
                    model_cfg: ModelConfig = TINY, seed: int = 0, train_steps: int = 0,
                    records: dict | None = None) -> Path:
    """An untrained (or briefly trained on TEXT) tiny DiffusionTransformer saved with save_pretrained
    (``records``: a record layout, as a model trained with data.records=eos is saved)."""
    diffusion = diffusion or DiffusionConfig()
    torch.manual_seed(seed)
    model = build_model(model_cfg, diffusion, tokenizer.vocab_size, context)
    if train_steps:
        _train_on_text(model, diffusion, tokenizer, context, train_steps)
    tok_dir = tokenizer.save(directory.parent / f"{directory.name}-tokenizer")
    return save_pretrained(directory, model.eval(), model_cfg=model_cfg, diffusion_cfg=diffusion,
                           vocab_size=tokenizer.vocab_size, context=context, tokenizer_dir=tok_dir, records=records)


def _train_on_text(model, diffusion_cfg, tokenizer, context, steps):
    """A few hundred Adam steps of the masked objective on windows of TEXT: enough for letters, spaces, words."""
    from discdiff.training import build_diffusion

    diff = build_diffusion(diffusion_cfg, tokenizer.vocab_size)
    ids = torch.tensor(tokenizer.encode(TEXT * 4))
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains ~3x faster on one thread of a shared 2-core machine
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - context, (16,), generator=gen)
        x0 = torch.stack([ids[s:s + context] for s in starts.tolist()])
        loss = diff.loss(model, x0, generator=gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.set_num_threads(threads)
    model.eval()


class SlowModel(torch.nn.Module):
    """Sleeps before every forward (the GIL is released, as in a real forward): makes timing observable."""

    def __init__(self, inner, delay: float):
        super().__init__()
        self.inner, self.delay = inner, delay
        self.config = inner.config

    def forward(self, x_t, sigma_bar=None):
        time.sleep(self.delay)
        return self.inner(x_t, sigma_bar)


def slow_engine(engine: Engine, delay: float, limits: Limits) -> Engine:
    return Engine(SlowModel(engine.model, delay), engine.diffusion, engine.tokenizer, limits, name="slow",
                  context=engine.context)


# ------------------------------------------------------------------ a live server on loopback


@contextlib.contextmanager
def live_server(engine: Engine):
    """Runs the demo app under uvicorn in a thread on a free loopback port; yields (host, port)."""
    uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install '.[serve]'")
    from discdiff.serve.app import create_app
    from discdiff.serve.cli import listen

    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the demo server did not start")
        time.sleep(0.02)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def request(addr, method: str, path: str, body=None, headers=None, timeout: float = 30.0):
    """(status, headers, parsed JSON or text) of one plain request."""
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        payload = json.dumps(body) if body is not None and not isinstance(body, (str, bytes)) else body
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=payload, headers={**hdrs, **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read().decode()
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw
        return resp.status, dict(resp.getheaders()), data
    finally:
        conn.close()


def generate(addr, payload: dict, timeout: float = 30.0, on_event=None):
    """POST /api/generate and read its event stream to the end: (status, [(kind, data, t_received)] or error)."""
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        conn.request("POST", "/api/generate", body=json.dumps(payload), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            return resp.status, json.loads(resp.read())
        assert resp.getheader("Content-Type").startswith("text/event-stream")
        events, kind = [], None
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:]), time.monotonic()))
                if on_event is not None and on_event(kind, events[-1][1]) is False:
                    break
        return resp.status, events
    finally:
        conn.close()
