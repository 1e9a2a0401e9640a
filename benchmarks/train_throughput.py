"""Training throughput and MFU of the diffusion backbone vs the same-size AR baseline and nn.TransformerEncoder.

One process, paired and interleaved: each round runs a few timed steps of every model in turn, so the
host's drift (~20% on shared CPUs) hits all of them alike; the reported ratios are medians of per-round
ratios. MFU = model FLOPs/s (6 N + 12 n_layers d L per token, see DiffusionTransformer.flops_per_token)
divided by the fp32 matmul peak measured in this same process.

    .venv/bin/python benchmarks/train_throughput.py --out out/bench            # full (minutes)
    .venv/bin/python benchmarks/train_throughput.py --quick --out out/bench    # CI smoke test (seconds)
    .venv/bin/python benchmarks/train_throughput.py --profile                  # where the time goes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

import discdiff as dd
from discdiff.evaluation.results import pyplot
from discdiff.nn import ARWrapper, DiffusionTransformer, TransformerConfig


def matmul_peak_flops(n: int = 2048, reps: int = 5) -> float:
    """Best observed fp32 matmul FLOP/s for an n x n x n product (the MFU denominator)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def host_busy_fraction(interval: float = 0.5) -> float | None:
    """Fraction of all CPUs busy over `interval` seconds, from /proc/stat (None where unavailable)."""

    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except OSError:
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(max_wait: float, threshold: float = 0.1) -> float | None:
    """Wait up to max_wait seconds for the host to be (nearly) idle; return the last busy fraction."""
    deadline = time.monotonic() + max_wait
    busy = host_busy_fraction()
    while busy is not None and busy > threshold and time.monotonic() < deadline:
        busy = host_busy_fraction()
    return busy


class EncoderBaseline(nn.Module):
    """A plain nn.TransformerEncoder of the same size (pre-norm, GELU, no dropout, learned positions)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg.num_states, cfg.d_model)
        self.pos_emb = nn.Parameter(torch.zeros(cfg.max_len, cfg.d_model))
        layer = nn.TransformerEncoderLayer(
            cfg.d_model,
            cfg.n_heads,
            int(cfg.mlp_ratio * cfg.d_model),
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.out_size, bias=False)

    def forward(self, x_t, sigma_bar=None):
        h = self.tok_emb(x_t) + self.pos_emb[: x_t.shape[1]]
        return self.head(self.norm(self.encoder(h))).float()


def masked_ce_loss(model, x0: torch.Tensor, diffusion: dd.Diffusion, gen: torch.Generator) -> torch.Tensor:
    """The library's masked diffusion step (RADD / MDLM t-DCE): mask w.p. t, CE on masked positions / t."""
    return diffusion.loss(model, x0, "t_dce", generator=gen).mean() / x0.shape[1]


def make_steps(cfg: TransformerConfig, vocab: int, batch: int, seq: int, seed: int):
    """name -> (model, step_fn, flops_per_token). Each step: forward, loss, backward, AdamW."""
    torch.manual_seed(seed)
    diff = DiffusionTransformer(cfg)
    ar_model = DiffusionTransformer(TransformerConfig(**{**cfg.to_dict(), "causal": True}))
    ar = ARWrapper(ar_model, vocab_size=vocab)
    enc = EncoderBaseline(cfg)
    gen = torch.Generator().manual_seed(seed)
    data = torch.randint(0, vocab, (batch, seq), generator=gen)
    diffusion = dd.Diffusion(dd.Absorbing(vocab), dd.LogLinear(), parameterization="denoiser")
    flops = diff.flops_per_token(seq)  # the encoder and AR baseline have the same matmul shapes

    def stepper(model, loss_fn):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as the trainer uses

        def step():
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())

        return step

    return {
        "diffusion": stepper(diff, lambda: masked_ce_loss(diff, data, diffusion, gen)),
        "ar": stepper(ar, lambda: ar.nll(data).mean() / seq),
        "nn.TransformerEncoder": stepper(enc, lambda: masked_ce_loss(enc, data, diffusion, gen)),
    }, flops


def profile(steps: dict, n: int = 2) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    report = []
    for name, step in steps.items():
        step()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(n):
                step()
        report.append(f"## {name}\n{prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=18)}")
    return "\n".join(report)


CLEAN_SHARE = 0.9  # a round counts as uncontended when the process ran >= 90% of its threads' wall time


def measure(steps: dict, args) -> dict:
    """Interleaved rounds: per model and round, seconds per step and the CPU share actually received."""
    rounds = {
        "times": {n: [] for n in steps},
        "shares": {n: [] for n in steps},
        "peaks": [],
        "load": [],
        "busy_before": [],
    }
    rounds["peaks"].append(matmul_peak_flops(args.matmul_n))
    rounds["load"].append(os.getloadavg()[0])
    for _ in range(args.rounds):
        rounds["busy_before"].append(wait_for_quiet(args.quiet_wait) if args.quiet_wait else None)
        for name, step in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step()
            wall = time.perf_counter() - t0
            rounds["times"][name].append(wall / args.steps)
            rounds["shares"][name].append((time.process_time() - c0) / (wall * args.threads))
        rounds["peaks"].append(matmul_peak_flops(args.matmul_n))
        rounds["load"].append(os.getloadavg()[0])
    return rounds


def summarize(rounds: dict, tokens: int, flops_per_token: float) -> dict:
    """Medians over uncontended rounds (all rounds if none was), paired ratios over rounds where both were."""
    peak = max(rounds["peaks"])
    times, shares = rounds["times"], rounds["shares"]
    n = len(next(iter(times.values())))
    clean = {name: [i for i in range(n) if shares[name][i] >= CLEAN_SHARE] for name in times}
    results = {}
    for name, ts in times.items():
        use = clean[name] or list(range(n))
        tps = [tokens / ts[i] for i in use]
        results[name] = {
            "tokens_per_s": statistics.median(tps),
            "step_s": tokens / statistics.median(tps),
            "mfu": statistics.median(tps) * flops_per_token / peak,
            "best_tokens_per_s": max(tokens / t for t in ts),
            "best_mfu": max(tokens / t for t in ts) * flops_per_token / peak,
            "clean_rounds": len(clean[name]),
            "per_round_tokens_per_s": [tokens / t for t in ts],
            "per_round_cpu_share": shares[name],
        }
    ratios = {}
    for other in times:
        if other == "diffusion":
            continue
        pairs = [i for i in clean["diffusion"] if i in clean[other]] or list(range(n))
        ratio = statistics.median([times[other][i] / times["diffusion"][i] for i in pairs])
        ratios[f"diffusion/{other}"] = {"speed_ratio": ratio, "pairs": len(pairs)}
    return {"matmul_peak_gflops": peak / 1e9, "results": results, "paired_speed_ratios": ratios}


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    vocab = args.vocab
    cfg = TransformerConfig(
        num_states=vocab + 1, d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, max_len=args.seq
    )
    steps, flops_per_token = make_steps(cfg, vocab, args.batch, args.seq, args.seed)
    if args.profile:
        print(profile(steps))
        return {}
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    rounds = measure(steps, args)
    return {
        "config": {k: getattr(args, k) for k in ("d_model", "n_layers", "n_heads", "seq", "batch", "vocab")},
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "flops_per_token": flops_per_token,
        **summarize(rounds, args.batch * args.seq, flops_per_token),
        "matmul_peaks_gflops": [p / 1e9 for p in rounds["peaks"]],
        "load_average_1min": rounds["load"],
        "host_busy_before_rounds": rounds["busy_before"],
    }


def markdown(report: dict) -> str:
    c = report["config"]
    lines = [
        f"Training throughput, d={c['d_model']}, {c['n_layers']} layers, {c['n_heads']} heads, "
        f"seq {c['seq']}, batch {c['batch']}, vocab {c['vocab']}, {report['threads']} threads, "
        f"torch {report['torch']}; matmul peak {report['matmul_peak_gflops']:.0f} GFLOP/s (best of "
        f"{len(report['matmul_peaks_gflops'])} in this process); {report['flops_per_token'] / 1e6:.1f} MFLOP/token.",
        "",
        "| model | tokens/s | step (s) | MFU | uncontended rounds | best tokens/s | best MFU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        n = len(r["per_round_tokens_per_s"])
        lines.append(
            f"| {name} | {r['tokens_per_s']:.0f} | {r['step_s']:.3f} | {100 * r['mfu']:.1f}% "
            f"| {r['clean_rounds']}/{n} | {r['best_tokens_per_s']:.0f} | {100 * r['best_mfu']:.1f}% |"
        )
    lines.append("")
    lines.append(
        f"tokens/s and MFU are medians over uncontended rounds (the process got >= {CLEAN_SHARE:.0%} of its "
        "threads' wall time; all rounds when none was)."
    )
    for name, r in report["paired_speed_ratios"].items():
        lines.append(f"- speed {name}: {r['speed_ratio']:.3f}x (median of {r['pairs']} paired rounds)")
    loads = ", ".join(f"{x:.1f}" for x in report["load_average_1min"])
    lines.append(f"- host load average during the run: {loads}")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Tokens/s of every round per model (hollow: the round got < 90% of its CPU time), median and MFU."""
    plt = pyplot(path)
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, r in enumerate(report["results"].values()):
        for tps, share in zip(r["per_round_tokens_per_s"], r["per_round_cpu_share"], strict=True):
            ax.plot(tps, i, "o", color="C0", fillstyle="full" if share >= 0.9 else "none")
        ax.plot(r["tokens_per_s"], i, "|", color="C3", markersize=22, mew=2)
        ax.text(r["tokens_per_s"], i + 0.3, f"median {r['tokens_per_s']:.0f} tok/s, MFU {100 * r['mfu']:.1f}%",
                ha="center", fontsize=8)
    ax.set_yticks(range(len(report["results"])), list(report["results"]))
    ax.set_ylim(-0.6, len(report["results"]) - 0.2)
    ax.set_xlabel(f"training tokens/s ({report['threads']} threads; matmul peak "
                  f"{report['matmul_peak_gflops']:.0f} GFLOP/s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="directory for throughput.json and throughput.md")
    p.add_argument("--quick", action="store_true", help="tiny model and one short round (CI smoke test)")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table per model and exit")
    p.add_argument("--d-model", dest="d_model", type=int, default=256)
    p.add_argument("--n-layers", dest="n_layers", type=int, default=6)
    p.add_argument("--n-heads", dest="n_heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--vocab", type=int, default=65, help="data vocabulary; the diffusion model adds MASK")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (ratios are per-round medians)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per model per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--matmul-n", dest="matmul_n", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--quiet-wait",
        dest="quiet_wait",
        type=float,
        default=0.0,
        help="before each round wait up to this many seconds for the host to go idle (shared hosts)",
    )
    p.add_argument("--replot", action="store_true", help="re-render throughput.md/.png from --out's JSON")
    args = p.parse_args(argv)
    if args.replot:
        report = json.loads((args.out / "throughput.json").read_text())
        (args.out / "throughput.md").write_text(markdown(report))
        plot(report, args.out / "throughput.png")
        return
    if args.quick:
        args.d_model, args.n_layers, args.n_heads, args.seq, args.batch = 64, 2, 2, 64, 4
        args.rounds, args.steps, args.warmup, args.matmul_n = 2, 1, 1, 512
    report = run(args)
    if not report:
        return
    md = markdown(report)
    print(md)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "throughput.json").write_text(json.dumps(report, indent=2))
        (args.out / "throughput.md").write_text(md)
        plot(report, args.out / "throughput.png")


if __name__ == "__main__":
    main()
