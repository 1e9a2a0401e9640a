"""The quickstart's levers, one at a time, at its fixed amount of work (configs/quickstart.yaml).

    python benchmarks/quickstart_levers.py base                                   # the preset as it is
    python benchmarks/quickstart_levers.py lr4e-3 --set optim.lr=4e-3
    python benchmarks/quickstart_levers.py probe --probe                           # step time only
    python benchmarks/quickstart_levers.py ar800-b4 --ar-steps 800 --set model.block_size=4 steps=560

``--ar-steps N`` first trains the preset's backbone as the AR baseline for N steps (kind ar, same optimiser
settings), then the lever's run starts from it (``init_from``, as SDAR / Fast-dLLM v2 do); ``total_cost`` is
then the AR steps' measured cost plus the run's, as a fraction of the preset's whole run (1.0 = the same work).

Each run trains the preset with the overrides given, then judges the raw weights and, from the same run,
the EMA of each decay in --emas (an EMA does not change training, so one run measures them all) with the
quickstart's own judge (discdiff.quickstart.evaluate_quickstart: the t-DCE bound on the same seeded spread of
validation windows every time, and the words-real fraction of ancestral samples at temperature 1).

Load: seconds per step of the preset's model (the reference) are measured in the same process just before
training, so a run's cost is reported as a ratio to the reference, whatever the machine's load; a quiet
machine's reference (measured with --probe at load < 1) turns it into quiet-machine minutes. Rows go to
docs/results/quickstart/levers.jsonl, and the table to docs/results/quickstart/levers.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from discdiff.data.kinds import load_tokenizer  # noqa: E402
from discdiff.evaluation.words import load_corpus_words  # noqa: E402
from discdiff.quickstart import PRESET, Settings, evaluate_quickstart, quickstart_config  # noqa: E402
from discdiff.training import Trainer  # noqa: E402
from discdiff.training.config import apply_overrides, config_from_dict  # noqa: E402
from discdiff.training.ema import EMA  # noqa: E402

OUT = ROOT / "docs" / "results" / "quickstart"
DATA = ROOT / "data" / "shakespeare"
PRESET_STEPS = 2000  # configs/quickstart.yaml's steps: total_cost is a fraction of that run's work


def step_seconds(overrides, threads: int, steps: int = 4, ar: bool = False) -> float:
    """Seconds per training step of the preset with ``overrides`` (one warm-up step, then ``steps``)."""
    with tempfile.TemporaryDirectory() as tmp:
        make = ar_config if ar else (lambda out, o: quickstart_config(DATA, out, o))
        cfg = make(tmp, [*overrides, "progress=false", "eval_every=0", f"threads={threads}"])
        trainer = Trainer(cfg)
        batches = iter(trainer.loader)
        trainer.train_step(next(batches))
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(next(batches))
        trainer.close()
        return (time.perf_counter() - start) / steps


def ar_config(out_dir: str, overrides=()):
    """The preset's backbone and optimiser as the AR baseline (its diffusion keys do not apply to kind ar)."""
    preset = yaml.safe_load(PRESET.read_text(encoding="utf-8"))
    preset["diffusion"] = {"kind": "ar"}
    return config_from_dict(apply_overrides(preset, [f"data.train={DATA}", f"out_dir={out_dir}", *overrides]))


def train_ar(steps: int, threads: int, out_dir: str) -> None:
    """The AR warm start: ``ar_config`` for ``steps`` steps, saved to out_dir (its pretrained/ model)."""
    cfg = ar_config(out_dir, [f"steps={steps}", "progress=false", "eval_every=0", "save_every=0",
                              f"threads={threads}"])
    trainer = Trainer(cfg, overwrite=True)
    trainer.fit()
    trainer.close()


def train(overrides, threads: int, decays) -> tuple[Trainer, dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = quickstart_config(DATA, tmp, [*overrides, "progress=false", "eval_every=0", "optim.ema_decay=0",
                                            f"threads={threads}"])
        trainer = Trainer(cfg)
        emas = {d: EMA(trainer.model, d) for d in decays}
        batches = iter(trainer.loader)
        start = time.perf_counter()
        while trainer.step < cfg.steps:
            step = trainer.step
            row = trainer.train_step(next(batches))
            for ema in emas.values():
                ema.update(step)
            if trainer.step % 250 == 0:
                print(f"  step {trainer.step}: loss {row['loss']:.3f}", flush=True)
        trainer.close()
        return trainer, emas, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name")
    parser.add_argument("--set", nargs="*", default=[], help="dotted overrides of configs/quickstart.yaml")
    parser.add_argument("--emas", default="0.99,0.995,0.998", help="EMA decays judged besides the raw weights")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", help="also save the trained weights (and each EMA) to this file; with --ar-only, "
                                       "keep the AR run in this directory (its pretrained/ is a judge)")
    parser.add_argument("--samplers", metavar="PRETRAINED",
                        help="no training: judge this pretrained model's words-real fraction under several samplers")
    parser.add_argument("--judge", metavar="AR_PRETRAINED",
                        help="with --samplers: also score every sampler's passages (and the real windows) under "
                             "this AR model (e.g. one kept by --ar-only N --save DIR): gen-PPL in bits/char")
    parser.add_argument("--probe", action="store_true", help="only measure the reference's seconds per step")
    parser.add_argument("--ar-only", type=int, metavar="STEPS", default=0,
                        help="calibration: the backbone as the AR baseline for STEPS steps, judged the same way "
                             "(its exact NLL on the quickstart's windows, words real of its samples at temperature 1)")
    parser.add_argument("--ar-steps", type=int, default=0,
                        help="warm start: train the backbone as the AR baseline for this many steps first")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.samplers:
        return compare_samplers(args.samplers, args.judge)
    if args.ar_only:
        return judge_ar(args.name, args.ar_only, args.threads, args.save)
    load0 = os.getloadavg()
    reference = step_seconds([], args.threads)
    if args.probe:
        print(json.dumps({"name": args.name, "threads": args.threads, "reference_s_per_step": reference,
                          "load_before": load0, "load_after": os.getloadavg()}))
        return
    own = step_seconds(args.set, args.threads)
    ar_own = step_seconds([], args.threads, ar=True) if args.ar_steps else 0.0
    with tempfile.TemporaryDirectory() as warm:
        overrides = list(args.set)
        if args.ar_steps:
            train_ar(args.ar_steps, args.threads, warm)
            overrides.append(f"init_from={warm}")
        trainer, emas, seconds = train(overrides, args.threads, [float(d) for d in args.emas.split(",") if d])
    if args.save:
        torch.save({"config": args.set, "model": trainer.model.state_dict(),
                    "ema": {d: e.full_state() for d, e in emas.items()}}, args.save)
    tok = load_tokenizer(DATA / "tokenizer")
    vocabulary = load_corpus_words(DATA)
    model, settings, context = trainer.model.eval(), Settings(), trainer.cfg.data.context
    common = {"name": args.name, "set": args.set, "steps": trainer.cfg.steps, "threads": args.threads,
              "reference_s_per_step": reference, "s_per_step": seconds / trainer.cfg.steps,
              "cost_ratio": own / reference, "load_before": load0, "load_after": os.getloadavg(),
              "ar_steps": args.ar_steps, "ar_cost_ratio": ar_own / reference,
              "total_cost": (args.ar_steps * ar_own + trainer.cfg.steps * own) / (PRESET_STEPS * reference),
              "command": " ".join(["python benchmarks/quickstart_levers.py", *sys.argv[1:]])}
    for decay in [0.0, *emas]:
        with emas[decay].swapped_in() if decay else _nothing():
            rep = evaluate_quickstart(model, trainer.diffusion, tok, DATA, context, settings, vocabulary)
        row = {**common, "ema": decay, "bound_bits": rep.bound_bits, "ci_bits": rep.ci_bits,
               "words_real": rep.words.fraction, "words": rep.words.words,
               "sample_entropy_bits": rep.sample_entropy_bits, "reference_words_real": rep.reference_words.fraction,
               "unigram_words_real": rep.unigram_words.fraction, "passage": rep.passages[0]}
        print(json.dumps(row), flush=True)
        OUT.mkdir(parents=True, exist_ok=True)
        with open(OUT / "levers.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    write_table()


def judge_ar(name: str, steps: int, threads: int, keep: str | None = None) -> None:
    """The AR baseline on the quickstart's backbone for ``steps`` steps: exact NLL on the quickstart's validation
    windows and the words-real fraction of its samples at temperature 1: what the same work buys a model that
    needs no bound, to read the diffusion rows against."""
    from discdiff.evaluation import ar_nll, load_eval_data, unigram_entropy
    from discdiff.evaluation.words import decode_text, words_real
    from discdiff.training import from_pretrained

    load0, settings = os.getloadavg(), Settings()
    with tempfile.TemporaryDirectory() as tmp:
        run = keep or tmp
        start = time.perf_counter()
        train_ar(steps, threads, run)
        seconds = time.perf_counter() - start
        pre = from_pretrained(Path(run) / "pretrained")
    context = pre.config["context"]
    data = load_eval_data(DATA, context=context, max_sequences=settings.windows, seed=settings.seed)
    res = ar_nll(pre.model, data, vocab_size=pre.vocab_size)
    gen = torch.Generator().manual_seed(settings.seed)
    out = pre.diffusion.sample(pre.model, settings.samples, context, generator=gen, temperature=1.0)
    passages = [decode_text(pre.tokenizer, row.tolist()) for row in out.samples]
    words = words_real(passages, load_corpus_words(DATA))
    lo, hi = res.ci_nats_per_token
    ln2 = 0.6931471805599453
    row = {"name": name, "set": ["AR baseline"], "steps": steps, "threads": threads, "ar_only": True,
           "train_s": round(seconds, 1), "exact_bits": res.nats_per_token / ln2, "ci_bits": [lo / ln2, hi / ln2],
           "words_real": words.fraction, "words": words.words,
           "sample_entropy_bits": unigram_entropy(out.samples).pooled / ln2, "passage": passages[0],
           "load_before": load0, "load_after": os.getloadavg(),
           "command": " ".join(["python benchmarks/quickstart_levers.py", *sys.argv[1:]])}
    print(json.dumps(row), flush=True)
    with open(OUT / "ar_calibration.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


# (sampler, temperature, options): every temperature-1 row with one token per call is exact for an exact model
# except low_confidence, which picks the position after seeing the draw (tests/sampling/test_exactness.py); the
# confidence sampler's 128 steps (Settings.sampler_steps) over 128 positions unmask one token per call
SAMPLERS = [("first_hitting", 1.0, ()), ("ancestral", 1.0, ()),
            ("confidence", 1.0, (("block_length", 1), ("remasking", "random"))),  # left to right
            ("confidence", 1.0, (("remasking", "entropy"),)),
            ("confidence", 1.0, (("remasking", "margin"),)),
            ("confidence", 1.0, (("remasking", "max_prob"),)),
            ("confidence", 1.0, (("remasking", "low_confidence"),)),
            ("first_hitting", 0.8, ()), ("first_hitting", 0.6, ())]


def compare_samplers(pretrained, judge_run=None) -> None:
    """The words-real fraction of one trained model's passages under each sampler and temperature, with the
    passages' character entropy (sharpening raises the first by lowering the second) and, given an AR judge,
    their gen-PPL under it in bits/char (sharpening drives it below real text's)."""
    from dataclasses import replace

    from discdiff.evaluation import ARJudge, generative_perplexity, load_eval_data
    from discdiff.training import from_pretrained

    pre = from_pretrained(pretrained)
    vocabulary = load_corpus_words(DATA)
    judge = None if judge_run is None else ARJudge.from_pretrained(from_pretrained(Path(judge_run) / "pretrained"),
                                                                   name="AR judge")

    def judged(samples) -> str:
        if judge is None:
            return "-"
        rep = generative_perplexity(samples, judge, categorical="float64")
        return f"{rep.nll_nats_per_token / 0.6931471805599453:.2f}"

    load0 = os.getloadavg()
    lines = [f"Model: {pretrained} (the quickstart's); judge: {judge_run or 'none'}. Command: python "
             f"benchmarks/quickstart_levers.py samplers {' '.join(sys.argv[2:])}\n",
             "| sampler | options | temperature | model calls | words real | character entropy (bits) | "
             "judge bits/char | passage |", "|---|---|---|---|---|---|---|---|"]
    for sampler, temperature, options in SAMPLERS:
        settings = replace(Settings(), sampler=sampler, temperature=temperature, options=options, windows=32,
                           draws=2)
        rep = evaluate_quickstart(pre.model, pre.diffusion, pre.tokenizer, DATA, pre.config["context"], settings,
                                  vocabulary)
        passage = rep.passages[0].replace("\n", " / ").replace("|", "\\|")
        opts = " ".join(f"{k}={v}" for k, v in options) or "-"
        lines.append(f"| {sampler} | {opts} | {temperature:g} | {rep.model_calls} | {rep.words} | "
                     f"{rep.sample_entropy_bits:.2f} | {judged(rep.samples)} | {passage} |")
        print(lines[-1], flush=True)
    real = torch.cat([t for t, _ in load_eval_data(DATA, context=pre.config["context"], max_sequences=32,
                                                      seed=Settings().seed)])
    lines.append(f"| validation text | - | - | - | {rep.reference_words} | {rep.reference_entropy_bits:.2f} | "
                 f"{judged(real)} | |")
    lines.append(f"| character unigram | - | - | - | {rep.unigram_words} | - | - | |")
    lines.append(f"\nLoad average {load0[0]:.1f} before, {os.getloadavg()[0]:.1f} after.")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "samplers.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def write_table() -> None:
    rows = [json.loads(line) for line in (OUT / "levers.jsonl").read_text(encoding="utf-8").splitlines() if line]
    lines = ["| run | overrides | EMA | steps | bound bits/char [95% CI] | words real | sample entropy | "
             "cost vs preset | work vs preset run | s/step (ref s/step), load |", "|---" * 10 + "|"]
    for r in rows:
        lo, hi = r["ci_bits"]
        work = r.get("total_cost", r["cost_ratio"] * r["steps"] / PRESET_STEPS)
        warm = f"AR {r['ar_steps']} steps, then " if r.get("ar_steps") else ""
        lines.append(f"| {r['name']} | {warm}{' '.join(r['set']) or '(preset)'} | {r['ema'] or 'none'} | "
                     f"{r['steps']} | "
                     f"{r['bound_bits']:.3f} [{lo:.3f}, {hi:.3f}] | {r['words_real']:.2f} ({r['words']}) | "
                     f"{r['sample_entropy_bits']:.2f} | {r['cost_ratio']:.2f} | {work:.2f} | {r['s_per_step']:.2f} "
                     f"({r['reference_s_per_step']:.2f}), {r['load_before'][0]:.1f}-{r['load_after'][0]:.1f} |")
    (OUT / "levers.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
