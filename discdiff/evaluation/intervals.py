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
    A spread sample of n of a split's N examples (one per equal stratum, ``spread_sample``) estimates the
    split's mean; with one example per stratum the textbook estimate collapses adjacent strata in pairs
    (successive differences), and the finite-population correction, f = n / N, shrinks the data part:

        v_sd = sum_{h >= 1} (r_h - r_{h-1})^2 / (2 n (n - 1))
        var  = (1 - f) v_sd + f sum_b mc_b / n^2

    v_sd holds the Monte Carlo variance mc_b too, which no finite population removes: hence the f term,
    so that evaluating the whole split (f = 1) leaves exactly the Monte Carlo error.
    """
    n = len(resid)
    if n < 2:
        return math.nan
    if drawn is None:
        return float((resid.square().sum() / (n * (n - 1))).sqrt())
    f = min(drawn.fraction, 1.0)
    v_sd = (resid[1:] - resid[:-1]).square().sum() / (2 * n * (n - 1))
    return float(((1 - f) * v_sd + f * mc_variance.sum() / n**2).sqrt())
