"""The diffusion-to-AR likelihood gap as compute grows: the same backbone trained at several budgets.

For each budget (CPU seconds of this process, so a shared machine gives every model the same compute) and
corpus, every kind of model in ``--kinds`` trains with benchmarks/likelihood.py's recipe (AdamW, warm-up,
cosine ending at the budget) and is evaluated on the same validation sequences; the paired ratio of each
diffusion bound to the AR baseline's exact NLL (per-sequence differences, so the interval is tight) is the
number to watch. Reference at scale: MD4 on text8, 1.37 vs 1.23 bits/char (ratio 1.11) after 10^6 steps.

Rows are appended to ``budgets.jsonl`` in ``--out`` as each (budget, corpus) finishes, so an interrupted run
keeps what it measured and ``--report`` rebuilds budgets.md / budgets.png from them.

    python benchmarks/likelihood_budgets.py --out docs/results/likelihood_budgets    # ~60 CPU-minutes
    python benchmarks/likelihood_budgets.py --quick --out /tmp/budgets               # CI smoke: seconds
    python benchmarks/likelihood_budgets.py --report --out docs/results/likelihood_budgets
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import likelihood as lik  # noqa: E402

from discdiff.evaluation.results import pyplot  # noqa: E402

DIFFUSION_KINDS_ORDER = ["masked-tdce", "sedd-absorb", "blocks-4", "blocks-16"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/likelihood_budgets")
    p.add_argument("--budgets", nargs="+", type=float, default=[20.0, 80.0, 320.0],
                   help="training budgets per model, CPU seconds (x4 apart: a trend on a log axis)")
    p.add_argument("--corpora", nargs="+", default=["shakespeare", "dna"])
    p.add_argument("--kinds", nargs="+", default=["masked-tdce", "sedd-absorb", "blocks-4", "ar"],
                   choices=list(lik.KINDS))
    p.add_argument("--eval-sequences", type=int, default=128)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--report", action="store_true", help="only rebuild budgets.md / .png from budgets.jsonl")
    lik.add_model_arguments(p)
    p.set_defaults(d_model=128, layers=4, heads=4, context=128, lr=2e-3, warmup=20,
                   models_dir="runs/bench-likelihood-budgets")
    args = p.parse_args(argv)
    if args.quick:
        lik.quick_model_settings(args)
        args.budgets, args.eval_sequences, args.draws = [0.3, 0.6], 8, 2
    if "synthetic" in args.corpora and args.synthetic_vocab is None:
        args.synthetic_vocab = 16
    return args


def run(args) -> None:
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    models_root = pathlib.Path(args.models_dir)
    for budget in args.budgets:
        for corpus in args.corpora:
            args.budget_s, args.models_dir = budget, str(models_root / f"{budget:g}s")
            load0, start = os.getloadavg(), time.perf_counter()
            rows = lik.run_corpus(corpus, args)
            for row in rows:
                row.update(budget_s=budget, load=[load0[0], os.getloadavg()[0]],
                           wall_s=round(time.perf_counter() - start, 1),
                           setup=f"d={args.d_model}, {args.layers} layers, {args.heads} heads, context "
                                 f"{args.context}, batch {args.batch}, lr {args.lr:g}, {args.threads} thread(s)")
                with open(out / "budgets.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(row, default=lik._json) + "\n")
            print(f"[budget {budget:g} s] {corpus}: done in {time.perf_counter() - start:.0f} s wall", flush=True)


def load_rows(out: pathlib.Path) -> list[dict]:
    path = out / "budgets.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def markdown(rows: list[dict], command: str) -> str:
    lines = [f"Setup: {rows[0]['setup']}; budgets in CPU seconds of the training process; evaluation on the "
             "same validation sequences for every model (bits per real token, 95% CI; diffusion: the bound, "
             "AR: exact).", "", f"Command: `{command}`", "",
             "| corpus | budget (CPU s) | model | steps | bits/token [95% CI] | ratio to AR [95% CI] | load |",
             "| --- | ---: | --- | ---: | ---: | ---: | --- |"]
    for r in sorted(rows, key=lambda r: (r["corpus"], r["budget_s"], r["kind"] != "ar", r["kind"])):
        v = r["results"][r["primary"]]
        ratio = f"{r['vs_ar']['ratio']:.3f} {lik._ci(r['vs_ar']['ci_ratio'])}" if "vs_ar" in r else "-"
        lines.append(f"| {r['corpus']} | {r['budget_s']:g} | {r['kind']} | {r['steps']} | "
                     f"{v['bits_per_token']:.3f} {lik._ci(v['ci_bits_per_token'])} | {ratio} | "
                     f"{r['load'][0]:.1f}-{r['load'][1]:.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: pathlib.Path) -> None:
    plt = pyplot(path)
    if plt is None:
        return
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    fig, axes = plt.subplots(2, len(corpora), figsize=(4.4 * len(corpora), 6.4), squeeze=False)
    for col, corpus in enumerate(corpora):
        sub = [r for r in rows if r["corpus"] == corpus]
        for kind in dict.fromkeys(r["kind"] for r in sub):
            pts = sorted((r for r in sub if r["kind"] == kind), key=lambda r: r["budget_s"])
            xs = [r["budget_s"] for r in pts]
            bits = [r["results"][r["primary"]]["bits_per_token"] for r in pts]
            axes[0][col].plot(xs, bits, "o-", label=kind, color="black" if kind == "ar" else None)
            if kind != "ar" and all("vs_ar" in r for r in pts):
                ratio = [r["vs_ar"]["ratio"] for r in pts]
                lo = [r["vs_ar"]["ratio"] - r["vs_ar"]["ci_ratio"][0] for r in pts]
                hi = [r["vs_ar"]["ci_ratio"][1] - r["vs_ar"]["ratio"] for r in pts]
                axes[1][col].errorbar(xs, ratio, yerr=[lo, hi], fmt="o-", capsize=3, label=kind)
        axes[1][col].axhline(1.11, color="tab:red", ls=":", lw=1, label="MD4 / AR on text8 at 1e6 steps")
        axes[1][col].axhline(1.15, color="tab:gray", ls="--", lw=1, label="target 1.15")
        for row, ylabel in ((0, "bits per token"), (1, "diffusion bound / AR NLL")):
            axes[row][col].set_xscale("log")
            budgets = sorted({r["budget_s"] for r in sub})
            axes[row][col].set_xticks(budgets, [f"{b:g}" for b in budgets])
            axes[row][col].minorticks_off()
            axes[row][col].set_xlabel("training budget, CPU seconds")
            axes[row][col].set_ylabel(ylabel)
            axes[row][col].legend(fontsize=7)
        axes[0][col].set_title(corpus)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(out: pathlib.Path, command: str) -> None:
    rows = load_rows(out)
    (out / "budgets.md").write_text(markdown(rows, command), encoding="utf-8")
    plot(rows, out / "budgets.png")
    print(markdown(rows, command))


def main(argv=None) -> None:
    args = parse_args(argv)
    command = "python benchmarks/likelihood_budgets.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.report:
        run(args)
    report(pathlib.Path(args.out), command)


if __name__ == "__main__":
    main()
