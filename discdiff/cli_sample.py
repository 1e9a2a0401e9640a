"""`discdiff sample`: draw sequences from a trained model (registered in discdiff/cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from discdiff import cli_condition, console

__all__ = ["DESCRIPTION", "DEVICE_HELP", "HELP", "MODEL_HELP", "add_arguments", "run"]

HELP = "draw samples from a trained model (unconditional, from a prompt, or infilling)"

MODEL_HELP = "a run directory (its pretrained/), a save_pretrained directory or a checkpoint directory"
DEVICE_HELP = "cpu, cuda, cuda:1, mps, or auto (cuda if there is a GPU, else cpu); checked before loading"

DESCRIPTION = """Draw sequences from a trained model; print them, or write JSON lines with --out.

    discdiff sample --model runs/sc --num-samples 4 --length 256
    discdiff sample --model runs/sc --prompt "ROMEO:" --length 128 --sampler first_hitting
    discdiff sample --model runs/sc --template "To be, or {6} to be" --out samples.jsonl
    discdiff sample --model runs/sc-blocks --max-length 2000     # a block model: until EOS or 2000 tokens
    discdiff sample --model runs/images-cond --label sandal --guidance 2     # a class-conditional model
    discdiff sample --model runs/sft --prompt "$(printf 'ROMEO.\nGood morrow.\n\nJULIET.\n')"  # an SFT model answers

--model takes a run directory (its pretrained/), a save_pretrained directory or one checkpoint
(runs/sc/checkpoints/step_00001000). The same --seed gives the same samples."""


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
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", default=None, metavar="TEXT",
                      help="text the samples start with; the rest (up to --length) is generated")
    cond.add_argument("--template", default=None, metavar="TEXT",
                      help="an infill template: '_' is one blank token, '{N}' is N blanks, '\\_' a literal "
                      "underscore, e.g. 'To be, or {6} to be'; known parts stay fixed")


def _condition(args, pre, length: int):
    """A Condition from --prompt (a prefix) or --template (blanks to fill), or None."""
    text = args.template
    if args.prompt is not None:
        text = "".join("\\" + c if c in "_{}\\" else c for c in args.prompt)  # literal text, blanks appended
    if text is None:
        return None
    if pre.tokenizer is None:
        raise ValueError("--prompt / --template need a model saved with its tokenizer")
    from discdiff.data.template import template_ids
    from discdiff.sampling import infill_template

    if args.prompt is not None:
        cli_condition.prompt_limit(pre, len(pre.tokenizer.encode(args.prompt)), length)
    ids = template_ids(text, pre.tokenizer, length if args.prompt is not None or args.length is not None else None,
                       length)
    return infill_template(ids)


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

    from discdiff.training import from_pretrained

    _check_output_file(args.out)
    pre = from_pretrained(args.model, device=args.device)
    block_options = _block_options(args, pre)
    length = args.length if args.length is not None else pre.config["context"]
    length = block_options.pop("length", length)
    gen = torch.Generator(args.device).manual_seed(args.seed)
    condition = _condition(args, pre, length)
    label = cli_condition.resolve_label(args.label, pre)
    if condition is not None:
        length = condition.tokens.shape[1]  # a template without --length sets its own
    if pre.is_ar:
        if condition is not None or label is not None:
            raise ValueError("--prompt / --template need a diffusion model; the AR baseline samples unprompted here")
        ids = pre.diffusion.sample(pre.model, args.num_samples, length, generator=gen, device=args.device,
                                   temperature=args.temperature, top_k=args.top_k, top_p=args.top_p).samples
    else:
        from discdiff.sampling import SAMPLERS, default_sampler, default_sampler_reason, sampler_options_from_args

        options = sampler_options_from_args(args)  # the library's checks, in the CLI's words:
        graph, kind = pre.diffusion.graph, type(pre.diffusion.graph).__name__
        conditioning = cli_condition.conditioning_of(pre)
        cli_condition.check_null_guidance(conditioning, options.get("guidance"), options.get("guidance_mode", "null"),
                                          label, condition is not None)
        if options.get("guidance") and graph.mask_id is None and (label is None or args.guidance_mode != "null"):
            raise ValueError(f"--guidance needs a masked (absorbing) model; this one is {kind}")
        fits = [n for n, s in SAMPLERS.items() if not (s.needs_mask and graph.mask_id is None)]
        if options.get("sampler", fits[0]) not in fits:
            raise ValueError(f"--sampler {options['sampler']} needs a masked (absorbing) model; this one is "
                             f"{kind}: use one of {', '.join(fits)}")
        if "sampler" not in options:
            options["sampler"] = default_sampler(graph, pre.diffusion.parameterization)
            print(f"sampler: {default_sampler_reason(graph, pre.diffusion.parameterization)}", file=sys.stderr)
        out = pre.diffusion.sample(pre.model, args.num_samples, length, generator=gen, device=args.device,
                                   condition=condition, **options, **block_options,
                                   **({"label": label} if label is not None else {}))
        ids = out.samples
    rows = []
    answers = args.prompt is not None and cli_condition.conditioning_of(pre).get("prompt_response")
    prompt_length = int(condition.known[0].sum()) if answers else 0
    for row in ids.tolist():
        text = pre.tokenizer.decode(row) if pre.tokenizer is not None else None
        rows.append({"ids": row, "text": text.tolist() if hasattr(text, "tolist") else text})  # images: grey levels
        if answers:  # a prompt-response model: the answer after the prompt, up to its first EOS
            rows[-1]["response"] = cli_condition.response_of(row, prompt_length, pre.tokenizer)
        if label is not None:
            rows[-1]["label"] = label
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        for i, r in enumerate(rows):
            shown = r.get("response", r["text"])
            print(f"--- sample {i}\n{shown if shown is not None else r['ids']}")
    return 0
