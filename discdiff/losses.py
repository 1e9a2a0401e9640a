"""Per-position objectives, unreduced. ``Diffusion.loss`` draws the noise, applies weights and reduces.

* ``score_entropy``: SEDD's denoising score entropy per position,
  ``sum_{y != x} Q[x, y] (s_y - a_y log s_y + K(a_y))`` with ``a_y = p(y | x0) / p(x | x0)`` and
  ``K(a) = a (log a - 1)``. >= 0, and 0 exactly at the true ratio. Sequence loss = sum over positions of
  ``sigma(t) * score_entropy``; its expectation over t ~ U[0, 1] bounds -log p(x0).
* ``concrete_score_l2``: ``sum_{y != x} Q[x, y] (s_y - a_y)^2``, the naive concrete-score-matching
  baseline. Not a likelihood bound; kept for comparison.
* ``masked_ce``: ``-log p_theta(x0^i | x_t)`` on masked positions (0 elsewhere), the building block of the
  t-, lambda- and k-weighted DCE objectives (RADD / MDLM / LLaDA); weights below.

Shapes: tokens [B, L], log-scores / log-probs [B, L, S], sigma_bar [B] (or broadcastable); outputs [B, L].
"""

from __future__ import annotations

import torch
from torch import Tensor

from .graphs import Graph

__all__ = [
    "score_entropy",
    "concrete_score_l2",
    "masked_ce",
    "t_dce_weight",
    "lambda_dce_weight",
    "k_dce_weight",
]


def _check_scores(graph: Graph, values: Tensor, x_t: Tensor, x0: Tensor, name: str) -> None:
    if x_t.shape != x0.shape:
        raise ValueError(f"x_t {tuple(x_t.shape)} and x0 {tuple(x0.shape)} must have the same shape")
    if values.shape != (*x_t.shape, graph.num_states):
        raise ValueError(
            f"{name} must have shape {(*x_t.shape, graph.num_states)} (tokens + [num_states]), "
            f"got {tuple(values.shape)}"
        )
    if not torch.is_floating_point(values):
        raise ValueError(f"{name} must be a float tensor, got {values.dtype}")


def score_entropy(graph: Graph, log_score: Tensor, x_t: Tensor, x0: Tensor, sigma_bar) -> Tensor:
    """SEDD's per-position score entropy [B, L] (no sigma(t) factor), in ``log_score``'s dtype.

    ``log_score[..., y]`` = log s_theta(x_t)_y; the entry at ``x_t`` is ignored. Matches SEDD's
    ``graph.score_entropy(log_score, sigma_bar, x_t, x0)`` for the absorbing and uniform graphs.
    """
    x_t = graph.check_tokens(x_t, "x_t")
    x0 = graph.check_tokens(x0, "x0", clean=True)
    _check_scores(graph, log_score, x_t, x0, "log_score")
    return graph.score_entropy(log_score, x_t, x0, sigma_bar)


def concrete_score_l2(graph: Graph, log_score: Tensor, x_t: Tensor, x0: Tensor, sigma_bar) -> Tensor:
    """Squared error of the concrete score against the conditional ratio, weighted by Q[x, y] [B, L].

    Not an ELBO: its optimum is the true score, but its value is no likelihood bound.
    """
    x_t = graph.check_tokens(x_t, "x_t")
    x0 = graph.check_tokens(x0, "x0", clean=True)
    _check_scores(graph, log_score, x_t, x0, "log_score")
    weights = graph.transposed_rates(x_t, log_score.dtype).scatter(-1, x_t[..., None], 0.0)
    probs = graph.transition_probs(x0, graph.align_sigma(sigma_bar, x_t).to(log_score.dtype))
    ratio = probs / probs.gather(-1, x_t[..., None])
    return (weights * (log_score.exp() - ratio) ** 2).sum(-1)


def masked_ce(log_probs: Tensor, x0: Tensor, masked: Tensor) -> Tensor:
    """-log p_theta(x0^i | x_t) where ``masked`` [B, L] is True, else 0; ``log_probs`` [B, L, C]."""
    if log_probs.shape[:-1] != x0.shape or masked.shape != x0.shape:
        raise ValueError(
            f"log_probs {tuple(log_probs.shape)}, x0 {tuple(x0.shape)} and masked {tuple(masked.shape)} disagree"
        )
    if x0.numel() and x0.max() >= log_probs.shape[-1]:
        raise ValueError(f"x0 has ids >= {log_probs.shape[-1]}, the number of clean states in log_probs")
    nll = -log_probs.gather(-1, x0[..., None]).squeeze(-1)
    return torch.where(masked, nll, torch.zeros_like(nll))


def t_dce_weight(sigma_bar: Tensor, sigma: Tensor) -> Tensor:
    """t-DCE weight sigma(t) e^{-sigma_bar} / (1 - e^{-sigma_bar}) = sigma / expm1(sigma_bar) (1/t under LogLinear)."""
    return sigma / torch.expm1(sigma_bar)


def lambda_dce_weight(mask_prob: Tensor) -> Tensor:
    """lambda-DCE weight 1/lambda for masking probability lambda ~ U(0, 1] (LLaDA's 1/t form)."""
    return 1.0 / mask_prob


def k_dce_weight(num_masked: Tensor, length: Tensor) -> Tensor:
    """k-DCE weight L/k for exactly k of L tokens masked, k ~ U{1..L} (the any-order autoregressive bound)."""
    return length.to(torch.get_default_dtype()) / num_masked
