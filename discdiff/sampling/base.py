"""What every sampler shares: the output, the sampler interface, and the time-stepping loop of the
score-based samplers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from .options import SamplerOptions
from .predictor import Predictor
from .steps import denoise_step, time_grid

__all__ = ["SampleOutput", "Sampler", "TimeStepper", "run_time_stepper"]

Record = Callable[[Tensor], None]


@dataclass
class SampleOutput:
    """Samples [B, L] with their cost.

    ``nfe``: model calls for the whole batch (a guided call counts once, though it runs 2B rows).
    ``nfe_per_row``: [B] how many times each row went through the model (caching makes this differ).
    ``trajectory``: the state [B, L] after every step (first entry: the start), when asked for.
    """

    samples: Tensor
    nfe: int
    nfe_per_row: Tensor
    trajectory: list[Tensor] | None = None


class Sampler:
    """A reverse-process sampler. Subclasses set ``name`` and ``needs_mask`` (absorbing graphs only) and
    implement ``run``; the options each one reads are rows of ``discdiff.sampling.options.OPTIONS``."""

    name: str = ""
    needs_mask: bool = False

    def run(self, pred: Predictor, x: Tensor, opts: SamplerOptions, generator, record: Record) -> Tensor:
        """Turn the prior draw ``x`` [B, L] (known positions pinned) into samples; call ``record(x)``
        after every step."""
        raise NotImplementedError


class TimeStepper(Sampler):
    """euler / tau_leaping / tweedie: ``step`` over an even grid from 1 to ``t_end``, then (by default) a
    final Tweedie denoising step to clean data. Each step is one NFE."""

    step: Callable  # a pure step of discdiff.sampling.steps, as a staticmethod

    def run(self, pred, x, opts, generator, record):
        return run_time_stepper(pred, x, opts, generator, record, self.step)


def run_time_stepper(pred: Predictor, x: Tensor, opts: SamplerOptions, generator, record: Record, step) -> Tensor:
    """The loop of a pure ``step(log_score, x, t, s, graph, schedule, generator, method=...)``."""
    grid = time_grid(opts.steps, opts.t_end)
    batch = x.shape[0]
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        log_score = pred.log_score(x, pred.noise(t, batch).total)
        x = pred.pin(step(log_score, x, t, s, pred.graph, pred.schedule, generator, method=pred.categorical))
        record(x)
    if opts.denoise:
        log_score = pred.log_score(x, pred.noise(opts.t_end, batch).total)
        x = denoise_step(log_score, x, opts.t_end, pred.graph, pred.schedule, generator, temperature=pred.temperature,
                         top_k=pred.top_k, top_p=pred.top_p, method=pred.categorical)
        x = pred.pin(x)
        record(x)
    return x
