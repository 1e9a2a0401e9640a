from dataclasses import fields
from pathlib import Path

import pytest

import discdiff as dd
from discdiff.nn import TransformerConfig
from discdiff.training import (
    ModelConfig,
    TrainConfig,
    build_diffusion,
    build_model,
    config_from_dict,
    load_config,
    lr_at,
    valid_keys,
)

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=1e-3", "model.n_layers=4", "optim.betas=[0.9, 0.95]",
                             "diffusion.objective=null", "model.time_conditioning=true", "data.train=x.npy"])
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.model.n_layers == 4
    assert cfg.optim.betas == (0.9, 0.95)
    assert cfg.diffusion.objective is None
    assert cfg.model.time_conditioning is True
    assert cfg.data.train == "x.npy"


@pytest.mark.parametrize(
    "override, suggestion",
    [("model.n_layer=3", "model.n_layers"), ("modle.d_model=3", "model.d_model"), ("n_layers=3", "model.n_layers"),
     ("optim.learning_rate=1", None)],
)
def test_unknown_key_suggests_the_closest(override, suggestion):
    with pytest.raises(ValueError, match="unknown config key") as err:
        load_config(None, [override])
    if suggestion:
        assert f"did you mean {suggestion!r}" in str(err.value)


def test_unknown_key_in_a_file_and_bad_types(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  n_layer: 3\n")
    with pytest.raises(ValueError, match="model.n_layers"):
        load_config(path)
    with pytest.raises(ValueError, match="model.n_layers must be int"):
        load_config(None, ["model.n_layers=abc"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["model.n_layers"])
    with pytest.raises(ValueError, match="mapping"):
        config_from_dict({"model": 3})


def test_model_config_is_a_subset_of_transformer_config():
    names = {f.name for f in fields(TransformerConfig)}
    assert {f.name for f in fields(ModelConfig)} <= names
    assert "model.d_model" in valid_keys() and "steps" in valid_keys()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_presets_build(path):
    cfg = load_config(path)
    vocab = 20
    model = build_model(cfg.model, cfg.diffusion, vocab, cfg.data.context)
    diff = build_diffusion(cfg.diffusion, vocab)
    assert isinstance(diff, dd.Autoregressive) == (cfg.diffusion.kind == "ar")
    if isinstance(diff, dd.Diffusion):
        assert model.config.num_states == diff.graph.num_states
        assert (cfg.diffusion.objective or diff.default_objective) in diff.objectives


def test_presets_cover_the_recipes():
    names = {p.stem for p in CONFIGS}
    assert {"shakespeare-char-masked", "shakespeare-char-sedd-absorb", "shakespeare-char-sedd-uniform",
            "shakespeare-char-ar", "proteins", "dna", "images"} <= names


def test_lr_schedule():
    cfg = TrainConfig(steps=110)
    cfg.optim.warmup_steps, cfg.optim.lr, cfg.optim.min_lr_ratio = 10, 1.0, 0.1
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 110))
