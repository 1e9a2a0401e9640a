"""Do samples of a record model (proteins, DNA) end where they should? Validity and length KS, per model and mode.

For each trained model (a run directory, its pretrained/), draws --num samples of the model's context with
per-row seeds and reports, against the validation split's records that fit the context:

* validity: the fraction of samples that are exactly one well-formed record ([BOS] at 0, >= 1 residue
  letters, EOS, then only EOS / PAD; ``discdiff.evaluation.validity.record_validity``);
* length KS: the Kolmogorov-Smirnov statistic between the samples' body lengths and the validation ones.

Modes: "plain" (today's sampler: every position generated), "eos" (BOS pinned, BOS / PAD never drawn, the
model places EOS), "support" ("eos" with predictions kept on the record format's support: no EOS before a
letter, only EOS after one, records end inside the canvas; ``on_record_support``, what ``discdiff sample``
does), "length_first" (lengths drawn from the training split, EOS pinned after them).

    python benchmarks/records.py --model before=runs/proteins_pad --model after=runs/proteins_eos \\
        --data data/proteins --out docs/results/records/proteins --modes plain eos support length_first
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import torch

from discdiff.evaluation.records import (
    length_histogram,
    record_format,
    record_letters,
    reference_lengths,
    sample_records,
)
from discdiff.evaluation.validity import ks_noise_floor, record_stats
from discdiff.training import from_pretrained


def measure(name: str, path: str, args) -> list[dict]:
    pre = from_pretrained(path)
    context = pre.config["context"]
    fmt = record_format(pre.tokenizer)
    letters = record_letters(pre.tokenizer, pre.vocab_size)
    ref = reference_lengths(args.data, context=context, long_records=args.long_records)
    train = reference_lengths(args.data, context=context, split="train", long_records=args.long_records)
    counts = length_histogram(train, fmt.max_body(context))
    floor = ks_noise_floor(train, ref, args.num)  # what a perfect sampler's KS reads at this many samples
    print(f"[{name}] {len(ref)} reference records; KS noise floor at {args.num} samples: "
          f"mean {floor[0]:.3f}, 95th percentile {floor[1]:.3f}", flush=True)
    rows = []
    for mode in args.modes:
        t0 = time.perf_counter()
        samples = sample_records(pre, args.num, context, mode=mode, length_counts=counts,
                                 seeds=list(range(args.num)), sampler=args.sampler, steps=args.steps)
        stats = record_stats(samples, fmt, letters, ref)
        rows.append({"model": name, "path": str(path), "mode": mode, **stats.to_dict(),
                     "ks_floor_mean": round(floor[0], 4), "ks_floor_p95": round(floor[1], 4),
                     "reference_records": len(ref),
                     "seconds": round(time.perf_counter() - t0, 1),
                     "example": pre.tokenizer.decode(samples[0].tolist())[:120]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], args) -> str:
    lines = [f"# Records: validity and length KS ({args.data})", "",
             f"{args.num} samples per row, sampler {args.sampler}, {args.steps} steps, seeds 0..{args.num - 1}; "
             f"validation records that fit the context (long_records={args.long_records}).", "",
             "KS noise floor: the KS of the same number of lengths drawn from the training split's own records "
             "(a perfect sampler), mean and 95th percentile over 200 draws; a KS is evidence of a wrong length law "
             "only above it.", "",
             "| model | mode | validity | length KS | KS floor mean / 95% | mean length | val. mean | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        floor = f"{r['ks_floor_mean']:.3f} / {r['ks_floor_p95']:.3f}" if "ks_floor_mean" in r else "-"
        lines.append(f"| {r['model']} | {r['mode']} | {r['validity']:.3f} | {r['length_ks']:.3f} | {floor} | "
                     f"{r['mean_length']:.1f} | {r['reference_mean_length']:.1f} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=DIR",
                        help="a trained model to measure (repeatable)")
    parser.add_argument("--data", required=True, help="the prepared corpus the models were trained on")
    parser.add_argument("--modes", nargs="+", default=["plain", "eos", "support", "length_first"])
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--sampler", default="ancestral")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--long-records", default="drop", choices=("drop", "crop"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        rows += measure(name, path, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "records.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "rows": rows}, indent=1) + "\n")
    (args.out / "records.md").write_text(markdown(rows, args))
    print(markdown(rows, args))


if __name__ == "__main__":
    main()
