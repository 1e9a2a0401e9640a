"""model.block_size end to end: the config refuses what cannot be a block model, `discdiff train` trains one,
from_pretrained rebuilds it as a BlockDiffusion, `discdiff eval` bounds it with an interval, `discdiff sample`
samples it."""

import json

import pytest
import torch
from train_helpers import cli_args, tiny_config

import discdiff as dd
from discdiff import cli
from discdiff.training import from_pretrained


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("overrides,message", [
    (["model.block_size=5"], "model.block_size=5 must divide data.context=32"),
    (["model.block_size=8", "diffusion.kind=ar"], "does not apply to diffusion.kind 'ar'"),
    (["model.block_size=8", "diffusion.parameterization=score"], "needs graph 'absorbing', parameterization"),
    (["model.block_size=8", "diffusion.objective=score_entropy"], "objective t_dce, lambda_dce or k_dce"),
    (["model.block_size=8", "model.time_conditioning=true"], "model.block_size needs a time-free model"),
    (["model.block_size=0"], "model.block_size must be >= 1"),
])
def test_the_config_refuses_what_cannot_be_a_block_model(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(tmp_path, *overrides)


def test_train_eval_and_sample_a_block_model_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    args = cli_args("steps=3", "model.block_size=8", "diffusion.objective=k_dce")
    assert cli.main(["train", *args, "--out", str(run)]) == 0
    pre = from_pretrained(run)
    assert isinstance(pre.diffusion, dd.BlockDiffusion) and pre.diffusion.block_size == 8
    assert pre.model.config.block_size == 8
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(run), "--data", "synthetic", "--max-batches", "1", "--draws", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    result = report["results"]["k_dce"]
    lo, hi = result["ci_nats_per_token"]
    assert result["exact"] is False and lo < result["nats_per_token"] < hi
    assert cli.main(["sample", "--model", str(run), "--num-samples", "2", "--length", "20", "--steps", "4"]) == 0
    assert capsys.readouterr().out.count("--- sample") == 2

    bad = ["sample", "--model", str(run), "--length", "20", "--sampler", "confidence", "--block-length", "4"]
    assert cli.main(bad) == 2  # the confidence sampler's blocks must be the model's own (8)
    err = capsys.readouterr().err.strip()
    assert "block_length=4 contradicts this block model's block_size=8" in err and "\n" not in err
