"""``python -m discdiff.harness [lm_eval run arguments]``: lm-eval's own command line with ``--model discdiff``.

    python -m discdiff.harness --model_args pretrained=runs/sc/pretrained,num_draws=64 --tasks lambada_openai
    python -m discdiff.harness --model_args pretrained=DIR --tasks my_task --include_path my_tasks/ --limit 100
    python -m discdiff.harness ls tasks          # lm-eval's other subcommands pass through unchanged

Importing ``discdiff.harness`` registers the model; then ``lm_eval.__main__.cli_evaluate`` (lm-eval 0.4.13's
entry point, the ``lm-eval`` command) parses ``sys.argv`` as it always does.
"""

from __future__ import annotations

import sys

PASS_THROUGH = ("ls", "validate", "-h", "--help")


def harness_argv(args: list[str]) -> list[str]:
    """lm-eval's argv for ``args``: ``run --model discdiff`` first (another ``--model`` is a ValueError),
    ``--device auto`` unless a device is given; lm-eval's other subcommands and help unchanged."""
    if args and args[0] in PASS_THROUGH:
        return args
    args = args[1:] if args and args[0] == "run" else args
    named = False
    for i, arg in enumerate(args):
        name, _, inline = arg.partition("=")
        if name in ("--model", "-M"):
            value = inline or (args[i + 1] if i + 1 < len(args) else "")
            if value != "discdiff":
                raise ValueError(f"python -m discdiff.harness runs --model discdiff; drop --model {value!r} "
                                 "(use lm_eval itself for other models)")
            named = True
    if any("device=" in a for a in _model_args(args)):
        raise ValueError("give the device as --device (e.g. --device cpu), not in --model_args: lm-eval passes "
                         "its --device (default cuda:0) to the model itself")
    if not any(a.partition("=")[0] == "--device" for a in args):
        args = [*args, "--device", "auto"]  # lm-eval's default is cuda:0; auto is cuda when there is one, else cpu
    return ["run", *args] if named else ["run", "--model", "discdiff", *args]


def _model_args(args: list[str]) -> list[str]:
    """The values given to --model_args / -a (one or more words, up to the next option)."""
    out, taking = [], False
    for arg in args:
        name, _, inline = arg.partition("=")
        if name in ("--model_args", "-a"):
            taking = not inline
            out += [inline] if inline else []
        elif arg.startswith("-"):
            taking = False
        elif taking:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        args = harness_argv(list(sys.argv[1:] if argv is None else argv))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from lm_eval.__main__ import cli_evaluate

    import discdiff.harness  # noqa: F401  (registers --model discdiff)

    sys.argv = ["lm-eval", *args]
    cli_evaluate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
