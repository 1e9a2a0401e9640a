"""Reverse-process samplers, each usable through ``Diffusion.sample`` or on its own.

    out = diff.sample(model, num_samples=16, length=64, sampler="ancestral", steps=128, generator=g)
    out.samples, out.nfe, out.nfe_per_row, out.trajectory

Samplers (the ``sampler=`` strings): ``euler``, ``tau_leaping``, ``tweedie`` (any graph, score-based;
they end with a Tweedie denoising step), ``ancestral`` (absorbing, exact, per-row caching),
``first_hitting`` (absorbing, one token per model call, exact), ``confidence`` (absorbing, LLaDA /
Fast-dLLM parallel decoding with semi-autoregressive blocks). ``sampler=None`` picks one that fits the
graph (``default_sampler``).

The seam: every sampler sees one ``Predictor`` (the model's answer at (x_t, sigma_bar), with conditioning,
guidance, caching and NFE counting); ``sample(predictor, ...)`` runs a sampler on a Predictor you built.
The score-based steps are pure functions (``euler_step``, ``tau_leaping_step``, ``tweedie_step``,
``denoise_step``) for loops of your own. Every option is a row of ``OPTIONS`` (``options.py``), from which
the library's checks, the CLI flags (``add_sampler_arguments``) and the web demo's validation are made.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from discdiff.categorical import NEG_INF, filter_logits, sample_categorical, sample_from_logits
from discdiff.graphs import Graph
from discdiff.parameterization import Parameterization, get_parameterization
from discdiff.row_random import RowGenerators, resolve_generator

from .ancestral import Ancestral
from .base import SampleOutput, Sampler
from .conditioning import Condition, infill_template
from .confidence import Confidence
from .euler import Euler
from .first_hitting import FirstHitting
from .flags import add_sampler_arguments, check_request_option, sampler_options_from_args
from .memory import check_memory, sampling_memory
from .options import OPTIONS, Option, SamplerOptions, check_option, split_options
from .predictor import Predictor
from .records import (
    RecordFormat,
    RecordSampling,
    draw_lengths,
    infill_rows,
    on_record_support,
    record_format_of,
    record_lengths,
    record_sampling,
    without_tokens,
)
from .steps import denoise_step, euler_step, tau_leaping_step, time_grid, tweedie_step
from .tau_leaping import TauLeaping
from .tweedie import Tweedie

SAMPLERS: dict[str, Sampler] = {s.name: s for s in (Euler(), TauLeaping(), Tweedie(), Ancestral(), FirstHitting(),
                                                     Confidence())}

__all__ = [
    "NEG_INF", "OPTIONS", "SAMPLERS", "Condition", "Option", "Predictor", "RecordFormat", "RowGenerators",
    "SampleOutput", "Sampler", "draw_lengths", "infill_rows", "on_record_support", "without_tokens",
    "RecordSampling", "record_format_of", "record_lengths", "record_sampling",
    "SamplerOptions", "add_sampler_arguments", "check_option", "check_request_option", "check_sample_size",
    "default_record_sampler", "default_sampler",
    "default_sampler_reason", "denoise_step", "euler_step", "filter_logits", "infill_template", "resolve_sampler",
    "run_sampler", "sample", "sample_categorical", "sample_from_logits", "sampler_options_from_args",
    "split_options", "tau_leaping_step", "time_grid", "tweedie_step",
]


def default_sampler(graph: Graph, parameterization: str | Parameterization = "score") -> str:
    """The sampler ``sampler=None`` picks: "ancestral" on an absorbing graph, "tau_leaping" otherwise.

    Absorbing: ancestral sampling is exact per step for an exact model and caches a time-free denoiser's
    predictions. Uniform / dense: tau-leaping works at any step count (Tweedie's exp(-delta Q) loses all
    precision on big steps there and refuses them) and converges as steps grow; the parameterization
    does not change the choice (a denoiser's output is turned into scores exactly).
    """
    get_parameterization(parameterization)  # raises on an unknown name
    return "ancestral" if graph.mask_id is not None else "tau_leaping"


def default_sampler_reason(graph: Graph, parameterization: str | Parameterization = "score") -> str:
    """One line saying which sampler ``default_sampler`` picks for this graph, and why."""
    if graph.mask_id is not None:
        return "ancestral: exact per step on an absorbing (masked) graph, and caches time-free denoisers"
    return (f"tau_leaping: {type(graph).__name__} graph has no MASK state; tau-leaping works at any step "
            "count (tweedie refuses big steps there)")


def default_record_sampler(graph: Graph, parameterization: str | Parameterization = "score",
                           length_first: bool = False) -> tuple[str, str]:
    """(sampler, one-line reason) for a model trained on records (``record_sampling``): first_hitting on an
    absorbing graph when the model places EOS itself (one token per model call keeps every record well formed;
    ancestral reveals several at once, and an EOS and a later letter drawn together contradict each other);
    ``default_sampler`` when EOS is pinned after a chosen length (length-first) or the graph has no MASK."""
    if graph.mask_id is not None and not length_first:
        return "first_hitting", ("first_hitting: one token per model call keeps each record well formed (ancestral "
                                 "reveals several at once, and an EOS and a later letter drawn together contradict "
                                 "each other)")
    return default_sampler(graph, parameterization), default_sampler_reason(graph, parameterization)


def resolve_sampler(sampler: str | None, graph: Graph, parameterization: str | Parameterization = "score") -> str:
    """``sampler`` checked against ``graph`` (None: ``default_sampler``); raises ValueError."""
    if sampler is None:
        return default_sampler(graph, parameterization)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    if SAMPLERS[sampler].needs_mask and graph.mask_id is None:
        raise ValueError(f"sampler {sampler!r} needs an absorbing graph (one with a MASK state)")
    return sampler


def check_sample_size(num_samples, length) -> None:
    """Raise ValueError unless num_samples and length are positive integers."""
    for name, value in (("num_samples", num_samples), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def run_sampler(pred: Predictor, num_samples: int, length: int, sampler: str, opts: SamplerOptions, *,
                generator: torch.Generator | RowGenerators | None = None,
                callback: Callable[[int, torch.Tensor, int], None] | None = None) -> SampleOutput:
    """Run ``sampler`` (a checked name) with validated loop options on ``pred`` (its counters and cache
    start afresh: ``SampleOutput.nfe`` counts this run).

    Refuses a request whose memory estimate (``sampling_memory``) exceeds what is available, before
    allocating. ``callback(step, state, nfe)`` sees the state [B, L] at the start (step 0) and after every
    step, with the model calls so far; an exception it raises stops sampling. ``generator``: one for the
    batch, or ``RowGenerators`` (row b draws only from its own: its sample never depends on its batch).
    """
    check_sample_size(num_samples, length)
    if generator is not None and not isinstance(generator, (torch.Generator, RowGenerators)):
        raise ValueError(f"generator must be a torch.Generator (or RowGenerators) or None, got "
                         f"{type(generator).__name__}")
    generator = resolve_generator(generator, None, num_samples)
    impl = resolve_sampler(sampler, pred.graph, pred.parameterization)
    reads_steps = impl in OPTIONS["steps"].samplers
    trajectory_len = ((opts.steps if reads_steps else length) + 2) if opts.return_trajectory else 0
    check_memory(sampling_memory(num_samples, length, pred.graph.num_states, steps=opts.steps if reads_steps else None,
                                 trajectory_len=trajectory_len, guidance=bool(pred.guidance)), pred.device)
    pred.start(num_samples)
    x = pred.pin(_prior(pred.graph, num_samples, length, generator, pred.device))
    trajectory = [x] if opts.return_trajectory else None
    steps_done = 0

    def record(state: torch.Tensor) -> None:
        nonlocal steps_done
        steps_done += 1
        if trajectory is not None:
            trajectory.append(state)
        if callback is not None:
            callback(steps_done, state, pred.nfe)

    if callback is not None:
        callback(0, x, 0)
    with torch.no_grad():
        x = SAMPLERS[impl].run(pred, x, opts, generator, record)
    return SampleOutput(x, pred.nfe, pred.nfe_per_row, trajectory)


def _prior(graph: Graph, num_samples: int, length: int, generator, device) -> torch.Tensor:
    """[num_samples, length] from the graph's limiting law; per-row generators draw their own row."""
    if not isinstance(generator, RowGenerators):
        return graph.sample_prior((num_samples, length), generator=generator, device=device)
    return torch.cat([graph.sample_prior((1, length), generator=g, device=device) for g in generator.generators])


def sample(pred: Predictor, num_samples: int, length: int, sampler: str | None = None, *,
           generator: torch.Generator | None = None, seeds=None, callback=None, **options) -> SampleOutput:
    """Draw ``num_samples`` sequences of ``length`` tokens with a ``Predictor`` you built.

    ``seeds``: one integer per row: row b draws every random number from a generator seeded with
    seeds[b], so it is the same sample alone or in any batch (instead of one ``generator`` for the batch).

    ``options`` are the loop options of ``OPTIONS`` (steps, t_end, denoise, return_trajectory and the
    confidence sampler's); the draw rule, guidance and caching are the Predictor's own settings.
    """
    sampler = resolve_sampler(sampler, pred.graph, pred.parameterization)
    split = split_options(sampler, options)
    if split.predictor:
        name = next(iter(split.predictor))
        raise ValueError(f"{name} is a Predictor setting: pass it to Predictor(..., {name}=...)")
    generator = resolve_generator(generator, seeds, num_samples, pred.device)
    return run_sampler(pred, num_samples, length, sampler, split.loop, generator=generator, callback=callback)
