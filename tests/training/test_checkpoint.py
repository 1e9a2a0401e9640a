import random

import numpy as np
import pytest
import torch

from discdiff.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    save_weights,
    set_rng_state,
)
from discdiff.training.distributed import Dist


def test_tied_weights_are_stored_once(tmp_path):
    shared = torch.randn(4, 3)
    save_weights({"emb": shared, "head": shared, "other": torch.ones(2)}, tmp_path / "w.safetensors")
    got = load_weights(tmp_path / "w.safetensors")
    assert set(got) == {"emb", "head", "other"} and torch.equal(got["head"], shared)
    save_weights({"emb": shared, "head": shared.clone(), "other": torch.ones(2)}, tmp_path / "untied.safetensors")
    saved = (tmp_path / "untied.safetensors").stat().st_size - (tmp_path / "w.safetensors").stat().st_size
    assert saved >= 4 * 3 * 4 - 16  # the shared tensor's 48 bytes were written once (header sizes differ a little)


def test_rng_state_roundtrip(tmp_path):
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def _save(out, step, value=1.0):
    return save_checkpoint(out, step, Dist(), model_state={"w": torch.full((2,), value)}, ema_state=None,
                           optim_state={"state": {}, "param_groups": []}, state={"step": step}, keep=2)


def test_latest_only_ever_points_at_complete_checkpoints(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    _save(tmp_path, 1)
    (tmp_path / "checkpoints" / ".tmp-step_00000002").mkdir()  # a save killed half way
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    # a run that died after publishing step 3 but before updating `latest`
    (tmp_path / "checkpoints" / "step_00000003").mkdir()
    _save(tmp_path, 3, value=2.0)
    assert latest_checkpoint(tmp_path).name == "step_00000003"
    assert torch.equal(load_checkpoint(latest_checkpoint(tmp_path))["model"]["w"], torch.full((2,), 2.0))
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    # saving the step `latest` already holds changes nothing
    _save(tmp_path, 3, value=5.0)
    assert torch.equal(load_checkpoint(latest_checkpoint(tmp_path))["model"]["w"], torch.full((2,), 2.0))
    _save(tmp_path, 4)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_00000003", "step_00000004"]


def test_non_finite_tensors_are_refused(tmp_path):
    with pytest.raises(RuntimeError, match="NaN"):
        save_checkpoint(tmp_path, 1, Dist(), model_state={"w": torch.tensor([float("inf")])}, ema_state=None,
                        optim_state={}, state={"step": 1})
    assert latest_checkpoint(tmp_path) is None
