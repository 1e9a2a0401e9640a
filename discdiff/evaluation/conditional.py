"""Conditional likelihood of prompt -> response pairs: -log p(response | prompt) with its interval.

    pairs = load_pair_batches("data/shakespeare-dialogue", context=256, max_sequences=512)
    res = conditional_nll(pre.model, pre.diffusion, pairs, num_draws=8)     # a bound for diffusion,
    res.bits_per_token, res.ci_bits_per_token                               # exact for the AR baseline

Each pair is ``[prompt][response] EOS ... EOS`` (``discdiff.data.pairs``). A diffusion model's value is the
Monte Carlo bound of ``Diffusion.nll(..., loss_mask=)``: the prompt is clean context (never noised, always
visible), the response and its EOS padding are noised and scored, so its expectation bounds
-log p(response, padding | prompt). The AR baseline's is exact by the chain rule (the prompt comes first):
sum over the same scored positions of -log p(x_i | x_<i). Tokens per sequence count the real response
tokens, each response and its one EOS (the EOS padding after it is scored, its cost stays in the NLL, but
it is counted apart in ``padding_tokens``), so both are nats per response token and compare directly.
"""

from __future__ import annotations

import hashlib

import torch

from discdiff.data.loader import Batch
from discdiff.data.splits import SplitSample, open_split, spread_sample

from .estimator import batch_nll
from .likelihood import LikelihoodResult, _device, _eval_mode, result_of

__all__ = ["PairBatches", "conditional_nll", "is_pair_data", "load_pair_batches"]


class PairBatches(list):
    """Batches (``discdiff.data.Batch`` with ``loss_mask``) and which examples of the split they are."""

    split_sample: SplitSample | None = None
    eos_id: int | None = None  # the EOS of the pairs' tokenizer: a response's end


def is_pair_data(source, split: str = "validation", context: int = 1) -> bool:
    """Whether ``source`` (any form ``open_split`` takes) holds prompt-response pairs."""
    try:
        dataset = open_split(str(source), split, context=max(context, 1), random_offset=False).dataset
    except (ValueError, FileNotFoundError):
        return False
    return getattr(getattr(dataset, "data", None), "prompt_lengths", None) is not None


def load_pair_batches(source, *, context: int, split: str = "validation", max_sequences: int | None = None,
                      batch_size: int = 32, seed: int = 0) -> PairBatches:
    """``max_sequences`` pairs spread over the split (all when None), in batches with their loss masks."""
    dataset, _, _ = open_split(str(source), split, context=context, random_offset=False)
    if getattr(getattr(dataset, "data", None), "prompt_lengths", None) is None:
        raise ValueError(f"{source}: no prompt-response pairs in split {split!r} (prepare a 'pairs' corpus)")
    drawn = spread_sample(len(dataset), max_sequences, seed)
    out = PairBatches()
    for start in range(0, drawn.size, batch_size):
        out.append(dataset.get(drawn.indices[start:start + batch_size], 0, randomize=False))
    out.split_sample, out.eos_id = drawn, dataset.eos_id
    return out


def _hash(batches: list[Batch]) -> str:
    h = hashlib.sha256()
    for b in batches:
        h.update(b.tokens.masked_fill(~b.mask, -1).numpy().tobytes())
        h.update(b.loss_mask.numpy().tobytes())
    return h.hexdigest()[:16]


def conditional_nll(model, diffusion, batches: list[Batch], objective: str | None = None, *, num_draws: int = 16,
                    seed: int = 0, device=None, confidence: float = 0.95,
                    eos_id: int | None = None) -> LikelihoodResult:
    """-log p(response | prompt) per pair (nats, float64) with intervals: ``batch_nll`` with the loss mask
    (a ``Diffusion``: a bound from ``num_draws`` stratified times; ``Autoregressive``: exact). Lengths are the
    real response tokens: each response and its one EOS (``eos_id``, default the ``eos_id`` that
    ``load_pair_batches`` records), the EOS padding after it counted apart in ``padding_tokens``."""
    exact = not hasattr(diffusion, "graph")  # dd.Autoregressive: exact, nothing to draw
    objective = None if exact else objective or diffusion.default_objective
    if not exact and num_draws < 2:
        raise ValueError(f"num_draws must be >= 2 to estimate the Monte Carlo error, got {num_draws}")
    eos_id = eos_id if eos_id is not None else getattr(batches, "eos_id", None)
    device = _device(model, device)
    generator = torch.Generator(device).manual_seed(seed)
    parts = []
    with _eval_mode(model):
        for b in batches:
            if b.loss_mask is None:
                raise ValueError("conditional_nll needs batches of prompt-response pairs (with a loss_mask)")
            parts.append(batch_nll(model, diffusion, b.tokens.to(device), b.mask.to(device), objective,
                                   num_draws=num_draws, generator=generator, loss_mask=b.loss_mask.to(device),
                                   eos_id=eos_id))
    name = "exact_ar_conditional" if exact else f"{objective}_conditional"
    return result_of(name, exact, parts, 0 if exact else num_draws, _hash(batches), confidence,
                     getattr(batches, "split_sample", None))
