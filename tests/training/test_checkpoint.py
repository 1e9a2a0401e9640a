import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from damage import edit_json, flip_byte, poison_weights, safetensors_table, snapshot, truncate

from discdiff.training import config_to_dict, load_config
from discdiff.training.artifacts import CheckpointError, load_tree, save_tree
from discdiff.training.checkpoint import (
    find_resumable,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    save_weights,
    set_rng_state,
    verify_checkpoint,
)
from discdiff.training.distributed import Dist

REPO = Path(__file__).resolve().parents[2]


def test_tied_weights_are_stored_once(tmp_path):
    shared = torch.randn(4, 3)
    save_weights({"emb": shared, "head": shared, "other": torch.ones(2)}, tmp_path / "w.safetensors")
    got = load_weights(tmp_path / "w.safetensors")
    assert set(got) == {"emb", "head", "other"} and torch.equal(got["head"], shared)
    save_weights({"emb": shared, "head": shared.clone(), "other": torch.ones(2)}, tmp_path / "untied.safetensors")
    saved = (tmp_path / "untied.safetensors").stat().st_size - (tmp_path / "w.safetensors").stat().st_size
    assert saved >= 4 * 3 * 4 - 16  # the shared tensor's 48 bytes were written once (header sizes differ a little)


# The one exception: importing a published checkpoint that only exists as pytorch_model.bin (SEDD's and MDLM's
# Hub mixins may write one) goes through torch's restricted unpickler (weights_only=True: tensors and plain
# containers, no arbitrary objects). discdiff itself never writes or reads pickles of its own.
FOREIGN_PICKLE_READERS = {"discdiff/convert/common.py"}


def test_no_pickle_anywhere_in_the_library():
    sources = {p: p.read_text() for p in (REPO / "discdiff").rglob("*.py")}
    for pattern in (r"torch\.save\(", r"torch\.load\(", r"\bimport pickle\b", r"broadcast_object"):
        hits = [str(p.relative_to(REPO)) for p, text in sources.items() if re.search(pattern, text)]
        if pattern == r"torch\.load\(":
            allowed = [h for h in hits if h in FOREIGN_PICKLE_READERS
                       and all("weights_only=True" in line for line in (REPO / h).read_text().splitlines()
                               if "torch.load(" in line)]
            hits = [h for h in hits if h not in allowed]
        assert not hits, f"{pattern} in {hits}"


def test_rng_state_roundtrip_without_pickle(tmp_path):
    save_tree(rng_state(), tmp_path / "rng.safetensors")
    expected = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random(), random.gauss(0, 1))
    torch.manual_seed(123), np.random.seed(5), random.seed(7)
    set_rng_state(load_tree(tmp_path / "rng.safetensors"))
    got = (torch.rand(3), np.random.rand(3), np.random.randn(), random.random(), random.gauss(0, 1))
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2:] == got[2:]


def test_optimizer_state_roundtrip_is_exact(tmp_path):
    """AdamW state (int keys, tensors, tuples, floats) through safetensors + JSON: the next step is identical."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).square().sum().backward()
        opt.step()
    save_tree(opt.state_dict(), tmp_path / "opt.safetensors")
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=1.0)
    twin_opt.load_state_dict(load_tree(tmp_path / "opt.safetensors"))
    assert twin_opt.param_groups[0]["betas"] == (0.8, 0.95) and twin_opt.param_groups[0]["lr"] == 1e-2
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (twin, twin_opt)):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), twin.parameters(), strict=True))


def _state(step: int, steps: int = 100) -> dict:
    cfg = config_to_dict(load_config(None, [f"steps={steps}", "data.vocab_size=12"]))
    return {"step": step, "bad_steps": 0, "tokens_seen": 10 * step, "data": {"epoch": 0, "batch": step},
            "config": cfg, "world_size": 1, "vocab_size": 12}


def _save(out, step, value=1.0, keep=2, damaged=()):
    return save_checkpoint(out, step, Dist(), model_state={"w": torch.full((2,), value)},
                           ema_state={"w": torch.full((2,), value / 2)},
                           optim_state={"state": {0: {"step": torch.tensor(float(step))}}, "param_groups": []},
                           state=_state(step), keep=keep, damaged=damaged)


def test_manifest_lists_every_file_with_size_sha256_and_tensors(tmp_path):
    path = _save(tmp_path, 1)
    manifest = json.loads((path / "manifest.json").read_text())
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert sorted(manifest["files"]) == [f for f in files if f != "manifest.json"]
    for name, entry in manifest["files"].items():
        data = (path / name).read_bytes()
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["files"]["model.safetensors"]["tensors"] == {"w": {"dtype": "F32", "shape": [2]}}
    assert manifest["files"]["optimizer.safetensors"]["tensors"] == safetensors_table(path / "optimizer.safetensors")


def test_latest_only_ever_points_at_complete_checkpoints(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    _save(tmp_path, 1)
    (tmp_path / "checkpoints" / ".tmp-step_00000002").mkdir()  # a save killed half way
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    # a run that died half way through publishing step 3 (a directory without its manifest)
    (tmp_path / "checkpoints" / "step_00000003").mkdir()
    assert find_resumable(tmp_path).checkpoint.path.name == "step_00000001"
    _save(tmp_path, 3, value=2.0)
    assert latest_checkpoint(tmp_path).name == "step_00000003"
    assert torch.equal(load_checkpoint(latest_checkpoint(tmp_path)).model["w"], torch.full((2,), 2.0))
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    # saving the step `latest` already holds changes nothing
    _save(tmp_path, 3, value=5.0)
    assert torch.equal(load_checkpoint(latest_checkpoint(tmp_path)).model["w"], torch.full((2,), 2.0))
    _save(tmp_path, 4)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_00000003", "step_00000004"]


def test_temporary_folders_are_unique_per_process(tmp_path, monkeypatch):
    import discdiff.training.checkpoint as ckpt

    renamed = []
    real = ckpt.os.replace
    monkeypatch.setattr(ckpt.os, "replace", lambda a, b: (renamed.append(Path(a).name), real(a, b))[1])
    _save(tmp_path, 1)
    _save(tmp_path, 2)
    tmps = [n for n in renamed if n.startswith(".tmp-step_")]
    pattern = rf"\.tmp-step_\d{{8}}-{ckpt.os.getpid()}-[0-9a-f]{{12}}"
    assert len(tmps) == 2 and all(re.fullmatch(pattern, n) for n in tmps)


def test_pruning_deletes_only_what_a_newer_verified_checkpoint_supersedes(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step, keep=10)
    root = tmp_path / "checkpoints"
    _save(tmp_path, 6, keep=10)
    flip_byte(root / "step_00000006" / "model.safetensors")  # damaged, newer than the resume point
    flip_byte(root / "step_00000003" / "model.safetensors")  # damaged, older
    before = snapshot(root / "step_00000006")
    _save(tmp_path, 4, keep=2, damaged=("step_00000006", "step_00000003"))
    # kept: the new step 4 and the newest good one before it (2); the damaged 3 and the old 1 are superseded
    assert sorted(p.name for p in root.glob("step_*")) == ["step_00000002", "step_00000004", "step_00000006"]
    assert snapshot(root / "step_00000006") == before  # newer than what this process wrote: never touched


def test_a_damaged_checkpoint_at_the_same_step_is_replaced(tmp_path):
    _save(tmp_path, 1)
    flip_byte(tmp_path / "checkpoints" / "step_00000001" / "model.safetensors")
    _save(tmp_path, 1, value=3.0)
    assert torch.equal(load_checkpoint(tmp_path / "checkpoints" / "step_00000001").model["w"], torch.full((2,), 3.0))


DAMAGE = {
    "flipped weight byte": ("model.safetensors", flip_byte),
    "flipped optimizer byte": ("optimizer.safetensors", flip_byte),
    "truncated EMA": ("ema.safetensors", truncate),
    "deleted RNG": ("rng_rank0.safetensors", lambda p: p.unlink()),
    "deleted manifest": ("manifest.json", lambda p: p.unlink()),
    "garbled manifest": ("manifest.json", lambda p: p.write_text("{not json")),
    "NaN weights, resealed": ("model.safetensors", poison_weights),
    "negative step": ("state.json", lambda p: (edit_json(p, step=-5), _reseal(p))),
    "step beyond steps": ("state.json", lambda p: (edit_json(p, step=101), _reseal(p))),
    "config with an unknown key": ("state.json", lambda p: (edit_json(p, config={"stepz": 3}), _reseal(p))),
    "state not JSON": ("state.json", lambda p: (p.write_text("{"), _reseal(p))),
}


def _reseal(path):
    from damage import reseal

    reseal(path.parent)


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_every_damage_is_refused_in_one_line_naming_the_file(tmp_path, kind):
    path = _save(tmp_path, 1)
    name, damage = DAMAGE[kind]
    damage(path / name)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    message = str(e.value)
    assert "\n" not in message and str(path / name) in message, message


def test_latest_must_resolve_inside_its_own_run(tmp_path):
    _save(tmp_path / "other", 7, value=9.0)
    _save(tmp_path / "run", 2)
    (tmp_path / "run" / "checkpoints" / "latest").write_text("../../other/checkpoints/step_00000007\n")
    with pytest.raises(CheckpointError, match="not a checkpoint of this run"):
        latest_checkpoint(tmp_path / "run")
    found = find_resumable(tmp_path / "run")
    assert found.checkpoint.path == tmp_path / "run" / "checkpoints" / "step_00000002"
    assert any("latest" in line for line in found.skipped)


def test_verify_checkpoint_returns_the_validated_state(tmp_path):
    path = _save(tmp_path, 5)
    assert verify_checkpoint(path)["step"] == 5


def test_non_finite_tensors_are_refused(tmp_path):
    with pytest.raises(RuntimeError, match="NaN"):
        save_checkpoint(tmp_path, 1, Dist(), model_state={"w": torch.tensor([float("inf")])}, ema_state=None,
                        optim_state={}, state=_state(1))
    assert latest_checkpoint(tmp_path) is None
