"""From AR to blocks: how many steps a block-diffusion model started from a trained AR model (--init-from, as
SDAR and Fast-dLLM v2 do) needs to reach the bound of the same block model trained from scratch.

Three runs of the quickstart backbone (configs/quickstart.yaml: d=128, 4 layers, context 128, batch 32):
  1. the AR baseline for --ar-steps steps;
  2. the block model (model.block_size=--block-size) from scratch for --steps steps;
  3. the same block model initialised from run 1 for --steps steps.
Runs 2 and 3 record training-time validation every --eval-every steps: the t-DCE bound on the same seeded
spread of validation windows (the estimator `discdiff eval` uses). The answer is the first step at which
run 3's bound is at or below run 2's final bound; the compute of run 1 is reported beside it (its steps and
CPU seconds), because the AR run is not free.

    python benchmarks/ar_to_blocks.py --out docs/results/ar_to_blocks            # ~25 CPU-minutes
    python benchmarks/ar_to_blocks.py --quick --out /tmp/ar2b                     # CI smoke: seconds
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from discdiff.evaluation.results import pyplot  # noqa: E402
from discdiff.training import Trainer  # noqa: E402
from discdiff.training.config import apply_overrides, config_from_dict  # noqa: E402

PRESET = ROOT / "configs" / "quickstart.yaml"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/ar_to_blocks")
    p.add_argument("--runs-dir", default="runs/bench-ar-to-blocks")
    p.add_argument("--data", default="data/shakespeare")
    p.add_argument("--block-size", type=int, default=4)
    p.add_argument("--ar-steps", type=int, default=600)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="a tiny model and a few steps (CI smoke)")
    args = p.parse_args(argv)
    if args.quick:
        args.ar_steps, args.steps, args.eval_every = 6, 8, 4
    return args


def _overrides(args) -> list[str]:
    base = [f"data.train={args.data}", f"threads={args.threads}", "progress=false", "save_every=0",
            "eval_batches=4"]
    if args.data == "synthetic":
        base += ["data.vocab_size=16", "data.synthetic_tokens=20000"]
    if args.quick:
        base += ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "data.context=32", "batch_size=4",
                 "eval_batches=1"]
    return base


def train(args, name: str, extra: list[str], ar: bool = False) -> dict:
    out = pathlib.Path(args.runs_dir) / name
    import yaml

    preset = yaml.safe_load(PRESET.read_text(encoding="utf-8"))
    if ar:  # the AR baseline keeps the backbone and drops the diffusion keys that do not apply to it
        preset["diffusion"] = {"kind": "ar"}
    cfg = config_from_dict(apply_overrides(preset, [*_overrides(args), f"out_dir={out}", *extra]))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trainer = Trainer(cfg, overwrite=True)
    trainer.fit()
    trainer.close()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    curve = {r["step"]: r["val_bits_per_token"] for r in rows if "val_bits_per_token" in r}
    return {"name": name, "out": str(out), "steps": cfg.steps, "cpu_s": round(time.process_time() - cpu0, 1),
            "wall_s": round(time.perf_counter() - wall0, 1), "curve": sorted(curve.items())}


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    block = [f"model.block_size={args.block_size}", f"steps={args.steps}", f"eval_every={args.eval_every}"]
    ar = train(args, "ar", [f"steps={args.ar_steps}", "eval_every=0"], ar=True)
    scratch = train(args, f"blocks-{args.block_size}-scratch", block)
    init = train(args, f"blocks-{args.block_size}-from-ar", [*block, f"init_from={ar['out']}"])
    target = scratch["curve"][-1][1]
    reached = next((step for step, bits in init["curve"] if bits <= target), None)
    result = {"ar": ar, "scratch": scratch, "from_ar": init, "target_bits": target, "reached_at_step": reached,
              "load": [load0[0], os.getloadavg()[0]], "command": "python benchmarks/ar_to_blocks.py "
              + " ".join(argv if argv is not None else sys.argv[1:])}
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ar_to_blocks.json").write_text(json.dumps(result, indent=1))
    (out / "ar_to_blocks.md").write_text(markdown(result, args))
    plot(result, out / "ar_to_blocks.png", args)
    print(markdown(result, args))


def markdown(r: dict, args) -> str:
    steps = sorted({s for s, _ in r["scratch"]["curve"]} | {s for s, _ in r["from_ar"]["curve"]})
    a, b = dict(r["scratch"]["curve"]), dict(r["from_ar"]["curve"])
    lines = [f"Command: `{r['command']}` (load {r['load'][0]:.1f}-{r['load'][1]:.1f})", "",
             f"AR run: {r['ar']['steps']} steps, {r['ar']['cpu_s']} CPU s. Block size {args.block_size}; "
             "validation bound in bits/char (training-time validation: the t-DCE bound on the same seeded windows).",
             "", "| step | from scratch | from the AR model |", "| ---: | ---: | ---: |"]
    lines += [f"| {s} | {a.get(s, float('nan')):.3f} | {b.get(s, float('nan')):.3f} |" for s in steps]
    reached = r["reached_at_step"]
    lines += ["", f"From scratch, {r['scratch']['steps']} steps end at {r['target_bits']:.3f} bits/char "
              f"({r['scratch']['cpu_s']} CPU s); started from the AR model the block model "
              + (f"reaches it by step {reached}." if reached is not None else "does not reach it within the run.")]
    return "\n".join(lines) + "\n"


def plot(r: dict, path: pathlib.Path, args) -> None:
    plt = pyplot(path)
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for key, label in (("scratch", "from scratch"), ("from_ar", f"from AR ({r['ar']['steps']} AR steps)")):
        xs, ys = zip(*r[key]["curve"], strict=True) if r[key]["curve"] else ((), ())
        ax.plot(xs, ys, "o-", label=label)
    ax.set_xlabel("block-model training step")
    ax.set_ylabel("validation bound, bits/char")
    ax.set_title(f"block size {args.block_size}: AR initialisation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
