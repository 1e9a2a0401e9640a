"""The one table of sampler options. The library's checks, the CLI flags and the web demo's request
validation are all generated from ``OPTIONS``; add an option here and it appears everywhere it is marked.

Each row says where the value goes: ``"front"`` (``Diffusion.sample`` itself: which sampler), ``"predictor"``
(how the model's answer is read and drawn from: ``Predictor`` keyword arguments) or ``"loop"`` (the
sampler's loop: ``SamplerOptions`` fields). An option read by a single sampler is refused by the others;
options read by several samplers are accepted by all (the table says who reads them).
"""

from __future__ import annotations

import difflib
import math
import numbers
from dataclasses import dataclass, fields
from typing import NamedTuple

__all__ = ["OPTIONS", "Option", "SamplerOptions", "check_option", "option_interval", "split_options"]

SAMPLER_NAMES = ("euler", "tau_leaping", "tweedie", "ancestral", "first_hitting", "confidence")
ALL = SAMPLER_NAMES
TIME_STEPPERS = ("euler", "tau_leaping", "tweedie")


class Interval(NamedTuple):
    low: float
    high: float
    low_closed: bool
    high_closed: bool

    def __contains__(self, v) -> bool:
        above = v >= self.low if self.low_closed else v > self.low
        below = v <= self.high if self.high_closed else v < self.high
        return above and below

    def words(self) -> str:
        """'lie in (0, 1)', 'be >= 1', 'be > 0'."""
        if math.isinf(self.high):
            return f"be {'>=' if self.low_closed else '>'} {self.low:g}"
        return f"lie in {'[' if self.low_closed else '('}{self.low:g}, {self.high:g}{']' if self.high_closed else ')'}"


def option_interval(text: str) -> Interval:
    """'(0, 1]' -> Interval(0, 1, False, True); 'inf' is allowed as an end."""
    low, high = (float(part) for part in text[1:-1].split(","))
    return Interval(low, high, text[0] == "[", text[-1] == "]")


@dataclass(frozen=True)
class Option:
    """One sampler option: its type, default, valid values, help, readers, and where it is exposed."""

    name: str
    type: type  # int, float, bool or str
    default: object
    help: str
    samplers: tuple[str, ...] = ALL  # the samplers that read it
    goes_to: str = "loop"  # "front", "predictor" or "loop"
    interval: str | None = None  # e.g. "(0, 1)", "[1, inf)"
    choices: tuple | None = None
    nullable: bool = False  # None is a valid value (meaning: off / automatic)
    web: bool = False  # the web demo's requests may set it
    flag: str | None = None  # its `discdiff sample` flag

    @property
    def label(self) -> str:
        return self.flag or self.name


OPTIONS: dict[str, Option] = {o.name: o for o in (
    Option("sampler", str, None, "reverse process (default: one that fits the model's graph, named when used)",
           goes_to="front", choices=SAMPLER_NAMES, nullable=True, web=True, flag="--sampler"),
    Option("steps", int, 128, "sampling steps; first_hitting ignores it (one call per token), confidence "
           "splits them over blocks", samplers=tuple(n for n in ALL if n != "first_hitting"), interval="[1, inf)",
           web=True, flag="--steps"),
    Option("temperature", float, 1.0, "softmax temperature of clean-token draws", goes_to="predictor",
           interval="(0, inf)", web=True, flag="--temperature"),
    Option("top_k", int, None, "keep the k most likely clean tokens per draw", goes_to="predictor",
           interval="[1, inf)", nullable=True, web=True, flag="--top-k"),
    Option("top_p", float, None, "nucleus sampling: keep the most likely clean tokens holding this mass",
           goes_to="predictor", interval="(0, 1]", nullable=True, web=True, flag="--top-p"),
    Option("guidance", float, 0.0, "classifier-free guidance weight w: (1 + w) log p(x | c) - w log p(x); needs a "
           "condition (a label or a prompt)", goes_to="predictor", interval="[0, inf)", web=True, flag="--guidance"),
    Option("guidance_mode", str, "null", "what guidance contrasts with: 'null' the trained unconditional branch "
           "(null label, or the prompt masked; needs a model trained with condition dropout), 'infill' the known "
           "positions masked (any absorbing model)", goes_to="predictor", choices=("null", "infill"),
           flag="--guidance-mode"),
    Option("threshold", float, None, "unmask every position whose confidence exceeds this (Fast-dLLM)",
           samplers=("confidence",), interval="(0, 1)", nullable=True, web=True, flag="--threshold"),
    Option("block_length", int, None, "decode semi-autoregressive blocks of this many tokens; default: one "
           "block", samplers=("confidence",), interval="[1, inf)", nullable=True, web=True, flag="--block-length"),
    Option("remasking", str, "max_prob", "which predictions to keep: the most confident by the distribution's "
           "top probability (the default), top-2 margin or entropy (exact with one token per step), by the drawn "
           "token's probability (LLaDA's rule: it favours likely draws, and a weak model decodes every position "
           "as its commonest token), or random ones (exact any-order sampling)", samplers=("confidence",),
           choices=("low_confidence", "max_prob", "margin", "entropy", "random"),
           flag="--remasking"),
    Option("greedy", bool, False, "take each position's most likely token instead of drawing it",
           samplers=("confidence",), flag="--greedy"),
    Option("cache", bool, None, "reuse a row's prediction while its tokens are unchanged (default: on for "
           "denoisers that declare themselves time-free)", samplers=("ancestral",), goes_to="predictor",
           nullable=True),
    Option("t_end", float, 1e-5, "stop the time grid here, then denoise to t = 0", samplers=TIME_STEPPERS,
           interval="[0, 1)"),
    Option("denoise", bool, True, "end with a Tweedie denoising step to clean data", samplers=TIME_STEPPERS),
    Option("categorical", str, "float64", "how categorical draws are made ('gumbel_fp32' only to show its "
           "bias)", goes_to="predictor", choices=("float64", "gumbel_fp32")),
    Option("return_trajectory", bool, False, "keep the state after every step"),
)}


def _type_words(opt: Option, null: str) -> str:
    kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[opt.type]
    return f"{kind} or {null}" if opt.nullable else kind


def check_option(name: str, value, *, label: str | None = None, null: str = "None", high: float | None = None):
    """Check one option's type and range from the table; returns the value (ints as int, numbers as float).
    Raises ValueError naming ``label`` (default: the option's name; the CLI passes its flag). ``high``
    closes the range at a caller's own limit (a server's maximum steps)."""
    opt = OPTIONS[name]
    label = label or opt.name
    if value is None and opt.nullable:
        return None
    ok = {int: isinstance(value, numbers.Integral), float: isinstance(value, numbers.Real),
          bool: isinstance(value, bool), str: isinstance(value, str)}[opt.type]
    if not ok or (opt.type is not bool and isinstance(value, bool)):
        raise ValueError(f"{label} must be {_type_words(opt, null)}, got {value!r}")
    if opt.type is float:
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{label} must be finite, got {value!r}")
    elif opt.type is int:
        value = int(value)
    if opt.interval is not None:
        interval = option_interval(opt.interval)
        if high is not None:
            interval = interval._replace(high=min(interval.high, high), high_closed=True)
        if value not in interval:
            raise ValueError(f"{label} must {interval.words()}, got {value!r}")
    if opt.choices is not None and value not in opt.choices:
        raise ValueError(f"{label} must be one of {', '.join(map(str, opt.choices))}; got {value!r}")
    return value


def check_applies(name: str, sampler: str) -> None:
    """Refuse an option read by a single sampler when another sampler is chosen."""
    readers = OPTIONS[name].samplers
    if len(readers) == 1 and sampler not in readers:
        raise ValueError(f"{name} applies to the {readers[0]} sampler only")


@dataclass
class SamplerOptions:
    """The loop settings of a sampler (rows of ``OPTIONS`` with ``goes_to="loop"``); defaults come from
    the table. ``validate()`` checks every field against it."""

    steps: int = OPTIONS["steps"].default
    t_end: float = OPTIONS["t_end"].default
    denoise: bool = OPTIONS["denoise"].default
    return_trajectory: bool = OPTIONS["return_trajectory"].default
    threshold: float | None = OPTIONS["threshold"].default
    block_length: int | None = OPTIONS["block_length"].default
    remasking: str = OPTIONS["remasking"].default
    greedy: bool = OPTIONS["greedy"].default

    def validate(self) -> SamplerOptions:
        for f in fields(self):
            setattr(self, f.name, check_option(f.name, getattr(self, f.name)))
        return self


class SplitOptions(NamedTuple):
    """``Diffusion.sample``'s keyword options, sorted by where they go."""

    predictor: dict  # Predictor keyword arguments
    loop: SamplerOptions


def split_options(sampler: str, options: dict) -> SplitOptions:
    """Check ``options`` against the table for ``sampler`` and sort them; raises ValueError on an unknown
    option (with the closest valid name), a bad value, or an option the sampler does not read."""
    predictor, loop = {}, {}
    for name, value in options.items():
        if name not in OPTIONS or OPTIONS[name].goes_to == "front":
            valid = sorted(n for n, o in OPTIONS.items() if o.goes_to != "front")
            hint = difflib.get_close_matches(name, valid, n=1)
            raise ValueError(f"unknown option {name!r} for sampler {sampler!r}"
                             + (f"; did you mean {hint[0]!r}?" if hint else f"; valid options: {valid}"))
        check_applies(name, sampler)
        target = predictor if OPTIONS[name].goes_to == "predictor" else loop
        target[name] = check_option(name, value)
    return SplitOptions(predictor, SamplerOptions(**loop).validate())
