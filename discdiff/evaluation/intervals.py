"""Confidence intervals for means and ratios of per-sequence values, under the design that drew the sequences.

Every estimate here is linearised (the delta method): a statistic such as nats per token,
R = sum_b v_b / sum_b l_b, has residuals r_b = (v_b - R l_b) / mean(l) whose mean's standard error is R's.
How that standard error is computed depends on how the sequences were drawn (``stderr_of_mean``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from discdiff.data.splits import SplitSample

__all__ = ["Interval", "ratio_stderr", "stderr_of_mean", "z_value"]


class Interval(NamedTuple):
    """A confidence interval: ``low`` and ``high`` (unpacks as ``lo, hi = interval``)."""

    low: float
    high: float


def z_value(confidence: float) -> float:
    """The two-sided normal quantile: 1.96 for confidence 0.95."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return float(torch.special.ndtri(torch.tensor(0.5 + confidence / 2, dtype=torch.float64)))


def ratio_stderr(values: Tensor, lengths: Tensor, mc_variance: Tensor | None = None,
                 drawn: SplitSample | None = None) -> float:
    """Standard error of sum(values) / sum(lengths): residuals r_b = (v_b - R l_b) / mean(l), then
    ``stderr_of_mean``. ``mc_variance`` [n]: each value's Monte Carlo variance (None: exact values)."""
    if len(values) < 2:
        return math.nan
    scale = lengths.mean()
    ratio = values.sum() / lengths.sum()
    mc = torch.zeros_like(values) if mc_variance is None else mc_variance
    return stderr_of_mean((values - ratio * lengths) / scale, mc / scale**2, drawn)


def stderr_of_mean(resid: Tensor, mc_variance: Tensor, drawn: SplitSample | None) -> float:
    """Standard error of the mean of a linearised statistic from its residuals r_b [n] (sum 0, split order).

    Sequences given directly (``drawn`` None) are independent draws:  var = sum_b r_b^2 / (n (n - 1)).
    A stratified spread of a split (one draw per equal stratum, ``spread_sample``) estimates the split's
    mean. With one draw per stratum the within-stratum variance is estimated by collapsing adjacent strata
    (successive differences), which can only over-state it (differences between strata add to it):

        var = sum_{h >= 1} (r_h - r_{h-1})^2 / (2 n (n - 1))

    It holds each draw's Monte Carlo variance mc_b as well. The whole split (method "all") has no sampling
    error left, only the Monte Carlo one:  var = sum_b mc_b / n^2.
    """
    n = len(resid)
    if n < 2:
        return math.nan
    if drawn is None:
        return float((resid.square().sum() / (n * (n - 1))).sqrt())
    if drawn.method == "all":
        return float(mc_variance.sum().sqrt() / n)
    return float(((resid[1:] - resid[:-1]).square().sum() / (2 * n * (n - 1))).sqrt())
