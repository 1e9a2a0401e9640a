"""Confidence-based parallel decoding: LLaDA's low-confidence remasking and Fast-dLLM's thresholds,
inside semi-autoregressive blocks.

The sequence is cut into blocks of ``block_length`` decoded left to right; each block gets
``steps / num_blocks`` steps. At every step the model predicts every masked position of the current
block (a token drawn with temperature / top-k / top-p, or the argmax with ``greedy=True``) and its
confidence (the model's probability of that token; uniform noise with ``remasking="random"``):

* top-k mode (LLaDA): the k most confident predictions are kept, the rest stay masked, with k chosen so
  the block's masked tokens are spread evenly over its steps;
* threshold mode (Fast-dLLM, ``threshold=tau``): every prediction with confidence > tau is kept, and at
  least the most confident one; ``steps`` then only caps nothing, a block ends when it is unmasked.

With ``remasking="random"``, one token per step and drawn (not greedy) tokens this is exact any-order
sampling; the confidence rules trade that exactness for fewer model calls.
"""

from __future__ import annotations

import torch

from discdiff.row_random import rows_of, uniform

from .base import Sampler


def _quota(masked_in_block: torch.Tensor, steps_left: int) -> torch.Tensor:
    """Tokens to reveal now so the remaining masked tokens spread evenly over the steps left (>= 1 if any)."""
    return torch.ceil(masked_in_block.double() / steps_left).long()


class Confidence(Sampler):
    name = "confidence"
    needs_mask = True

    def run(self, pred, x, opts, generator, record):
        threshold, remasking, greedy = opts.threshold, opts.remasking, opts.greedy
        length = x.shape[1]
        block_length = length if opts.block_length is None else opts.block_length
        if not block_length <= length:  # the table checked it is an integer >= 1
            raise ValueError(f"block_length must be an integer in [1, {length}] (the length), got {block_length!r}")
        num_blocks = -(-length // block_length)
        if threshold is None and opts.steps < num_blocks:
            raise ValueError(f"steps ({opts.steps}) must be >= the number of blocks ({num_blocks})")
        steps_per_block = max(opts.steps // num_blocks, 1)
        positions = torch.arange(length, device=x.device)
        for b in range(num_blocks):
            in_block = (positions >= b * block_length) & (positions < (b + 1) * block_length)
            step = 0
            while True:
                masked = (x == pred.graph.mask_id) & in_block
                rows = masked.any(-1).nonzero().squeeze(-1)
                if rows.numel() == 0:
                    break
                # a time-conditioned model sees the noise level its masked fraction implies
                frac = (x[rows] == pred.graph.mask_id).double().mean(-1).clamp(1.0 / length, 1 - 1e-6)
                sigma_bar = torch.zeros(x.shape[0], device=x.device)
                sigma_bar[rows] = (-torch.log1p(-frac)).to(sigma_bar.dtype)
                x = self._step(pred, x, rows, masked[rows], sigma_bar, generator,
                               threshold, remasking, greedy, max(steps_per_block - step, 1))
                step += 1
                record(x)
        return x

    def _step(self, pred, x, rows, masked, sigma_bar, generator, threshold, remasking, greedy, steps_left):
        log_probs = pred.clean_log_probs(x[rows], sigma_bar[rows], rows)  # [r, L, C]
        weights = torch.softmax(pred.filtered(log_probs), -1)
        row_gen = rows_of(generator, rows)  # per-row seeds: each row draws from its own generator
        tokens = weights.argmax(-1) if greedy else pred.draw(weights, row_gen)
        if remasking == "random":
            conf = uniform(masked.shape, row_gen, device=x.device)
        else:
            conf = log_probs.gather(-1, tokens[..., None]).squeeze(-1).double().exp()
        conf = conf.masked_fill(~masked, -1.0)
        rank = conf.argsort(-1, descending=True).argsort(-1)
        if threshold is None:
            keep = rank < _quota(masked.sum(-1), steps_left)[:, None]
        else:
            keep = (conf > threshold) | (rank == 0)
        keep &= masked
        x = x.clone()
        x[rows] = pred.pin(torch.where(keep, tokens, x[rows]), rows)
        return x
