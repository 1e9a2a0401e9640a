"""SEDD's analytic (Tweedie tau-leaping) step, for absorbing, uniform and dense graphs.

From t to s with delta = sigma_bar(t) - sigma_bar(s), each position moves with

    p(x_s = y | x_t = x) proportional to [exp(-delta Q) s_theta(x, t)](y) * exp(delta Q)[x, y],

the exact one-position reverse transition when s_theta is exact (for the absorbing graph it is the
masked-diffusion ancestral step). Positions update independently, so the joint law is exact only as
steps grow; the tests measure it.
"""

from __future__ import annotations

from .base import Sampler, noise_at, run_time_stepper


def tweedie_step(ev, x, t: float, s: float, generator):
    sigma_t, _ = noise_at(ev, t, x.shape[0], x.device)
    sigma_s, _ = noise_at(ev, s, x.shape[0], x.device)
    delta = (sigma_t - sigma_s).clamp_min(0)
    score = ev.log_score(x, sigma_t).exp()
    probs = ev.graph.staggered_score(score, x, delta) * ev.graph.transposed_transition(x, delta).to(score.dtype)
    probs = probs.clamp_min(0)
    if not (probs.sum(-1) > 0).all():
        # exp(-delta Q) amplifies rounding by up to e^{delta |lambda_max|}: big steps on dense graphs lose it all
        raise ValueError(f"the Tweedie step from t={t:.4g} to s={s:.4g} (delta sigma_bar = {delta.max().item():.3g}) "
                         "is numerically ill-conditioned for this graph; use more steps")
    return ev.draw(probs, generator)


class Tweedie(Sampler):
    name = "tweedie"

    def run(self, ev, x, opts, generator, record):
        return run_time_stepper(ev, x, opts, generator, record, tweedie_step)
