"""Sampling quality against cost: per sampler and step count, model calls, wall-clock, judge NLL and entropy.

One masked-diffusion model (time-free denoiser, t-DCE) serves every sampler, so rows differ only in the
sampler. Each row draws ``--num-samples`` sequences of ``--length`` tokens and reports

* cost: ``nfe`` (model calls per batch), ``nfe_per_row``, ``wall_s`` and ``model_s`` (time inside the model),
* quality: generative perplexity under the AR baseline trained on the same corpus for the same budget
  (and under SmolLM2-135M with ``--smollm``, English text only), with its 95% interval,
* honesty: the samples' unigram entropy and the categorical precision (float64, or the biased fp32 Gumbel
  row), beside the same judge's numbers for real validation text (the ``data`` row) and for the AR
  baseline's own samples (judged by itself, so its gen-PPL is its entropy rate: a cost reference).

Cost accounting reuses ``TimedModel`` from benchmarks/sampling.py (pure cost, untrained models); this script
adds the quality axis. Models come from ``--models-dir`` (written by benchmarks/likelihood.py), trained
here with the same flags when missing. Writes sampling_quality.json / .md / .png (Pareto plot) to --out.

    python benchmarks/likelihood.py --corpora shakespeare --out out/likelihood   # trains the models (~1 min)
    python benchmarks/sampling_quality.py --out docs/results/sampling_quality     # a few minutes
    python benchmarks/sampling_quality.py --quick --out /tmp/sq                   # CI: seconds
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import platform
import sys
import time

import torch

from discdiff.evaluation.results import pyplot, save_results

HERE = pathlib.Path(__file__).resolve().parent


def _sibling(name: str):
    """Import benchmarks/<name>.py (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


likelihood = _sibling("likelihood")
TimedModel = _sibling("sampling").TimedModel


def plan(args) -> list[tuple[str, dict, int | None]]:
    """(sampler, options, steps) rows; first_hitting ignores steps (one call per token)."""
    samplers = [("ancestral", {}), ("ancestral", {"categorical": "gumbel_fp32"}), ("euler", {}),
                ("tau_leaping", {}), ("tweedie", {}), ("confidence", {}),
                ("confidence", {"threshold": 0.9, "block_length": max(args.length // 4, 1)})]
    rows = [(s, o, steps) for s, o in samplers for steps in args.sample_steps]
    return rows + [("first_hitting", {}, None)]


def models(args):
    """(denoiser Pretrained, AR Pretrained) from --models-dir, trained for the budget when missing."""
    from discdiff.training import from_pretrained

    source = likelihood.corpus_source(args.corpus, args.data_dir)
    out = {}
    for kind in ("masked-tdce", "ar"):
        path = pathlib.Path(args.models_dir) / args.corpus / kind
        if not (path / "config.json").is_file():
            print(f"training {kind} on {args.corpus} for {args.budget_s:g} s -> {path}", flush=True)
            likelihood.train_for_budget(source, kind, args, path)
        out[kind] = from_pretrained(path)
    return source, out["masked-tdce"], out["ar"]


def judge_all(samples, judges, tokenizer, categorical: str, padding_mask=None) -> dict:
    from discdiff.evaluation import HFJudge, generative_perplexity

    reports = {}
    for judge in judges:
        if isinstance(judge, HFJudge) and tokenizer is None:
            continue
        reports[judge.name] = generative_perplexity(samples, judge, categorical=categorical, tokenizer=tokenizer,
                                                    padding_mask=padding_mask).to_dict()
    return reports


def sample_rows(pre, ar_pre, judges, tokenizer, args) -> list[dict]:
    from discdiff.nn import ARWrapper

    rows = []
    timed = TimedModel(pre.model)
    for sampler, options, steps in plan(args):
        timed.seconds, timed.calls = 0.0, 0
        start = time.perf_counter()
        out = pre.diffusion.sample(timed, args.num_samples, args.length, sampler, steps=steps or 1,
                                   generator=torch.Generator().manual_seed(args.seed), **options)
        wall = time.perf_counter() - start
        categorical = options.get("categorical", "float64")
        name = sampler + "".join(f" {k}={v}" for k, v in options.items() if k != "categorical")
        rows.append({"sampler": name, "categorical": categorical, "steps": steps, "nfe": out.nfe,
                     "nfe_per_row": round(out.nfe_per_row.double().mean().item(), 1), "wall_s": round(wall, 3),
                     "model_s": round(timed.seconds, 3),
                     "judges": judge_all(out.samples, judges, tokenizer, categorical)})
        print(_line(rows[-1]), flush=True)
    ar = ARWrapper(ar_pre.model, ar_pre.vocab_size)
    start = time.perf_counter()
    samples = ar.sample(args.num_samples, args.length, generator=torch.Generator().manual_seed(args.seed))
    rows.append({"sampler": "AR baseline (judged by itself)", "self_judged": True, "categorical": "float64",
                 "steps": args.length,
                 "nfe": args.length, "nfe_per_row": float(args.length),
                 "wall_s": round(time.perf_counter() - start, 3), "model_s": None,
                 "judges": judge_all(samples, judges, tokenizer, "float64")})
    print(_line(rows[-1]), flush=True)
    return rows


def data_row(source, judges, tokenizer, args) -> dict:
    from discdiff.evaluation import load_eval_data

    batches = load_eval_data(source, context=args.length, vocab_size=args.synthetic_vocab,
                             max_sequences=args.num_samples, batch_size=args.num_samples)
    tokens, mask = batches[0]  # records (proteins, DNA) are padded: the judges score real tokens only
    return {"sampler": "data (validation)", "categorical": "float64", "steps": None, "nfe": 0, "nfe_per_row": 0.0,
            "wall_s": 0.0, "model_s": 0.0, "judges": judge_all(tokens, judges, tokenizer, "float64", mask)}


def _line(row: dict) -> str:
    verdicts = "; ".join(f"{j}: gen-PPL {r['gen_ppl']:.2f}, entropy {r['unigram_entropy']:.3f}"
                         for j, r in row["judges"].items())
    cost = f"steps={row['steps']} nfe={row['nfe']} wall={row['wall_s']}s"
    return f"{row['sampler']} [{row['categorical']}] {cost} | {verdicts}"


# ------------------------------------------------------------------ reporting


def markdown(rows: list[dict], meta: dict) -> str:
    judges = list(rows[0]["judges"])
    head = "| sampler | draws | steps | NFE | NFE/row | wall s | Pareto |" + "".join(
        f" gen-PPL ({j}) [95% CI] | entropy |" for j in judges)
    head += "\n| --- | --- | ---: | ---: | ---: | ---: | --- |" + " ---: | ---: |" * len(judges) + "\n"
    body = ""
    for r in rows:
        cells = "".join(
            f" {v['gen_ppl']:.2f} [{v['ci_gen_ppl'][0]:.2f}, {v['ci_gen_ppl'][1]:.2f}] | {v['unigram_entropy']:.3f} |"
            for v in (r["judges"][j] for j in judges))
        body += (f"| {r['sampler']} | {r['categorical']} | {r['steps'] or '-'} | {r['nfe']} | {r['nfe_per_row']} | "
                 f"{r['wall_s']} | {'yes' if r.get('pareto') else ''} |{cells}\n")
    note = (f"Entropy: nats, per sample of the samples' own tokens. Pareto: on the wall-clock / gen-PPL front "
            f"({judges[0]}) among rows whose entropy is >= {ENTROPY_FLOOR:.0%} of the data's.")
    return f"{meta['setup']}\n\nCommand: `{meta['command']}`\n\n{head}{body}\n{note}\n"


ENTROPY_FLOOR = 0.95  # a row joins the Pareto front only if its entropy is >= this fraction of the data's


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both cost and gen-PPL (lower is better on both)."""
    return [i for i, (c, q) in enumerate(points)
            if not any((c2 <= c and q2 <= q) and (c2 < c or q2 < q) for c2, q2 in points)]


def mark_pareto(rows: list[dict]) -> None:
    """rows[i]["pareto"]: on the wall-clock / gen-PPL front (first judge) among the diffusion sampler rows whose
    unigram entropy is at least ENTROPY_FLOOR of the validation data's: a collapsed sampler cannot buy its way
    in, and the AR baseline's own samples (scored by the model that drew them) are a reference, not a rival."""
    judge = next(iter(rows[0]["judges"]))
    data = next((r for r in rows if r["nfe"] == 0), None)
    floor = ENTROPY_FLOOR * data["judges"][judge]["unigram_entropy"] if data else 0.0
    eligible = [r for r in rows if r["nfe"] > 0 and not r.get("self_judged")
                and r["judges"][judge]["unigram_entropy"] >= floor]
    front = pareto([(r["wall_s"], r["judges"][judge]["gen_ppl"]) for r in eligible])
    for r in rows:
        r["pareto"] = False
    for i in front:
        eligible[i]["pareto"] = True


def plot(rows: list[dict], path: pathlib.Path) -> None:
    plt = pyplot(path)
    if plt is None:
        return
    judge = next(iter(rows[0]["judges"]))
    data = next((r for r in rows if r["nfe"] == 0), None)
    points = [r for r in rows if r["nfe"] > 0]
    cost = [r["wall_s"] for r in points]
    ppl = [r["judges"][judge]["gen_ppl"] for r in points]
    ent = [r["judges"][judge]["unigram_entropy"] for r in points]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for sampler in dict.fromkeys(f"{r['sampler']} [{r['categorical']}]" for r in points):
        idx = [i for i, r in enumerate(points) if f"{r['sampler']} [{r['categorical']}]" == sampler]
        marker = "x" if "gumbel" in sampler else "o"
        ax.scatter([cost[i] for i in idx], [ppl[i] for i in idx], label=sampler, marker=marker)
        ax2.scatter([cost[i] for i in idx], [ent[i] for i in idx], marker=marker)
    front = sorted((i for i, r in enumerate(points) if r.get("pareto")), key=lambda i: cost[i])
    ax.plot([cost[i] for i in front], [ppl[i] for i in front], "k--", lw=0.8,
            label=f"Pareto front (entropy >= {ENTROPY_FLOOR:.0%} of data's)")
    if data is not None:
        ax.axhline(data["judges"][judge]["gen_ppl"], color="gray", lw=0.8, label="validation data")
        ax2.axhline(data["judges"][judge]["unigram_entropy"], color="gray", lw=0.8)
    for a, label in ((ax, f"gen-PPL under {judge}"), (ax2, "unigram entropy per sample (nats)")):
        a.set_xscale("log")
        a.set_xlabel("wall-clock per batch (s)")
        a.set_ylabel(label)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/sampling_quality", help="directory for sampling_quality.json / .md / .png")
    p.add_argument("--corpus", default="shakespeare", help="corpus name, or 'synthetic'")
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--length", type=int, default=None, help="sample length (default: the model context)")
    p.add_argument("--sample-steps", type=int, nargs="+", default=[8, 32, 128], help="step counts to try")
    p.add_argument("--smollm", action="store_true", help="also judge decoded text with SmolLM2-135M (judge extra)")
    likelihood.add_model_arguments(p)
    args = p.parse_args(argv)
    if args.quick:
        likelihood.quick_model_settings(args)
        args.num_samples, args.sample_steps = 4, [4, 8]
    if args.corpus == "synthetic" and args.synthetic_vocab is None:
        args.synthetic_vocab = 16
    args.length = args.length or args.context
    return args


def _describe(pre) -> str:
    m, kind = pre.config["model"], pre.config["diffusion"]["kind"]
    return f"{kind}: d={m['d_model']}, {m['n_layers']} layers, context {pre.config['context']}"


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    source, pre, ar_pre = models(args)
    from discdiff.evaluation import ARJudge, HFJudge

    judges = [ARJudge(ar_pre.model, ar_pre.vocab_size, name=f"AR baseline ({args.corpus})")]
    if args.smollm:
        load = time.perf_counter()
        judges.append(HFJudge.smollm2())
        print(f"SmolLM2 judge loaded in {time.perf_counter() - load:.1f} s", flush=True)
    rows = [data_row(source, judges, pre.tokenizer, args)] + sample_rows(pre, ar_pre, judges, pre.tokenizer, args)
    mark_pareto(rows)
    meta = {
        "setup": f"Corpus {args.corpus}; denoiser (masked-tdce) and AR judge from {args.models_dir} "
                 f"({_describe(pre)}; {_describe(ar_pre)}); {args.num_samples} samples of {args.length} tokens per "
                 f"row; {args.threads} threads, {platform.processor() or platform.machine()}, "
                 f"torch {torch.__version__}.",
        "command": "python benchmarks/sampling_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "total_s": round(time.perf_counter() - start, 1),
    }
    print(save_results(args.out, "sampling_quality", rows, meta, markdown, plot))
    return rows


if __name__ == "__main__":
    main()
