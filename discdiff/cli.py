"""`discdiff <command>`: prepare | train | sample | eval | serve | convert | bench.

    discdiff train --config configs/shakespeare-char-masked.yaml --set model.n_layers=4 --out runs/sc
    torchrun --nproc_per_node=2 -m discdiff train --config ... --set parallel=fsdp
    discdiff train --out runs/sc --resume                  # continue exactly where a killed run stopped
    discdiff sample --model runs/sc --num-samples 4 --length 256
    discdiff eval --model runs/sc --data data/shakespeare

A user's mistake (a bad value, a missing file, a missing optional package) ends in one line
`discdiff <command>: error: ...` and exit status 2; `--debug` shows the traceback instead.

Adding a command: put a Command in COMMANDS, or a Lazy("package.module", "one-line help") naming a module
that defines HELP, DESCRIPTION, add_arguments(parser) and run(args) (or "package.module:ATTRIBUTE" naming
a Command), imported only when that command runs (so `discdiff --help` stays fast and a command's
optional dependencies stay optional); or call register(name, command).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from discdiff import cli_sample, console
from discdiff.cli_sample import DEVICE_HELP, MODEL_HELP

__all__ = ["COMMANDS", "Command", "main", "register", "resolve_command"]


@dataclass
class Command:
    help: str  # one line, shown in `discdiff --help`
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
    description: str = ""  # shown in `discdiff <command> --help`


@dataclass
class Lazy:
    target: str  # "package.module" (defining HELP, add_arguments, run) or "package.module:ATTRIBUTE" (a Command)
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
                       "named and skipped, never deleted. If OUT has no checkpoint at all (a run killed before its "
                       "first save): with --config or --set a new run starts there from that config (saying so), "
                       "with neither it is an error")
    start.add_argument("--overwrite", action="store_true", help="delete the earlier run in OUT (checkpoints/, "
                       "pretrained/, metrics.jsonl) and start over; without it (or --resume) training into a "
                       "directory that holds a run is refused")
    p.add_argument("--init-from", default=None, metavar="MODEL", help="start a NEW run (step 0, fresh optimizer) "
                   "from the weights of this model (a run, pretrained/ or checkpoint directory), e.g. to fine-tune "
                   "it on prompt-response pairs; its architecture must match the config (same as --set init_from=)")
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
    overrides += [f"init_from={args.init_from}"] if args.init_from else []
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
        elif not run_contents(cfg.out_dir) and not args.overrides:
            raise ValueError(f"no checkpoint in {cfg.out_dir} to resume from; pass --config (or the run's --set "
                             "values) to start a new run there")
    trainer = Trainer(cfg, resume=args.resume, overwrite=args.overwrite)
    try:
        trainer.fit()
    finally:
        trainer.close()
        trainer.dist.shutdown()
    return 0


# ------------------------------------------------------------------ eval

# Diffusion.objectives (a test keeps the two equal); spelled out here so `discdiff --help` needs no model code.
OBJECTIVES = ("score_entropy", "l2", "t_dce", "lambda_dce", "k_dce")

EVAL_DESCRIPTION = """Likelihood of held-out data in bits per token, with a 95% confidence interval: an upper bound
(the ELBO) for a diffusion model, the exact NLL for the AR baseline. Prints one JSON report.

    discdiff eval --model runs/sc --data data/shakespeare
    discdiff eval --model runs/sc --data data/shakespeare --objective t_dce k_dce --draws 16
    discdiff eval --model runs/sc --data synthetic --max-batches 4      # a quick smoke test"""


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, metavar="DIR", help=MODEL_HELP)
    p.add_argument("--data", required=True, metavar="PATH", help="a prepared corpus directory (its --split is used), a "
                   "token-file header .json, a .npy / .bin of ids, or 'synthetic'")
    p.add_argument("--split", default="validation", help="split of a corpus directory: train, validation (default; "
                   "for tuning) or test (held out from everything: the final number)")
    p.add_argument("--context", type=console.positive_int, default=None, metavar="N",
                   help="sequence length (default: the training context)")
    p.add_argument("--batch-size", type=console.positive_int, default=16, metavar="N", help="sequences per forward")
    p.add_argument("--max-batches", type=console.positive_int, default=None, metavar="N",
                   help="evaluate this many batches of windows drawn at random, one per equal stratum of the "
                   "split (seeded by --seed; default: every window of the split)")
    p.add_argument("--draws", type=console.int_at_least(2), default=8, metavar="N",
                   help="Monte Carlo draws of t per sequence, >= 2, for a diffusion bound (95%% intervals cover "
                   "data and Monte Carlo error); ignored for the exact AR NLL")
    p.add_argument("--objective", nargs="+", default=None, choices=OBJECTIVES, metavar="NAME",
                   help="bounds to evaluate: %(choices)s (default: the training objective, plus k_dce on "
                   "absorbing graphs, with a check that they agree)")
    p.add_argument("--seed", type=console.seed, default=0, metavar="N", help="seed of the t / noise draws")
    p.add_argument("--device", type=console.device, default="cpu", help=DEVICE_HELP)


def _eval(args) -> int:
    from discdiff.evaluation import evaluate, load_eval_data
    from discdiff.hf import load_pretrained as from_pretrained  # discdiff and transformers masked-LM dirs

    pre = from_pretrained(args.model, device=args.device)
    _check_same_tokenizer(pre.tokenizer, Path(args.data))
    max_sequences = None if args.max_batches is None else args.max_batches * args.batch_size
    context = args.context if args.context is not None else pre.config["context"]
    from discdiff.evaluation.conditional import conditional_nll, is_pair_data, load_pair_batches

    if is_pair_data(args.data, args.split, context):  # prompt -> response: -log p(response | prompt)
        pairs = load_pair_batches(args.data, context=context, split=args.split, max_sequences=max_sequences,
                                  batch_size=args.batch_size, seed=args.seed)
        res = conditional_nll(pre.model, pre.diffusion, pairs, (args.objective or [None])[0], num_draws=args.draws,
                              seed=args.seed, device=args.device)
        print(json.dumps({"conditional": "-log p(response | prompt), per response token", **res.to_dict()}, indent=1))
        return 0
    data = load_eval_data(args.data, context=context, vocab_size=pre.vocab_size,
                          split=args.split, batch_size=args.batch_size, max_sequences=max_sequences,
                          seed=args.seed, records=(pre.config.get("records") or {}).get("padding", "pad"))
    ev = evaluate(pre, data, objectives=args.objective, num_draws=args.draws, seed=args.seed, device=args.device)
    print(json.dumps({**ev.to_dict(), "data": data.describe()}, indent=1))  # which source and split it measured
    return 0


def _check_same_tokenizer(model_tokenizer, data: Path) -> None:
    """A prepared corpus whose tokenizer is not the model's gives a number about other tokens: refuse it
    (equal vocabulary sizes are not enough: two character sets of one size map ids to different letters)."""
    if model_tokenizer is None or not (data / "tokenizer").is_dir():
        return
    from discdiff.data import load_tokenizer

    if load_tokenizer(data / "tokenizer").config() != model_tokenizer.config():
        raise ValueError(f"{data} was tokenized with another tokenizer than the model's ({data / 'tokenizer'} "
                         "differs); evaluate on data prepared with the model's tokenizer")


# ------------------------------------------------------------------ prepare

PREPARE_DESCRIPTION = """Download (or read), tokenize and pack a corpus into DATA_DIR/<name>/ (token files and a
manifest.json), ready for `discdiff train --set data.train=DATA_DIR/<name>` and `discdiff eval --data`.

    discdiff prepare shakespeare
    discdiff prepare fashion-mnist --opt size=14 --opt levels=8
    discdiff prepare my_poems.txt --data-dir data        # your own .txt / .jsonl / FASTA file or folder

A copy that matches is reused; --force prepares it again."""


def _prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="a corpus (shakespeare, proteins, dna, fashion-mnist, python-docs) or a path to "
                   "your own .txt / .jsonl / FASTA file or directory")
    p.add_argument("--data-dir", default="data", metavar="DIR",
                   help="where prepared corpora are cached (default: data)")
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
    from discdiff.data import SourceUnavailable, prepare

    options = dict(map(_parse_option, args.opt))
    try:
        manifest = prepare(args.name, args.data_dir, force=args.force, **options)
    except SourceUnavailable as e:  # offline, or a tool missing: the message names it
        raise console.UserError(str(e)) from e
    print(f"prepared {args.name}: vocab {manifest.vocab_size}, splits {sorted(manifest.splits)}")
    return 0


# ------------------------------------------------------------------ bench

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _available_benchmarks() -> list[str]:
    return sorted(p.stem.replace("_", "-") for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_"))


BENCH_DESCRIPTION = """Run one of the scripts in benchmarks/ (a source checkout): it writes a JSON file, a markdown
table and, with the bench extra (matplotlib), a plot. Everything after NAME goes to the script.

    discdiff bench sampling --quick --out out/bench     # a smoke run of the sampler benchmark
    discdiff bench train-throughput --help              # the script's own flags"""


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    found = _available_benchmarks() if BENCHMARKS.is_dir() else []
    p.add_argument("name", help="one of the scripts in benchmarks/ of a source checkout"
                   + (f": {', '.join(found)}" if found else " (none next to this installation)"))
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
                       _prepare_arguments, _prepare, PREPARE_DESCRIPTION),
    "train": Command("train a diffusion model or the AR baseline (single process, or under torchrun)",
                     _train_arguments, _train, TRAIN_DESCRIPTION),
    "sample": Command(cli_sample.HELP, cli_sample.add_arguments, cli_sample.run, cli_sample.DESCRIPTION),
    "eval": Command("likelihood (an upper bound for diffusion, exact for AR) in bits per token",
                    _eval_arguments, _eval, EVAL_DESCRIPTION),
    "serve": Lazy("discdiff.serve.cli", "the web demo for one trained model (needs the serve extra)"),
    "convert": Lazy("discdiff.convert.cli", "import a published SEDD or MDLM checkpoint as a discdiff model"),
    "bench": Command("run a benchmark script (JSON + markdown table + plot); --quick for a smoke run",
                     _bench_arguments, _bench, BENCH_DESCRIPTION),
}


def register(name: str, command: Command | Lazy | str) -> None:
    """Add a subcommand: a Command, or a Lazy / 'package.module' / 'package.module:ATTRIBUTE' naming a command
    module or a Command (imported only when that command runs)."""
    COMMANDS[name] = command


def resolve_command(entry: Command | Lazy | str) -> Command:
    """The Command an entry names: a Command itself, a module defining HELP, add_arguments(parser), run(args)
    (and optionally DESCRIPTION), or a Command attribute of a module ("package.module:ATTRIBUTE")."""
    if isinstance(entry, Command):
        return entry
    target = entry.target if isinstance(entry, Lazy) else entry
    module_name, _, attr = target.partition(":")
    try:
        found = importlib.import_module(module_name)
        if attr:
            return getattr(found, attr)
        return Command(found.HELP, found.add_arguments, found.run, getattr(found, "DESCRIPTION", ""))
    except (ImportError, AttributeError) as e:
        missing = console.user_error_message(e) if isinstance(e, ModuleNotFoundError) else None
        raise SystemExit(f"discdiff: error: this command is not available: {missing or f'cannot load {target} ({e})'}"
                         ) from e


def _help(entry: Command | Lazy | str, name: str) -> str:
    if isinstance(entry, (Command, Lazy)):
        return entry.help
    return f"see `discdiff {name} --help`"


DEBUG_HELP = "on an error, show the full Python traceback instead of one line"


def build_parser(resolve: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="discdiff", description="Discrete diffusion models: SEDD, RADD, MDLM/MD4, LLaDA in one library.",
        epilog="`discdiff COMMAND --help` shows a command's flags and examples; start with `discdiff prepare "
        "shakespeare` and `discdiff train --config configs/shakespeare-char-masked.yaml --out runs/sc`.")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, entry in COMMANDS.items():
        # lazily registered commands are imported only when they are the one being run
        cmd = resolve_command(entry) if isinstance(entry, Command) or name == resolve else None
        p = sub.add_parser(name, help=_help(entry, name), description=cmd.description if cmd else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if cmd:
            cmd.add_arguments(p)
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
            p.set_defaults(_run=cmd.run, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user's mistake prints one line `discdiff <command>: error: ...` and returns 2;
    Ctrl-C returns 130; a warning is one line `discdiff <command>: warning: ...`. With --debug all three
    keep Python's own form (tracebacks, warnings with their source line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(resolve=name)
    if not argv:  # a bare `discdiff`: the overview, not just "the following arguments are required"
        parser.print_help(sys.stderr)
        return 2
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        console.refuse_unknown_arguments(args._parser, unknown)
    try:
        with warnings.catch_warnings():
            if not args.debug:  # a warning for the user, e.g. a damaged checkpoint skipped: one line as well
                warnings.showwarning = console.warning_printer(f"discdiff {args.command}")
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"\ndiscdiff {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `discdiff sample ... | head -1` closed our stdout: not an error to report
        console.silence_stdout()
        return 1
    except Exception as e:
        message = None if args.debug else console.user_error_message(e)
        if message is None:
            raise
        print(f"discdiff {args.command}: error: {message}", file=sys.stderr)
        return 2
