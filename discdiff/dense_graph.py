"""DenseGraph: any user rate matrix Q given densely, and two ways to build one (similarity, ordinal).

Same convention as ``discdiff.graphs``: ``Q[y, x]`` is the rate of a jump x -> y (y != x), columns sum to
zero, and ``p(x_t = y | x_0) = exp(sigma_bar Q)[y, x_0]``. Importable as ``discdiff.DenseGraph``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .graphs import Graph

__all__ = ["DenseGraph"]


class DenseGraph(Graph):
    """Any rate matrix ``Q`` (S x S, off-diagonal >= 0, columns summing to zero) given densely.

    Transitions use ``exp(sigma_bar Q)``: by a cached eigendecomposition when Q is symmetric,
    otherwise ``torch.linalg.matrix_exp``. Meant for structured processes on modest S (pixels with
    ordered grey levels, amino acids with a substitution matrix); its cost is O(S^2) per position.

    Example::

        >>> import torch, discdiff as dd
        >>> g = dd.DenseGraph.ordinal(4)     # grey levels that diffuse to their neighbours
        >>> g.transition_probs(torch.tensor([0]), torch.tensor([0.0])).round(decimals=6)   # clean at sigma_bar 0
        tensor([[1., 0., 0., 0.]])
        >>> g.transition_probs(torch.tensor([0]), torch.tensor([50.0])).round(decimals=3)  # uniform at the end
        tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
    """

    def __init__(self, rate_matrix: Tensor, stationary: Tensor | None = None, atol: float = 1e-6):
        q = torch.as_tensor(rate_matrix, dtype=torch.float64)
        self._validate(q, atol)
        self.num_states = q.shape[0]
        self._q = q
        self._symmetric = bool(torch.allclose(q, q.T, atol=atol, rtol=0))
        if self._symmetric:
            self._evals, self._evecs = torch.linalg.eigh((q + q.T) / 2)
        self._prior = self._stationary(q, stationary, atol)

    def __repr__(self) -> str:
        return f"DenseGraph(num_states={self.num_states}, symmetric={self._symmetric})"

    @staticmethod
    def _validate(q: Tensor, atol: float) -> None:
        if q.ndim != 2 or q.shape[0] != q.shape[1]:
            raise ValueError(f"a rate matrix must be square (S x S), got shape {tuple(q.shape)}")
        if q.shape[0] < 2:
            raise ValueError("a rate matrix needs at least 2 states")
        if not torch.isfinite(q).all():
            raise ValueError("the rate matrix has non-finite entries")
        off = q - torch.diag(torch.diag(q))
        if (off < -atol).any():
            y, x = (off < -atol).nonzero()[0].tolist()
            raise ValueError(f"off-diagonal rates must be >= 0; Q[{y}, {x}] = {q[y, x].item():.4g}")
        col = q.sum(0).abs()
        if (col > atol * max(1.0, q.abs().max().item())).any():
            x = int(col.argmax())
            raise ValueError(f"columns of a rate matrix must sum to zero; column {x} sums to {q[:, x].sum():.4g}")
        if (off.sum(0) <= 0).all():
            raise ValueError("the rate matrix has no transitions (all off-diagonal rates are zero)")

    @staticmethod
    def _stationary(q: Tensor, given: Tensor | None, atol: float) -> Tensor:
        if given is not None:
            pi = torch.as_tensor(given, dtype=torch.float64)
            if pi.shape != (q.shape[0],) or (pi < 0).any() or abs(pi.sum().item() - 1) > 1e-6:
                raise ValueError("stationary must be a probability vector of length S")
            residual = (q @ pi).abs().max().item()
            if residual > atol * max(1.0, q.abs().max().item()):
                raise ValueError(f"stationary is not stationary for this rate matrix: |Q pi| reaches {residual:.3g}")
            return pi
        _, svals, vh = torch.linalg.svd(q)
        if svals[-2] < 1e3 * atol * max(1.0, svals[0].item()):
            raise ValueError(
                "the rate matrix has several stationary distributions (it is reducible); pass stationary=..."
            )
        pi = vh[-1].abs()
        return pi / pi.sum()

    @classmethod
    def from_similarity(cls, similarity: Tensor, temperature: float | None = None) -> DenseGraph:
        """Rates from a similarity matrix W: Q[y, x] proportional to W[y, x] (y != x), columns sum to zero.

        With ``temperature`` the weights are exp(W / temperature), so log-odds scores such as a BLOSUM
        substitution matrix (which can be negative) become rates that prefer similar states. The rates
        are scaled so the mean exit rate is 1, making sigma_bar schedules comparable across graphs.
        A symmetric W gives a symmetric Q whose stationary distribution is uniform.
        """
        w = torch.as_tensor(similarity, dtype=torch.float64)
        if w.ndim != 2 or w.shape[0] != w.shape[1]:
            raise ValueError(f"a similarity matrix must be square, got shape {tuple(w.shape)}")
        if temperature is not None:
            if temperature <= 0:
                raise ValueError(f"temperature must be > 0, got {temperature}")
            w = torch.exp((w - w.max()) / temperature)
        elif (w < 0).any():
            raise ValueError("similarities must be >= 0 (pass temperature= to exponentiate log-odds scores)")
        w = w - torch.diag(torch.diag(w))
        exits = w.sum(0)
        if (exits <= 0).any():
            raise ValueError(f"state {int((exits <= 0).nonzero()[0])} has no similar state to move to")
        w = w / exits.mean()
        return cls(w - torch.diag(w.sum(0)))

    @classmethod
    def ordinal(cls, num_states: int) -> DenseGraph:
        """A 1-D neighbour chain (birth-death process): state k jumps to k - 1 and k + 1 at rate 1/2 each
        (rate 1 at the ends is halved, keeping Q symmetric). Suits ordered values such as grey levels."""
        if num_states < 2:
            raise ValueError("ordinal needs num_states >= 2")
        idx = torch.arange(num_states - 1)
        w = torch.zeros(num_states, num_states, dtype=torch.float64)
        w[idx, idx + 1] = w[idx + 1, idx] = 1.0
        return cls.from_similarity(w)

    def rate_matrix(self, dtype=torch.float64, device=None) -> Tensor:
        return self._q.to(dtype=dtype, device=device)

    def _per_level(self, sigma: Tensor, fn) -> Tensor:
        """fn(levels [K]) -> [K, S, S] evaluated once per distinct noise level, gathered to [..., S, S]."""
        levels, inverse = torch.unique(sigma.to(torch.float64), return_inverse=True)
        return fn(levels)[inverse]

    def _exp(self, levels: Tensor) -> Tensor:
        if self._symmetric:
            vecs = self._evecs.to(levels.device)
            scale = torch.exp(levels[:, None] * self._evals.to(levels.device))  # [K, S]
            return (vecs * scale[:, None, :]) @ vecs.T
        return torch.linalg.matrix_exp(levels[:, None, None] * self._q.to(levels.device))

    def transition_matrix(self, sigma_bar: Tensor) -> Tensor:
        return self._per_level(sigma_bar, self._exp).clamp_min(0.0).to(sigma_bar.dtype)

    def transition_probs(self, x0: Tensor, sigma_bar) -> Tensor:
        sigma = self.align_sigma(sigma_bar, x0)
        mat = self.transition_matrix(sigma).transpose(-1, -2)  # [..., S(x0), S(y)]
        return torch.take_along_dim(mat, x0[..., None, None], dim=-2).squeeze(-2)

    def transposed_transition(self, x: Tensor, sigma_bar) -> Tensor:
        sigma = self.align_sigma(sigma_bar, x)
        mat = self.transition_matrix(sigma)  # [..., S(x), S(y)]
        return torch.take_along_dim(mat, x[..., None, None], dim=-2).squeeze(-2)

    def staggered_score(self, score: Tensor, x: Tensor, delta) -> Tensor:
        delta = self.align_sigma(delta, x).to(torch.float64)
        score = score.scatter(-1, x[..., None], 1.0)
        back = self._per_level(
            delta, lambda levels: torch.linalg.matrix_exp(-levels[:, None, None] * self._q.to(levels.device)))
        return (back @ score.to(torch.float64)[..., None]).squeeze(-1).to(score.dtype)

    def prior_probs(self, dtype=torch.float32, device=None) -> Tensor:
        return self._prior.to(dtype=dtype, device=device)

