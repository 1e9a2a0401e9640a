"""Tau-leaping: each position jumps independently over a step, with the reverse rates frozen at its start.

With R(x -> y) = sigma(t) Q[x, y] s_theta(x, t)_y and total rate R = sum_{y != x} R(x -> y), a position
leaves x with probability 1 - exp(-dt R) (the exact holding time of a constant-rate chain, where Euler
uses its linearisation dt R) and lands on y with probability proportional to R(x -> y). At most one
jump per position per step.
"""

from __future__ import annotations

import torch

from .base import Sampler, noise_at, run_time_stepper


def tau_leaping_step(ev, x, t: float, s: float, generator):
    sigma_bar, sigma = noise_at(ev, t, x.shape[0], x.device)
    score = ev.log_score(x, sigma_bar).exp()
    rates = ev.graph.reverse_rates(x, score).scatter(-1, x[..., None], 0.0).clamp_min(0)
    rates = rates * ((t - s) * sigma)[:, None, None]
    total = rates.sum(-1, keepdim=True)
    leave = -torch.expm1(-total)
    probs = torch.where(total > 0, rates / total.clamp_min(1e-30), 0.0) * leave
    probs = probs.scatter(-1, x[..., None], 1 - leave)
    return ev.draw(probs, generator)


class TauLeaping(Sampler):
    name = "tau_leaping"

    def run(self, ev, x, opts, generator, record):
        return run_time_stepper(ev, x, opts, generator, record, tau_leaping_step)
