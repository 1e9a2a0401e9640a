"""The model side of the demo, without any web code: validation, streamed steps, every sampler, modalities."""

import itertools
import math

import pytest
import torch
from serve_helpers import TINY, make_checkpoint

from discdiff.data import CharTokenizer
from discdiff.serve import Engine, Limits, RequestError, Stopped
from discdiff.training import DiffusionConfig

TEMPLATE = "To be, or {6} to be: that is the {8}."


def run(engine, payload, check=lambda: None):
    events = []
    engine.run(engine.parse(payload), lambda kind, data: events.append((kind, data)), check)
    return events


def replay(events):
    """Apply every streamed change to the start state: [frames of [B, L] tensors] (the page does the same)."""
    state = torch.tensor(events[0][1]["state"])
    frames = [state.clone()]
    for _kind, data in events[1:]:
        for r, p, i in data.get("changes", []):
            state[r, p] = i
        frames.append(state.clone())
    return frames


@pytest.mark.parametrize("sampler", ["euler", "tau_leaping", "tweedie", "ancestral", "first_hitting", "confidence"])
def test_every_sampler_streams_steps_and_keeps_fixed_parts(char_engine, sampler):
    events = run(char_engine, {"template": TEMPLATE, "sampler": sampler, "steps": 8, "num_samples": 2, "seed": 3})
    kinds = [k for k, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and set(kinds[1:-1]) == {"step"}
    start, done = events[0][1], events[-1][1]
    known = torch.tensor(start["known"])
    frames = replay(events)
    mask_id = char_engine.graph.mask_id
    assert (frames[0][:, ~known] == mask_id).all()  # blanks start masked, fixed parts start in place
    for frame in frames:  # ... and every intermediate state keeps them
        assert torch.equal(frame[:, known], frames[0][:, known])
    assert (frames[-1] != mask_id).all()
    assert [char_engine.tokenizer.decode(r) for r in frames[-1].tolist()] == done["text"]
    for text in done["text"]:
        assert text.startswith("To be, or ") and text[16:36] == " to be: that is the " and text.endswith(".")
    steps = [d for k, d in events if k == "step"]
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(a["nfe"] <= b["nfe"] and a["elapsed"] <= b["elapsed"] for a, b in itertools.pairwise(steps))
    assert done["nfe"] >= steps[-1]["nfe"] > 0 and len(done["nfe_per_row"]) == 2
    if mask_id is not None:  # intermediate states: the masked count falls step by step
        masked = [sum(s["masked"]) for s in steps]
        assert masked == sorted(masked, reverse=True) and masked[-1] == 0


def test_same_seed_same_trajectory(char_engine):
    payload = {"template": TEMPLATE, "steps": 6, "seed": 11}
    first, second = run(char_engine, payload), run(char_engine, payload)
    assert [d.get("changes") for _, d in first] == [d.get("changes") for _, d in second]


def test_a_stopped_generation_ends_with_an_error_event(char_engine):
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 3:
            raise Stopped("timed out after 0.1 s")

    events = run(char_engine, {"template": TEMPLATE, "steps": 50}, check)
    assert events[-1] == ("error", {"message": "timed out after 0.1 s"})
    assert sum(k == "step" for k, _ in events) == 2


@pytest.mark.parametrize("payload, message", [
    ({"steps": 0}, "steps must lie in [1, 256], got 0"),
    ({"steps": 257}, "steps must lie in [1, 256]"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"steps": True}, "steps must be an integer"),
    ({"sampler": "dpm"}, "unknown sampler 'dpm'; choose one of"),
    ({"num_samples": 4}, "num_samples must lie in [1, 3]"),
    ({"length": 65}, "length must lie in [1, 64]"),
    ({"temperature": math.nan}, "temperature must be finite"),
    ({"temperature": -1.0}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": 0}, "top_k"),
    ({"threshold": 0.9}, "threshold applies to the confidence sampler only"),
    ({"sampler": "confidence", "threshold": 1.5}, "threshold must lie in (0, 1)"),
    ({"sampler": "confidence", "block_length": 100}, "block_length must lie in [1, 45]"),
    ({"sampler": "confidence", "block_length": 1, "steps": 8}, "steps (8) must be at least the number of blocks"),
    ({"checkpoint": "/etc/passwd"}, "unknown field 'checkpoint'"),
    ({"template": "To bé_"}, "template: character 'é' at column 5"),
    ({"template": "no blanks here"}, "template: nothing to fill"),
    ({"seed": -1}, "seed must lie in [0, 2^63)"),
])
def test_invalid_requests_are_refused_with_a_clear_message(char_engine, payload, message):
    with pytest.raises(RequestError) as err:
        char_engine.parse({"template": TEMPLATE, **payload})
    assert err.value.status == 400
    assert message in str(err.value)


def test_body_must_be_an_object(char_engine):
    with pytest.raises(RequestError, match="JSON object"):
        char_engine.parse(["template"])


def test_info_describes_what_the_page_needs(char_engine):
    info = char_engine.info()
    assert info["modality"] == "text" and info["mask_id"] == info["vocab_size"] == len(info["tokens"])
    assert "".join(info["tokens"]) == "".join(char_engine.tokenizer.chars)
    assert info["limits"]["max_length"] == 64  # capped by the model's max_len
    assert all(ex["template"] == "" or "{" in ex["template"] or "_" in ex["template"] or ex["length"]
               for ex in info["examples"])
    assert info["samplers"] == ["euler", "tau_leaping", "tweedie", "ancestral", "first_hitting", "confidence"]


def test_protein_and_dna_models(protein_checkpoint, dna_checkpoint):
    for path, template in ((protein_checkpoint, "mkta{5}glv"), (dna_checkpoint, "atg{6}taa")):
        engine = Engine.load(path)
        assert engine.info()["modality"] in ("protein", "dna")
        done = run(engine, {"template": template, "steps": 4, "seed": 0})[-1][1]
        upper = template.upper()
        assert done["text"][0].startswith(upper[:upper.index("{")]) and done["text"][0].endswith(upper[-3:])


def test_image_models_draw_whole_images(pixel_checkpoint):
    engine = Engine.load(pixel_checkpoint)
    info = engine.info()
    assert info["modality"] == "image" and info["image"] == {"height": 6, "width": 6, "levels": 8}
    assert info["tokens"] == ["16", "48", "80", "112", "144", "176", "208", "240"]  # bin centres, id -> grey
    events = run(engine, {"sampler": "first_hitting", "num_samples": 2, "seed": 0})
    frames = replay(events)
    assert frames[-1].shape == (2, 36) and (frames[-1] < 8).all() and events[-1][1]["text"] == [None, None]
    with pytest.raises(RequestError, match="leave the template and the length empty"):
        engine.parse({"template": "ab"})


def test_uniform_models_offer_score_samplers_only(uniform_checkpoint):
    engine = Engine.load(uniform_checkpoint)
    assert engine.samplers == ["euler", "tau_leaping", "tweedie"] and engine.info()["mask_id"] is None
    with pytest.raises(RequestError, match="needs an absorbing"):
        engine.parse({"template": "to _", "sampler": "ancestral"})
    done = run(engine, {"template": "to be {4}", "sampler": "euler", "steps": 8, "seed": 0})[-1][1]
    assert done["text"][0].startswith("to be ") and len(done["text"][0]) == 10
    # a sampler's own refusal half-way (too few steps for this schedule) ends the stream with its message
    kind, data = run(engine, {"template": "to be {4}", "sampler": "tweedie", "steps": 4, "seed": 0})[-1]
    assert kind == "error" and "use more steps" in data["message"]


def test_the_autoregressive_baseline_is_refused(tmp_path):
    path = make_checkpoint(tmp_path / "ar", CharTokenizer.from_texts(["ab"]), 8, DiffusionConfig(kind="ar"), TINY)
    with pytest.raises(ValueError, match="autoregressive baseline"):
        Engine.load(path)


@pytest.mark.parametrize("limits, message", [
    (Limits(max_steps=0), "max_steps must be a positive integer"),
    (Limits(max_queue=-1), "max_queue must be a non-negative integer"),
    (Limits(timeout_s=0), "timeout_s must be positive"),
])
def test_bad_limits(char_engine, limits, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Engine(char_engine.model, char_engine.diffusion, char_engine.tokenizer, limits)
