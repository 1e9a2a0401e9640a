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
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

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


def masked_ce_loss(model, x0: torch.Tensor, mask_id: int, gen: torch.Generator) -> torch.Tensor:
    """Time-free masked diffusion step (MDLM / RADD t-DCE under log-linear): mask w.p. t, CE / t."""
    B, L = x0.shape
    t = torch.rand(B, generator=gen).clamp_min(1e-3)  # (B,)
    masked = torch.rand(B, L, generator=gen) < t[:, None]  # (B, L)
    x_t = torch.where(masked, mask_id, x0)
    logits = model(x_t, t)  # (B, L, S)
    ce = F.cross_entropy(logits.reshape(B * L, -1), x0.reshape(-1), reduction="none").view(B, L)
    return ((ce * masked) / t[:, None]).sum() / (B * L)


def make_steps(cfg: TransformerConfig, vocab: int, batch: int, seq: int, seed: int):
    """name -> (model, step_fn, flops_per_token). Each step: forward, loss, backward, AdamW."""
    torch.manual_seed(seed)
    diff = DiffusionTransformer(cfg)
    ar_model = DiffusionTransformer(TransformerConfig(**{**cfg.to_dict(), "causal": True}))
    ar = ARWrapper(ar_model, vocab_size=vocab)
    enc = EncoderBaseline(cfg)
    gen = torch.Generator().manual_seed(seed)
    data = torch.randint(0, vocab, (batch, seq), generator=gen)
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
        "diffusion": stepper(diff, lambda: masked_ce_loss(diff, data, vocab, gen)),
        "ar": stepper(ar, lambda: ar.nll(data).mean() / seq),
        "nn.TransformerEncoder": stepper(enc, lambda: masked_ce_loss(enc, data, vocab, gen)),
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


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    vocab = args.vocab
    cfg = TransformerConfig(
        num_states=vocab + 1,
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        max_len=args.seq,
    )
    steps, flops_per_token = make_steps(cfg, vocab, args.batch, args.seq, args.seed)
    if args.profile:
        print(profile(steps))
        return {}
    peaks = [matmul_peak_flops(args.matmul_n)]
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    tokens = args.batch * args.seq
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - t0) / args.steps)
        peaks.append(matmul_peak_flops(args.matmul_n))
    peak = max(peaks)
    results = {}
    for name, ts in times.items():
        tps = [tokens / t for t in ts]
        results[name] = {
            "tokens_per_s": statistics.median(tps),
            "step_s": statistics.median(ts),
            "mfu": statistics.median(tps) * flops_per_token / peak,
            "best_tokens_per_s": max(tps),
            "best_mfu": max(tps) * flops_per_token / peak,
            "per_round_tokens_per_s": tps,
        }
    ratios = {
        f"diffusion/{other}": statistics.median([times[other][i] / times["diffusion"][i] for i in range(args.rounds)])
        for other in steps
        if other != "diffusion"
    }
    return {
        "config": {k: getattr(args, k) for k in ("d_model", "n_layers", "n_heads", "seq", "batch", "vocab")},
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "matmul_peak_gflops": peak / 1e9,
        "matmul_peaks_gflops": [p / 1e9 for p in peaks],
        "flops_per_token": flops_per_token,
        "results": results,
        "paired_speed_ratios": ratios,
    }


def markdown(report: dict) -> str:
    c = report["config"]
    lines = [
        f"Training throughput, d={c['d_model']}, {c['n_layers']} layers, {c['n_heads']} heads, "
        f"seq {c['seq']}, batch {c['batch']}, vocab {c['vocab']}, {report['threads']} threads, "
        f"torch {report['torch']}; matmul peak {report['matmul_peak_gflops']:.0f} GFLOP/s.",
        "",
        "| model | tokens/s (median) | step s (median) | MFU (median) | tokens/s (best) | MFU (best) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['tokens_per_s']:.0f} | {r['step_s']:.3f} | {100 * r['mfu']:.1f}% "
            f"| {r['best_tokens_per_s']:.0f} | {100 * r['best_mfu']:.1f}% |"
        )
    lines.append("")
    for name, ratio in report["paired_speed_ratios"].items():
        lines.append(f"- speed {name} (median of paired rounds): {ratio:.3f}x")
    return "\n".join(lines) + "\n"


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
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    main()
