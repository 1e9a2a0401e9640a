"""Exact answers on toy state spaces, by enumeration: the yardstick for every loss and sampler.

With a vocabulary of a few tokens and a length of a few positions, the clean distribution p_data is a
table over V^L sequences and every quantity a diffusion model approximates is a finite sum:

    p_t(x)                      = sum_{x0} p_data(x0) prod_i exp(sigma_bar Q)[x^i, x0^i]
    concrete score s(x)[i, y]   = p_t(x with x^i = y) / p_t(x)
    clean conditional           = p(x0^i = y | x_t)
    I(x0; x_t)                  = H(x_t) - H(x_t | x0)

``ToyDistribution.score_model`` and ``.denoiser_model`` return callables with the model signature, so
they plug into ``Diffusion.loss`` and the samplers as exact oracles.

Example::

    >>> import torch, discdiff as dd
    >>> from discdiff.exact import ToyDistribution
    >>> toy = ToyDistribution.random(vocab_size=3, length=2, generator=torch.Generator().manual_seed(0))
    >>> round(toy.probs.sum().item(), 6)
    1.0
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from .graphs import Graph

__all__ = ["ToyDistribution", "enumerate_sequences", "sequence_index"]

_LOG_ZERO = -1e4  # finite stand-in for log 0 in oracle outputs (exp() of it is exactly 0 in fp32/fp64)


def enumerate_sequences(num_states: int, length: int) -> Tensor:
    """All num_states^length sequences as LongTensor [N, length], in lexicographic order."""
    return torch.tensor(list(itertools.product(range(num_states), repeat=length)), dtype=torch.long)


def sequence_index(x: Tensor, num_states: int) -> Tensor:
    """Lexicographic index of each sequence in ``x`` [..., L] (inverse of ``enumerate_sequences``)."""
    powers = num_states ** torch.arange(x.shape[-1] - 1, -1, -1, device=x.device)
    return (x * powers).sum(-1)




class ToyDistribution:
    """A distribution over all sequences of ``length`` tokens from ``vocab_size`` clean states."""

    def __init__(self, probs: Tensor, vocab_size: int, length: int):
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if probs.shape != (vocab_size**length,):
            raise ValueError(f"probs must have vocab_size**length = {vocab_size**length} entries")
        if (probs < 0).any() or abs(probs.sum().item() - 1) > 1e-9:
            raise ValueError("probs must be a probability vector")
        self.probs = probs
        self.vocab_size = vocab_size
        self.length = length
        self.sequences = enumerate_sequences(vocab_size, length)

    @classmethod
    def random(cls, vocab_size: int, length: int, generator=None, concentration: float = 1.0):
        """A Dirichlet(concentration) draw over the V^L sequences (normalised Gamma draws), from ``generator``."""
        if not concentration > 0:
            raise ValueError(f"concentration must be > 0, got {concentration}")
        n = vocab_size**length
        if concentration == 1.0:  # Gamma(1) is Exponential(1): -log U, straight from the generator
            weights = -torch.log(torch.rand(n, generator=generator, dtype=torch.float64))
        else:  # a numpy Gamma sampler seeded from the generator, so the draw still follows `generator`
            seed = int(torch.randint(0, 2**62, (), generator=generator))
            weights = torch.from_numpy(np.random.default_rng(seed).gamma(concentration, size=n))
        return cls(weights / weights.sum(), vocab_size, length)

    # --- clean data ---------------------------------------------------------------------------------
    def entropy(self) -> float:
        """H(p_data) in nats."""
        return float(-torch.xlogy(self.probs, self.probs).sum())

    def sample(self, n: int, generator=None) -> Tensor:
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return self.sequences[idx]

    def prob_of(self, x: Tensor) -> Tensor:
        """p_data(x) for clean sequences x [..., L]."""
        return self.probs[sequence_index(x, self.vocab_size)]

    # --- noisy marginals ----------------------------------------------------------------------------
    @staticmethod
    def _transitions(graph: Graph, sigma_bar: Tensor) -> Tensor:
        """exp(sigma_bar Q) [B, S, S] in float64, computed once per distinct noise level."""
        levels, inverse = torch.unique(torch.as_tensor(sigma_bar, dtype=torch.float64), return_inverse=True)
        return graph.transition_matrix(levels)[inverse]

    def _weights(self, graph: Graph, x_t: Tensor, sigma_bar: Tensor, skip: int | None = None) -> Tensor:
        """[B, N] p(x0) prod_{j != skip} T[x_t^j, x0^j] for each clean sequence x0 (index N)."""
        trans = self._transitions(graph, sigma_bar)  # [B, S, S]
        rows = torch.take_along_dim(trans, x_t[..., None], dim=1)  # [B, L, S]: T[x_t^j, :]
        factors = torch.stack([rows[:, j, self.sequences[:, j]] for j in range(self.length)], 1)  # [B, L, N]
        if skip is not None:
            factors[:, skip] = 1.0
        return self.probs * factors.prod(1)

    def noisy_probs(self, graph: Graph, x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        """p_t(x_t) [B] for noisy sequences x_t [B, L] at noise sigma_bar [B]."""
        return self._weights(graph, x_t, sigma_bar).sum(-1)

    def concrete_score(self, graph: Graph, x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        """Exact log concrete scores [B, L, S] = log p_t(x^i <- y) / p_t(x), straight from the marginals."""
        trans = self._transitions(graph, sigma_bar)  # [B, S, S]
        denom = self.noisy_probs(graph, x_t, sigma_bar)  # [B]
        out = []
        for i in range(self.length):
            w = self._weights(graph, x_t, sigma_bar, skip=i)  # [B, N]
            to_y = trans[:, :, self.sequences[:, i]]  # [B, S, N]: T[y, x0^i]
            out.append((to_y * w[:, None, :]).sum(-1) / denom[:, None])
        score = torch.stack(out, 1)
        return torch.where(score > 0, score.log(), torch.full_like(score, _LOG_ZERO))

    def clean_posterior(self, graph: Graph, x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        """Exact p(x0 | x_t) over whole clean sequences [B, N]."""
        w = self._weights(graph, x_t, sigma_bar)
        return w / w.sum(-1, keepdim=True)

    def clean_log_probs(self, graph: Graph, x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        """Exact log p(x0^i = y | x_t) [B, L, V] per position."""
        post = self.clean_posterior(graph, x_t, sigma_bar)
        onehot = torch.nn.functional.one_hot(self.sequences, self.vocab_size).double()  # [N, L, V]
        probs = torch.einsum("bn,nlv->blv", post, onehot)
        return torch.where(probs > 0, probs.log(), torch.full_like(probs, _LOG_ZERO))

    def mutual_information(self, graph: Graph, sigma_bar: float) -> float:
        """I(x0; x_t) in nats at total noise ``sigma_bar`` (each position noised independently)."""
        if sigma_bar == 0:
            return self.entropy()
        noisy = enumerate_sequences(graph.num_states, self.length)  # [M, L]
        trans = graph.transition_matrix(torch.tensor(float(sigma_bar), dtype=torch.float64))  # [S, S]
        cond = torch.ones(len(self.sequences), len(noisy), dtype=torch.float64)
        for j in range(self.length):
            cond *= trans[noisy[:, j]][:, self.sequences[:, j]].T  # [N, M]: p(x_t^j | x0^j)
        joint = self.probs[:, None] * cond
        marginal = joint.sum(0)
        h_t = -torch.xlogy(marginal, marginal).sum()
        h_t_given_0 = -(self.probs[:, None] * torch.xlogy(cond, cond)).sum()
        return float(h_t - h_t_given_0)

    # --- exact oracles with the model signature ------------------------------------------------------
    def score_model(self, graph: Graph):
        """``model(x_t, sigma_bar) -> [B, L, S]`` exact log concrete scores (parameterization='score')."""
        return _on_distinct_rows(lambda x_t, sigma_bar: self.concrete_score(graph, x_t, sigma_bar))

    def denoiser_model(self, graph: Graph):
        """``model(x_t, sigma_bar) -> [B, L, S]`` exact clean log-probs, padded to S (parameterization='denoiser').

        On the absorbing graph the exact posterior ignores sigma_bar (masked positions carry no information
        about x0 at any noise level), and the oracle declares it: ``time_free`` is True, so samplers cache it.
        """

        def model(x_t: Tensor, sigma_bar: Tensor) -> Tensor:
            log_probs = self.clean_log_probs(graph, x_t, sigma_bar)
            pad = graph.num_states - self.vocab_size
            return torch.nn.functional.pad(log_probs, (0, pad), value=_LOG_ZERO)

        oracle = _on_distinct_rows(model)
        oracle.time_free = graph.mask_id is not None  # see discdiff.model_call.is_time_free
        return oracle

    def block_denoiser_model(self, graph: Graph, block_size: int):
        """Exact block conditionals with the block-model signature ``model(x_t, sigma_bar, x0=None)``:

            out[:, block k] = log p(x0^i = . | x_t^k, x^{<k}),   x^{<k} = x0's blocks < k (x0 given: training)
                                                                 or x_t's blocks < k (taken as clean: sampling)

        by enumeration (positions after block k are unknown). Absorbing graph; time-free (``time_free``). The
        input may be shorter than ``length`` (a prefix, as a block sampler's recomputing context sends).
        """
        if graph.mask_id is None:
            raise ValueError("block_denoiser_model needs an absorbing graph")
        mask_id, pad = graph.mask_id, graph.num_states - self.vocab_size

        def model(x_t: Tensor, sigma_bar: Tensor, x0: Tensor | None = None) -> Tensor:
            clean = x_t if x0 is None else x0
            B, T = x_t.shape
            ones = torch.ones(B, dtype=torch.float64)  # the absorbing posterior does not depend on sigma_bar > 0
            out = []
            for start in range(0, T, block_size):
                stop = min(start + block_size, T)
                view = torch.full((B, self.length), mask_id, dtype=torch.long)
                view[:, :start], view[:, start:stop] = clean[:, :start], x_t[:, start:stop]
                out.append(_on_distinct_rows(lambda v, s: self.clean_log_probs(graph, v, s))(view, ones)[:, start:stop])
            return torch.nn.functional.pad(torch.cat(out, dim=1), (0, pad), value=_LOG_ZERO)

        model.time_free = True
        return model


def _on_distinct_rows(fn):
    """Evaluate ``fn(x_t, sigma_bar)`` once per distinct (x_t row, sigma_bar) pair: a toy space has few."""

    def model(x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma_bar, dtype=torch.float64).expand(x_t.shape[0])
        levels, level_idx = torch.unique(sigma, return_inverse=True)
        keys = torch.cat([level_idx[:, None], x_t], dim=1)
        distinct, inverse = torch.unique(keys, dim=0, return_inverse=True)
        return fn(distinct[:, 1:], levels[distinct[:, 0]])[inverse]

    return model
