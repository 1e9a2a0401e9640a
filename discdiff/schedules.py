"""Noise schedules: t in [0, 1] -> Noise(total = sigma_bar(t), rate = d sigma_bar / dt).

The forward process runs the rate matrix at speed sigma(t): ``dp_t/dt = sigma(t) Q p_t``, so the
transition from time 0 to t is ``exp(sigma_bar(t) Q)`` with ``sigma_bar(t) = int_0^t sigma(s) ds``.
For the absorbing graph a token is still clean at time t with probability
``alpha(t) = exp(-sigma_bar(t))``; every schedule below is defined by that survival curve or by
sigma_bar directly.

Example::

    >>> import torch, discdiff as dd
    >>> sched = dd.LogLinear(eps=1e-3)
    >>> noise = sched(torch.tensor([0.0, 0.5, 1.0]))
    >>> noise.total   # sigma_bar: 0, -log(1 - 0.999 * 0.5), -log(1e-3)
    tensor([0.0000, 0.6921, 6.9078])
    >>> torch.allclose(sched.inverse(noise.total), torch.tensor([0.0, 0.5, 1.0]))
    True
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Noise", "Schedule", "LogLinear", "Geometric", "Linear", "Cosine", "check_times"]


class Noise(NamedTuple):
    """The noise level at time t: ``total`` = sigma_bar(t) and ``rate`` = sigma(t) = d sigma_bar / dt."""

    total: Tensor
    rate: Tensor


def check_times(t: Tensor | float) -> Tensor:
    """Return ``t`` as a float tensor, raising ValueError unless every entry lies in [0, 1]."""
    t = torch.as_tensor(t)
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    if t.numel() and (torch.isnan(t).any() or t.min() < 0 or t.max() > 1):
        raise ValueError(
            f"diffusion times must lie in [0, 1]; got values in [{t.min().item():.4g}, {t.max().item():.4g}]"
        )
    return t


class Schedule:
    """A noise schedule. Subclasses implement ``_total``, ``_rate`` and ``_inverse`` on valid input."""

    def __call__(self, t: Tensor | float) -> Noise:
        t = check_times(t)
        return Noise(self._total(t), self._rate(t))

    def total(self, t: Tensor | float) -> Tensor:
        """sigma_bar(t) alone."""
        return self._total(check_times(t))

    def inverse(self, sigma_bar: Tensor | float) -> Tensor:
        """t(sigma_bar): the time at which the schedule reaches total noise ``sigma_bar`` (clamped to [0, 1])."""
        sigma_bar = torch.as_tensor(sigma_bar)
        if not torch.is_floating_point(sigma_bar):
            sigma_bar = sigma_bar.to(torch.get_default_dtype())
        if sigma_bar.numel() and (sigma_bar < 0).any():
            raise ValueError("sigma_bar must be non-negative")
        return self._inverse(sigma_bar).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class LogLinear(Schedule):
    """SEDD's log-linear schedule: the masking probability grows linearly in t.

        1 - exp(-sigma_bar(t)) = (1 - eps) t,   sigma_bar(t) = -log(1 - (1 - eps) t),
        sigma(t) = (1 - eps) / (1 - (1 - eps) t).

    ``eps`` keeps sigma_bar(1) = -log(eps) finite (SEDD's default eps = 1e-3). Under this schedule the
    t-DCE weight sigma e^{-sigma_bar} / (1 - e^{-sigma_bar}) equals 1/t (MDLM, LLaDA).
    """

    def __init__(self, eps: float = 1e-3):
        if not 0.0 < eps < 1.0:
            raise ValueError(f"LogLinear needs 0 < eps < 1, got {eps}")
        self.eps = eps

    def _total(self, t: Tensor) -> Tensor:
        return -torch.log1p(-(1 - self.eps) * t)

    def _rate(self, t: Tensor) -> Tensor:
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def _inverse(self, sigma_bar: Tensor) -> Tensor:
        return -torch.expm1(-sigma_bar) / (1 - self.eps)


class Geometric(Schedule):
    """SEDD's geometric schedule: sigma_bar(t) = sigma_min^(1-t) sigma_max^t,
    sigma(t) = sigma_bar(t) log(sigma_max / sigma_min). Defaults are SEDD's (1e-4, 20)."""

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"Geometric needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def _total(self, t: Tensor) -> Tensor:
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def _rate(self, t: Tensor) -> Tensor:
        return self._total(t) * math.log(self.sigma_max / self.sigma_min)

    def _inverse(self, sigma_bar: Tensor) -> Tensor:
        return torch.log(sigma_bar / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)


class Linear(Schedule):
    """Total noise linear in time: sigma_bar(t) = sigma_min + (sigma_max - sigma_min) t, constant rate.

    Note sigma_bar(0) = sigma_min (default 0, i.e. clean data at t = 0).
    """

    def __init__(self, sigma_min: float = 0.0, sigma_max: float = 10.0):
        if not 0.0 <= sigma_min < sigma_max:
            raise ValueError(f"Linear needs 0 <= sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def _total(self, t: Tensor) -> Tensor:
        return self.sigma_min + (self.sigma_max - self.sigma_min) * t

    def _rate(self, t: Tensor) -> Tensor:
        return torch.full_like(t, self.sigma_max - self.sigma_min)

    def _inverse(self, sigma_bar: Tensor) -> Tensor:
        return (sigma_bar - self.sigma_min) / (self.sigma_max - self.sigma_min)


class Cosine(Schedule):
    """Cosine survival curve: 1 - exp(-sigma_bar(t)) = (1 - eps)(1 - cos(pi t / 2)).

        sigma_bar(t) = -log(1 - (1 - eps)(1 - cos(pi t / 2))),
        sigma(t) = (1 - eps) (pi / 2) sin(pi t / 2) / exp(-sigma_bar(t)).

    Slower than log-linear near t = 0 (few tokens masked early), faster near t = 1.
    """

    def __init__(self, eps: float = 1e-3):
        if not 0.0 < eps < 1.0:
            raise ValueError(f"Cosine needs 0 < eps < 1, got {eps}")
        self.eps = eps

    def _masked(self, t: Tensor) -> Tensor:
        # 1 - cos(x) = 2 sin^2(x/2) avoids cancellation near t = 0
        return (1 - self.eps) * 2 * torch.sin(math.pi * t / 4) ** 2

    def _total(self, t: Tensor) -> Tensor:
        return -torch.log1p(-self._masked(t))

    def _rate(self, t: Tensor) -> Tensor:
        alive = 1 - self._masked(t)
        return (1 - self.eps) * (math.pi / 2) * torch.sin(math.pi * t / 2) / alive

    def _inverse(self, sigma_bar: Tensor) -> Tensor:
        masked = -torch.expm1(-sigma_bar) / (1 - self.eps)
        return (4 / math.pi) * torch.asin(torch.sqrt((masked / 2).clamp(0.0, 1.0)))
