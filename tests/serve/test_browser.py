"""End to end in a real headless Chromium (Debian's, driven by Playwright): fill a template, start, watch
intermediate states arrive, and check the final text keeps the fixed parts. Skips where no browser is.

Screenshots are saved under pytest's tmp dir; with DISCDIFF_DEMO_PNG=path the text one is also copied there.
The README's picture was made with a longer-trained model:
    DISCDIFF_DEMO_PNG=docs/demo.png DISCDIFF_DEMO_TRAIN_STEPS=1500 pytest tests/serve/test_browser.py -k infill
"""

import os
import shutil
from pathlib import Path

import pytest
from serve_helpers import TEXT, live_server, make_checkpoint

from discdiff.data import CharTokenizer
from discdiff.serve import Engine, Limits

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install '.[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
         "--disable-dev-shm-usage", "--no-proxy-server"]
TEMPLATE = "To be, or {6} to be: that is the {8}."


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("no browser: install Debian's chromium (apt-get install -y chromium) to run the browser test")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1100, "height": 760}, device_scale_factor=1)
        yield context
        context.close()


@pytest.fixture(scope="module")
def trained_text_engine(tmp_path_factory):
    """A tiny model trained for a few seconds on TEXT: enough to fill blanks with letters and spaces."""
    path = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "shakespeare-tiny", CharTokenizer.from_texts([TEXT]),
                           64, train_steps=int(os.environ.get("DISCDIFF_DEMO_TRAIN_STEPS", 200)))
    return Engine.load(path, Limits(max_steps=256))


def _generate(page, template: str | None, sampler: str, steps: int, delay_ms: int, samples: int = 1):
    page.fill("#num_samples", str(samples))
    if template is not None:
        page.fill("#template", template)
        page.fill("#length", "")
    page.select_option("#sampler", sampler)
    page.fill("#steps", str(steps))
    page.eval_on_selector("#delay", f"(el) => {{ el.value = '{delay_ms}'; }}")
    page.click("#start")


def test_watch_an_infill_in_the_browser(browser, trained_text_engine, tmp_path):
    with live_server(trained_text_engine) as (host, port):
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://{host}:{port}/")
        page.wait_for_selector("body[data-status=idle]", timeout=10_000)
        assert "shakespeare-tiny · text" in page.text_content("#model-info")
        assert not page.is_visible("#label-field")  # an unlabelled model shows no Class picker

        _generate(page, TEMPLATE, "ancestral", steps=24, delay_ms=30, samples=2)
        page.wait_for_selector("body[data-status=running]", timeout=10_000)
        # mid-way, the page shows a partly unmasked state
        page.wait_for_function("() => discdiffDemo.shown >= 3", timeout=10_000)
        mid = page.evaluate("() => document.querySelectorAll('#rows span.mask').length")
        page.screenshot(path=str(tmp_path / "demo-midway.png"))
        page.wait_for_selector("body[data-status=done]", timeout=20_000)

        events = page.evaluate("() => discdiffDemo.events")
        steps = [e for e in events if e["kind"] == "step"]
        assert len(steps) >= 3
        masked = [sum(e["masked"]) for e in steps]
        assert any(0 < m < 2 * 14 for m in masked), masked  # intermediate states arrived, neither start nor end
        assert 0 < mid <= 2 * 14
        finals = page.eval_on_selector_all("pre.final-text", "(els) => els.map(e => e.textContent)")
        assert len(finals) == 2
        for final in finals:
            assert final.startswith("To be, or ") and final[16:36] == " to be: that is the " and final.endswith(".")
            assert len(final) == 45
        assert "░" not in page.text_content("#rows")
        assert page.text_content("#nfe").endswith("model calls") and page.text_content("#elapsed").endswith(" s")
        fixed = page.evaluate("() => [...document.querySelectorAll('#rows span.known')].map(s => s.textContent)")
        assert "".join(fixed) == "To be, or  to be: that is the ." * 2
        # the trajectory slider replays any step: the README's picture is the middle one, final text below
        page.eval_on_selector("#scrub", "(el) => { el.value = Math.floor(el.max / 2); "
                                        "el.dispatchEvent(new Event('input')); }")
        assert 0 < page.evaluate("() => document.querySelectorAll('#rows span.mask').length") < 2 * 14
        page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        if os.environ.get("DISCDIFF_DEMO_PNG"):
            shutil.copy(tmp_path / "demo.png", os.environ["DISCDIFF_DEMO_PNG"])

        # an invalid template is refused by the server and the page says why
        _generate(page, "To bé_", "ancestral", steps=8, delay_ms=0)
        page.wait_for_selector("body[data-status=error]", timeout=10_000)
        assert "character 'é' at column 5" in page.text_content("#error")
        assert not errors, errors


def test_several_prompts_one_per_line_denoise_row_by_row(browser, trained_text_engine):
    """Two prompts of different lengths in the prompts box: one batch, each row keeps its own prompt (its known
    positions), intermediate states arrive for every row, and each final text begins with its prompt."""
    prompts = ["To be, or", "that is"]
    with live_server(trained_text_engine) as (host, port):
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://{host}:{port}/")
        page.wait_for_selector("body[data-status=idle]", timeout=10_000)
        page.fill("#prompts", "\n".join(prompts) + "\n")
        page.fill("#length", "20")
        _generate(page, None, "ancestral", steps=16, delay_ms=30, samples=1)
        page.wait_for_function("() => discdiffDemo.shown >= 3", timeout=10_000)
        mid = page.evaluate("() => [...document.querySelectorAll('#rows .row')].map("
                            "r => r.querySelectorAll('span.mask').length)")
        page.wait_for_selector("body[data-status=done]", timeout=20_000)
        rows = page.eval_on_selector_all("#rows .row", "(els) => els.map(e => ({title: e.title, "
                                         "known: [...e.querySelectorAll('span.known')].map(s => s.textContent)}))")
        assert [r["title"] for r in rows] == ['prompt 1 ("To be, or") · sample 1', 'prompt 2 ("that is") · sample 1']
        assert ["".join(r["known"]) for r in rows] == prompts  # each row pins its own prompt
        assert len(mid) == 2 and all(0 < m < 20 for m in mid), mid  # both rows were caught mid-denoising
        finals = page.eval_on_selector_all("pre.final-text", "(els) => els.map(e => e.textContent)")
        assert [f[: len(p)] for f, p in zip(finals, prompts, strict=True)] == prompts
        assert all(len(f) == 20 for f in finals)
        assert not errors, errors


def test_protein_residues_and_image_pixels_render(browser, protein_checkpoint, pixel_checkpoint, tmp_path):
    with live_server(Engine.load(protein_checkpoint)) as (host, port):
        page = browser.new_page()
        page.goto(f"http://{host}:{port}/")
        page.wait_for_selector("body[data-status=idle]", timeout=10_000)
        assert not page.is_visible("#record-length-field")  # not trained on records
        _generate(page, "MKTA{8}GLV", "confidence", steps=8, delay_ms=0)
        page.wait_for_selector("body[data-status=done]", timeout=20_000)
        assert page.text_content("pre.final-text").startswith("MKTA")
        coloured = page.evaluate("() => document.querySelectorAll('#rows span[class*=\"g-\"]').length")
        assert coloured >= 7  # at least the fixed residues carry a side-chain colour class
        page.screenshot(path=str(tmp_path / "protein.png"))
    with live_server(Engine.load(pixel_checkpoint)) as (host, port):
        page = browser.new_page()
        page.goto(f"http://{host}:{port}/")
        page.wait_for_selector("body[data-status=idle]", timeout=10_000)
        assert page.is_disabled("#template") and not page.is_visible("#template")  # nothing to type
        _generate(page, None, "first_hitting", steps=8, delay_ms=0, samples=2)
        page.wait_for_selector("body[data-status=done]", timeout=20_000)
        assert page.evaluate("() => document.querySelectorAll('#rows canvas').length") == 2
        page.screenshot(path=str(tmp_path / "image.png"))


def test_a_record_model_shows_each_record_to_its_end(browser, dna_records_checkpoint, tmp_path):
    """The Record length field (a record model only): records of the asked length, each row's length and validity
    shown, and no letter drawn after a row's end in any frame."""
    engine = Engine.load(dna_records_checkpoint, Limits(max_steps=64, max_samples=4))
    with live_server(engine) as (host, port):
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"http://{host}:{port}/")
        page.wait_for_selector("body[data-status=idle]", timeout=10_000)
        assert page.is_visible("#record-length-field") and page.input_value("#sampler") == "first_hitting"
        for record_length, lengths in (("5", {5}), ("", None)):
            page.fill("#record_length", record_length)
            page.fill("#template", "")
            page.fill("#length", "16")  # the whole context: [BOS] and 15 positions
            _generate(page, None, "first_hitting", steps=8, delay_ms=0, samples=3)
            page.wait_for_selector("body[data-status=done], body[data-status=error]", timeout=20_000)
            assert page.text_content("#error") == ""
            finals = page.eval_on_selector_all("pre.final-text", "(els) => els.map(e => e.textContent)")
            tags = page.eval_on_selector_all("#final h3 .record", "(els) => els.map(e => e.textContent)")
            assert tags == [f" · length {len(f)} · well formed" for f in finals] and all(set(f) <= set("ACGTN")
                                                                                        for f in finals)
            assert lengths is None or {len(f) for f in finals} == lengths
            # after each row's first end mark only end marks: the padding, never a letter
            after = page.evaluate("() => [...document.querySelectorAll('#rows .row')].map(r => [...r.querySelectorAll("
                                  "'span.end ~ span')].filter(s => !s.classList.contains('end')).length)")
            assert after == [0, 0, 0]
            page.screenshot(path=str(tmp_path / f"records-{record_length or 'model'}.png"), full_page=True)
            page.goto(f"http://{host}:{port}/")  # a fresh page for the next request
            page.wait_for_selector("body[data-status=idle]", timeout=10_000)
        assert not errors, errors
