"""Euler steps of the reverse CTMC (SEDD), for any graph.

From t to s = t - dt every position moves independently with the first-order transition

    p(x_s = y | x_t = x) = 1{y = x} + dt * sigma(t) * R(x -> y),   R(x -> y) = Q[x, y] s_theta(x, t)_y,

clipped at zero. Its error shrinks as O(dt) per step; see tests/sampling for the measured decrease.
The step itself is the pure ``discdiff.sampling.euler_step``.
"""

from __future__ import annotations

from .base import TimeStepper
from .steps import euler_step


class Euler(TimeStepper):
    name = "euler"
    step = staticmethod(euler_step)
