"""Record models (data.records=eos) in the demo: sampled as `discdiff sample` does (BOS pinned, the model kept on
the record format, or length-first), every streamed frame and the result cut at each row's first EOS."""

import pytest
import torch
from serve_helpers import generate, live_server, request
from test_engine import replay, run

from discdiff.serve import Engine, Limits, RequestError

BOS, EOS, PAD = 1, 2, 0
LETTERS = set(range(3, 8))  # A C G T N
CANVAS = {"template": "", "length": 16}  # the whole context: [BOS] and 15 positions to generate


@pytest.fixture(scope="module")
def engine(dna_records_checkpoint):
    return Engine.load(dna_records_checkpoint, Limits(max_steps=64, max_samples=8))


def _letter_after_end(frame: torch.Tensor) -> bool:
    """Does any row of [B, L] hold a letter after its first EOS?"""
    for row in frame.tolist():
        if EOS in row[1:] and set(row[row.index(EOS, 1):]) & LETTERS:
            return True
    return False


def test_info_names_the_record_layout_and_first_hitting(engine, dna_checkpoint):
    info = engine.info()
    assert info["records"] == {"eos_id": EOS, "bos_id": BOS, "pad_id": PAD, "auto_length": True}
    assert info["defaults"]["sampler"] == "first_hitting"
    plain = Engine.load(dna_checkpoint).info()  # the same tokenizer, trained on running text
    assert plain["records"] is None and plain["defaults"]["sampler"] == "ancestral"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_random_record_model_gives_well_formed_records_without_bos_inside(engine, seed):
    events = run(engine, {**CANVAS, "num_samples": 8, "seed": seed})
    start, done = events[0][1], events[-1][1]
    assert start["sampler"] == "first_hitting" and start["known_rows"][0] == [True] + [False] * 15
    frames = replay(events)
    assert all((f[:, 0] == BOS).all() and not (f[:, 1:] == BOS).any() and not (f == PAD).any() for f in frames)
    assert not any(_letter_after_end(f) for f in frames)
    records = done["records"]
    assert all(r["well_formed"] for r in records)  # validity 1.0: [BOS] letter+ EOS+ in every row
    assert [r["length"] for r in records] == [len(t) for t in done["text"]]
    assert all(set(t) <= set("ACGTN") for t in done["text"])
    final = frames[-1]
    assert [engine.tokenizer.decode(r[1:1 + n["length"]]) for r, n in zip(final.tolist(), records, strict=True)] \
        == done["text"]
    assert len({r["length"] for r in records}) > 1  # the model's own lengths, not one pinned


def test_frames_never_show_a_letter_after_the_first_eos(engine):
    """Ancestral reveals several positions per step, so the raw state can hold an EOS and a later letter
    together; the streamed frames show what follows the first EOS as EOS padding."""
    payload = {**CANVAS, "num_samples": 8, "seed": 4, "sampler": "ancestral", "steps": 3}
    events = run(engine, payload)
    assert not any(_letter_after_end(f) for f in replay(events))
    job = engine.parse(payload)
    model, condition = engine._setup(job)
    raw = engine.diffusion.sample(model, 8, 16, "ancestral", steps=3, condition=condition,
                                  **engine._randomness(4, 8)).samples
    assert _letter_after_end(raw)  # the same draw, uncut: the frames' cut did real work
    wf = [r["well_formed"] for r in events[-1][1]["records"]]
    assert not all(wf) and wf == [not _letter_after_end(r[None]) for r in raw]


def test_length_first_gives_each_row_its_requested_length(engine):
    done = run(engine, {**CANVAS, "num_samples": 6, "seed": 0, "record_length": 4})[-1][1]
    assert [r["length"] for r in done["records"]] == [4] * 6 and all(r["well_formed"] for r in done["records"])
    assert all(len(t) == 4 and set(t) <= set("ACGTN") for t in done["text"])
    assert engine.parse({**CANVAS, "record_length": 4}).sampler == "ancestral"  # EOS pinned: any step size keeps it
    auto = run(engine, {**CANVAS, "num_samples": 8, "seed": 1, "record_length": "auto", "steps": 8})[-1][1]
    assert {r["length"] for r in auto["records"]} == {3, 5}  # the saved histogram: bodies of 3 or 5
    assert [len(t) for t in auto["text"]] == [r["length"] for r in auto["records"]]


def test_a_template_follows_bos(engine):
    job = engine.parse({"template": "ACG", "length": 12, "record_length": 6})
    assert job.ids[:4] == [BOS, *engine.tokenizer.encode("ACG")] and len(job.ids) == 12
    done = run(engine, {"template": "ACG", "length": 12, "record_length": 6, "seed": 0})[-1][1]
    assert all(t.startswith("ACG") and len(t) == 6 for t in done["text"])
    both = run(engine, {"prompts": ["AC", "GGT"], "length": 16, "num_samples": 2, "seed": 0})[-1][1]  # after BOS too
    assert [t[:len(p)] for t, p in zip(both["text"], ["AC", "AC", "GGT", "GGT"], strict=True)] == ["AC", "AC", "GGT",
                                                                                                 "GGT"]
    assert all(r["well_formed"] for r in both["records"])


@pytest.mark.parametrize("payload, message", [
    ({**CANVAS, "record_length": 0}, "must be auto or an integer in [1, 14] (the length less BOS and one EOS), got 0"),
    ({**CANVAS, "record_length": 15}, "record_length must be auto or an integer in [1, 14]"),
    ({"length": 8, "record_length": 7}, "record_length must be auto or an integer in [1, 6]"),
    ({**CANVAS, "record_length": "long"}, "record_length must be auto or an integer"),
    ({**CANVAS, "record_length": 1.5}, "record_length must be an integer, \"auto\" or null"),
    ({"template": "ACGTACG", "length": 16, "record_length": 3}, "the prompt sets position 4, which the record layout"),
    ({"length": 1}, "length must lie in [2, 16], got 1"),
])
def test_bad_record_requests_are_one_line_400s(engine, payload, message):
    with pytest.raises(RequestError) as e:
        engine.parse(payload)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_api_answers_400_for_bad_record_lengths(engine, dna_checkpoint):
    pytest.importorskip("starlette", reason="the serve extra is not installed: pip install '.[serve]'")
    with live_server(engine) as addr:
        for value, message in [(0, "record_length must be auto or an integer in [1, 14]"),
                               (99, "record_length must be auto or an integer in [1, 14]")]:
            status, _, data = request(addr, "POST", "/api/generate", {**CANVAS, "record_length": value})
            assert status == 400 and message in data["error"] and "\n" not in data["error"]
        status, events = generate(addr, {**CANVAS, "num_samples": 2, "seed": 0, "record_length": 5})
        assert status == 200 and [r["length"] for r in events[-1][1]["records"]] == [5, 5]
    with live_server(Engine.load(dna_checkpoint)) as addr:
        status, _, data = request(addr, "POST", "/api/generate", {**CANVAS, "record_length": 4})
        assert status == 400 and data["error"] == "record_length needs a model trained on records (data.records=eos)"
