"""`discdiff convert sedd|mdlm SRC OUT`: a published SEDD or MDLM checkpoint into a discdiff pretrained/ directory.

A command module (HELP, DESCRIPTION, add_arguments, run) that discdiff/cli.py imports by name only when the
command runs; it never imports discdiff/cli.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "import a published SEDD or MDLM checkpoint (downloaded directory) as a discdiff model"

DESCRIPTION = """Import a published checkpoint, downloaded beforehand, as a discdiff pretrained/ directory that
`discdiff sample`, `discdiff eval` and discdiff.training.from_pretrained load.

    discdiff convert sedd downloads/sedd-small models/sedd-small     # louaaron/sedd-small (or sedd-medium)
    discdiff convert mdlm downloads/mdlm-owt models/mdlm-owt         # kuleshov-group/mdlm-owt

SRC holds config.json and model.safetensors (or pytorch_model.bin). GPT-2's tokenizer files (vocab.json +
merges.txt, or encoder.json + vocab.bpe) in SRC or in --tokenizer DIR are carried over; otherwise the model
has no tokenizer (see docs/convert.md)."""

_KINDS = ("sedd", "mdlm")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=_KINDS, help="which codebase wrote SRC")
    p.add_argument("src", type=Path, metavar="SRC", help="the downloaded checkpoint directory (config.json + weights)")
    p.add_argument("out", type=Path, metavar="OUT", help="where to write the discdiff pretrained/ directory")
    p.add_argument("--tokenizer", type=Path, default=None, metavar="DIR",
                   help="a directory with GPT-2's vocab.json + merges.txt (default: look in SRC)")


def run(args) -> int:
    from discdiff.convert import convert_mdlm, convert_sedd

    if args.out.resolve() == args.src.resolve():
        raise ValueError("OUT must differ from SRC (the converted directory replaces config.json)")
    convert = convert_sedd if args.kind == "sedd" else convert_mdlm
    out = convert(args.src, args.out, tokenizer=args.tokenizer)
    print(f"wrote {out} ({args.kind} from {args.src}); try: discdiff sample --model {out} --num-samples 2")
    return 0
