"""The HTTP API on a real uvicorn server on loopback: streaming, refusals, limits, and a load of 20 requests."""

import concurrent.futures
import http.client
import json
import threading
import time

import pytest
from serve_helpers import generate, live_server, request, slow_engine

from discdiff.serve import Limits

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install '.[serve]'")

TEMPLATE = "To be, or {6} to be: that is the {8}."


@pytest.fixture
def server(char_engine):
    with live_server(char_engine) as addr:
        yield addr


def test_page_info_health_and_static_files(server):
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and "<title>discdiff demo</title>" in page
    assert "default-src 'self'" in headers["content-security-policy"]
    for path in ("/static/demo.js", "/static/demo.css"):
        assert request(server, "GET", path)[0] == 200
    status, _, info = request(server, "GET", "/api/info")
    assert status == 200 and info["modality"] == "text" and info["mask_id"] == info["vocab_size"]
    assert request(server, "GET", "/api/health")[2] == {"status": "ok", "running": 0, "queued": 0,
                                                        "max_concurrent": 1, "max_queue": 8}
    assert request(server, "GET", "/static/../engine.py")[0] == 404  # nothing outside static/


def test_generation_streams_start_steps_done(server):
    status, events = generate(server, {"template": TEMPLATE, "steps": 12, "seed": 5})
    assert status == 200
    kinds = [k for k, _, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == len(kinds) - 2 >= 2
    text = events[-1][1]["text"][0]
    assert text.startswith("To be, or ") and text[16:36] == " to be: that is the " and text.endswith(".")


def test_steps_arrive_while_the_model_is_still_working(char_engine):
    """Live streaming, not one final answer: with 50 ms per model call, the first step reaches the client
    long before the last one is computed."""
    engine = slow_engine(char_engine, 0.05, Limits(max_steps=64))
    with live_server(engine) as addr:
        status, events = generate(addr, {"template": TEMPLATE, "steps": 10, "sampler": "first_hitting", "seed": 0})
    assert status == 200 and events[-1][0] == "done"
    first_step = next(t for k, _, t in events if k == "step")
    assert events[-1][2] - first_step > 0.3  # 14 blanks = 14 calls of 50 ms after the first


@pytest.mark.parametrize("body, headers, status, message", [
    ({"template": TEMPLATE, "steps": 0}, {}, 400, "steps must lie in [1, 256], got 0"),
    ({"template": TEMPLATE, "sampler": "dpm"}, {}, 400, "unknown sampler 'dpm'"),
    ({"template": "To bé_"}, {}, 400, "character 'é' at column 5 is not in this model's char vocabulary"),
    ({"template": TEMPLATE, "checkpoint": "/etc/passwd"}, {}, 400, "unknown field 'checkpoint'"),
    ("{not json", {}, 400, "not valid JSON"),
    ("template=_", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "send the request as JSON"),
    ({"template": "_" * 70_000}, {}, 413, "over 64 KiB"),
    ("[" * 40_000, {}, 400, "nests arrays or objects more than 8 deep"),  # a RecursionError in the parser: was 500
    ("[" * 500 + "]" * 500, {}, 400, "nests arrays or objects more than 8 deep"),  # valid JSON, absurdly deep
    ('{"template": ' + "[" * 30 + "]" * 30 + "}", {}, 400, "nests arrays or objects more than 8 deep"),
    (b'{"template": "\xff"}', {}, 400, "not valid JSON"),  # not UTF-8
    ('{"steps": ' + "9" * 5000 + "}", {}, 400, "not valid JSON"),  # past Python's integer-digits limit
    ({"template": [1] * 5000}, {}, 400, "template must be a string"),
])
def test_invalid_requests_get_4xx_with_a_message(server, body, headers, status, message):
    got, _, data = request(server, "POST", "/api/generate", body, headers)
    assert got == status and message in data["error"]
    assert "\n" not in data["error"] and len(data["error"]) <= 400  # one line, even when it quotes the input
    assert request(server, "GET", "/api/health")[2]["running"] == 0


def test_foreign_host_header_is_refused(server):
    """DNS rebinding guard: a loopback server answers only to loopback host names."""
    assert request(server, "GET", "/api/info", headers={"Host": "evil.example:8000"})[0] == 400


def test_timeout_ends_a_generation_with_a_message(char_engine):
    engine = slow_engine(char_engine, 0.05, Limits(timeout_s=0.4))
    with live_server(engine) as addr:
        status, events = generate(addr, {"template": TEMPLATE, "steps": 40, "seed": 0})
        assert status == 200 and events[-1][0] == "error" and "timed out after 0.4 s" in events[-1][1]["message"]
        _wait_idle(addr)


def _wait_idle(addr, within: float = 5.0):
    deadline = time.monotonic() + within
    while (health := request(addr, "GET", "/api/health")[2])["running"] or health["queued"]:
        assert time.monotonic() < deadline, f"server still busy: {health}"
        time.sleep(0.05)


def test_a_client_that_leaves_frees_its_slot(char_engine):
    engine = slow_engine(char_engine, 0.05, Limits(max_concurrent=1, max_queue=0))
    with live_server(engine) as addr:
        conn = http.client.HTTPConnection(*addr, timeout=10)
        conn.request("POST", "/api/generate", body=json.dumps({"template": TEMPLATE, "steps": 200}),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.readline().startswith(b"event: start")
        busy, _, data = request(addr, "POST", "/api/generate", {"template": TEMPLATE, "steps": 2})
        assert busy == 429 and "the server is busy" in data["error"]
        conn.close()  # leave mid-generation: the worker notices at its next step
        _wait_idle(addr)
        status, events = generate(addr, {"template": TEMPLATE, "steps": 2})
        assert status == 200 and events[-1][0] == "done"


def test_load_twenty_concurrent_requests_complete_or_are_refused_cleanly(char_engine):
    """20 clients at once against 2 workers and a queue of 6: each one ends with a done event or a 429 with
    a message and Retry-After; /api/health answers throughout; the server is idle afterwards."""
    engine = slow_engine(char_engine, 0.03, Limits(max_concurrent=2, max_queue=6, timeout_s=30))
    with live_server(engine) as addr:
        stop, health_times = threading.Event(), []

        def poll_health():
            while not stop.is_set():
                t0 = time.monotonic()
                status, _, body = request(addr, "GET", "/api/health", timeout=5)
                assert status == 200 and body["status"] == "ok" and body["running"] <= 2 and body["queued"] <= 6
                health_times.append(time.monotonic() - t0)
                time.sleep(0.05)

        def client(i):
            payload = {"template": TEMPLATE, "steps": 8, "seed": i, "sampler": "ancestral" if i % 2 else "confidence"}
            conn = http.client.HTTPConnection(*addr, timeout=30)
            try:
                conn.request("POST", "/api/generate", body=json.dumps(payload),
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                if resp.status != 200:
                    return resp.status, resp.getheader("Retry-After"), json.loads(resp.read())["error"]
                events = [line[7:] for line in resp.read().decode().split("\n") if line.startswith("event: ")]
                return 200, None, events
            finally:
                conn.close()

        with concurrent.futures.ThreadPoolExecutor(21) as pool:
            poller = pool.submit(poll_health)
            results = list(pool.map(client, range(20)))
            stop.set()
            poller.result()
        done = [r for r in results if r[0] == 200]
        refused = [r for r in results if r[0] != 200]
        assert all(r[2][-1] == "done" and r[2].count("start") == 1 for r in done)
        assert sum("queued" in r[2] for r in done) >= 1  # some waited in the queue, and were told so
        assert all(r[0] == 429 and r[1] == "5" and "the server is busy" in r[2] for r in refused)
        assert len(done) >= 2 + 6 and len(refused) >= 1 and len(done) + len(refused) == 20
        assert health_times and max(health_times) < 1.0
        _wait_idle(addr)
