"""Tau-leaping: each position jumps independently over a step, with the reverse rates frozen at its start.

With R(x -> y) = sigma(t) Q[x, y] s_theta(x, t)_y and total rate R = sum_{y != x} R(x -> y), a position
leaves x with probability 1 - exp(-dt R) (the exact holding time of a constant-rate chain, where Euler
uses its linearisation dt R) and lands on y with probability proportional to R(x -> y). At most one
jump per position per step. The step itself is the pure ``discdiff.sampling.tau_leaping_step``.
"""

from __future__ import annotations

from .base import TimeStepper
from .steps import tau_leaping_step


class TauLeaping(TimeStepper):
    name = "tau_leaping"
    step = staticmethod(tau_leaping_step)
