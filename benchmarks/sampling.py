"""Sampling cost: model calls and wall-clock per sampler and step count, and each sampler's own overhead.

For every (sampler, steps) pair this draws a batch with a small DiffusionTransformer (untrained unless
``--checkpoint`` is given: cost does not depend on the weights, except through caching for the
ancestral sampler, whose calls depend on how many rows change per step) and records

* ``nfe`` (model calls per batch) and ``nfe_per_row`` (mean evaluations per sequence),
* ``wall_s``: the whole sampling call; ``model_s``: time spent inside the model,
* ``overhead_vs_forward``: (wall - model) per step, divided by the mean time of one model call.
  The samplers' own work (draws, rates, caching bookkeeping) should stay under 10% of a forward.

Writes ``sampling.json`` and ``sampling.md`` to ``--out``. ``--quick`` runs a tiny grid for CI.

    python benchmarks/sampling.py --out out/bench            # the full grid (a few minutes on 2 cores)
    python benchmarks/sampling.py --quick --out /tmp/bench   # seconds
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import torch

import discdiff as dd
from discdiff.evaluation.results import pyplot, save_results
from discdiff.model_call import is_time_free
from discdiff.nn import DiffusionTransformer, TransformerConfig


class TimedModel(torch.nn.Module):
    """Wraps a model and accumulates the wall-clock spent in its forward calls."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.time_free = is_time_free(model)  # the wrapper hides .config: declare what the model is
        self.seconds = 0.0
        self.calls = 0

    def forward(self, x_t, sigma_bar):
        start = time.perf_counter()
        out = self.model(x_t, sigma_bar)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def build(vocab: int, width: int, layers: int, length: int, score: bool) -> DiffusionTransformer:
    cfg = TransformerConfig(
        num_states=vocab + 1,
        d_model=width,
        n_layers=layers,
        n_heads=max(width // 64, 1),
        max_len=length,
        time_conditioning=score,
        sedd_absorb_scale=score,
    )
    return DiffusionTransformer(cfg).eval()


def run(args) -> list[dict]:
    torch.manual_seed(0)
    graph = dd.Absorbing(args.vocab)
    models = {
        p: TimedModel(build(args.vocab, args.width, args.layers, args.length, p == "score"))
        for p in ("score", "denoiser")
    }
    plan = [
        ("euler", "score", {}),
        ("tau_leaping", "score", {}),
        ("tweedie", "score", {}),
        ("ancestral", "denoiser", {}),
        ("ancestral", "denoiser", {"categorical": "gumbel_fp32"}),
        ("first_hitting", "denoiser", {}),
        ("confidence", "denoiser", {}),
        ("confidence", "denoiser", {"threshold": 0.9, "block_length": args.length // 4}),
    ]
    for sampler, param, extra in plan:  # warm-up: first calls pay one-off allocation and dispatch costs
        dd.Diffusion(graph, dd.LogLinear(), param).sample(models[param], 2, args.length, sampler, steps=2, **extra)
    rows = []
    for sampler, param, extra in plan:
        diff = dd.Diffusion(graph, dd.LogLinear(), param)
        for steps in args.steps:
            if sampler == "first_hitting" and steps != args.steps[0]:
                continue  # first_hitting ignores steps: one call per token
            model = models[param]
            timings = []
            for _ in range(args.repeats):  # the host drifts: keep the least disturbed of a few runs
                model.seconds, model.calls = 0.0, 0
                start = time.perf_counter()
                out = diff.sample(model, args.batch, args.length, sampler, steps=steps,
                                  generator=torch.Generator().manual_seed(1), **extra)
                timings.append((time.perf_counter() - start, model.seconds, model.calls))
            wall, model_s, calls = min(timings)
            per_call = model_s / max(calls, 1)
            loops = out.nfe if sampler in ("first_hitting", "confidence") else steps
            rows.append({
                "sampler": sampler + "".join(f" {k}={v}" for k, v in extra.items()),
                "steps": steps if sampler != "first_hitting" else None,
                "nfe": out.nfe, "nfe_per_row": round(out.nfe_per_row.double().mean().item(), 1),
                "wall_s": round(wall, 3), "model_s": round(model_s, 3),
                "overhead_vs_forward": round((wall - model_s) / max(loops, 1) / per_call, 4),
            })
            print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    head = "| sampler | steps | NFE (batch) | NFE per row | wall s | model s | overhead / forward |\n"
    head += "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    body = "".join(
        f"| {r['sampler']} | {r['steps'] or '-'} | {r['nfe']} | {r['nfe_per_row']} | {r['wall_s']} | "
        f"{r['model_s']} | {100 * r['overhead_vs_forward']:.1f}% |\n"
        for r in rows
    )
    return f"{meta['setup']}\n\n{head}{body}"


def plot(rows: list[dict], path: pathlib.Path) -> None:
    """Stacked bars: time in the model and the sampler's own time, per sampler and step count."""
    plt = pyplot(path)
    if plt is None:
        return
    labels = [f"{r['sampler']}\n" + (f"{r['steps']} steps, " if r["steps"] else "") + f"{r['nfe_per_row']} NFE/row"
              for r in rows]
    model = [r["model_s"] for r in rows]
    own = [max(r["wall_s"] - r["model_s"], 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1.2))
    y = range(len(rows))
    ax.barh(y, model, label="model forward passes")
    ax.barh(y, own, left=model, label="sampler's own work")
    for i, r in enumerate(rows):
        ax.text(r["wall_s"], i, f" {100 * r['overhead_vs_forward']:.1f}% of a forward per step", va="center",
                fontsize=7)
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per batch")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/bench", help="directory for sampling.json and sampling.md")
    parser.add_argument("--quick", action="store_true", help="a tiny grid that runs in seconds (CI)")
    parser.add_argument("--vocab", type=int, default=64, help="clean vocabulary size V (MASK is added)")
    parser.add_argument("--width", type=int, default=256, help="model width d")
    parser.add_argument("--layers", type=int, default=4, help="transformer blocks")
    parser.add_argument("--length", type=int, default=128, help="sequence length")
    parser.add_argument("--batch", type=int, default=8, help="sequences per sampling call")
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 128], help="step counts to try")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row; the fastest is reported")
    parser.add_argument("--replot", action="store_true", help="re-render the table and plot from --out's JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.layers, args.length, args.batch, args.steps, args.repeats = 64, 1, 16, 4, [4, 8], 1
    torch.set_num_threads(args.threads)
    out = pathlib.Path(args.out)
    if args.replot:
        saved = json.loads((out / "sampling.json").read_text())
        (out / "sampling.md").write_text(markdown(saved["rows"], saved["meta"]))
        plot(saved["rows"], out / "sampling.png")
        return
    rows = run(args)
    meta = {
        "setup": f"V={args.vocab}, d={args.width}, {args.layers} layers, length {args.length}, batch "
        f"{args.batch}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}"
    }
    print(save_results(out, "sampling", rows, meta, markdown, plot))


if __name__ == "__main__":
    main()
