"""Reverse-process samplers, each usable through ``Diffusion.sample`` or on its own.

    out = diff.sample(model, num_samples=16, length=64, sampler="ancestral", steps=128, generator=g)
    out.samples, out.nfe, out.nfe_per_row, out.trajectory

Samplers (the ``sampler=`` strings): ``euler``, ``tau_leaping``, ``tweedie`` (any graph, score-based;
they end with a Tweedie denoising step), ``ancestral`` (absorbing, exact, per-row caching),
``first_hitting`` (absorbing, one token per model call, exact), ``confidence`` (absorbing, LLaDA /
Fast-dLLM parallel decoding with semi-autoregressive blocks). ``categorical`` holds the float64 draws
every layer uses; ``conditioning`` the fixed-position ``Condition`` and guidance.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import fields

import torch

from discdiff.categorical import NEG_INF, filter_logits, sample_categorical, sample_from_logits

from .ancestral import Ancestral
from .base import Evaluator, SampleOutput, Sampler, SamplerOptions
from .conditioning import Condition, infill_template
from .confidence import Confidence
from .euler import Euler
from .first_hitting import FirstHitting
from .tau_leaping import TauLeaping
from .tweedie import Tweedie

SAMPLERS: dict[str, Sampler] = {s.name: s for s in (Euler(), TauLeaping(), Tweedie(), Ancestral(), FirstHitting(),
                                                     Confidence())}

__all__ = [
    "NEG_INF", "SAMPLERS", "Condition", "SampleOutput", "SamplerOptions", "filter_logits", "infill_template",
    "sample", "sample_categorical", "sample_from_logits",
]


def _options(sampler: Sampler, options: dict) -> SamplerOptions:
    known = {f.name for f in fields(SamplerOptions)} - {"extra"}
    extra = dict(sampler.extras)
    common = {}
    for key, value in options.items():
        if key in known:
            common[key] = value
        elif key in sampler.extras:
            extra[key] = value
        else:
            valid = sorted(known | set(sampler.extras))
            hint = difflib.get_close_matches(key, valid, n=1)
            raise ValueError(f"unknown option {key!r} for sampler {sampler.name!r}"
                             + (f"; did you mean {hint[0]!r}?" if hint else f"; valid options: {valid}"))
    opts = SamplerOptions(**common, extra=extra)
    opts.validate()
    return opts


def sample(diffusion, model, num_samples: int, length: int, sampler: str = "ancestral", *,
           generator: torch.Generator | None = None, condition: Condition | None = None, guidance: float = 0.0,
           device=None, callback: Callable[[int, torch.Tensor, int], None] | None = None,
           **options) -> SampleOutput:
    """Draw ``num_samples`` sequences of ``length`` tokens; see ``Diffusion.sample``.

    ``callback(step, state, nfe)``, if given, sees the state [B, L] at the start (step 0) and after every
    step, with the model calls so far: for live displays. An exception it raises stops sampling.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    impl = SAMPLERS[sampler]
    for name, value in (("num_samples", num_samples), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    opts = _options(impl, options)
    graph = diffusion.graph
    if impl.needs_mask and graph.mask_id is None:
        raise ValueError(f"sampler {sampler!r} needs an absorbing graph (one with a MASK state)")
    if condition is not None:
        condition = condition.validate(num_samples, length, graph.num_clean_states)
        condition = type(condition)(condition.tokens.to(device), condition.known.to(device))
    ev = Evaluator(diffusion, model, num_samples, device, condition, guidance, opts)
    x = ev.pin(graph.sample_prior((num_samples, length), generator=generator, device=device))
    trajectory = [x] if opts.return_trajectory else None
    steps_done = 0

    def record(state: torch.Tensor) -> None:
        nonlocal steps_done
        steps_done += 1
        if trajectory is not None:
            trajectory.append(state)
        if callback is not None:
            callback(steps_done, state, ev.nfe)

    if callback is not None:
        callback(0, x, 0)
    with torch.no_grad():
        x = impl.run(ev, x, opts, generator, record)
    return SampleOutput(x, ev.nfe, ev.nfe_per_row, trajectory)
