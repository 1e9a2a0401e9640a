"""Bad requests to `discdiff serve` (the fixture run, a free port). Correct: a 4xx answer (400, 404, 405, 413,
415, 422, 429) and a server that stays up without logging a traceback. A 200 is a silent acceptance; a 5xx,
a dropped connection or a traceback in the server's log is "traceback"; no answer within 60 s is "hang".
"""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path

from _reliability_run import Case, discdiff, kill_group, start

CLEAR_STATUS = (400, 404, 405, 413, 415, 422, 429)
TIMEOUT = 60.0


BASE = {"length": 8, "steps": 4}  # a valid request; each case replaces one field


def _j(obj) -> bytes:
    return json.dumps({**BASE, **obj}).encode()


# (case, method, path, content type, body)
REQUESTS = [
    ("malformed JSON '{'", "POST", "/api/generate", "application/json", b"{"),
    ("an empty body", "POST", "/api/generate", "application/json", b""),
    ("40,000 '['", "POST", "/api/generate", "application/json", b"[" * 40_000),
    ("60,000 '[' (just under the size limit)", "POST", "/api/generate", "application/json", b"[" * 60_000),
    ("12,000 nested objects", "POST", "/api/generate", "application/json", b'{"a":' * 12_000),
    ("invalid UTF-8", "POST", "/api/generate", "application/json", b"\xff\xfe{\x80}"),
    ("a JSON list", "POST", "/api/generate", "application/json", b"[]"),
    ("a JSON string", "POST", "/api/generate", "application/json", b'"text"'),
    ("JSON null", "POST", "/api/generate", "application/json", b"null"),
    ("a JSON number", "POST", "/api/generate", "application/json", b"42"),
    ("steps 'ten'", "POST", "/api/generate", "application/json", _j({"steps": "ten"})),
    ("steps true", "POST", "/api/generate", "application/json", _j({"steps": True})),
    ("steps 1e309 (inf)", "POST", "/api/generate", "application/json", b'{"length": 8, "steps": 1e309}'),
    ("steps NaN", "POST", "/api/generate", "application/json", b'{"length": 8, "steps": NaN}'),
    ("steps 10^30", "POST", "/api/generate", "application/json", _j({"steps": 10**30})),
    ("steps 0", "POST", "/api/generate", "application/json", _j({"steps": 0})),
    ("steps -1", "POST", "/api/generate", "application/json", _j({"steps": -1})),
    ("num_samples 10^9", "POST", "/api/generate", "application/json", _j({"num_samples": 10**9})),
    ("num_samples 0", "POST", "/api/generate", "application/json", _j({"num_samples": 0})),
    ("length 10^9", "POST", "/api/generate", "application/json", _j({"length": 10**9})),
    ("length -1", "POST", "/api/generate", "application/json", _j({"length": -1})),
    ("length 0", "POST", "/api/generate", "application/json", _j({"length": 0})),
    ("seed -1", "POST", "/api/generate", "application/json", _j({"seed": -1})),
    ("seed 2^64", "POST", "/api/generate", "application/json", _j({"seed": 2**64})),
    ("temperature -1", "POST", "/api/generate", "application/json", _j({"temperature": -1})),
    ("temperature 0", "POST", "/api/generate", "application/json", _j({"temperature": 0})),
    ("top_k 0", "POST", "/api/generate", "application/json", _j({"top_k": 0})),
    ("top_p 2", "POST", "/api/generate", "application/json", _j({"top_p": 2})),
    ("sampler 'bogus'", "POST", "/api/generate", "application/json", _j({"sampler": "bogus"})),
    ("sampler 5", "POST", "/api/generate", "application/json", _j({"sampler": 5})),
    ("an unknown field", "POST", "/api/generate", "application/json", _j({"bogus": 1})),
    ("template 12", "POST", "/api/generate", "application/json", _j({"template": 12})),
    ("a 60,000-character template", "POST", "/api/generate", "application/json", _j({"template": "x" * 60_000})),
    ("template '{99999999}'", "POST", "/api/generate", "application/json", _j({"template": "{99999999}"})),
    ("a lone surrogate in the template", "POST", "/api/generate", "application/json",
     b'{"steps": 4, "template": "\\ud800"}'),
    ("confidence threshold -1", "POST", "/api/generate", "application/json",
     _j({"sampler": "confidence", "threshold": -1})),
    ("confidence block_length 0", "POST", "/api/generate", "application/json",
     _j({"sampler": "confidence", "block_length": 0})),
    ("a body over the size limit", "POST", "/api/generate", "application/json", b" " * 70_000 + b"{}"),
    ("Content-Type text/plain", "POST", "/api/generate", "text/plain", _j({"steps": 4})),
    ("GET /api/generate", "GET", "/api/generate", None, None),
    ("POST /api/info", "POST", "/api/info", "application/json", b"{}"),
]

PORT_LINE = re.compile(r"https?://\[?[^\s/\]]+\]?:(\d+)/")


def start_server(run_dir: Path, logs: Path, timeout: float = 120):
    proc = start(discdiff("serve", "--checkpoint", run_dir, "--port", 0), logs)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        match = PORT_LINE.search((logs / "stderr").read_text(errors="replace"))
        if match and request(int(match.group(1)), "GET", "/api/health", None, None)[1] == 200:
            return proc, int(match.group(1))  # the address is printed before the server accepts connections
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    kill_group(proc)
    raise SystemExit(f"discdiff serve did not come up: {(logs / 'stderr').read_text(errors='replace')[-2000:]}")


def request(port: int, method: str, path: str, ctype: str | None, body: bytes | None) -> tuple[str, int | None, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
        resp = conn.getresponse()
        status = resp.status
        text = resp.read(2000).decode("utf-8", "replace") if status != 200 else ""
    except TimeoutError:
        return "hang", None, "no answer within 60 s"
    except (OSError, http.client.HTTPException) as e:
        return "traceback", None, f"connection dropped: {type(e).__name__}: {e}"
    finally:
        conn.close()
    if status in CLEAR_STATUS:
        outcome = "clear"
    elif status == 200:
        outcome = "silent"
    else:
        outcome = "traceback" if status >= 500 else "vague"
    return outcome, status, text.strip().splitlines()[0][:300] if text.strip() else ""


def http_cases(run_dir: Path, logs: Path, every: int = 1) -> list[Case]:
    proc, port = start_server(run_dir, logs)
    cases = []
    try:
        for i, (name, method, path, ctype, body) in enumerate(REQUESTS[::every]):
            before = (logs / "stderr").read_text(errors="replace").count("Traceback")
            t0 = time.monotonic()
            outcome, status, message = request(port, method, path, ctype, body)
            time.sleep(0.2)  # let the server log what it does with a dropped stream
            log = (logs / "stderr").read_text(errors="replace")
            if log.count("Traceback") > before and outcome in ("clear", "silent"):
                outcome, message = "traceback", "server logged: " + log.strip().splitlines()[-1][:280]
            if proc.poll() is not None:
                outcome, message = "traceback", f"the server died (exit {proc.returncode})"
                proc, port = start_server(run_dir, logs.with_name(f"{logs.name}-{i}"))
            size = len(body or b"")
            command = f"{method} {path} ({ctype}, {size:,} bytes)"
            cases.append(Case("bad input: HTTP", path, name, command, "refuse", outcome, status,
                              time.monotonic() - t0, message))
    finally:
        kill_group(proc)
        proc.wait()
    return cases
