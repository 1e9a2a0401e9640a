"""Hugging Face out: a discdiff pretrained/ directory loads through transformers' Auto factories (no remote
code) as DiscdiffModel, whose forward gives exactly the logits of discdiff's own network."""

import json

import pytest
import torch
import transformers
from hf_helpers import save_tiny

import discdiff  # noqa: F401  (registers model_type "discdiff" with the Auto factories)
from discdiff.training import DiffusionConfig, ModelConfig, from_pretrained
from discdiff.training.artifacts import ManifestWriter

TINY = dict(d_model=16, n_layers=2, n_heads=2, cond_dim=8)
CASES = {
    "time-free, tied head": (ModelConfig(**TINY, tie_weights=True), DiffusionConfig()),
    "time-conditioned, biases": (ModelConfig(**TINY, time_conditioning=True, bias=True), DiffusionConfig()),
    "SEDD score head": (ModelConfig(**TINY, time_conditioning=True),
                        DiffusionConfig(parameterization="score", sedd_absorb_scale=True)),
    "uniform graph": (ModelConfig(**TINY, norm="rmsnorm"), DiffusionConfig(graph="uniform", parameterization="score")),
    "block model": (ModelConfig(**TINY, block_size=4), DiffusionConfig()),
    "class labels": (ModelConfig(**TINY, num_classes=3), DiffusionConfig()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_automodel_gives_discdiffs_logits_exactly(tmp_path, case):
    model_cfg, diffusion = CASES[case]
    native = save_tiny(tmp_path / "m", model_cfg, diffusion)
    config = transformers.AutoConfig.from_pretrained(tmp_path / "m")
    hf = transformers.AutoModel.from_pretrained(tmp_path / "m")
    assert type(config).__name__ == "DiscdiffConfig" and type(hf).__name__ == "DiscdiffModel"
    assert isinstance(hf, transformers.PreTrainedModel) and not hf.training
    gen = torch.Generator().manual_seed(1)
    x_t = torch.randint(0, native.config.num_states, (3, 16), generator=gen)
    sigma_bar = torch.rand(3, generator=gen) + 0.1
    label = torch.tensor([0, 2, 3]) if model_cfg.num_classes else None
    with torch.no_grad():
        expected = native(x_t, sigma_bar, label=label)
        got = hf(x_t, sigma_bar, label=label)
        also = hf(input_ids=x_t, sigma_bar=sigma_bar, label=label)  # transformers' argument names
    assert torch.equal(got, expected) and torch.equal(also, expected)
    if model_cfg.tie_weights:
        assert hf.net.head.weight is hf.net.tok_emb.weight


def test_config_json_names_the_model_and_pretrained_still_loads(tmp_path):
    save_tiny(tmp_path / "m", ModelConfig(**TINY))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_type"] == "discdiff" and config["architectures"] == ["DiscdiffModel"]
    from_pretrained(tmp_path / "m")  # the manifest still verifies; the extra keys change nothing


def test_a_directory_saved_before_these_keys_still_loads(tmp_path):
    """Directories written before model_type / architectures existed load with from_pretrained as before."""
    native = save_tiny(tmp_path / "m", ModelConfig(**TINY))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    del config["model_type"], config["architectures"]
    writer = ManifestWriter(tmp_path / "m")  # rewrite the directory as an old save_pretrained wrote it
    writer.write("config.json", json.dumps(config))
    writer.add_existing("model.safetensors")
    writer.finish()
    pre = from_pretrained(tmp_path / "m")
    x_t = torch.randint(0, 8, (2, 16))
    assert torch.equal(pre.model(x_t), native(x_t))


def test_transformers_own_save_and_reload_keeps_the_logits(tmp_path):
    """model.save_pretrained / push_to_hub from the loaded model: transformers' layout, same network."""
    native = save_tiny(tmp_path / "m", ModelConfig(**TINY, tie_weights=True, num_classes=2))
    transformers.AutoModel.from_pretrained(tmp_path / "m").save_pretrained(tmp_path / "hf")
    again = transformers.AutoModel.from_pretrained(tmp_path / "hf")
    x_t, label = torch.randint(0, 8, (2, 16)), torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(again(x_t, label=label), native(x_t, label=label))
