"""The one per-batch likelihood estimator and the rule of which tokens count.

Every likelihood discdiff reports (``discdiff eval``'s ``diffusion_nll``, ``ar_nll`` and ``conditional_nll``,
and the trainer's validation) goes through ``batch_nll``: ``diffusion.nll`` with the attention mask, the loss
mask (a prompt: clean context, never scored) and class labels, divided by the *real* tokens of
``counted_tokens`` (a record or a response plus its one EOS; EOS padding is scored but counted apart).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["BatchNLL", "Counted", "batch_nll", "counted_tokens", "real_tokens"]


def real_tokens(tokens: Tensor, mask: Tensor, eos_id: int | None, bos_id: int | None = None) -> Tensor:
    """[B] real tokens per sequence. Without ``eos_id``: the mask's count. With it (EOS-padded records,
    ``[BOS] body EOS EOS ... EOS``): the record plus its one EOS, i.e. positions up to the first EOS, less a
    BOS at position 0; the EOS padding after it is not counted (its cost, near zero for a good model, stays
    in the NLL). A row without EOS (a cropped record) counts all its real positions."""
    return counted_tokens(tokens, mask, eos_id, bos_id).real


class Counted(NamedTuple):
    """Per sequence [B]: ``real`` tokens the NLL is divided by, ``padding`` scored EOS padding left out."""

    real: Tensor
    padding: Tensor


def counted_tokens(tokens: Tensor, scored: Tensor, eos_id: int | None, bos_id: int | None = None) -> Counted:
    """Which scored positions count as tokens. ``scored`` [B, L]: the positions the NLL covers (the real tokens,
    or a prompt-response pair's loss mask). Without ``eos_id`` every scored position counts. With it, the
    scored positions up to and including the first scored EOS count (a record or a response plus its one EOS),
    less a scored BOS at position 0; the scored positions after that EOS are ``padding``."""
    n_scored = scored.sum(1)
    if eos_id is None:
        return Counted(n_scored, torch.zeros_like(n_scored))
    is_eos = (tokens == eos_id) & scored
    before = (is_eos.long().cumsum(1) - is_eos.long()) == 0  # [B, L]: at or before the first scored EOS
    upto = (scored & before).sum(1)
    bos = (scored[:, 0] & (tokens[:, 0] == bos_id)).long() if bos_id is not None else torch.zeros_like(upto)
    return Counted(upto - bos, n_scored - upto)


class BatchNLL(NamedTuple):
    """One batch's share of a likelihood: ``mean`` [B] float64 nats per sequence, ``variance`` [B] its Monte
    Carlo variance (zeros when exact), ``lengths`` [B] the real tokens, ``padding`` EOS padding tokens scored."""

    mean: Tensor
    variance: Tensor
    lengths: Tensor
    padding: int


def batch_nll(model, diffusion, tokens: Tensor, mask: Tensor, objective: str | None = None, *, num_draws: int,
              generator: torch.Generator | None, loss_mask: Tensor | None = None, label: Tensor | None = None,
              eos_id: int | None = None, bos_id: int | None = None) -> BatchNLL:
    """The one per-batch estimator behind ``diffusion_nll``, ``conditional_nll`` (``discdiff eval``) and the
    trainer's validation: ``diffusion.nll`` (a ``Diffusion``'s bound from ``num_draws`` stratified times, or
    ``dd.Autoregressive``'s exact NLL) with the attention ``mask`` [B, L], the ``loss_mask`` [B, L] (positions
    outside it are clean context: a prompt) and the class ``label`` [B], then ``counted_tokens`` of the scored
    positions. Runs under no_grad; the caller sets eval mode."""
    scored = mask if loss_mask is None else loss_mask
    est = diffusion.nll(model, tokens, objective, num_draws=num_draws, generator=generator, padding_mask=mask,
                        loss_mask=loss_mask, label=label)
    counted = counted_tokens(tokens, scored, eos_id, bos_id)
    return BatchNLL(est.mean.cpu(), est.stderr.square().cpu(), counted.real.cpu(), int(counted.padding.sum()))
