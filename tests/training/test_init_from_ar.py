"""An autoregressive run may start a block-diffusion run (--init-from), as SDAR and Fast-dLLM v2 do, or a
full-sequence one (DiffuLLaMA, Dream): the same tensors, a different attention pattern. Any other architecture
difference is still refused by name."""

import pytest
import torch
from train_helpers import tiny_config

from discdiff.training import Trainer, from_pretrained


@pytest.fixture(scope="module")
def ar_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ar") / "run"
    cfg = tiny_config(out, "diffusion.kind=ar", "model.time_conditioning=false", "steps=2")
    Trainer(cfg).fit()
    return out


def test_a_block_model_starts_from_an_ar_models_weights(ar_run, tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "b", "model.block_size=4", "model.time_conditioning=false",
                                  "steps=2", f"init_from={ar_run}"))
    assert trainer.model.config.block_size == 4 and not trainer.model.config.causal
    source = from_pretrained(ar_run).model.state_dict()
    mine = trainer.model.state_dict()
    assert source.keys() == mine.keys()
    assert all(torch.equal(v, mine[k]) for k, v in source.items())
    trainer.fit()  # and it trains from there
    assert trainer.step == 2
    trainer.close()


def test_a_full_sequence_model_starts_from_an_ar_models_weights(ar_run, tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "m", "model.time_conditioning=false", "steps=2", f"init_from={ar_run}"))
    assert trainer.model.config.block_size is None and not trainer.model.config.causal
    source, mine = from_pretrained(ar_run).model.state_dict(), trainer.model.state_dict()
    assert source.keys() == mine.keys() and all(torch.equal(v, mine[k]) for k, v in source.items())
    trainer.close()


def test_a_time_conditioned_model_from_an_ar_model_is_refused_by_name(ar_run, tmp_path):
    with pytest.raises(ValueError, match=r"architecture differs .*time_conditioning False vs True"):
        Trainer(tiny_config(tmp_path / "t", "model.time_conditioning=true", "steps=2", f"init_from={ar_run}"))


def test_an_ar_model_into_a_block_model_of_another_width_is_still_refused(ar_run, tmp_path):
    with pytest.raises(ValueError, match=r"d_model 32 vs 64"):
        Trainer(tiny_config(tmp_path / "w", "model.block_size=4", "model.time_conditioning=false",
                            "model.d_model=64", "steps=2", f"init_from={ar_run}"))
