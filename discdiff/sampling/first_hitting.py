"""First-hitting sampling (Zheng et al., "Masked diffusion models are secretly time-agnostic"): the
absorbing reverse process simulated jump by jump.

With m masked positions at time t, each unmasks independently, so the time s of the next unmasking
satisfies P(no unmasking in (s, t]) = ((1 - alpha_s) / (1 - alpha_t))^m; drawing u ~ U(0, 1),

    1 - alpha_s = (1 - alpha_t) u^(1/m),   s = schedule.inverse(-log alpha_s).

Then one masked position, chosen uniformly, becomes y ~ p_theta(x0 = y | x_t) with the model queried at
time s. One model call per unmasked token: exactly l calls for length l, and, with an exact model, an
exact sample (the any-order autoregressive factorisation). ``steps`` is ignored.
"""

from __future__ import annotations

import torch

from discdiff.row_random import rows_of, uniform

from .base import Sampler


class FirstHitting(Sampler):
    name = "first_hitting"
    needs_mask = True

    def run(self, pred, x, opts, generator, record):
        mask_id = pred.graph.mask_id
        schedule = pred.schedule
        batch, device = x.shape[0], x.device
        # every row starts at t = 1
        sigma = schedule.total(torch.ones(batch, dtype=torch.float64, device=device))
        while True:
            masked = x == mask_id
            count = masked.sum(-1)
            rows = (count > 0).nonzero().squeeze(-1)
            if rows.numel() == 0:
                return x
            m = count[rows].double()
            row_gen = rows_of(generator, rows)  # per-row seeds: each row draws from its own generator
            u = uniform((rows.numel(),), row_gen, device=device)
            gone = -torch.expm1(-sigma[rows]) * u ** (1.0 / m)  # 1 - alpha_s
            sigma[rows] = -torch.log1p(-gone)
            sigma[rows] = schedule.total(schedule.inverse(sigma[rows]))  # stay on the schedule's range
            log_probs = pred.clean_log_probs(x[rows], sigma[rows].to(torch.get_default_dtype()), rows)
            keys = uniform(masked[rows].shape, row_gen, device=device)
            pos = keys.masked_fill(~masked[rows], -1.0).argmax(-1)  # a uniformly chosen masked position
            picked = log_probs[torch.arange(rows.numel(), device=device), pos]
            tokens = pred.draw(torch.softmax(pred.filtered(picked), -1), row_gen)
            x = x.clone()
            x[rows, pos] = tokens
            x = pred.pin(x)
            record(x)
