"""`discdiff sample`: draw sequences from a trained model (registered in discdiff/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from discdiff import cli_condition, console

__all__ = ["DESCRIPTION", "DEVICE_HELP", "HELP", "MODEL_HELP", "add_arguments", "run"]

HELP = "draw samples from a trained model (unconditional, from a prompt, or infilling)"

MODEL_HELP = ("a run directory (its pretrained/), a save_pretrained directory, a checkpoint directory, or a "
              "transformers masked-LM directory or hf:NAME (docs/hf.md)")
DEVICE_HELP = "cpu, cuda, cuda:1, mps, or auto (cuda if there is a GPU, else cpu); checked before loading"

DESCRIPTION = """Draw sequences from a trained model; print them, or write JSON lines with --out.

    discdiff sample --model runs/sc --num-samples 4 --length 256
    discdiff sample --model runs/sc --prompt "ROMEO:" --length 128 --sampler first_hitting
    discdiff sample --model runs/sc --template "To be, or {6} to be" --out samples.jsonl
    discdiff sample --model runs/sc-blocks --max-length 2000     # a block model: until EOS or 2000 tokens
    discdiff sample --model runs/images-cond --label sandal --guidance 2     # a class-conditional model
    discdiff sample --model runs/sft --prompt "$(printf 'ROMEO.\nGood morrow.\n\nJULIET.\n')"  # an SFT model answers

    discdiff sample --model runs/proteins --num-samples 8 --stats           # records end at their EOS
    discdiff sample --model runs/proteins --record-length auto               # length first, then residues
    discdiff sample --model runs/sc --prompts-file prompts.txt --length 64   # one prompt per line

--model takes a run directory (its pretrained/), a save_pretrained directory or one checkpoint
(runs/sc/checkpoints/step_00001000). Row i draws from its own generator, seeded by (--seed, i): the same
--seed gives the same samples, and row i is the same whatever --num-samples or the other prompts are.
A model trained on records (data.records=eos) prints each record up to its first EOS; BOS stays at
position 0 and is never generated elsewhere."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, metavar="DIR", help=MODEL_HELP)
    p.add_argument("--num-samples", type=console.positive_int, default=4, metavar="N",
                   help="how many sequences to draw")
    p.add_argument("--length", type=console.positive_int, default=None, metavar="N",
                   help="tokens per sequence (default: the training context)")
    p.add_argument("--max-length", type=console.positive_int, default=None, metavar="N",
                   help="block models: generate blocks until EOS or N tokens, beyond the training context with a "
                   "sliding window over the KV cache")
    from discdiff.sampling import add_sampler_arguments

    add_sampler_arguments(p)  # --sampler --steps --temperature --top-k --top-p --guidance and the confidence
    # sampler's --threshold --block-length --remasking --greedy, from discdiff.sampling.OPTIONS
    cli_condition.add_label_argument(p)
    p.add_argument("--seed", type=console.seed, default=0, metavar="N", help="seed of the sampling generator")
    p.add_argument("--device", type=console.device, default="cpu", help=DEVICE_HELP)
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write samples as JSON lines to this file (default: print them)")
    p.add_argument("--record-length", default=None, metavar="N|auto",
                   help="record models: generate records of N tokens (auto: each row's length drawn from the "
                   "training records'), EOS pinned after them")
    p.add_argument("--stats", action="store_true",
                   help="record models: print the fraction of well-formed records and their mean length")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", default=None, metavar="TEXT",
                      help="text the samples start with; the rest (up to --length) is generated")
    cond.add_argument("--prompts-file", default=None, type=Path, metavar="FILE",
                      help="one prompt per line; --num-samples rows for each (prompts of different lengths in "
                      "one batch)")
    cond.add_argument("--template", default=None, metavar="TEXT",
                      help="an infill template: '_' is one blank token, '{N}' is N blanks, '\\_' a literal "
                      "underscore, e.g. 'To be, or {6} to be'; known parts stay fixed")


def _literal(text: str) -> str:
    """A prompt as template text: its characters literal, blanks appended by the length."""
    return "".join("\\" + c if c in "_{}\\" else c for c in text)


def _prompt_texts(args) -> list[str] | None:
    if args.prompts_file is not None:
        if not args.prompts_file.is_file():
            raise ValueError(f"--prompts-file {args.prompts_file}: no such file")
        lines = args.prompts_file.read_text(encoding="utf-8").splitlines()
        if not lines or not all(lines):
            raise ValueError(f"--prompts-file {args.prompts_file}: needs one non-empty prompt per line")
        return lines
    return None if args.prompt is None else [args.prompt]


def _condition(args, pre, length: int, fmt=None):
    """A Condition from --prompt / --prompts-file (prefixes, one row each per sample) or --template (blanks
    to fill), after BOS when the model's records start with one; or None. Returns (condition, rows)."""
    texts = _prompt_texts(args)
    if texts is None and args.template is None:
        return None, args.num_samples
    if pre.tokenizer is None:
        raise ValueError("--prompt / --prompts-file / --template need a model saved with its tokenizer")
    from discdiff.data.template import template_ids
    from discdiff.sampling import infill_rows

    offset = fmt.offset if fmt is not None else 0
    head = [fmt.bos_id] if offset else []
    if texts is None:  # a template: without --length it sets its own
        fixed = args.length is not None
        ids = head + template_ids(args.template, pre.tokenizer, length - offset if fixed else None, length - offset)
        return infill_rows([ids] * args.num_samples), args.num_samples
    for t in texts:
        cli_condition.prompt_limit(pre, len(pre.tokenizer.encode(t)) + offset, length)
    rows = [head + template_ids(_literal(t), pre.tokenizer, length - offset, length - offset) for t in texts]
    return infill_rows([r for r in rows for _ in range(args.num_samples)]), len(rows) * args.num_samples


def _record_lengths(args, pre, fmt, rows: int, length: int):
    """--record-length: None, N for every row, or 'auto' (drawn from the training records, seeded by --seed)."""
    from discdiff.sampling import record_lengths

    counts = (pre.config.get("records") or {}).get("length_counts")
    return record_lengths(args.record_length, fmt, rows, length, counts, seed=args.seed, name="--record-length")


def _record_format(pre):
    """The model's record layout (a model trained with data.records=eos), else None."""
    from discdiff.sampling import record_format_of

    return None if pre.is_ar else record_format_of(pre.config.get("records"))


def _check_output_file(path: Path | None) -> None:
    """Refuse an --out that cannot be written before any work is done (not after sampling)."""
    if path is None:
        return
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; name a file, e.g. --out {path / 'samples.jsonl'}")
    if not path.parent.is_dir():
        raise ValueError(f"--out {path}: the folder {path.parent} does not exist; create it first")


def _block_options(args, pre) -> dict:
    """``--max-length`` for a block model: {length: N, eos_id: the tokenizer's EOS, if it has one}."""
    if args.max_length is None:
        return {}
    block_size = getattr(pre.diffusion, "block_size", None)
    if block_size is None:
        kind = "the autoregressive baseline" if pre.is_ar else "a full-sequence model"
        raise ValueError(f"--max-length needs a block diffusion model (model.block_size); this is {kind}: "
                         "use --length")
    if args.length is not None:
        raise ValueError("give --length or --max-length, not both")
    if args.template is not None:
        raise ValueError("--max-length generates open-ended text: use it with --prompt, not --template")
    eos_id = getattr(pre.tokenizer, "eos_id", None) if pre.tokenizer is not None else None
    return {"length": args.max_length} | ({"eos_id": eos_id} if eos_id is not None else {})


def run(args) -> int:
    import torch

    from discdiff.hf import load_pretrained as from_pretrained  # discdiff and transformers masked-LM dirs

    _check_output_file(args.out)
    pre = from_pretrained(args.model, device=args.device)
    block_options = _block_options(args, pre)
    length = args.length if args.length is not None else pre.config["context"]
    length = block_options.pop("length", length)
    fmt = _record_format(pre)
    if args.stats and fmt is None:
        raise ValueError("--stats needs a model trained on records (data.records=eos)")
    condition, rows = _condition(args, pre, length, fmt)
    label = cli_condition.resolve_label(args.label, pre)
    if condition is not None:
        length = condition.tokens.shape[1]  # a template without --length sets its own
    if pre.is_ar:
        if args.template is not None or args.record_length is not None or label is not None:
            raise ValueError("--template / --record-length / --label need a diffusion model; the AR baseline "
                             "continues a --prompt left to right")
        prompts = None if condition is None else [row[known].tolist() for row, known
                                                  in zip(condition.tokens, condition.known, strict=True)]
        gen = torch.Generator(args.device).manual_seed(args.seed)
        ids = pre.diffusion.sample(pre.model, rows, length, generator=gen, device=args.device, prompt=prompts,
                                   temperature=args.temperature, top_k=args.top_k, top_p=args.top_p).samples
    else:
        ids = _sample_diffusion(args, pre, length, rows, condition, fmt, label, block_options)
    _write(args, pre, ids, fmt, condition, label)
    return 0


def _sample_diffusion(args, pre, length: int, rows: int, condition, fmt, label, block_options: dict):
    from discdiff.sampling import (
        SAMPLERS,
        check_memory,
        default_record_sampler,
        default_sampler,
        default_sampler_reason,
        record_sampling,
        sampler_options_from_args,
        sampling_memory,
    )
    from discdiff.seeding import seed_for

    options = sampler_options_from_args(args)  # the library's checks, in the CLI's words:
    graph, kind = pre.diffusion.graph, type(pre.diffusion.graph).__name__
    cli_condition.check_null_guidance(cli_condition.conditioning_of(pre), options.get("guidance"),
                                      options.get("guidance_mode", "null"), label, condition is not None)
    if options.get("guidance") and graph.mask_id is None and (label is None or args.guidance_mode != "null"):
        raise ValueError(f"--guidance needs a masked (absorbing) model; this one is {kind}")
    fits = [n for n, s in SAMPLERS.items() if not (s.needs_mask and graph.mask_id is None)]
    if options.get("sampler", fits[0]) not in fits:
        raise ValueError(f"--sampler {options['sampler']} needs a masked (absorbing) model; this one is "
                         f"{kind}: use one of {', '.join(fits)}")
    if "sampler" not in options:  # a record model: first_hitting keeps the format at every step
        param = pre.diffusion.parameterization
        options["sampler"], reason = ((default_sampler(graph, param), default_sampler_reason(graph, param))
                                      if fmt is None else
                                      default_record_sampler(graph, param, args.record_length is not None))
        print(f"sampler: {reason}", file=sys.stderr)
    model = pre.model
    if fmt is not None:  # BOS pinned at 0 (and EOS after a chosen length); specials never drawn inside
        lengths = _record_lengths(args, pre, fmt, rows, length)
        prompt = None if condition is None else condition.validate(rows, length, graph.num_clean_states)
        model, condition = record_sampling(pre.model, fmt, graph.mask_id, rows, length, lengths, prompt)
    elif args.record_length is not None:
        _record_lengths(args, pre, fmt, rows, length)  # raises: not a record model
    # the memory guard before the per-row seeds: 10^8 rows must be refused at once, not after 10^8 generators
    check_memory(sampling_memory(rows, length, graph.num_states, steps=options.get("steps", 128), trajectory_len=0,
                                 guidance=bool(options.get("guidance"))), args.device)
    extra = {**block_options, **({"label": label} if label is not None else {})}
    extra["seeds"] = [seed_for(args.seed, i) for i in range(rows)]  # row i: the same whatever the batch
    return pre.diffusion.sample(model, rows, length, device=args.device, condition=condition,
                                **options, **extra).samples


def _write(args, pre, ids, fmt, condition, label) -> None:
    """Print the samples (records cut at their first EOS; a prompt-response model's answer) or write them as
    JSON lines; --stats to stderr."""
    bodies = fmt.cut(ids.cpu()) if fmt is not None else ids.tolist()
    answers = args.prompt is not None and cli_condition.conditioning_of(pre).get("prompt_response")
    prompt_length = int(condition.known[0].sum()) if answers else 0
    rows = []
    for body in bodies:
        text = pre.tokenizer.decode(body) if pre.tokenizer is not None else None
        rows.append({"ids": body, "text": text.tolist() if hasattr(text, "tolist") else text})  # images: levels
        if answers:  # a prompt-response model: the answer after the prompt, up to its first EOS
            rows[-1]["response"] = cli_condition.response_of(body, prompt_length, pre.tokenizer)
        if label is not None:
            rows[-1]["label"] = label
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        for i, r in enumerate(rows):
            shown = r.get("response", r["text"])
            print(f"--- sample {i}\n{shown if shown is not None else r['ids']}")
    if args.stats:
        from discdiff.evaluation.records import record_letters
        from discdiff.evaluation.validity import record_stats

        stats = record_stats(ids.cpu(), fmt, record_letters(pre.tokenizer, pre.vocab_size))
        print(f"records: {stats.validity:.1%} well-formed of {stats.samples}; mean length {stats.mean_length:.1f}",
              file=sys.stderr)
