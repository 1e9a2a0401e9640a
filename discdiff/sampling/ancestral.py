"""Exact ancestral sampling for the absorbing graph (MDLM / MD4), with RADD's per-row caching.

From t to s < t, with alpha = exp(-sigma_bar) the probability that a token is still unmasked, a masked
position becomes clean token y with probability (alpha_s - alpha_t) / (1 - alpha_t) * p_theta(x0 = y | x_t)
and stays masked otherwise; unmasked positions never change. The last step goes to t = 0 and unmasks
every remaining position.

Caching: a time-free denoiser's prediction depends on x_t only, so a row whose tokens did not change
in a step reuses its last prediction. It is on by default for denoisers unless the model declares
``config.time_conditioning`` (discdiff's DiffusionTransformer does); pass ``cache=False`` for any other
model whose output depends on sigma_bar. Rows are tracked one by one (one row's change never invalidates
another's cache), and only changed rows are sent to the model. With n steps and length l, the expected
number of evaluations per row is about n (1 - (1 - 1/n)^l) under the log-linear schedule.
"""

from __future__ import annotations

import torch

from .base import Sampler, noise_at, time_grid


class Ancestral(Sampler):
    name = "ancestral"
    needs_mask = True

    def run(self, ev, x, opts, generator, record):
        mask_id = ev.graph.mask_id
        time_free = ev.diffusion.parameterization.name == "denoiser" and not ev.time_conditioned
        cache = time_free if opts.cache is None else opts.cache
        if cache and not time_free:
            raise ValueError("cache=True needs a time-free denoiser (parameterization='denoiser', no "
                             "time_conditioning); a prediction that depends on t cannot be reused across steps")
        grid = time_grid(opts.steps, 0.0)
        log_probs = None
        stale = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for k, (t, s) in enumerate(zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True)):
            sigma_t, _ = noise_at(ev, t, x.shape[0], x.device)
            sigma_s, _ = noise_at(ev, s, x.shape[0], x.device)
            masked = x == mask_id
            need = (stale & masked.any(-1)) if cache else masked.any(-1)
            rows = need.nonzero().squeeze(-1)
            if rows.numel():
                fresh = ev.clean_log_probs(x[rows], sigma_t[rows], rows)
                if log_probs is None:
                    log_probs = torch.zeros(*x.shape, fresh.shape[-1], dtype=fresh.dtype, device=x.device)
                log_probs[rows] = fresh
            if log_probs is None:  # nothing is masked anywhere
                break
            last = k == opts.steps - 1
            # p(unmask in this step | still masked) = (alpha_s - alpha_t) / (1 - alpha_t)
            alpha_t, alpha_s = torch.exp(-sigma_t.double()), torch.exp(-sigma_s.double())
            unmask = torch.ones_like(alpha_t) if last else (alpha_s - alpha_t) / (-torch.expm1(-sigma_t.double()))
            u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=x.device)
            reveal = masked & (u < unmask[:, None])
            if reveal.any():
                weights = torch.softmax(ev.filtered(log_probs[reveal]), -1)
                x = x.clone()
                x[reveal] = ev.draw(weights, generator)
            x = ev.pin(x)
            stale = reveal.any(-1)
            record(x)
        return x
