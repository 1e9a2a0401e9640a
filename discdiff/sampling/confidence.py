"""Confidence-based parallel decoding: the surest positions first (LLaDA's remasking, Fast-dLLM's
thresholds), inside semi-autoregressive blocks.

The sequence is cut into blocks of ``block_length`` decoded left to right; each block gets
``steps / num_blocks`` steps. At every step the model predicts every masked position of the current
block (a token drawn with temperature / top-k / top-p, or the argmax with ``greedy=True``) and its
confidence (by ``remasking``, below):

* top-k mode (LLaDA): the k most confident predictions are kept, the rest stay masked, with k chosen so
  the block's masked tokens are spread evenly over its steps;
* threshold mode (Fast-dLLM, ``threshold=tau``): every prediction with confidence > tau is kept, and at
  least the most confident one; ``steps`` then only caps nothing, a block ends when it is unmasked.

Which positions count as confident (``remasking``), for position i with predicted distribution p_i and drawn
token v_i:

* ``"max_prob"`` (the default): max_v p_i(v);
* ``"low_confidence"`` (LLaDA's default): p_i(v_i), the probability of the token actually drawn;
* ``"margin"``: p_i(top 1) - p_i(top 2);  ``"entropy"``: exp(-H(p_i)), with
  H(p) = -sum_v p(v) log p(v) (one over the position's perplexity);
* ``"random"``: uniform noise.

An order chosen from the revealed tokens alone is still exact any-order sampling: with one token per step
(``steps`` = the length) and drawn tokens at temperature 1, ``random``, ``max_prob``, ``margin`` and
``entropy`` reproduce an exact model's distribution whatever order they pick, since each revealed token is
drawn from its exact conditional given everything revealed so far. ``low_confidence`` is not: it picks the
position *after* seeing the draw, so it favours likely draws (it sharpens; on the weak quickstart model at
temperature 1 without blocks it decodes every position as a space, the likeliest draw anywhere, and each
space revealed makes the next likelier: docs/results/quickstart/samplers.md; ``greedy=True`` does the same
under any rule, which is why neither is the default). Several tokens per step, greedy
tokens or a threshold trade exactness for fewer model calls. On a trained model the ordered rules decode the
positions it is surest of first, where its conditionals are best.
"""

from __future__ import annotations

import torch

from discdiff.row_random import rows_of, uniform

from .base import Sampler


def _quota(masked_in_block: torch.Tensor, steps_left: int) -> torch.Tensor:
    """Tokens to reveal now so the remaining masked tokens spread evenly over the steps left (>= 1 if any)."""
    return torch.ceil(masked_in_block.double() / steps_left).long()


def _confidence(remasking: str, log_probs: torch.Tensor, tokens: torch.Tensor, masked: torch.Tensor,
                row_gen) -> torch.Tensor:
    """[r, L] confidence of each position under rule ``remasking`` (module docstring), from the model's own
    log-probabilities [r, L, C] (before temperature or top-k/top-p) and the drawn tokens [r, L]. Higher is
    decoded first."""
    if remasking == "random":
        return uniform(masked.shape, row_gen, device=log_probs.device)
    w = log_probs.double().exp()
    if remasking == "low_confidence":
        return w.gather(-1, tokens[..., None]).squeeze(-1)
    if remasking == "max_prob":
        return w.amax(-1)
    if remasking == "margin":
        top = w.topk(2, dim=-1).values
        return top[..., 0] - top[..., 1]
    # entropy: exp(-H), with 0 log 0 = 0
    return torch.exp((w * torch.log(w.clamp_min(1e-300))).sum(-1))


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
        conf = _confidence(remasking, log_probs, tokens, masked, row_gen)
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
