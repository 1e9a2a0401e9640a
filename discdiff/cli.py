"""`discdiff <command>`: train | sample | eval (prepare, serve, bench plug in the same way).

    discdiff train --config configs/shakespeare-char-masked.yaml --set model.n_layers=4 --out runs/sc
    torchrun --nproc_per_node=2 -m discdiff train --config ... --set parallel=fsdp
    discdiff train --out runs/sc --resume                  # continue exactly where a killed run stopped
    discdiff sample --model runs/sc/pretrained --num-samples 4 --length 256
    discdiff eval --model runs/sc/pretrained --data data/shakespeare

Adding a command: put a Command in COMMANDS, or a Lazy("package.module:ATTRIBUTE", "one-line help")
naming one, imported only when that command runs (so `discdiff --help` stays fast and a command's
optional dependencies stay optional); or call register(name, command).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMMANDS", "Command", "main", "register"]


@dataclass
class Command:
    help: str  # one line, shown in `discdiff --help`
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str = ""  # shown in `discdiff <command> --help`


@dataclass
class Lazy:
    target: str  # "package.module:ATTRIBUTE", a Command
    help: str


# ------------------------------------------------------------------ train


TRAIN_DESCRIPTION = """Train from a YAML preset (configs/) plus --set overrides; see --list-keys for every key.

    discdiff train --config configs/shakespeare-char-masked.yaml --set model.n_layers=4 --out runs/sc
    torchrun --nproc_per_node=2 -m discdiff train --config ... --set parallel=fsdp   # DDP is the default
    discdiff train --out runs/sc --resume         # continue a killed run exactly

Writes OUT/metrics.jsonl, OUT/checkpoints/step_*/ (atomic and verified: a manifest.json with every file's
sha256 is written last; `latest` names the newest) and, at the end, OUT/pretrained/ (EMA weights, config,
tokenizer) for `discdiff sample` and `discdiff eval` (which also accept OUT or OUT/checkpoints/step_N).

One process trains into OUT at a time (a second one fails at once). A directory that already holds a run
(checkpoints/ or pretrained/) needs --resume (continue it) or --overwrite (delete it and start over).
--resume uses the newest checkpoint that verifies: a damaged newer one is named, skipped and kept."""


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML preset (see configs/); omitted: the defaults, or with "
                   "--resume the config stored in the checkpoint")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value by its dotted key, e.g. --set model.n_layers=4 "
                   "--set optim.lr=1e-3 (repeatable; values are YAML; an unknown key names the closest one)")
    p.add_argument("--out", help="output directory for checkpoints, metrics.jsonl and pretrained/ "
                   "(same as --set out_dir=...)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue exactly (weights, EMA, optimizer, data "
                       "position, RNG) from the newest checkpoint in OUT that verifies; damaged newer ones are "
                       "named and skipped, never deleted. If OUT has no checkpoint at all: with --config a new run "
                       "starts there (saying so), without --config it is an error")
    start.add_argument("--overwrite", action="store_true", help="delete the earlier run in OUT (checkpoints/, "
                       "pretrained/, metrics.jsonl) and start over; without it (or --resume) training into a "
                       "directory that holds a run is refused")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--list-keys", action="store_true", help="print every valid config key and exit")


def _train(args) -> int:
    from discdiff.training import Trainer, apply_overrides, config_from_dict, config_to_dict, load_config, valid_keys
    from discdiff.training.checkpoint import find_resumable
    from discdiff.training.rundir import run_contents

    if args.list_keys:
        print("\n".join(valid_keys()))
        return 0
    overrides = list(args.overrides) + ([f"out_dir={args.out}"] if args.out else [])
    cfg = load_config(args.config, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        return 0
    if args.resume and args.config is None:  # the config comes from the checkpoint
        found = find_resumable(cfg.out_dir)
        if found.checkpoint is not None:
            saved = found.checkpoint.state["config"]
            cfg = config_from_dict(apply_overrides(saved, [*args.overrides, f"out_dir={cfg.out_dir}"]))
        elif not run_contents(cfg.out_dir):
            raise ValueError(f"no checkpoint in {cfg.out_dir} to resume from; pass --config to start a new run "
                             "there")
    trainer = Trainer(cfg, resume=args.resume, overwrite=args.overwrite)
    try:
        trainer.fit()
    finally:
        trainer.close()
        trainer.dist.shutdown()
    return 0


# ------------------------------------------------------------------ sample


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="a save_pretrained directory, or a run directory holding pretrained/")
    p.add_argument("--num-samples", type=int, default=4, help="how many sequences to draw")
    p.add_argument("--length", type=int, default=None, help="tokens per sequence (default: the training context)")
    from discdiff.sampling import add_sampler_arguments

    add_sampler_arguments(p)  # --sampler --steps --temperature --top-k --top-p --guidance and the confidence
    # sampler's --threshold --block-length --remasking --greedy, from discdiff.sampling.OPTIONS
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--out", type=Path, default=None,
                   help="write samples as JSON lines here (default: print them)")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", default=None,
                      help="text the samples start with; the rest (up to --length) is generated")
    cond.add_argument("--template", default=None,
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

    ids = template_ids(text, pre.tokenizer, length if args.prompt is not None or args.length else None, length)
    return infill_template(ids)


def _pretrained_dir(path: Path) -> Path:
    return path / "pretrained" if (path / "pretrained" / "config.json").is_file() else path


def _sample(args) -> int:
    import torch

    from discdiff.nn import ARWrapper
    from discdiff.training import from_pretrained

    pre = from_pretrained(_pretrained_dir(args.model), device=args.device)
    length = args.length or pre.config["context"]
    gen = torch.Generator(args.device).manual_seed(args.seed)
    condition = _condition(args, pre, length)
    if condition is not None:
        length = condition.tokens.shape[1]  # a template without --length sets its own
    if pre.is_ar:
        if condition is not None:
            raise ValueError("--prompt / --template need a diffusion model; the AR baseline samples unprompted here")
        ids = ARWrapper(pre.model, pre.vocab_size).sample(args.num_samples, length, gen, args.temperature,
                                                          args.top_k, args.top_p)
    else:
        from discdiff.sampling import SAMPLERS, default_sampler, default_sampler_reason, sampler_options_from_args

        options = sampler_options_from_args(args)  # the library's checks, in the CLI's words:
        graph, kind = pre.diffusion.graph, type(pre.diffusion.graph).__name__
        if options.get("guidance") and condition is None:
            raise ValueError("--guidance needs a prompt: use --prompt or --template")
        if options.get("guidance") and graph.mask_id is None:
            raise ValueError(f"--guidance needs a masked (absorbing) model; this one is {kind}")
        fits = [n for n, s in SAMPLERS.items() if not (s.needs_mask and graph.mask_id is None)]
        if options.get("sampler", fits[0]) not in fits:
            raise ValueError(f"--sampler {options['sampler']} needs a masked (absorbing) model; this one is "
                             f"{kind}: use one of {', '.join(fits)}")
        if "sampler" not in options:
            options["sampler"] = default_sampler(graph, pre.diffusion.parameterization)
            print(f"sampler: {default_sampler_reason(graph, pre.diffusion.parameterization)}", file=sys.stderr)
        out = pre.diffusion.sample(pre.model, args.num_samples, length, generator=gen, device=args.device,
                                   condition=condition, **options)
        ids = out.samples
    rows = []
    for row in ids.tolist():
        rows.append({"ids": row, "text": pre.tokenizer.decode(row) if pre.tokenizer is not None else None})
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        for i, r in enumerate(rows):
            print(f"--- sample {i}\n{r['text'] if r['text'] is not None else r['ids']}")
    return 0


# ------------------------------------------------------------------ eval


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="a save_pretrained directory, or a run directory holding pretrained/")
    p.add_argument("--data", required=True, help="a prepared corpus directory (its --split is used), a "
                   "token-file header .json, a .npy / .bin of ids, or 'synthetic'")
    p.add_argument("--split", default="validation", help="split of a corpus directory")
    p.add_argument("--context", type=int, default=None, help="sequence length (default: the training context)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward")
    p.add_argument("--max-batches", type=int, default=None, help="stop after this many batches (default: all)")
    p.add_argument("--draws", type=int, default=8, help="Monte Carlo draws of t per sequence for a "
                   "diffusion bound (95%% intervals cover data and Monte Carlo error); ignored for the exact AR NLL")
    p.add_argument("--objective", nargs="+", default=None,
                   help="bounds to evaluate (default: the training objective, plus k_dce on absorbing graphs, "
                   "with a check that they agree)")
    p.add_argument("--seed", type=int, default=0, help="seed of the t / noise draws")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def _eval(args) -> int:
    from discdiff.evaluation import evaluate, load_eval_data
    from discdiff.training import from_pretrained

    pre = from_pretrained(_pretrained_dir(args.model), device=args.device)
    max_sequences = None if args.max_batches is None else args.max_batches * args.batch_size
    data = load_eval_data(args.data, context=args.context or pre.config["context"], vocab_size=pre.vocab_size,
                          split=args.split, batch_size=args.batch_size, max_sequences=max_sequences)
    ev = evaluate(pre, data, objectives=args.objective, num_draws=args.draws, seed=args.seed, device=args.device)
    print(json.dumps(ev.to_dict(), indent=1))
    return 0


# ------------------------------------------------------------------ prepare


def _prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="a corpus (shakespeare, proteins, dna, fashion-mnist, python-docs) or a path to "
                   "your own .txt / .jsonl / FASTA file or directory")
    p.add_argument("--data-dir", default="data", help="where prepared corpora are cached (default: data)")
    p.add_argument("--force", action="store_true", help="prepare again even if a cached copy matches")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a corpus option, e.g. --opt levels=8 --opt size=14 for fashion-mnist (repeatable)")


def _parse_option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--opt expects KEY=VALUE, got {text!r}")
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def _prepare(args) -> int:
    from discdiff.data import prepare

    manifest = prepare(args.name, args.data_dir, force=args.force, **dict(map(_parse_option, args.opt)))
    print(f"prepared {args.name}: vocab {manifest.vocab_size}, splits {sorted(manifest.splits)}")
    return 0


# ------------------------------------------------------------------ bench

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _available_benchmarks() -> list[str]:
    return sorted(p.stem.replace("_", "-") for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_"))


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="train-throughput, sampling, likelihood, sampling-quality or report (the scripts "
                   "in benchmarks/ of a source checkout)")
    p.add_argument("script_args", nargs=argparse.REMAINDER, metavar="...",
                   help="passed to the benchmark, e.g. --quick --out out/bench (see `discdiff bench NAME --help`)")


def _bench(args) -> int:
    import subprocess

    script = BENCHMARKS / f"{args.name.replace('-', '_')}.py"
    if not script.is_file():
        where = f"available: {_available_benchmarks()}" if BENCHMARKS.is_dir() else (
            f"no benchmarks/ next to this installation ({BENCHMARKS}); run from a source checkout")
        raise ValueError(f"unknown benchmark {args.name!r}; {where}")
    return subprocess.run([sys.executable, str(script), *args.script_args]).returncode


# ------------------------------------------------------------------ registry and entry point

COMMANDS: dict[str, Command | Lazy | str] = {
    "prepare": Command("download, tokenize and pack a corpus (or your own files) into a data directory",
                       _prepare_arguments, _prepare),
    "train": Command("train a diffusion model or the AR baseline (single process, or under torchrun)",
                     _train_arguments, _train, TRAIN_DESCRIPTION),
    "sample": Command("draw samples from a trained model", _sample_arguments, _sample),
    "eval": Command("likelihood (an upper bound for diffusion, exact for AR) in bits per token",
                    _eval_arguments, _eval),
    "serve": Lazy("discdiff.serve.cli:SERVE", "the web demo for one trained model"),
    "bench": Command("run a benchmark script (JSON + markdown table + plot); --quick for a smoke run",
                     _bench_arguments, _bench),
}


def register(name: str, command: Command | Lazy | str) -> None:
    """Add a subcommand: a Command, or a Lazy / 'package.module:attribute' naming one (imported lazily)."""
    COMMANDS[name] = command


def _resolve(entry: Command | Lazy | str) -> Command:
    if isinstance(entry, Command):
        return entry
    target = entry.target if isinstance(entry, Lazy) else entry
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"discdiff: this command is not available: cannot load {target} ({e})") from e


def _help(entry: Command | Lazy | str, name: str) -> str:
    if isinstance(entry, (Command, Lazy)):
        return entry.help
    return f"see `discdiff {name} --help`"


def build_parser(resolve: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="discdiff", description="Discrete diffusion models: "
                                     "SEDD, RADD, MDLM/MD4, LLaDA in one library.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, entry in COMMANDS.items():
        # lazily registered commands are imported only when they are the one being run
        cmd = _resolve(entry) if isinstance(entry, Command) or name == resolve else None
        p = sub.add_parser(name, help=_help(entry, name), description=cmd.description if cmd else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if cmd:
            cmd.add_arguments(p)
            p.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(resolve=name).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"discdiff {args.command}: error: {e}", file=sys.stderr)
        return 2
