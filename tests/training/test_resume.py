"""A real training process is SIGKILLed after it wrote a checkpoint; resuming must end bit-identical.

The victim is a `python -m discdiff train` subprocess. The uninterrupted reference and the resumed run
execute in this process (torch is already imported here, which saves seconds of start-up); the resume
goes through the same path as `discdiff train --resume --out DIR` (the config stored in the checkpoint).
"""

import json
import signal
import time

import torch
from train_helpers import cli_args, final_weights, launch, tiny_config

from discdiff.training import Trainer

STEPS = 40
EXTRA = (f"steps={STEPS}", "save_every=5", "keep_checkpoints=3", "model.dropout=0.1")


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    victim = launch(["train", *cli_args(*EXTRA), "--out", str(tmp_path / "victim")])
    latest = tmp_path / "victim" / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while not latest.exists():
        assert victim.poll() is None, victim.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    killed_at = int(latest.read_text().strip().split("_")[1])
    assert killed_at < STEPS, "the run finished before the kill; the test proved nothing"

    threads = torch.get_num_threads()
    try:
        resumed = Trainer.from_checkpoint_config(tmp_path / "victim")
        assert resumed.step == killed_at
        resumed.fit()
        Trainer(tiny_config(tmp_path / "ref", *EXTRA)).fit()
    finally:
        torch.set_num_threads(threads)

    for name in ("model", "ema"):
        ref, got = final_weights(tmp_path / "ref", name), final_weights(tmp_path / "victim", name)
        assert ref.keys() == got.keys()
        for key in ref:
            assert torch.equal(ref[key], got[key]), f"{name}:{key} differs after resume"

    def log(run):  # everything but the timings
        rows = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]

    assert log("ref") == log("victim")
