"""Block diffusion (BD3-LM) against full-sequence masked diffusion and the AR baseline: sampling speed with and
without the exact KV cache, and likelihood at equal compute for block sizes from 1 (autoregressive) to L.

Speed (untrained models: the cost of a forward does not depend on the weights; the ancestral sampler's
skipped steps depend only on which tokens unmask, i.e. on the schedule): one backbone (d, layers as given,
context = the length), ``--samples`` rows, each method one token per denoising step on average:

* ``full ancestral (cached)``: ``Diffusion.sample`` with ancestral and its cache, steps = L;
* ``block, no KV cache``: ``BlockDiffusion.sample(kv_cache=False)``, b = ``--block-size``, steps = b per block,
  the finished blocks recomputed at every call;
* ``block + KV cache``: the same with the exact KV cache (the finished blocks run once);
* ``AR + KV cache``: ``Autoregressive.sample`` with ``causal_step``, L one-token steps.

Each cell runs in a fresh subprocess (after one warm-up draw of 1 row) and reports tokens/s, NFE (model calls
per batch; the cache's one forward per finished block is not counted) and ``peak_rss_delta_mb``: the growth
of the process's ru_maxrss (peak resident memory) during the timed draw over its value after the warm-up.

Likelihood: every model is the same backbone trained for ``--budget-s`` CPU-seconds of its process (one at a
time) and evaluated by ``discdiff.evaluation`` on the same seeded spread of validation windows: b = 1, 4, 16,
64, L with k-DCE (b = 1: the exact AR NLL as a bound) and the AR baseline (exact). Beside it, for context
only (OpenWebText, 1024 tokens, GPT-2 BPE, 110M parameters, 1M steps): BD3-LM's published perplexities.

Quality (benchmarks/block_quality.py): the same four sampling rows with the likelihood part's *trained* models
(b = L full-sequence, b = ``--quality-block-size``, AR) at the context and beyond it (sliding windows), each
with tokens/s, NFE and the NLL of its samples under an independently trained AR judge, beside validation text.

    PYTHONPATH=. python benchmarks/block_diffusion.py --out docs/results/block_diffusion       # ~10 min here
    PYTHONPATH=. python benchmarks/block_diffusion.py --parts quality --models-dir M --judge-dir J \
        --out docs/results/block_diffusion                                                    # ~10 min here
    PYTHONPATH=. python benchmarks/block_diffusion.py --quick --out /tmp/bd                    # CI: < 60 s
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import block_quality as bq  # noqa: E402  (benchmarks/block_quality.py: the quality part)
import likelihood as lik  # noqa: E402  (benchmarks/likelihood.py: equal-budget training, evaluation)

from discdiff.evaluation.results import pyplot, save_results  # noqa: E402

METHODS = ("full ancestral (cached)", "block, no KV cache", "block + KV cache", "AR + KV cache")
BD3LM_OWT = {"AR": 17.54, "BD3-LM b=4": 20.73, "BD3-LM b=8": 21.68, "BD3-LM b=16": 22.27, "MDLM": 22.98}


# ------------------------------------------------------------------ speed: one cell per subprocess


def speed_cell(cell: dict) -> dict:
    """Build one untrained model, warm up, time one draw; returns the row (run inside a fresh process)."""
    import discdiff as dd
    from discdiff.nn import DiffusionTransformer, TransformerConfig

    torch.set_num_threads(cell["threads"])
    torch.manual_seed(0)
    V, L, b, method = cell["vocab"], cell["length"], cell["block_size"], cell["method"]
    base = dict(num_states=V + 1, d_model=cell["d_model"], n_layers=cell["layers"], n_heads=cell["heads"],
                max_len=L, time_conditioning=False)
    graph, schedule = dd.Absorbing(V), dd.LogLinear()
    if method.startswith("AR"):
        model, diff = DiffusionTransformer(TransformerConfig(**base, causal=True)), dd.Autoregressive(V)
        draw = lambda n, g: diff.sample(model, n, L, generator=g, kv_cache=True)  # noqa: E731
    elif method.startswith("full"):
        model, diff = DiffusionTransformer(TransformerConfig(**base)), dd.Diffusion(graph, schedule, "denoiser")
        draw = lambda n, g: diff.sample(model, n, L, "ancestral", steps=L, generator=g)  # noqa: E731
    else:
        model, diff = DiffusionTransformer(TransformerConfig(**base, block_size=b)), dd.BlockDiffusion(
            graph, schedule, b)
        cached = method == "block + KV cache"
        draw = lambda n, g: diff.sample(model, n, L, "ancestral", steps=b, generator=g,  # noqa: E731
                                        kv_cache=cached)
    model.eval()
    with torch.no_grad():
        draw(1, torch.Generator().manual_seed(1))  # warm-up: allocator, kernels
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        out = draw(cell["samples"], torch.Generator().manual_seed(2))
        wall = time.perf_counter() - start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": method, "length": L, "tokens_per_s": round(cell["samples"] * L / wall, 1),
            "wall_s": round(wall, 3), "nfe": int(out.nfe),
            "peak_rss_delta_mb": round((rss_after - rss_before) / 1024, 1)}


def _in_fresh_process(flag: str, cell: dict, in_process: bool = False) -> dict:
    """Run one cell in a fresh interpreter (its memory is its own); ``in_process`` (--quick) runs it here: the
    same code, seconds saved on imports, its memory figure then meaningless."""
    if in_process:
        return (speed_cell if flag == "--speed-cell" else train_cell)(cell)
    done = subprocess.run([sys.executable, __file__, flag, json.dumps(cell)], check=True, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_speed(args) -> list[dict]:
    rows = []
    for length in args.lengths:
        for method in METHODS:
            cell = {"method": method, "length": length, "block_size": args.block_size, "vocab": 64,
                    "d_model": args.speed_d_model, "layers": args.speed_layers, "heads": args.heads,
                    "samples": args.samples, "threads": args.speed_threads}
            rows.append(_in_fresh_process("--speed-cell", cell, args.quick))
            print(f"[speed] {rows[-1]}", flush=True)
    return rows


# ------------------------------------------------------------------ training: time and peak memory per step


TRAIN_METHODS = ("plain L pass (Diffusion)", "2L block pass (BlockDiffusion)")


def train_cell(cell: dict) -> dict:
    """One training step (loss, backward, AdamW) of one pass, in a fresh process: median seconds per step and
    the growth of ru_maxrss (peak resident memory) over a warm-up step of one row, i.e. the peak working
    memory of a batch's step beyond the weights, optimizer state and libraries (activations kept for backward,
    the (2)L x (2)L attention scores, gradients)."""
    import statistics

    import discdiff as dd
    from discdiff.nn import DiffusionTransformer, TransformerConfig

    torch.set_num_threads(cell["threads"])
    torch.manual_seed(0)
    V, L, b = cell["vocab"], cell["length"], cell["block_size"]
    block = cell["method"] == TRAIN_METHODS[1]
    config = TransformerConfig(num_states=V + 1, d_model=cell["d_model"], n_layers=cell["layers"],
                               n_heads=cell["heads"], max_len=L, time_conditioning=False,
                               block_size=b if block else None)
    model = DiffusionTransformer(config).train()
    graph, schedule = dd.Absorbing(V), dd.LogLinear()
    diffusion = dd.BlockDiffusion(graph, schedule, b) if block else dd.Diffusion(graph, schedule, "denoiser")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(rows: int, seed: int) -> tuple[float, float]:
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.randint(0, V, (rows, L), generator=gen)
        start, cpu_start = time.perf_counter(), time.process_time()
        diffusion.loss(model, x0, "t_dce", generator=gen).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start, time.process_time() - cpu_start

    step(1, 0)  # warm-up: kernels, thread pool, optimizer state
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = zip(*[step(cell["batch"], r) for r in range(1, cell["repeats"] + 1)], strict=True)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": cell["method"], "length": L, "batch": cell["batch"],
            "step_s": round(statistics.median(wall), 4), "step_cpu_s": round(statistics.median(cpu), 4),
            "peak_rss_delta_mb": round((rss_after - rss_before) / 1024, 1)}


def run_train(args) -> list[dict]:
    rows = []
    for length in args.train_lengths:
        for method in TRAIN_METHODS:
            cell = {"method": method, "length": length, "block_size": args.block_size, "vocab": 64,
                    "d_model": args.train_d_model, "layers": args.train_layers, "heads": args.heads,
                    "batch": args.train_batch, "repeats": args.train_repeats, "threads": args.speed_threads}
            rows.append(_in_fresh_process("--train-cell", cell, args.quick))
            print(f"[train] {rows[-1]}", flush=True)
    return rows


# ------------------------------------------------------------------ likelihood at equal compute


def register_kinds(context: int, sizes: list[int]) -> list[str]:
    """Block kinds in benchmarks/likelihood.py's table (k-DCE, time-free), b = L included; and 'ar'."""
    kinds = []
    for b in sizes:
        name = f"block-{b}" if b < context else f"block-L={b}"
        lik.KINDS[name] = ({"graph": "absorbing", "schedule": "loglinear", "parameterization": "denoiser",
                            "objective": "k_dce"}, {"time_conditioning": False, "block_size": b})
        kinds.append(name)
    return [*kinds, "ar"]


def run_likelihood(args) -> list[dict]:
    rows = []
    for corpus in args.corpora:
        args.kinds = register_kinds(args.context, [b for b in args.block_sizes if b < args.context] + [args.context])
        for row in lik.run_corpus(corpus, args):
            row.pop("agreements", None)
            rows.append(row)
    return rows


# ------------------------------------------------------------------ reporting

PARTS = ("speed", "train", "likelihood", "quality")


def _part_note(meta: dict, part: str) -> str:
    load = meta.get(f"{part}_load", meta.get("load"))
    command = meta.get(f"{part}_command", meta.get("command"))
    return f"Load average: {load}. Command: `{command}`."


def markdown(rows: dict, meta: dict) -> str:
    lines = []
    if rows.get("speed"):
        lines += [meta["speed_setup"], "", "| length | method | tokens/s | NFE | wall s | peak RSS delta MB |",
                  "| ---: | --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['length']} | {r['method']} | {r['tokens_per_s']:.0f} | {r['nfe']} | {r['wall_s']:.2f} "
                  f"| {r['peak_rss_delta_mb']:.1f} |" for r in rows["speed"]]
        lines += ["", meta["speed_ratios"], "", _part_note(meta, "speed"), ""]
    if rows.get("train"):
        lines += [meta["train_setup"], "", "| length | batch | pass | s / step | CPU-s / step | peak RSS delta MB |",
                  "| ---: | ---: | --- | ---: | ---: | ---: |"]
        lines += [f"| {r['length']} | {r['batch']} | {r['method']} | {r['step_s']:.3f} | {r['step_cpu_s']:.3f} "
                  f"| {r['peak_rss_delta_mb']:.1f} |" for r in rows["train"]]
        lines += ["", meta["train_ratios"], "", _part_note(meta, "train"), ""]
    if rows.get("likelihood"):
        lines += [meta["likelihood_setup"], "", "| corpus | model | steps | bits/token [95% CI] | vs AR (ratio) |",
                  "| --- | --- | ---: | --- | --- |"]
        for r in rows["likelihood"]:
            res = r["results"][r["primary"]]
            vs = r.get("vs_ar")
            ratio = f"{vs['ratio']:.3f} {lik._ci(vs['ci_ratio'])}" if vs else ""
            mark = "*" if r.get("reused") else ""
            lines.append(f"| {r['corpus']} | {r['kind']} ({r['primary']}) | {r['steps']}{mark} | "
                         f"{res['bits_per_token']:.3f} {lik._ci(res['ci_bits_per_token'])} | {ratio} |")
        if any(r.get("reused") for r in rows["likelihood"]):
            lines += ["", "\\* trained by an earlier invocation with the same settings (saved with its stats and "
                      "evaluated again here with `--reuse-models`; the load below is this invocation's)."]
        unigram = {r["corpus"]: r["unigram_bits"] for r in rows["likelihood"] if "unigram_bits" in r}
        ref = ", ".join(f"{k} {'<=' if k != 'AR' else ''}{v}" for k, v in BD3LM_OWT.items())
        lines += ["", "Unigram entropy of the evaluation windows (bits/token): "
                  + ", ".join(f"{c} {u:.3f}" for c, u in unigram.items()) + ".", "",
                  f"Context only, not a comparison of scale: published OWT perplexities (BD3-LM, arXiv 2503.09573): "
                  f"{ref}.", "", _part_note(meta, "likelihood"), ""]
    if rows.get("quality"):
        lines += [*bq.markdown(rows["quality"], meta), _part_note(meta, "quality")]
    return "\n".join(lines).rstrip("\n") + "\n"


def plot(rows: dict, path: pathlib.Path) -> None:
    plt = pyplot(path)
    if plt is None:
        return
    quality = bool(rows.get("quality"))
    fig, axes = plt.subplots(1, 2 + quality, figsize=(11 + 5.5 * quality, 4))
    ax1, ax2 = axes[:2]
    for method in METHODS:
        pts = [(r["length"], r["tokens_per_s"]) for r in rows.get("speed", []) if r["method"] == method]
        if pts:
            ax1.plot(*zip(*pts, strict=True), marker="o", label=method)
    ax1.set(xscale="log", yscale="log", xlabel="length (tokens)", ylabel="tokens / s", title="sampling speed")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8)
    for corpus in sorted({r["corpus"] for r in rows.get("likelihood", [])}):
        sub = [r for r in rows["likelihood"] if r["corpus"] == corpus]
        res = [r["results"][r["primary"]] for r in sub]
        mid = [x["bits_per_token"] for x in res]
        err = [[m - x["ci_bits_per_token"][0] for m, x in zip(mid, res, strict=True)],
               [x["ci_bits_per_token"][1] - m for m, x in zip(mid, res, strict=True)]]
        ax2.errorbar(range(len(sub)), mid, yerr=err, marker="o", capsize=3, label=corpus)
        ax2.set_xticks(range(len(sub)), [r["kind"] for r in sub], rotation=30, fontsize=8)
    ax2.set(ylabel="bits / token (bound; AR exact)", title="likelihood at equal CPU-seconds")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    if quality:
        bq.plot(axes[2], rows["quality"])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/block_diffusion")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                   help="what to run; the other parts' rows are kept from OUT/block_diffusion.json if it exists")
    p.add_argument("--speed-cell", default=None, help=argparse.SUPPRESS)
    p.add_argument("--train-cell", default=None, help=argparse.SUPPRESS)
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--block-size", type=int, default=16, help="b of the speed and training comparisons")
    p.add_argument("--speed-d-model", type=int, default=64)
    p.add_argument("--speed-layers", type=int, default=2)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--speed-threads", type=int, default=1, help="torch threads of the speed and training cells")
    p.add_argument("--train-lengths", type=int, nargs="+", default=[256])
    p.add_argument("--train-d-model", type=int, default=128)
    p.add_argument("--train-layers", type=int, default=4)
    p.add_argument("--train-batch", type=int, default=16)
    p.add_argument("--train-repeats", type=int, default=3)
    p.add_argument("--corpora", nargs="+", default=["shakespeare"])
    p.add_argument("--block-sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--eval-sequences", type=int, default=128)
    p.add_argument("--draws", type=int, default=4)
    lik.add_model_arguments(p)
    bq.add_arguments(p)
    p.set_defaults(budget_s=20.0, context=128, threads=2, batch=32)
    args = p.parse_args(argv)
    if args.quick:
        lik.quick_model_settings(args)
        args.lengths, args.speed_d_model, args.speed_layers, args.samples = [32], 32, 1, 1
        args.train_lengths, args.train_d_model, args.train_layers, args.train_batch = [32], 32, 1, 2
        args.train_repeats, args.block_size = 1, 8
        args.corpora, args.block_sizes, args.eval_sequences, args.draws = ["synthetic"], [4], 8, 2
        args.synthetic_vocab = args.synthetic_vocab or 16
        bq.quick_settings(args)
    return args


def _ratios(args, rows: dict, meta: dict) -> None:
    """The headline ratios of each part that ran, into ``meta``."""
    if rows.get("speed") and "speed" in args.parts:
        text = []
        for length in args.lengths:
            tps = {r["method"]: r["tokens_per_s"] for r in rows["speed"] if r["length"] == length}
            text.append(f"L={length}: block+cache / full ancestral = {tps[METHODS[2]] / tps[METHODS[0]]:.2f}x, "
                        f"block+cache / AR+cache = {tps[METHODS[2]] / tps[METHODS[3]]:.2f}x, "
                        f"cache / no cache = {tps[METHODS[2]] / tps[METHODS[1]]:.2f}x")
        meta["speed_ratios"] = "; ".join(text) + "."
    if rows.get("train") and "train" in args.parts:
        text = []
        for length in args.train_lengths:
            plain, block = (next(r for r in rows["train"] if r["length"] == length and r["method"] == m)
                            for m in TRAIN_METHODS)
            text.append(f"L={length}: 2L / L = {block['step_s'] / plain['step_s']:.2f}x the wall time per step, "
                        f"{block['step_cpu_s'] / plain['step_cpu_s']:.2f}x the CPU time, "
                        f"{block['peak_rss_delta_mb'] / max(plain['peak_rss_delta_mb'], 0.1):.2f}x the peak memory")
        meta["train_ratios"] = "; ".join(text) + "."


def _setups(args) -> dict:
    setups = {
        "speed_setup": f"Speed: untrained models (cost does not depend on the weights), d={args.speed_d_model}, "
                       f"{args.speed_layers} layers, {args.heads} heads, vocab 64, {args.samples} rows, "
                       f"{args.speed_threads} thread(s), b={args.block_size}; one token per denoising step on average "
                       f"(full: L steps; block: b steps per block). Each cell in a fresh process after a warm-up; "
                       f"memory = growth of ru_maxrss during the timed draw.",
        "train_setup": f"Training: one step (t-DCE loss, backward, AdamW) of untrained models, d={args.train_d_model}, "
                       f"{args.train_layers} layers, {args.heads} heads, vocab 64, b={args.block_size}, batch "
                       f"{args.train_batch}, {args.speed_threads} thread(s), median of {args.train_repeats} steps. "
                       f"Each cell in a fresh process; memory = growth of ru_maxrss (peak resident memory) over a "
                       f"warm-up step of one row: the batch's activations, attention scores and gradients beyond "
                       f"weights, optimizer state and libraries (tracemalloc cannot see torch's tensor allocations).",
        "likelihood_setup": f"Likelihood: d={args.d_model}, {args.layers} layers, {args.heads} heads, context "
                            f"{args.context}, batch {args.batch}, lr {args.lr:g}, {args.budget_s:g} CPU-seconds "
                            f"({args.clock} clock) of training per model, one model at a time, {args.threads} "
                            f"thread(s); eval on a seeded spread of {args.eval_sequences} validation windows, "
                            f"{args.draws} draws per window (block models: k-DCE).",
        "quality_setup": bq.setup(args),
    }
    if args.quick:
        for part in ("speed", "train"):
            setups[f"{part}_setup"] += " --quick: every cell in this one process, so its memory column means nothing."
    return setups


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.speed_cell or args.train_cell:
        print(json.dumps(speed_cell(json.loads(args.speed_cell)) if args.speed_cell
                         else train_cell(json.loads(args.train_cell))))
        return {}
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    previous = pathlib.Path(args.out) / "block_diffusion.json"
    rows, meta = {part: [] for part in PARTS}, {}
    if previous.is_file():  # the parts not run now keep their rows, setup, load and command
        saved = json.loads(previous.read_text())
        rows.update({k: v for k, v in saved["rows"].items() if k not in args.parts})
        meta = {k: v for k, v in saved["meta"].items() if not any(k.startswith(p) for p in args.parts)}
    command = "python benchmarks/block_diffusion.py " + " ".join(argv if argv is not None else sys.argv[1:])
    setups = _setups(args)
    runners = {"speed": run_speed, "train": run_train, "likelihood": run_likelihood,
               "quality": lambda a: bq.run_quality(a, register_kinds)}
    for part in args.parts:
        load_before = os.getloadavg()[0]
        rows[part] = runners[part](args)
        meta.update({f"{part}_setup": setups[f"{part}_setup"], f"{part}_command": command,
                     f"{part}_load": f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after (1-min averages, "
                                     f"{os.cpu_count()} cores)"})
    _ratios(args, rows, meta)
    meta.update({"machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
                 "total_s": round(time.perf_counter() - start, 1)})
    print(save_results(args.out, "block_diffusion", rows, meta, markdown, plot, default=lik._json))
    return rows


if __name__ == "__main__":
    main()
