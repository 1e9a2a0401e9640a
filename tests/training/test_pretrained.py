"""from_pretrained takes a pretrained/, a run or a checkpoint directory, and trusts none of them unverified."""

import json
import shutil

import pytest
import torch
from damage import flip_byte, poison_weights, reseal
from train_helpers import cli_args

from discdiff import cli
from discdiff.training import Trainer, from_pretrained
from discdiff.training.checkpoint import load_weights


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def params(pre) -> dict:
    return {n: p.detach() for n, p in pre.model.named_parameters()}


@pytest.mark.parametrize("tied", [False, True])
def test_a_checkpoint_directory_loads_its_ema_weights(tiny, tmp_path, tied):
    Trainer(tiny("steps=4", "save_every=2", f"model.tie_weights={str(tied).lower()}")).fit()
    step2, step4 = (tmp_path / "checkpoints" / f"step_0000000{s}" for s in (2, 4))
    ema2 = load_weights(step2 / "ema.safetensors")
    got = params(from_pretrained(step2))
    assert got.keys() == ema2.keys() and all(torch.equal(got[k], ema2[k]) for k in got)
    final = params(from_pretrained(tmp_path / "pretrained"))  # the EMA weights at step 4
    at4 = params(from_pretrained(step4))
    assert all(torch.equal(final[k], at4[k]) for k in final)
    assert not torch.equal(got["blocks.0.attn.qkv.weight"], at4["blocks.0.attn.qkv.weight"])


def test_without_ema_a_checkpoint_loads_its_raw_weights(tiny, tmp_path):
    Trainer(tiny("steps=2", "optim.ema_decay=0")).fit()
    step = tmp_path / "checkpoints" / "step_00000002"
    raw = load_weights(step / "model.safetensors")
    pre = from_pretrained(step)
    assert all(torch.equal(t, raw[k]) for k, t in pre.model.state_dict().items())
    assert pre.vocab_size == 12 and pre.config["context"] == 32 and pre.source == step


def test_a_run_directory_uses_pretrained_or_else_its_newest_verified_checkpoint(tiny, tmp_path):
    Trainer(tiny("steps=4", "save_every=2", "keep_checkpoints=3")).fit()
    assert from_pretrained(tmp_path).source == tmp_path / "pretrained"
    shutil.rmtree(tmp_path / "pretrained")
    assert from_pretrained(tmp_path).source == tmp_path / "checkpoints" / "step_00000004"
    flip_byte(tmp_path / "checkpoints" / "step_00000004" / "ema.safetensors")
    with pytest.warns(UserWarning, match="step_00000004 is damaged"):
        assert from_pretrained(tmp_path).source == tmp_path / "checkpoints" / "step_00000002"


def test_sample_from_a_training_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *cli_args("steps=2", "save_every=1"), "--out", str(run)]) == 0
    model = run / "checkpoints" / "step_00000001"
    assert cli.main(["sample", "--model", str(model), "--num-samples", "2", "--length", "8", "--steps", "4"]) == 0
    assert capsys.readouterr().out.count("--- sample") == 2


DAMAGE = {
    "flipped weight byte": lambda d: flip_byte(d / "model.safetensors"),
    "NaN weights": lambda d: poison_weights(d / "model.safetensors"),
    "no manifest": lambda d: (d / "manifest.json").unlink(),
    "config edited": lambda d: (d / "config.json").write_text((d / "config.json").read_text().replace("32", "48")),
    "config not a pretrained one": lambda d: ((d / "config.json").write_text('{"format": "x"}'), reseal(d)),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_pretrained_directories_are_refused_naming_the_file(tiny, tmp_path, kind, capsys):
    Trainer(tiny("steps=2")).fit()
    pretrained = tmp_path / "pretrained"
    DAMAGE[kind](pretrained)
    with pytest.raises(ValueError, match=str(pretrained)):  # a CheckpointError
        from_pretrained(pretrained)
    assert cli.main(["eval", "--model", str(pretrained), "--data", "synthetic", "--max-batches", "1"]) == 2
    err = capsys.readouterr().err
    assert str(pretrained) in err and len(err.strip().splitlines()) == 1


def test_pretrained_config_holds_only_what_is_read(tiny, tmp_path):
    Trainer(tiny("steps=1")).fit()
    config = json.loads((tmp_path / "pretrained" / "config.json").read_text())
    assert set(config) == {"format", "version", "vocab_size", "context", "model", "diffusion",
                           "model_type", "architectures"}  # the last two: transformers' AutoConfig / AutoModel
    manifest = json.loads((tmp_path / "pretrained" / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors"]


def test_a_checkpoint_carries_its_tokenizer(tmp_path):
    import numpy as np
    from train_helpers import tiny_config

    from discdiff.data import DNATokenizer, TokenWriter

    tok_dir = DNATokenizer().save(tmp_path / "tok")
    with TokenWriter(tmp_path / "data" / "train", 8, "records", tok_dir) as w:
        for length in np.random.default_rng(0).integers(5, 30, size=64):
            w.add(np.full(length, 4))
    cfg = tiny_config(tmp_path / "run", "steps=2", f"data.train={tmp_path}/data/train.json", "data.vocab_size=null")
    Trainer(cfg).fit()
    pre = from_pretrained(tmp_path / "run" / "checkpoints" / "step_00000002")
    assert pre.tokenizer is not None and pre.tokenizer.decode([4, 4]) == DNATokenizer().decode([4, 4])
