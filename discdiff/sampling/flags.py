"""The sampler options of ``OPTIONS`` as command-line flags and as fields of a web request.

    parser = argparse.ArgumentParser()
    add_sampler_arguments(parser)                 # --sampler --steps --temperature --top-k ... from the table
    options = sampler_options_from_args(parser.parse_args())   # {"steps": 64, ...}: only what was given
    diff.sample(model, 4, 64, generator=g, **options)

Range errors name the flag (``--threshold must lie in (0, 1), got 0.0``); an option that applies to one
sampler names that sampler's flag value (``--threshold applies to --sampler confidence only``).
"""

from __future__ import annotations

import argparse

from .options import OPTIONS, Option, check_applies, check_option

__all__ = ["add_sampler_arguments", "check_request_option", "sampler_options_from_args"]


class _Checked(argparse.Action):
    """Stores a flag's value after checking it against its row of OPTIONS; errors name the flag."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            values = check_option(self.dest, values, label=option_string)
        except ValueError as e:
            parser.error(str(e))
        setattr(namespace, self.dest, values)


def _help(opt: Option) -> str:
    extra = []
    if opt.default is not None and opt.type is not bool:
        extra.append(f"default {opt.default}")
    if len(opt.samplers) == 1:
        extra.append(f"{opt.samplers[0]} sampler only")
    return opt.help + (f" ({'; '.join(extra)})" if extra else "")


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option of ``OPTIONS`` that has a flag. An option several samplers read defaults to the
    table's default; one that a single sampler reads (and --sampler) defaults to None, "not given", so
    it is passed on only when the user set it."""
    for opt in OPTIONS.values():
        if opt.flag is None:
            continue
        default = opt.default if len(opt.samplers) > 1 and opt.goes_to != "front" else None
        if opt.type is bool:
            parser.add_argument(opt.flag, dest=opt.name, action="store_const", const=True, default=default,
                                help=_help(opt))
            continue
        parser.add_argument(opt.flag, dest=opt.name, type=opt.type, default=default, action=_Checked,
                            choices=opt.choices, metavar=None if opt.choices else opt.name.upper(), help=_help(opt))


def sampler_options_from_args(args: argparse.Namespace) -> dict:
    """The sampler options of the command line, as ``Diffusion.sample`` keywords (None values left out).

    Refuses (ValueError naming the flags) an option that applies to one sampler when ``--sampler`` names
    another; with no ``--sampler`` the library picks one, and such an option needs it named.
    """
    given = {o.name: getattr(args, o.name) for o in OPTIONS.values()
             if o.flag is not None and getattr(args, o.name, None) is not None}
    sampler = given.get("sampler")
    for name in given:
        readers = OPTIONS[name].samplers
        if len(readers) == 1 and sampler != readers[0]:
            raise ValueError(f"{OPTIONS[name].flag} applies to --sampler {readers[0]} only")
    return given


def check_request_option(name: str, value, sampler: str, *, high: float | None = None):
    """Check one field of a web request against the table (JSON words: 'null'; ``high``: the server's own
    upper limit); raises ValueError. Only options marked ``web`` may be set."""
    if name not in OPTIONS or not OPTIONS[name].web:
        raise ValueError(f"unknown field {name!r}")
    value = check_option(name, value, null="null", high=high)
    if value is not None:
        check_applies(name, sampler)
    return value
