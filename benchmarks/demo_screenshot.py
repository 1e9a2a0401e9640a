"""The README's picture of the web demo, taken from a real model in a real browser (Debian's Chromium).

Serves ``--model`` in-process, fills the template, runs the sampler, and screenshots the page with the
trajectory slider at ``--at`` (a fraction of the steps: mid-way shows tokens appearing) and the final text below.

    python benchmarks/demo_screenshot.py --model runs/quickstart/pretrained --out docs/demo.png
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-dev-shm-usage", "--no-proxy-server"]


def serve(engine):
    """Run the demo app under uvicorn in a thread on a free loopback port; returns (server, port)."""
    import uvicorn

    from discdiff.serve.app import create_app
    from discdiff.serve.cli import listen

    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            sys.exit("the demo server did not start")
        time.sleep(0.05)
    return server, sock.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--out", default="docs/demo.png")
    p.add_argument("--template", default="To be, or {6} to be: that is the {8}.\n{80}")
    p.add_argument("--sampler", default="ancestral")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--at", type=float, default=0.5, help="where the trajectory slider stands, 0..1")
    args = p.parse_args()
    if not CHROMIUM.exists():
        sys.exit("no browser: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    from discdiff.serve import Engine, Limits

    server, port = serve(Engine.load(args.model, Limits(max_steps=max(256, args.steps))))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-status=idle]", timeout=20_000)
        print("page loaded; sampling", flush=True)
        page.fill("#num_samples", str(args.samples))
        page.fill("#template", args.template)
        page.fill("#length", "")
        page.select_option("#sampler", args.sampler)
        page.fill("#steps", str(args.steps))
        page.fill("#seed", str(args.seed))
        page.click("#start")
        page.wait_for_function("() => ['done', 'error'].includes(document.body.dataset.status)", timeout=300_000)
        if page.evaluate("() => document.body.dataset.status") == "error":
            sys.exit("the demo reported an error: " + page.text_content("#error"))
        page.eval_on_selector("#scrub", f"(el) => {{ el.value = Math.floor(el.max * {args.at}); "
                                        "el.dispatchEvent(new Event('input')); }")
        page.screenshot(path=args.out, full_page=True)
        finals = page.eval_on_selector_all("pre.final-text", "(els) => els.map(e => e.textContent)")
        browser.close()
    server.should_exit = True
    for text in finals:
        print(text, "\n---")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
