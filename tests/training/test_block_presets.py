"""The block presets load and train, and `discdiff sample --max-length` generates a block model past its context,
stopping at EOS; --max-length on other models is a clear error."""

from pathlib import Path

import pytest
import torch
from train_helpers import TINY, cli_args

import discdiff as dd
from discdiff import cli
from discdiff.training import Trainer, from_pretrained, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BLOCK_PRESETS = {"shakespeare-char-blocks": 16, "dna-blocks": 32, "proteins-blocks": 16}


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name,block_size", BLOCK_PRESETS.items())
def test_block_presets_load_and_train_two_steps(tmp_path, name, block_size):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.block_size == block_size and cfg.data.context % block_size == 0
    small = [t for t in TINY if not t.startswith(("data.context", "model.cond_dim"))]
    cfg = load_config(CONFIGS / f"{name}.yaml", [*small, "data.train=synthetic", "data.valid=null",
                                                  f"data.context={2 * block_size}", "steps=2", "batch_size=4",
                                                  "save_every=0", f"out_dir={tmp_path}"])
    Trainer(cfg).fit()
    pre = from_pretrained(tmp_path)
    assert isinstance(pre.diffusion, dd.BlockDiffusion) and pre.model.config.block_size == block_size


@pytest.fixture(scope="module")
def block_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("blocks") / "run"
    assert cli.main(["train", *cli_args("steps=2", "model.block_size=8"), "--out", str(run)]) == 0
    return run


def test_sample_max_length_goes_past_the_context(block_run, capsys, tmp_path):
    out = tmp_path / "s.jsonl"
    assert cli.main(["sample", "--model", str(block_run), "--num-samples", "2", "--max-length", "70",
                     "--steps", "2", "--out", str(out)]) == 0
    rows = [__import__("json").loads(line) for line in out.read_text().splitlines()]
    assert [len(r["ids"]) for r in rows] == [70, 70]  # synthetic data has no tokenizer, so no EOS: N tokens


@pytest.mark.parametrize("extra,message", [
    (["--length", "20"], "give --length or --max-length, not both"),
    (["--template", "a{3}"], "use it with --prompt, not --template"),
])
def test_sample_max_length_errors_on_a_block_model(block_run, extra, message):
    with pytest.raises(ValueError, match=message):
        cli.main(["sample", "--model", str(block_run), "--max-length", "40", *extra, "--debug"])


def test_sample_max_length_on_a_full_sequence_model_is_an_error(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", *cli_args("steps=1"), "--out", str(run)]) == 0
    capsys.readouterr()
    assert cli.main(["sample", "--model", str(run), "--max-length", "40"]) != 0
    assert "--max-length needs a block diffusion model" in capsys.readouterr().err
