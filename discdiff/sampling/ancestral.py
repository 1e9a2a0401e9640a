"""Exact ancestral sampling for the absorbing graph (MDLM / MD4), with RADD's per-row caching.

From t to s < t, with alpha = exp(-sigma_bar) the probability that a token is still unmasked, a masked
position becomes clean token y with probability (alpha_s - alpha_t) / (1 - alpha_t) * p_theta(x0 = y | x_t)
and stays masked otherwise; unmasked positions never change. The last step goes to t = 0 and unmasks
every remaining position.

Caching (the Predictor's ``cache``): a time-free denoiser's prediction depends on x_t only, so a row whose
tokens did not change in a step reuses its last prediction, and only changed rows are sent to the model.
It is on by default only for a denoiser that declares itself time-free (``discdiff.model_call.is_time_free``:
discdiff's DiffusionTransformer does); pass ``cache=True`` for an undeclared time-free model. With n steps
and length l, the expected number of evaluations per row is about n (1 - (1 - 1/n)^l) under the log-linear
schedule.
"""

from __future__ import annotations

import torch

from discdiff.row_random import RowGenerators, rows_of, uniform

from .base import Sampler
from .steps import time_grid


class Ancestral(Sampler):
    name = "ancestral"
    needs_mask = True

    def run(self, pred, x, opts, generator, record):
        mask_id = pred.graph.mask_id
        batch = x.shape[0]
        grid = time_grid(opts.steps, 0.0).tolist()
        for k, (t, s) in enumerate(zip(grid[:-1], grid[1:], strict=True)):
            sigma_t, sigma_s = pred.noise(t, batch).total, pred.noise(s, batch).total
            masked = x == mask_id
            rows = masked.any(-1).nonzero().squeeze(-1)
            if rows.numel() == 0:  # nothing is masked anywhere
                break
            log_probs = pred.clean_log_probs(x[rows], sigma_t[rows], rows)  # [r, L, C]
            # p(unmask in this step | still masked) = (alpha_s - alpha_t) / (1 - alpha_t)
            alpha_t, alpha_s = torch.exp(-sigma_t.double()), torch.exp(-sigma_s.double())
            last = k == opts.steps - 1
            unmask = torch.ones_like(alpha_t) if last else (alpha_s - alpha_t) / (-torch.expm1(-sigma_t.double()))
            u = uniform(x.shape, generator, device=x.device)
            reveal = masked & (u < unmask[:, None])
            picked = reveal[rows]  # [r, L]
            token_u = None
            if isinstance(generator, RowGenerators):  # every masked row draws L token uniforms from its own
                # generator each step, whatever the rest of the batch reveals
                token_u = uniform(picked.shape, rows_of(generator, rows), device=x.device)[picked]
            if reveal.any():
                weights = torch.softmax(pred.filtered(log_probs[picked]), -1)
                x = x.clone()
                x[reveal] = pred.draw(weights, generator if token_u is None else None, uniform=token_u)
            x = pred.pin(x)
            record(x)
        return x
