"""How close each sampler gets to the data distribution when fed the exact model, as steps grow.

On the toy space of tests/sampling (3 tokens, length 3, a random distribution over the 27 sequences),
every sampler runs with the exact concrete score / exact denoiser computed by enumeration
(``discdiff.exact``) and its 20,000 samples are compared with p_data by total variation. The first row,
"p_data itself", is 20,000 direct draws from p_data: the noise floor any exact sampler sits on.

    python benchmarks/sampler_exactness.py --out docs/results/sampler_exactness    # ~3 minutes on 2 cores
    python benchmarks/sampler_exactness.py --quick --out /tmp/exactness            # seconds
"""

from __future__ import annotations

import argparse
import json
import pathlib

import torch

import discdiff as dd
from discdiff.evaluation.results import pyplot
from discdiff.exact import ToyDistribution, sequence_index

CASES = {
    "absorbing / log-linear": (lambda: dd.Absorbing(3), dd.LogLinear),
    "uniform / geometric": (lambda: dd.Uniform(3), dd.Geometric),
    "dense ordinal / geometric": (lambda: dd.DenseGraph.ordinal(3), dd.Geometric),
}


def tv(samples: torch.Tensor, probs: torch.Tensor) -> float:
    counts = torch.bincount(sequence_index(samples, 3), minlength=len(probs)).double()
    return 0.5 * (counts / len(samples) - probs).abs().sum().item()


def run(args) -> list[dict]:
    toy = ToyDistribution.random(3, 3, generator=torch.Generator().manual_seed(0))
    rows = [{"case": "-", "sampler": "p_data itself", "steps": None,
             "tv": round(tv(toy.sample(args.n, torch.Generator().manual_seed(1)), toy.probs), 4)}]
    for case, (make_graph, make_schedule) in CASES.items():
        graph = make_graph()
        score = dd.Diffusion(graph, make_schedule(), "score")
        plan = [(s, n) for s in ("euler", "tau_leaping", "tweedie") for n in args.steps]
        if graph.mask_id is not None:
            plan += [("ancestral", n) for n in args.steps] + [("first_hitting", None)]
        for sampler, steps in plan:
            diff = score if sampler in ("euler", "tau_leaping", "tweedie") else dd.Diffusion(
                graph, make_schedule(), "denoiser")
            model = toy.score_model(graph) if diff is score else toy.denoiser_model(graph)
            try:
                out = diff.sample(model, args.n, 3, sampler, steps=steps or 1,
                                  generator=torch.Generator().manual_seed(1))
                value = round(tv(out.samples, toy.probs), 4)
            except ValueError as e:  # e.g. tweedie's ill-conditioned big steps on a dense graph
                value = f"refused: {str(e).split(';')[0]}"
            rows.append({"case": case, "sampler": sampler, "steps": steps, "tv": value})
            print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], steps: list[int], n: int) -> str:
    lines = [f"Total variation to p_data, {n:,} samples, exact model (seed 1). Noise floor (p_data's own "
             f"draws): {rows[0]['tv']}.", "", "| graph / schedule | sampler | " + " | ".join(
                 f"{s} steps" for s in steps) + " |", "| --- | --- |" + " ---: |" * len(steps)]
    table: dict[tuple, dict] = {}
    for r in rows[1:]:
        table.setdefault((r["case"], r["sampler"]), {})[r["steps"]] = r["tv"]
    for (case, sampler), by_steps in table.items():
        cells = [str(by_steps.get(s, by_steps.get(None, "-"))) for s in steps]
        lines.append(f"| {case} | {sampler} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: pathlib.Path) -> None:
    """TV against steps, one panel per graph, with the noise floor; needs matplotlib (the bench extra)."""
    plt = pyplot(path)
    if plt is None:
        return
    cases = list(CASES)
    fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.4), sharey=True)
    for ax, case in zip(axes, cases, strict=True):
        for sampler in dict.fromkeys(r["sampler"] for r in rows if r["case"] == case):
            pts = [(r["steps"], r["tv"]) for r in rows if r["case"] == case and r["sampler"] == sampler
                   and r["steps"] and isinstance(r["tv"], float)]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=sampler)
            elif sampler == "first_hitting":
                ax.axhline(next(r["tv"] for r in rows if r["case"] == case and r["sampler"] == sampler),
                           color="k", ls=":", label="first_hitting (any steps)")
        ax.axhline(rows[0]["tv"], color="grey", ls="--", label="noise floor")
        ax.set(xscale="log", yscale="log", title=case, xlabel="steps")
    axes[0].set_ylabel("total variation to p_data")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/sampler_exactness", help="directory for the JSON and markdown")
    parser.add_argument("--quick", action="store_true", help="2,000 samples and two step counts")
    parser.add_argument("--n", type=int, default=20_000, help="samples per row")
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8, 16, 64, 256], help="step counts")
    parser.add_argument("--replot", action="store_true", help="re-render the table and plot from --out's JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.steps = 2000, [2, 8]
    torch.set_num_threads(1)
    out = pathlib.Path(args.out)
    if args.replot:
        rows = json.loads((out / "sampler_exactness.json").read_text())
        args.steps = sorted({r["steps"] for r in rows if r["steps"]})
    else:
        rows = run(args)
        out.mkdir(parents=True, exist_ok=True)
        (out / "sampler_exactness.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out / "sampler_exactness.png")
    (out / "sampler_exactness.md").write_text(markdown(rows, args.steps, args.n))
    print(markdown(rows, args.steps, args.n))


if __name__ == "__main__":
    main()
