"""SEDD's analytic (Tweedie tau-leaping) step, for absorbing, uniform and dense graphs.

From t to s with delta = sigma_bar(t) - sigma_bar(s), each position moves with

    p(x_s = y | x_t = x) proportional to [exp(-delta Q) s_theta(x, t)](y) * exp(delta Q)[x, y],

the exact one-position reverse transition when s_theta is exact (for the absorbing graph it is the
masked-diffusion ancestral step). Positions update independently, so the joint law is exact only as
steps grow; the tests measure it. The step itself is the pure ``discdiff.sampling.tweedie_step``.
"""

from __future__ import annotations

from .base import TimeStepper
from .steps import tweedie_step


class Tweedie(TimeStepper):
    name = "tweedie"
    step = staticmethod(tweedie_step)
