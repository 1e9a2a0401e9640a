"""2 CPU processes (gloo), DDP and FSDP2, reproduce one process with the same global batch.

The workers get exactly the environment `torchrun --nproc_per_node=2` gives its workers; launching them
directly saves torchrun's agent process (the cost of this test is mostly starting Python and torch).
"""

import json

import torch
from train_helpers import cli_args, final_weights, finish, launch_group, tiny_config

from discdiff.training import Trainer

COMMON = ("batch_size=8", "micro_batch_size=4", "steps=4", "eval_every=2", "eval_batches=2",
          "model.time_conditioning=true", "diffusion.parameterization=score")


def val_losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["val_loss"] for r in rows if "val_loss" in r]


def test_two_processes_match_one(tmp_path):
    groups = {p: launch_group(["train", *cli_args(*COMMON, f"parallel={p}"), "--out", str(tmp_path / p)], 2)
              for p in ("ddp", "fsdp")}
    threads = torch.get_num_threads()
    try:  # the single-process reference runs here meanwhile (accumulating 2 micro-batches of 4)
        Trainer(tiny_config(tmp_path / "one", *COMMON)).fit()
    finally:
        torch.set_num_threads(threads)
    for procs in groups.values():
        for proc in procs:
            finish(proc, timeout=240)
    for parallel in groups:
        for name in ("model", "ema"):
            a, b = final_weights(tmp_path / "one", name), final_weights(tmp_path / parallel, name)
            assert a.keys() == b.keys()
            worst = max((a[k] - b[k]).abs().max().item() for k in a)
            assert worst < 1e-5, f"{parallel} {name}: max difference {worst}"
        one, two = val_losses(tmp_path / "one"), val_losses(tmp_path / parallel)
        assert len(one) == len(two) == 2
        assert max(abs(x - y) for x, y in zip(one, two, strict=True)) < 1e-5
