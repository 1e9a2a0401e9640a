import json
import math

import numpy as np
import pytest
import torch
from train_helpers import tiny_config

from discdiff.training import Trainer, TrainingDiverged, from_pretrained
from discdiff.training.checkpoint import latest_checkpoint, load_checkpoint, load_weights


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_learns_and_writes_everything(tiny, tmp_path):
    cfg = tiny("steps=60", "save_every=20", "eval_every=30", "log_every=10", "optim.lr=3e-3")
    result = Trainer(cfg).fit()
    rows = [r for r in metrics(tmp_path) if "loss" in r]
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.1
    assert all(r["tokens_per_s"] > 0 and r["skipped"] == 0 for r in rows)
    vals = [r["val_loss"] for r in metrics(tmp_path) if "val_loss" in r]
    assert len(vals) == 2 and math.isfinite(result["val_loss"])
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.name == "step_00000060"
    assert sorted(p.name for p in ckpt.iterdir()) == [  # no pickle: safetensors and JSON only
        "ema.safetensors", "manifest.json", "model.safetensors", "optimizer.safetensors", "rng_rank0.safetensors",
        "state.json"]
    assert len(list((tmp_path / "checkpoints").glob("step_*"))) == cfg.keep_checkpoints
    state = load_checkpoint(ckpt).state
    assert state["step"] == 60 and state["data"]["batch"] + state["data"]["epoch"] > 0


@pytest.mark.parametrize("tied", [False, True])
def test_pretrained_roundtrip_uses_ema_weights(tiny, tmp_path, tied):
    trainer = Trainer(tiny("steps=5", f"model.tie_weights={str(tied).lower()}"))
    trainer.fit()
    pre = from_pretrained(tmp_path / "pretrained")
    ema = load_weights(latest_checkpoint(tmp_path) / "ema.safetensors")
    for name, p in pre.model.named_parameters():
        torch.testing.assert_close(p, ema[name], rtol=0, atol=0)
    x = torch.randint(0, 12, (2, 32))
    with trainer.ema.swapped_in():
        expected = trainer.model.eval()(x, torch.rand(2))
    torch.testing.assert_close(pre.model(x, torch.rand(2)), expected, rtol=0, atol=0)
    assert pre.diffusion.graph.num_states == 13 and pre.vocab_size == 12


@pytest.mark.parametrize(
    "extra",
    [
        ["diffusion.kind=ar"],
        ["diffusion.parameterization=score", "diffusion.sedd_absorb_scale=true", "model.time_conditioning=true"],
        ["diffusion.graph=uniform", "diffusion.parameterization=score", "diffusion.schedule=geometric",
         "model.time_conditioning=true"],
        ["diffusion.objective=k_dce", "model.tie_weights=true"],
        ["diffusion.objective=lambda_dce", "model.dropout=0.1", "optim.grad_clip=0"],
    ],
    ids=["ar", "sedd-absorb", "sedd-uniform", "k_dce-tied", "lambda_dce-dropout"],
)
def test_every_recipe_trains(tiny, tmp_path, extra):
    result = Trainer(tiny("steps=4", "eval_batches=2", *extra)).fit()
    assert math.isfinite(result["loss"]) and math.isfinite(result["val_loss"])
    pre = from_pretrained(tmp_path / "pretrained")
    assert pre.is_ar == ("diffusion.kind=ar" in extra)


def test_nan_guard_skips_then_stops_without_poisoning(tiny, tmp_path):
    trainer = Trainer(tiny("steps=20", "save_every=2", "max_bad_steps=3"))
    good = trainer.objective

    def poisoned(model, x0, mask, t, gen):
        loss = good(model, x0, mask, t, gen)
        return loss * float("nan") if trainer.step >= 3 else loss

    trainer.objective = poisoned
    with pytest.raises(TrainingDiverged, match="3 consecutive steps"):
        trainer.fit()
    assert trainer.step == 5  # stopped in step 5; steps 3, 4, 5 were bad and none was applied
    saved = load_checkpoint(latest_checkpoint(tmp_path))
    assert saved.state["step"] == 4 and saved.state["bad_steps"] == 1
    for name, p in trainer.model.state_dict().items():  # unchanged since step 3, and finite
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, saved.model[name], rtol=0, atol=0)
    skipped = [r for r in metrics(tmp_path) if r.get("event") == "skipped_nonfinite"]
    assert [r["step"] for r in skipped] == [3, 4, 5]


def test_one_bad_step_is_skipped_and_training_continues(tiny, tmp_path):
    trainer = Trainer(tiny("steps=6"))
    good = trainer.objective
    trainer.objective = lambda *a: good(*a) * (float("inf") if trainer.step == 2 else 1.0)
    trainer.fit()
    rows = [r for r in metrics(tmp_path) if "skipped" in r]
    assert [r["skipped"] for r in rows] == [0, 0, 1, 0, 0, 0]
    assert trainer.bad_steps == 0


def test_a_poisoned_checkpoint_is_never_written(tiny, tmp_path):
    trainer = Trainer(tiny("steps=2"))
    trainer.fit()
    with torch.no_grad():
        trainer.model.head.weight[0, 0] = float("nan")
    trainer.step = 3
    with pytest.raises(RuntimeError, match="NaN"):
        trainer.save()
    assert latest_checkpoint(tmp_path).name == "step_00000002"


@pytest.mark.parametrize("records", ["pad", "eos"])
def test_records_with_padding(tmp_path, records):
    """A record dataset (proteins / DNA layout). records=pad: pads are masked out of the loss; records=eos
    (the default, LLaDA's recipe): [BOS] body EOS ... EOS, every position trained."""
    from discdiff.data import DNATokenizer, TokenWriter

    tok_dir = DNATokenizer().save(tmp_path / "tok")
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        with TokenWriter(tmp_path / "data" / split, 8, "records", tok_dir) as w:
            for _ in range(64):
                w.add(rng.integers(3, 7, size=rng.integers(5, 30)))
    cfg = tiny_config(tmp_path / "run", "steps=3", f"data.train={tmp_path}/data/train.json",
                      f"data.valid={tmp_path}/data/validation.json", "data.vocab_size=null", f"data.records={records}")
    result = Trainer(cfg).fit()
    assert math.isfinite(result["val_loss"])
    assert result["tokens"] < 3 * 32 * 32 if records == "pad" else result["tokens"] == 3 * 32 * 32
    layout = from_pretrained(tmp_path / "run" / "pretrained").config.get("records")
    assert (layout or {}).get("padding") == records and (records == "pad" or sum(layout["length_counts"]) > 0)
    assert (tmp_path / "run" / "pretrained" / "tokenizer").is_dir()
    assert from_pretrained(tmp_path / "run" / "pretrained").tokenizer is not None


def test_pad_tokens_never_reach_the_loss_through_attention():
    # Same real tokens, different tokens under the padding: the diffusion objective must not change,
    # which needs both the loss mask and the backbone's attention mask.
    import torch

    from discdiff.training import DiffusionConfig, ModelConfig, build_diffusion, build_model
    from discdiff.training.recipe import make_objective

    cfg = DiffusionConfig(objective="t_dce")
    diff = build_diffusion(cfg, 11)
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=1, n_heads=2), cfg, 11, 12)
    objective = make_objective(cfg, diff, 11)
    x0 = torch.randint(0, 11, (4, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.arange(12) < torch.tensor([12, 9, 5, 7])[:, None]
    other = torch.where(mask, x0, (x0 + 3) % 11)
    t = torch.full((4,), 0.6)
    a = objective(model, x0, mask, t, torch.Generator().manual_seed(2))
    b = objective(model, other, mask, t, torch.Generator().manual_seed(2))
    assert torch.allclose(a, b, atol=1e-5)
