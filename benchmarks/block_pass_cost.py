"""What block diffusion's one-pass training costs: a training step (loss, backward, AdamW) of the 2L pass over
[x_t ; x_0] with the block mask (BlockDiffusion, model.block_size = b) against the plain L pass of full-sequence
masked diffusion (Diffusion, no mask), same weights, same sizes, interleaved in one process.

    PYTHONPATH=. python benchmarks/block_pass_cost.py                       # d=128, 4 layers, L=256, batch 16
    PYTHONPATH=. python benchmarks/block_pass_cost.py --d-model 256 --layers 6 --batch 32 --repeats 5

Prints one JSON line: median seconds per step of each, their ratio, and the load average before and after
(the host is shared; compare the ratio, not the absolute times).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

import discdiff as dd
from discdiff.nn import DiffusionTransformer, TransformerConfig


def step_seconds(model, diffusion, x0, generator) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    loss = diffusion.loss(model, x0, "t_dce", generator=generator).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    graph, schedule = dd.Absorbing(args.vocab), dd.LogLinear()
    base = dict(num_states=args.vocab + 1, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
                max_len=args.length)
    torch.manual_seed(0)
    full = DiffusionTransformer(TransformerConfig(**base)).train()
    block = DiffusionTransformer(TransformerConfig(**base, block_size=args.block_size)).train()
    block.load_state_dict(full.state_dict())
    runs = {"plain_L": (full, dd.Diffusion(graph, schedule, "denoiser")),
            "block_2L": (block, dd.BlockDiffusion(graph, schedule, args.block_size))}
    x0 = torch.randint(0, args.vocab, (args.batch, args.length), generator=torch.Generator().manual_seed(0))
    load_before = os.getloadavg()
    times = {name: [] for name in runs}
    for r in range(args.repeats + 1):  # the first round warms up
        for name, (model, diffusion) in runs.items():
            seconds = step_seconds(model, diffusion, x0, torch.Generator().manual_seed(r))
            if r:
                times[name].append(seconds)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(json.dumps({"config": vars(args), "median_step_s": median, "ratio_2L_over_L":
                      median["block_2L"] / median["plain_L"], "loadavg_before": load_before,
                      "loadavg_after": os.getloadavg(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
