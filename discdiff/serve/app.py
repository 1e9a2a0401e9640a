"""The web side: a Starlette app serving one static page and a small JSON + server-sent-events API.

    GET  /                 the page (static/index.html, demo.js, demo.css: no build step)
    GET  /api/info         the model, its samplers, limits, token strings and example templates
    GET  /api/health       {"status": "ok", "running": n, "queued": m, ...}; answered during generations
    POST /api/generate     JSON request -> text/event-stream of events: queued*, start, step*, done | error

Sampling runs in a pool of ``limits.max_concurrent`` worker threads (torch releases the GIL, so the event
loop keeps answering); further requests wait in a FIFO of ``limits.max_queue`` and beyond that get 429
with a message. Each worker step waits for the stream to take its event (at most ``_BACKLOG`` pending),
so a slow client slows its own generation instead of filling memory, and ``limits.timeout_s`` ends it.
A slot is freed only when its worker thread has returned, so a generation whose client left never
overlaps the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .engine import Engine, Job, RequestError, Stopped

__all__ = ["Gate", "create_app"]

STATIC = Path(__file__).parent / "static"
MAX_BODY = 64 * 1024  # bytes of a request body
MAX_DEPTH = 8  # nesting of arrays / objects in a request body (a valid request is one flat object)
_BACKLOG = 32  # events a worker may be ahead of its stream
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'"}
log = logging.getLogger("discdiff.serve")


class Gate:
    """``slots`` generations at once, then a FIFO of at most ``queue`` waiters; event-loop thread only."""

    def __init__(self, slots: int, queue: int):
        self.slots, self.queue = slots, queue
        self.free = slots
        self.waiters: deque[asyncio.Future] = deque()

    @property
    def running(self) -> int:
        return self.slots - self.free

    def admit(self) -> asyncio.Future | None:
        """None: a slot is held now. A future: queued, resolves when a slot is handed over. 429 if full."""
        if self.free > 0:
            self.free -= 1
            return None
        if len(self.waiters) >= self.queue:
            raise RequestError(f"the server is busy: {self.running} generation(s) running and {len(self.waiters)} "
                               "waiting, the most it takes; try again in a few seconds", status=429)
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def position(self, waiter: asyncio.Future) -> int:
        return self.waiters.index(waiter) + 1 if waiter in self.waiters else 0

    def withdraw(self, waiter: asyncio.Future) -> None:
        """A waiter leaves: drop it from the queue, or pass on the slot it was just handed."""
        if waiter in self.waiters:
            self.waiters.remove(waiter)
        elif waiter.done() and not waiter.cancelled():
            self.release()

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        self.free += 1


def _sse(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Generation:
    """One admitted request: waits for a slot, runs on a worker, streams its events; ``close`` is idempotent."""

    def __init__(self, server: DemoServer, job: Job, waiter: asyncio.Future | None):
        self.server, self.job, self.waiter = server, job, waiter
        self.deadline = time.monotonic() + server.engine.limits.timeout_s
        self.stop = threading.Event()
        self.credits = threading.Semaphore(_BACKLOG)
        self.events: asyncio.Queue = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.holds_slot = waiter is None
        self.started = False

    # --- worker-thread side
    def check(self) -> None:
        if self.stop.is_set():
            raise Stopped("cancelled")
        if time.monotonic() > self.deadline:
            raise Stopped(f"timed out after {self.server.engine.limits.timeout_s:g} s (the server's limit "
                          "per request); try fewer steps or a shorter length")

    def emit(self, kind: str, data: dict) -> None:
        while not self.credits.acquire(timeout=0.25):  # the stream is behind: wait for it, or give up
            if self.stop.is_set() or time.monotonic() > self.deadline:
                raise Stopped("the client stopped reading")
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, data))
        except RuntimeError:  # the event loop has closed: the server is shutting down
            raise Stopped("the server is shutting down") from None

    # --- event-loop side
    async def stream(self):
        try:
            if self.waiter is not None:
                async for chunk in self._wait_for_slot():
                    yield chunk
                if not self.holds_slot:
                    return
            self.started = True
            future = self.loop.run_in_executor(self.server.executor, self.server.engine.run, self.job,
                                               self.emit, self.check)
            future.add_done_callback(self._worker_done)
            while True:
                remaining = self.deadline - time.monotonic() + 5.0  # the worker reports its own timeout first
                try:
                    kind, data = await asyncio.wait_for(self.events.get(), timeout=max(remaining, 0.1))
                except TimeoutError:
                    yield _sse("error", {"message": "timed out waiting for the model"})
                    return
                self.credits.release()
                yield _sse(kind, data)
                if kind in ("done", "error"):
                    return
        finally:
            self.close()

    async def _wait_for_slot(self):
        while True:
            yield _sse("queued", {"position": self.server.gate.position(self.waiter),
                                  "running": self.server.gate.running})
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                yield _sse("error", {"message": f"timed out after {self.server.engine.limits.timeout_s:g} s "
                                                "waiting for a free slot; try again later"})
                return
            try:
                await asyncio.wait_for(asyncio.shield(self.waiter), timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
            self.holds_slot = True
            return

    def _worker_done(self, future) -> None:
        self.server.gate.release()
        if not future.cancelled() and future.exception() is not None:
            log.error("generation failed", exc_info=future.exception())

    def close(self) -> None:
        self.stop.set()
        if self.waiter is not None and not self.holds_slot:
            self.server.gate.withdraw(self.waiter)
            self.holds_slot = False
            self.waiter = None
        elif self.holds_slot and not self.started:
            self.server.gate.release()  # admitted but never ran
            self.holds_slot = False


class _EventStream(StreamingResponse):
    """Calls ``on_close`` however the response ends, even if its body was never iterated."""

    def __init__(self, generation: Generation):
        super().__init__(generation.stream(), media_type="text/event-stream",
                         headers={**_HEADERS, "X-Accel-Buffering": "no"})
        self.generation = generation

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.generation.close()


class DemoServer:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.gate = Gate(engine.limits.max_concurrent, engine.limits.max_queue)
        self.executor = ThreadPoolExecutor(engine.limits.max_concurrent, thread_name_prefix="discdiff-sample")
        self._info = engine.info()

    async def page(self, request: Request):
        return FileResponse(STATIC / "index.html", headers=_HEADERS)

    async def info(self, request: Request):
        return JSONResponse(self._info, headers=_HEADERS)

    async def health(self, request: Request):
        return JSONResponse({"status": "ok", "running": self.gate.running, "queued": len(self.gate.waiters),
                             "max_concurrent": self.gate.slots, "max_queue": self.gate.queue}, headers=_HEADERS)

    async def generate(self, request: Request):
        try:
            job = self.engine.parse(await _read_json(request))
            waiter = self.gate.admit()
        except ValueError as e:  # RequestError carries its status; any other refusal of the input is a 400
            status = getattr(e, "status", 400)
            headers = {**_HEADERS, **({"Retry-After": "5"} if status in (429, 503) else {})}
            return JSONResponse({"error": _one_line(str(e))}, status_code=status, headers=headers)
        return _EventStream(Generation(self, job, waiter))

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def _read_json(request: Request):
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise RequestError("send the request as JSON (Content-Type: application/json)", status=415)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise RequestError(f"the request body is over {MAX_BODY // 1024} KiB", status=413)
    try:
        payload = json.loads(body)
    except RecursionError:  # the parser recurses once per [ or {: thousands of them exhaust the stack
        raise RequestError(f"the request body nests arrays or objects more than {MAX_DEPTH} deep") from None
    except ValueError as e:  # malformed JSON, bytes that are not UTF-8, an integer of too many digits
        raise RequestError(f"the request body is not valid JSON: {_one_line(str(e))}") from None
    if _nesting_depth(payload, MAX_DEPTH) > MAX_DEPTH:
        raise RequestError(f"the request body nests arrays or objects more than {MAX_DEPTH} deep")
    return payload


def _nesting_depth(value, limit: int) -> int:
    """How deep arrays / objects nest in a parsed JSON value (no recursion; stops counting past ``limit``)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _one_line(text: str, limit: int = 400) -> str:
    """A message as one line of at most ``limit`` characters (it may quote a value the client sent)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def create_app(engine: Engine, allowed_hosts: list[str] | None = None) -> Starlette:
    """The demo app for ``engine``. ``allowed_hosts`` (Host header values; default: loopback names) guards
    a loopback server against DNS rebinding; pass ["*"] when serving on every interface on purpose."""
    server = DemoServer(engine)
    hosts = allowed_hosts or ["127.0.0.1", "localhost", "::1", "[::1]"]
    routes = [
        Route("/", server.page),
        Route("/api/info", server.info),
        Route("/api/health", server.health),
        Route("/api/generate", server.generate, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
                    lifespan=_lifespan(server))
    app.state.server = server
    return app


def _lifespan(server: DemoServer):
    @asynccontextmanager
    async def lifespan(app):
        yield
        server.shutdown()

    return lifespan
