"""A run cannot be lost: damaged checkpoints are named and skipped (never deleted), a directory holding a
run is never started over unasked, one process writes a run directory, and bad input is one line.

Each test drives the public entry points (`discdiff train` through cli.main, Trainer) the way a user does.
"""

import dataclasses
import json
import signal
import time

import pytest
import torch
from damage import edit_json, flip_byte, poison_weights, reseal, same_tensors, snapshot
from train_helpers import cli_args, launch, tiny_config

from discdiff import cli
from discdiff.training import Trainer
from discdiff.training.checkpoint import load_weights

STEPS = ("steps=8", "save_every=2", "keep_checkpoints=4")


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def train(*args) -> int:
    return cli.main(["train", *args])


def ckpt(run, step):
    return run / "checkpoints" / f"step_{step:08d}"


@pytest.fixture
def finished_run(tmp_path):
    """A finished 8-step run with checkpoints at steps 2, 4, 6, 8, and its final weights."""
    run = tmp_path / "run"
    assert train(*cli_args(*STEPS), "--out", str(run)) == 0
    return run, load_weights(ckpt(run, 8) / "model.safetensors")


DAMAGE = {
    "flipped weight byte": lambda d: flip_byte(d / "model.safetensors"),
    "NaN weights": lambda d: poison_weights(d / "model.safetensors"),
    "deleted RNG file": lambda d: next(d.glob("rng_rank0.*")).unlink(),
    "negative step": lambda d: (edit_json(d / "state.json", step=-5), reseal(d)),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_newest_checkpoint_is_named_skipped_and_kept(finished_run, kind, capsys):
    run, final = finished_run
    DAMAGE[kind](ckpt(run, 8))
    damaged = snapshot(ckpt(run, 8))
    capsys.readouterr()
    trainer = Trainer.from_checkpoint_config(run)
    out = capsys.readouterr().out
    assert trainer.step == 6, out
    assert "step_00000008" in out and "damaged" in out
    assert snapshot(ckpt(run, 8)) == damaged  # kept until this run writes a verified step 8
    assert all(ckpt(run, s).is_dir() for s in (2, 4, 6))
    trainer.fit()  # steps 7 and 8 again, bit-identical to the first time
    assert same_tensors(load_weights(ckpt(run, 8) / "model.safetensors"), final)


def test_resume_with_every_checkpoint_damaged_refuses_and_deletes_nothing(finished_run, capsys):
    run, _ = finished_run
    for step in (2, 4, 6, 8):
        flip_byte(ckpt(run, step) / "model.safetensors")
    before = snapshot(run / "checkpoints"), snapshot(run / "pretrained")
    assert train("--resume", "--out", str(run)) == 2
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert train(*cli_args(*STEPS), "--resume", "--out", str(run)) == 2  # with a config given, too
    assert (snapshot(run / "checkpoints"), snapshot(run / "pretrained")) == before


def test_a_directory_holding_a_run_is_not_started_over_unasked(finished_run, capsys):
    run, _ = finished_run
    before = snapshot(run)
    assert train(*cli_args("steps=3"), "--out", str(run)) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert snapshot(run) == before
    assert train(*cli_args("steps=3"), "--out", str(run), "--overwrite") == 0
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_00000003"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]  # the old run's metrics went with it


def test_resume_without_any_checkpoint_says_so(tmp_path, capsys):
    empty = tmp_path / "empty"
    assert train("--out", str(empty), "--resume") == 2
    assert f"no checkpoint in {empty}" in capsys.readouterr().err
    config = tmp_path / "tiny.yaml"
    config.write_text("steps: 2\n")
    assert train("--config", str(config), *cli_args("steps=2"), "--out", str(empty), "--resume") == 0
    assert "starting a new run" in capsys.readouterr().out
    assert (empty / "pretrained" / "model.safetensors").is_file()


def test_a_second_process_on_the_same_directory_fails_at_once(tmp_path):
    run = tmp_path / "run"
    first = launch(["train", *cli_args("steps=100000", "save_every=5"), "--out", str(run)])
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "latest").exists():
            assert first.poll() is None, first.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        cfg = tiny_config(run, "steps=100000", "save_every=5")
        with pytest.raises(ValueError, match=f"process {first.pid} is training into this directory"):
            Trainer(cfg, resume=True)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    trainer = Trainer(cfg, resume=True)  # the OS released the dead process's lock: no stale lock
    assert trainer.step > 0
    trainer.close()


def test_a_torn_last_metrics_line_does_not_block_resume(finished_run, capsys):
    run, _ = finished_run
    metrics = run / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 9, "loss": 2.3')  # killed while writing the line
    assert train("--resume", "--out", str(run), "--set", "steps=9") == 0
    assert "torn" in capsys.readouterr().out
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 10))
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([*lines[:2], "garbage", *lines[2:]]) + "\n")
    assert train("--resume", "--out", str(run), "--set", "steps=10") == 2
    assert f"{metrics}:3" in capsys.readouterr().err


def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert train(*cli_args("steps=2"), "--out", str(target)) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err and len(err.strip().splitlines()) == 1
    assert target.read_text() == "keep me"


def test_zero_steps_trains_nothing_and_writes_nothing(tiny, tmp_path):
    cfg = tiny("steps=2")
    with pytest.raises(ValueError, match="steps"):
        Trainer(dataclasses.replace(cfg, steps=0)).fit()
    assert not (tmp_path / "pretrained").exists() and not (tmp_path / "checkpoints").exists()
