"""The demo's label picker: the classes in /api/info, a label by name or id in a request, refusals."""

import pytest

import discdiff as dd
from discdiff.data.tokenizer import PixelTokenizer
from discdiff.nn import DiffusionTransformer, TransformerConfig
from discdiff.serve import Engine, RequestError


def _engine(num_classes):
    model = DiffusionTransformer(TransformerConfig(num_states=5, output_size=4, d_model=32, n_layers=1, n_heads=2,
                                                   max_len=4, num_classes=num_classes)).eval()
    cond = {"num_classes": 3, "label_names": ["dark", "mid", "light"], "condition_dropout": 0.1}
    cond = cond if num_classes else None
    return Engine(model, dd.Diffusion(dd.Absorbing(4), dd.LogLinear(), "denoiser"), PixelTokenizer(4, 2, 2),
                  conditioning=cond)


def test_a_class_conditional_engine_offers_its_classes_and_samples_one():
    engine = _engine(3)
    assert engine.info()["labels"] == ["dark", "mid", "light"]
    job = engine.parse({"label": "mid", "guidance": 1.5, "steps": 2, "seed": 0})
    assert job.label == 1 and job.options["guidance"] == 1.5
    events = []
    engine.run(job, lambda kind, data: events.append((kind, data)), lambda: None)
    assert events[-1][0] == "done"
    assert engine.parse({"label": 2}).label == 2


@pytest.mark.parametrize("num_classes, label, message", [
    (3, 3, "label 3 is outside this model's 3 classes"),
    (3, "sandal", "label 'sandal' is not a class of this model"),
    (None, 0, "label needs a class-conditional model"),
    (3, [1], "label must be a class name, an integer or null"),
])
def test_bad_labels_are_400s(num_classes, label, message):
    with pytest.raises(RequestError, match=message):
        _engine(num_classes).parse({"label": label})


def test_web_guidance_needs_a_trained_null_branch():
    engine = _engine(3)
    engine.conditioning["condition_dropout"] = 0.0
    with pytest.raises(RequestError, match="guidance \\(mode null\\) needs a model trained with condition dropout"):
        engine.parse({"label": 0, "guidance": 1.0})
    with pytest.raises(RequestError, match="guidance needs a prompt"):
        _engine(3).parse({"guidance": 1.0})


def test_an_unconditional_engine_has_no_picker():
    assert _engine(None).info()["labels"] is None
