"""The ``quality`` part of benchmarks/block_diffusion.py: judge NLL of trained models' samples beside tokens/s and NFE.

Models: the likelihood part's trained models under ``--models-dir/<corpus>/<kind>`` (trained here with the same
flags when missing): ``block-L=<context>`` (the full-sequence masked model), ``block-<b>`` and ``ar``. Rows, as in
the speed part, at each of ``--quality-lengths`` with ``--quality-samples`` rows each (temperature 1, float64
draws, one seeded generator per length, ``--quality-threads`` torch threads, each method timed after a short
warm-up draw):

* ``full ancestral (cached)``: ``Diffusion.sample`` with ancestral, steps = L; n/a beyond the context (every
  token attends to every other: no window to slide);
* ``block, no KV cache`` / ``block + KV cache``: ``BlockDiffusion.sample`` (steps = b per block,
  ``kv_cache=False`` / ``True``); beyond the context both slide the window (``sliding_window_forward``), and
  their samples are token-identical by construction: the benchmark checks it and judges them once;
* ``AR + KV cache``: ``Autoregressive.sample`` with the cache; beyond the context its window slides too;
* ``data (validation)``: real validation windows of the same length, spread over the split.

The judge is independent of the rows: an AR model of the same backbone trained separately (``--judge-seed``,
``--judge-budget-s`` CPU-seconds) on the same corpus, saved under ``--judge-dir`` and reused when there. Samples
longer than its context are scored by ``ARJudge(stride=--judge-stride)``: token i >= context given the previous
context - stride .. context - 1 tokens (stride 1: exactly context - 1), a truncated chain rule.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time

import likelihood as lik  # benchmarks/likelihood.py (block_diffusion.py puts benchmarks/ on sys.path)
import torch

FULL, NO_CACHE, CACHED, AR = "full ancestral (cached)", "block, no KV cache", "block + KV cache", "AR + KV cache"
DATA = "data (validation)"
LN2 = math.log(2.0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quality-corpus", default="shakespeare")
    p.add_argument("--quality-block-size", type=int, default=16, help="b of the quality part's block model")
    p.add_argument("--quality-lengths", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--quality-samples", type=int, nargs="+", default=[16, 4], help="rows per length, in order")
    p.add_argument("--quality-threads", type=int, default=1)
    p.add_argument("--judge-dir", default="runs/bench-bd-judge", help="where the judge is saved / reused")
    p.add_argument("--judge-budget-s", type=float, default=300.0, help="the judge's training, CPU-seconds")
    p.add_argument("--judge-seed", type=int, default=1, help="differs from the rows' --seed: an independent model")
    p.add_argument("--judge-stride", type=int, default=1, help="sliding-window stride beyond the judge's context")


def quick_settings(args) -> None:
    args.quality_corpus, args.quality_block_size = "synthetic", 4
    args.quality_lengths, args.quality_samples, args.judge_budget_s = [32, 64], [2, 2], 0.6


def setup(args) -> str:
    return (f"Quality: trained models from the likelihood part ({args.quality_corpus}, context {args.context}, "
            f"b={args.quality_block_size} for the block rows); rows of {args.quality_lengths} tokens, "
            f"{args.quality_samples} samples, temperature 1, float64 draws, {args.quality_threads} thread(s). Judge: "
            f"an AR model of the same backbone trained separately (seed {args.judge_seed}, {args.judge_budget_s:g} "
            f"CPU-s); beyond its context it scores with a sliding window of stride {args.judge_stride} (token i "
            f"given {_window(args)}). Entropy: the "
            f"samples' own unigram entropy, mean per sample (pooled over all samples), bits. Words real (a "
            f"character-level text corpus): the fraction of whitespace-separated words found in the training split, "
            f"words cut by a sample's edges not counted.")


def _window(args) -> str:
    lo, hi = args.context - args.judge_stride, args.context - 1
    return f"exactly the previous {hi} tokens" if lo == hi else f"the previous {lo} to {hi} tokens"


def load_models(args, source: str, register) -> dict:
    """{role: Pretrained} for full / block / ar, trained with the likelihood part's flags when missing."""
    from discdiff.training import from_pretrained

    register(args.context, [args.quality_block_size, args.context])
    kinds = {"full": f"block-L={args.context}", "block": f"block-{args.quality_block_size}", "ar": "ar"}
    out = {}
    for role, kind in kinds.items():
        path = pathlib.Path(args.models_dir) / args.quality_corpus / kind
        if not (path / "config.json").is_file():
            print(f"[quality] training {kind} for {args.budget_s:g} s -> {path}", flush=True)
            lik.train_for_budget(source, kind, args, path)
        out[role] = from_pretrained(path)
        out[role].model.eval()
    return out


def load_judge(args, source: str) -> tuple:
    """(Pretrained AR judge, its training stats): reused from --judge-dir when there, else trained now."""
    from discdiff.training import from_pretrained

    path = pathlib.Path(args.judge_dir) / args.quality_corpus / "ar-judge"
    stats_file = path / lik.STATS  # written beside the model by lik.train_for_budget, extended here
    if (path / "config.json").is_file() and stats_file.is_file():
        return from_pretrained(path), {**json.loads(stats_file.read_text()), "reused": True}
    jargs = argparse.Namespace(**{**vars(args), "budget_s": args.judge_budget_s, "seed": args.judge_seed,
                                  "threads": args.quality_threads, "steps": None, "clock": "process"})
    print(f"[quality] training the judge for {args.judge_budget_s:g} CPU-s -> {path}", flush=True)
    stats = {**lik.train_for_budget(source, "ar", jargs, path), "seed": args.judge_seed,
             "budget_s": args.judge_budget_s}
    stats_file.write_text(json.dumps(stats, indent=1))
    return from_pretrained(path), stats


def _draw(method: str, models: dict, n: int, length: int, seed: int):
    """SampleOutput of one method, or None when it cannot reach ``length`` (full-sequence beyond its context)."""
    import discdiff as dd

    gen = torch.Generator().manual_seed(seed)
    if method == FULL:
        pre = models["full"]
        if length > pre.model.config.max_len:
            return None
        diff = dd.Diffusion(pre.diffusion.graph, pre.diffusion.schedule, "denoiser")
        return diff.sample(pre.model, n, length, "ancestral", steps=length, generator=gen)
    if method == AR:
        return models["ar"].diffusion.sample(models["ar"].model, n, length, generator=gen, kv_cache=True)
    pre = models["block"]
    return pre.diffusion.sample(pre.model, n, length, "ancestral", steps=pre.diffusion.block_size, generator=gen,
                                kv_cache=method == CACHED)


def _judged(samples, judge, tokenizer, vocabulary=None) -> dict:
    """The judge's report on ``samples`` [N, L], two excerpts, and (a text corpus: ``vocabulary`` its training
    words) the fraction of whitespace-separated words that are real (``discdiff.evaluation.words``)."""
    from discdiff.evaluation import generative_perplexity
    from discdiff.evaluation.words import decode_text, words_real

    report = generative_perplexity(samples, judge, categorical="float64").to_dict()
    if vocabulary is not None:
        words = words_real([decode_text(tokenizer, row.tolist()) for row in samples], vocabulary)
        report.update(words_real=words.fraction, words=words.words)
    excerpts = [tokenizer.decode(row[:240].tolist()) if tokenizer is not None else str(row[:40].tolist())
                for row in samples[:2]]
    return {**report, "bits_per_token": report["nll_nats_per_token"] / LN2,
            "ci_bits_per_token": [x / LN2 for x in report["ci_nll_nats_per_token"]], "excerpts": excerpts}


def method_row(method: str, models: dict, judge, n: int, length: int, seed: int, cached: dict,
               vocabulary=None) -> dict:
    """One timed, judged row; ``cached`` holds the block + KV cache samples of this length (drawn first)."""
    row = {"method": method, "length": length, "samples": n}
    reach = models["full"].model.config.max_len
    if method == FULL and length > reach:
        return {**row, "na": f"a full-sequence model has {reach} positions, all attending to each other: "
                             f"no window to slide beyond its context"}
    with torch.no_grad():
        _draw(method, models, 1, min(length, 32), seed + 7)  # warm-up: allocator, kernels
        start = time.perf_counter()
        out = _draw(method, models, n, length, seed)
        wall = time.perf_counter() - start
    row.update(tokens_per_s=round(n * length / wall, 1), wall_s=round(wall, 2), nfe=int(out.nfe))
    if method == NO_CACHE and CACHED in cached:
        row["identical_to_cached"] = bool(torch.equal(out.samples, cached[CACHED]))
        if row["identical_to_cached"]:
            row["judge"] = {**cached["report"], "same_samples_as": CACHED}
            return row
    row["judge"] = _judged(out.samples, judge, models[{FULL: "full", AR: "ar"}.get(method, "block")].tokenizer,
                           vocabulary)
    if method == CACHED:
        cached.update({CACHED: out.samples, "report": row["judge"]})
    return row


def data_row(source: str, judge, tokenizer, n: int, length: int, args, vocabulary=None) -> dict:
    from discdiff.evaluation import load_eval_data

    vocab = args.synthetic_vocab if args.quality_corpus == "synthetic" else None
    batches = load_eval_data(source, context=length, vocab_size=vocab, max_sequences=n, batch_size=n, seed=args.seed)
    tokens, mask = batches[0]
    if not bool(mask.all()):
        raise ValueError("the quality part judges running text: its validation windows must be unpadded")
    return {"method": DATA, "length": length, "samples": len(tokens),
            "judge": _judged(tokens, judge, tokenizer, vocabulary)}


def run_quality(args, register) -> list[dict]:
    from discdiff.evaluation import ARJudge

    if len(args.quality_samples) != len(args.quality_lengths):
        raise ValueError("--quality-samples needs one count per --quality-lengths entry")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.quality_threads)
    try:
        source = lik.corpus_source(args.quality_corpus, args.data_dir)
        models = load_models(args, source, register)
        judge_pre, judge_stats = load_judge(args, source)
        judge = ARJudge.from_pretrained(judge_pre, name=f"AR judge (seed {args.judge_seed})",
                                        stride=args.judge_stride)
        vocabulary = _vocabulary(source, judge_pre.tokenizer)
        rows = []
        for length, n in zip(args.quality_lengths, args.quality_samples, strict=True):
            rows.append(data_row(source, judge, judge_pre.tokenizer, n, length, args, vocabulary))
            cached: dict = {}
            for method in (CACHED, NO_CACHE, FULL, AR):
                rows.append(method_row(method, models, judge, n, length, args.seed + length, cached, vocabulary))
                print(f"[quality] {_line(rows[-1])}", flush=True)
        rows[0]["judge_stats"] = judge_stats
        order = {m: i for i, m in enumerate((DATA, FULL, NO_CACHE, CACHED, AR))}
        return sorted(rows, key=lambda r: (r["length"], order[r["method"]]))
    finally:
        torch.set_num_threads(threads)


def _vocabulary(source: str, tokenizer):
    """The training split's words for a character-level text corpus (words real), else None."""
    from discdiff.data import CharTokenizer
    from discdiff.evaluation.words import load_corpus_words

    if not isinstance(tokenizer, CharTokenizer):
        return None
    return load_corpus_words(source)


def _line(r: dict) -> str:
    if "na" in r:
        return f"L={r['length']} {r['method']}: n/a ({r['na']})"
    j = r["judge"]
    return (f"L={r['length']} {r['method']}: {r.get('tokens_per_s', '-')} tok/s, NFE {r.get('nfe', '-')}, judge "
            f"{j['bits_per_token']:.3f} bits/token, entropy {j['unigram_entropy'] / LN2:.3f} bits")


# ------------------------------------------------------------------ reporting


def _ci(lo_hi, digits: int = 3) -> str:
    return f"[{lo_hi[0]:.{digits}f}, {lo_hi[1]:.{digits}f}]"


def markdown(rows: list[dict], meta: dict) -> list[str]:
    """The quality table, the judge's training and one excerpt per method and length."""
    lines = [meta["quality_setup"], "", "| length | method | rows | tokens/s | NFE | judge bits/token [95% CI] | "
             "gen-PPL [95% CI] | entropy bits/sample (pooled) | words real |",
             "| ---: | --- | ---: | ---: | ---: | --- | --- | --- | ---: |"]
    for r in rows:
        if "na" in r:
            lines.append(f"| {r['length']} | {r['method']} | - | n/a | n/a | n/a: {r['na']} | | | |")
            continue
        j = r["judge"]
        same = " (samples identical to block + KV cache)" if "same_samples_as" in j else ""
        lines.append(f"| {r['length']} | {r['method']}{same} | {r['samples']} | {r.get('tokens_per_s', '-')} | "
                     f"{r.get('nfe', '-')} | {j['bits_per_token']:.3f} {_ci(j['ci_bits_per_token'])} | "
                     f"{j['gen_ppl']:.2f} {_ci(j['ci_gen_ppl'], 2)} | {j['unigram_entropy'] / LN2:.3f} "
                     f"({j['pooled_entropy'] / LN2:.3f}) | "
                     + (f"{j['words_real']:.2f} ({j['words']}) |" if "words_real" in j else "- |"))
    stats = rows[0].get("judge_stats", {})
    if stats:
        lines += ["", f"Judge: {stats['params']:,} parameters, {stats['steps']} steps in {stats['train_s']} "
                      f"CPU-s, final train loss {stats['final_train_loss']:.3f} nats/token"
                      f"{' (reused from an earlier run)' if stats.get('reused') else ''}."]
    lines += ["", "Excerpts (the first sample of each row, its first 240 tokens):", ""]
    for r in rows:
        if "judge" in r and "same_samples_as" not in r["judge"]:
            text = r["judge"]["excerpts"][0].replace("\n", " / ")
            lines += [f"- L={r['length']}, {r['method']}: `{text.replace('`', chr(39))}`"]
    return lines + [""]


def plot(ax, rows: list[dict]) -> None:
    """Judge bits/token per method (x) at each length, the data row dashed."""
    methods = [FULL, NO_CACHE, CACHED, AR]
    for k, length in enumerate(sorted({r["length"] for r in rows})):
        sub = {r["method"]: r for r in rows if r["length"] == length and "judge" in r}
        xs = [i + 0.1 * k for i, m in enumerate(methods) if m in sub]
        res = [sub[m]["judge"] for m in methods if m in sub]
        mid = [x["bits_per_token"] for x in res]
        err = [[m - x["ci_bits_per_token"][0] for m, x in zip(mid, res, strict=True)],
               [x["ci_bits_per_token"][1] - m for m, x in zip(mid, res, strict=True)]]
        line = ax.errorbar(xs, mid, yerr=err, marker="o", ls="", capsize=3, label=f"L={length}")
        if DATA in sub:
            ax.axhline(sub[DATA]["judge"]["bits_per_token"], ls="--", lw=0.8, color=line[0].get_color(),
                       label=f"validation text, L={length}")
    ax.set_xticks(range(len(methods)), ["full", "block", "block+KV", "AR+KV"], fontsize=8)
    ax.set(ylabel="judge NLL (bits / token)", title="sample quality (independent AR judge)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
