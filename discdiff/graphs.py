"""Forward processes: continuous-time Markov chains on S states, one per position.

Convention (SEDD's): a rate matrix ``Q`` is S x S with ``Q[y, x]`` the rate of a jump x -> y for
y != x and columns summing to zero, so ``dp_t/dt = sigma(t) Q p_t`` and

    p(x_t = y | x_0) = exp(sigma_bar Q)[y, x_0].

The reverse process jumps x -> y at rate ``sigma(t) Q[x, y] s(y)`` with the concrete score
``s(y) = p_t(y) / p_t(x)`` (one position changed). Everything a loss or sampler needs from a graph is
expressed through the few methods of ``Graph``; ``Absorbing`` and ``Uniform`` implement them in closed
form in O(S) per position, ``DenseGraph`` (``discdiff.dense_graph``) for any user rate matrix through
matrix exponentials.

Shapes: tokens ``x`` are LongTensors of any shape ``[...]``; per-state vectors are ``[..., S]``.
``sigma_bar`` broadcasts over the *leading* dims of ``x`` (shape [B] against x [B, L] is read as [B, 1]).

Example::

    >>> import torch, discdiff as dd
    >>> g = dd.Absorbing(vocab_size=3)          # states 0, 1, 2 and MASK = 3
    >>> g.transition_probs(torch.tensor([[1]]), torch.tensor([0.5]))
    tensor([[[0.0000, 0.6065, 0.0000, 0.3935]]])
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from .categorical import sample_categorical

__all__ = ["Graph", "Absorbing", "Uniform"]


def _kappa(a: Tensor) -> Tensor:
    """K(a) = a (log a - 1), with K(0) = 0: makes score entropy >= 0 with equality at the true ratio."""
    return torch.xlogy(a, a) - a


def _checking_ids(method):
    """The public token-taking methods check their ids first (a ValueError naming the range, never a torch error)."""
    @functools.wraps(method)
    def checked(self, x, *args, **kwargs):
        self.check_tokens(x, "x0" if "x0" in method.__code__.co_varnames[:2] else "x")
        return method(self, x, *args, **kwargs)
    return checked


def _checking_shape(method):
    @functools.wraps(method)
    def checked(self, shape, *args, **kwargs):
        shape = (shape,) if isinstance(shape, int) else shape
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ValueError(f"shape must be non-negative integers, got {tuple(shape)!r}")
        return method(self, tuple(shape), *args, **kwargs)
    return checked


class Graph(ABC):
    """A rate matrix on ``num_states`` states and the quantities losses and samplers need from it.

    Every subclass's ``transition_probs``, ``transposed_transition`` and ``sample_transition`` check their token
    ids, and ``sample_prior`` its shape, at the boundary (``__init_subclass__`` wraps them: one rule, not a copy
    per graph).
    """

    num_states: int
    #: id of the absorbing MASK state, or None when the graph has none
    mask_id: int | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("transition_probs", "transposed_transition", "sample_transition"):
            if name in cls.__dict__:
                setattr(cls, name, _checking_ids(cls.__dict__[name]))
        if "sample_prior" in cls.__dict__:
            cls.sample_prior = _checking_shape(cls.__dict__["sample_prior"])

    # --- input checking -------------------------------------------------------------------------
    @property
    def num_clean_states(self) -> int:
        """How many states clean data may take (the absorbing MASK is not one of them)."""
        return self.num_states

    def check_tokens(self, x: Tensor, name: str = "x", clean: bool = False) -> Tensor:
        """Raise ValueError unless ``x`` is an integer tensor of valid state ids."""
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of token ids, got {type(x).__name__}")
        if torch.is_floating_point(x) or torch.is_complex(x) or x.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer token ids, got dtype {x.dtype}")
        limit = self.num_clean_states if clean else self.num_states
        if x.numel() and (x.min() < 0 or x.max() >= limit):
            what = "clean tokens" if clean else "states"
            raise ValueError(
                f"{name} has ids in [{x.min().item()}, {x.max().item()}] but the graph has {limit} {what} "
                f"(valid ids 0..{limit - 1})"
            )
        return x.long()

    def align_sigma(self, sigma_bar: Tensor | float, x: Tensor) -> Tensor:
        """Reshape ``sigma_bar`` so its dims line up with the leading dims of ``x``; float tensor out."""
        sigma = torch.as_tensor(sigma_bar, device=x.device)
        if not torch.is_floating_point(sigma):
            sigma = sigma.to(torch.get_default_dtype())
        if sigma.ndim > x.ndim:
            raise ValueError(f"sigma_bar has shape {tuple(sigma.shape)}, more dims than tokens {tuple(x.shape)}")
        sigma = sigma.reshape(sigma.shape + (1,) * (x.ndim - sigma.ndim))
        try:
            torch.broadcast_shapes(sigma.shape, x.shape)
        except RuntimeError:
            raise ValueError(
                f"sigma_bar of shape {tuple(sigma.shape)} does not broadcast over tokens {tuple(x.shape)}"
            ) from None
        if not (sigma >= 0).all():  # also catches NaN
            raise ValueError("sigma_bar must be non-negative (and not NaN)")
        return sigma

    # --- the rate matrix ------------------------------------------------------------------------
    @abstractmethod
    def rate_matrix(self, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
        """The dense S x S matrix Q (columns sum to zero). Only for small S: tests and DenseGraph."""

    def forward_rates(self, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """Column Q[:, x] -> [..., S]: rates of the jumps out of ``x`` (diagonal entry negative)."""
        return self.rate_matrix(dtype or torch.get_default_dtype(), x.device).T[x]

    def transposed_rates(self, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """Row Q[x, :] -> [..., S]: forward rates *into* ``x`` from each y; the reverse-rate weights."""
        return self.rate_matrix(dtype or torch.get_default_dtype(), x.device)[x]

    def reverse_rates(self, x: Tensor, score: Tensor) -> Tensor:
        """Reverse rates out of ``x`` given concrete scores ``score`` [..., S] (not logs), per unit sigma.

            R(x -> y) = Q[x, y] * score[y]  (y != x),   R(x -> x) = -sum_{y != x} R(x -> y).
        """
        rates = self.transposed_rates(x, score.dtype) * score
        rates = rates.scatter(-1, x[..., None], 0.0)
        return rates.scatter(-1, x[..., None], -rates.sum(-1, keepdim=True))

    # --- transitions ----------------------------------------------------------------------------
    @abstractmethod
    def transition_probs(self, x0: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """Column exp(sigma_bar Q)[:, x0] -> [..., S]: p(x_t = . | x_0)."""

    @abstractmethod
    def transposed_transition(self, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """Row exp(sigma_bar Q)[x, :] -> [..., S]: p(x_t = x | x_s = y) for each y, with sigma_bar = t - s."""

    @abstractmethod
    def staggered_score(self, score: Tensor, x: Tensor, delta: Tensor | float) -> Tensor:
        """exp(-delta Q) s -> [..., S], with s = ``score`` and s[x] := 1: approximates p_{t-delta}(y) / p_t(x).

        Multiplied by ``transposed_transition(x, delta)`` this is the Tweedie (analytic) reverse step.
        """

    @abstractmethod
    def prior_probs(self, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        """The limiting distribution [S] that sampling starts from."""

    def sample_transition(
        self, x0: Tensor, sigma_bar: Tensor | float, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw x_t ~ exp(sigma_bar Q)[:, x0] (float64 draws)."""
        return sample_categorical(self.transition_probs(x0, sigma_bar), generator)

    def sample_prior(self, shape, generator: torch.Generator | None = None, device=None) -> Tensor:
        """Draw tokens of ``shape`` from the limiting distribution."""
        probs = self.prior_probs(torch.float64, device).expand(*shape, self.num_states)
        return sample_categorical(probs, generator)

    # --- what the objectives need ----------------------------------------------------------------
    def score_entropy(self, log_score: Tensor, x: Tensor, x0: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """SEDD's score entropy per position [...] (without the sigma(t) factor):

            sum_{y != x} Q[x, y] ( s_y - a_y log s_y + K(a_y) ),   a_y = p(y | x0) / p(x | x0),
            K(a) = a (log a - 1),

        with s = exp(log_score). Non-negative, and zero exactly when s_y = a_y wherever Q[x, y] > 0.
        """
        weights = self.transposed_rates(x, log_score.dtype).scatter(-1, x[..., None], 0.0)
        probs = self.transition_probs(x0, self.align_sigma(sigma_bar, x).to(log_score.dtype))
        ratio = probs / probs.gather(-1, x[..., None])
        terms = log_score.exp() - ratio * log_score + _kappa(ratio)
        return (weights * terms).sum(-1)

    def log_score_from_clean(self, log_probs: Tensor, x: Tensor, sigma_bar: Tensor | float) -> Tensor:
        """Concrete log-scores [..., S] from clean-token log-probs [..., C] at noisy tokens ``x``.

        Exact for factorised forward processes:
            s(y) = sum_{x0} p(x0^i = x0 | x_t) exp(sigma_bar Q)[y, x0] / exp(sigma_bar Q)[x, x0].
        Clean states unreachable from x (zero transition) are ignored.
        """
        sigma = self.align_sigma(sigma_bar, x).to(log_probs.dtype)
        trans = self.transition_matrix(sigma).to(log_probs.dtype)  # [..., S(y), S(x0)]
        trans = trans[..., : log_probs.shape[-1]]
        to_x = torch.take_along_dim(trans, x[..., None, None].expand(*x.shape, 1, 1), dim=-2)  # [..., 1, C]
        reach = to_x > 0
        ratio = torch.where(reach, trans / torch.where(reach, to_x, 1.0), 0.0)  # [..., S, C]
        score = (ratio * log_probs.exp()[..., None, :]).sum(-1)
        return torch.log(score.clamp_min(torch.finfo(score.dtype).tiny))

    def transition_matrix(self, sigma_bar: Tensor) -> Tensor:
        """exp(sigma_bar Q) as [..., S, S] for every entry of ``sigma_bar`` (small S only)."""
        q = self.rate_matrix(dtype=torch.float64, device=sigma_bar.device)
        return torch.linalg.matrix_exp(sigma_bar.to(torch.float64)[..., None, None] * q).to(sigma_bar.dtype)


def _one_hot(x: Tensor, num_states: int, dtype: torch.dtype) -> Tensor:
    return F.one_hot(x, num_states).to(dtype)


# the base class's own implementations get the same boundary checks as the subclasses' (see Graph)
Graph.sample_transition = _checking_ids(Graph.sample_transition)
Graph.sample_prior = _checking_shape(Graph.sample_prior)

class Absorbing(Graph):
    """Every clean token jumps to MASK (the last id, ``vocab_size``) at rate 1; MASK never leaves.

        Q[:, x] = e_MASK - e_x  (x != MASK),   Q[:, MASK] = 0,
        p(x_t | x_0) = e^{-sigma_bar} e_{x_0} + (1 - e^{-sigma_bar}) e_MASK.
    """

    def __init__(self, vocab_size: int):
        if int(vocab_size) != vocab_size or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        self.vocab_size = int(vocab_size)
        self.num_states = self.vocab_size + 1
        self.mask_id = self.vocab_size

    def __repr__(self) -> str:
        return f"Absorbing(vocab_size={self.vocab_size})"

    @property
    def num_clean_states(self) -> int:
        return self.vocab_size

    def rate_matrix(self, dtype=torch.float64, device=None) -> Tensor:
        q = -torch.eye(self.num_states, dtype=dtype, device=device)
        q[self.mask_id, :] += 1.0
        return q

    def forward_rates(self, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        dtype = dtype or torch.get_default_dtype()
        rates = _one_hot(torch.full_like(x, self.mask_id), self.num_states, dtype)
        return rates - _one_hot(x, self.num_states, dtype)

    def transposed_rates(self, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        dtype = dtype or torch.get_default_dtype()
        into_mask = (x == self.mask_id)[..., None].to(dtype)
        rates = into_mask.expand(*x.shape, self.num_states).clone()
        rates[..., self.mask_id] = 0.0
        return rates - _one_hot(x, self.num_states, dtype) * (1 - into_mask)

    def transition_probs(self, x0: Tensor, sigma_bar) -> Tensor:
        sigma = self.align_sigma(sigma_bar, x0)
        keep = torch.exp(-sigma)[..., None]
        probs = keep * _one_hot(x0, self.num_states, sigma.dtype)
        probs[..., self.mask_id] += -torch.expm1(-sigma).expand(x0.shape)
        return torch.where((x0 == self.mask_id)[..., None], _one_hot(x0, self.num_states, sigma.dtype), probs)

    def transposed_transition(self, x: Tensor, sigma_bar) -> Tensor:
        sigma = self.align_sigma(sigma_bar, x)
        keep = torch.exp(-sigma)[..., None]
        row_clean = keep * _one_hot(x, self.num_states, sigma.dtype)
        row_mask = (-torch.expm1(-sigma))[..., None].expand(*x.shape, self.num_states).clone()
        row_mask[..., self.mask_id] = 1.0
        return torch.where((x == self.mask_id)[..., None], row_mask, row_clean)

    def staggered_score(self, score: Tensor, x: Tensor, delta) -> Tensor:
        delta = self.align_sigma(delta, x).to(score.dtype)[..., None]
        score = score.scatter(-1, x[..., None], 1.0)
        clean_sum = score[..., : self.mask_id].sum(-1, keepdim=True)
        out = score * torch.exp(delta)
        out[..., self.mask_id : self.mask_id + 1] = score[..., self.mask_id :] - torch.expm1(delta) * clean_sum
        return out

    def prior_probs(self, dtype=torch.float32, device=None) -> Tensor:
        return _one_hot(torch.tensor(self.mask_id, device=device), self.num_states, dtype)

    def sample_transition(self, x0: Tensor, sigma_bar, generator=None) -> Tensor:
        sigma = self.align_sigma(sigma_bar, x0).to(torch.float64)
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        return torch.where(u < -torch.expm1(-sigma), self.mask_id, x0)

    def sample_prior(self, shape, generator=None, device=None) -> Tensor:
        return torch.full(tuple(shape), self.mask_id, dtype=torch.long, device=device)

    def score_entropy(self, log_score: Tensor, x: Tensor, x0: Tensor, sigma_bar) -> Tensor:
        # Only masked positions have incoming rates: Q[MASK, y] = 1 for every clean y, and the
        # ratio p(y | x0) / p(MASK | x0) is 1/(e^sigma_bar - 1) at y = x0 and 0 elsewhere.
        sigma = self.align_sigma(sigma_bar, x).to(log_score.dtype).expand(x.shape)
        ratio = 1.0 / torch.expm1(sigma)
        positive = log_score[..., : self.mask_id].exp().sum(-1)
        negative = ratio * log_score.gather(-1, x0.clamp_max(self.mask_id - 1)[..., None]).squeeze(-1)
        entropy = positive - negative + _kappa(ratio)
        return torch.where(x == self.mask_id, entropy, torch.zeros_like(entropy))

    def log_score_from_clean(self, log_probs: Tensor, x: Tensor, sigma_bar) -> Tensor:
        # RADD: s(y) = e^{-sigma_bar} / (1 - e^{-sigma_bar}) p(x0 = y | unmasked part), on masked positions.
        sigma = self.align_sigma(sigma_bar, x).to(log_probs.dtype)
        log_scale = -torch.log(torch.expm1(sigma))[..., None]
        clean = log_probs[..., : self.vocab_size] + log_scale
        out = F.pad(clean, (0, 1), value=0.0)
        return torch.where((x == self.mask_id)[..., None], out, torch.zeros_like(out))

    def transition_matrix(self, sigma_bar: Tensor) -> Tensor:
        keep = torch.exp(-sigma_bar)[..., None, None]
        eye = torch.eye(self.num_states, dtype=sigma_bar.dtype, device=sigma_bar.device)
        mask_row = torch.zeros_like(eye)
        mask_row[self.mask_id, :] = 1.0
        # clean columns keep their token or move to MASK; the MASK column stays at MASK (keep + (1 - keep))
        return keep * eye + (-torch.expm1(-sigma_bar))[..., None, None] * mask_row


class Uniform(Graph):
    """Every token jumps to a uniformly drawn token: Q = 11^T / S - I (SEDD's normalisation).

        p(x_t | x_0) = e^{-sigma_bar} e_{x_0} + (1 - e^{-sigma_bar}) / S.
    """

    def __init__(self, vocab_size: int):
        if int(vocab_size) != vocab_size or vocab_size < 2:
            raise ValueError(f"Uniform needs vocab_size >= 2, got {vocab_size!r}")
        self.vocab_size = int(vocab_size)
        self.num_states = self.vocab_size

    def __repr__(self) -> str:
        return f"Uniform(vocab_size={self.vocab_size})"

    def rate_matrix(self, dtype=torch.float64, device=None) -> Tensor:
        s = self.num_states
        return torch.full((s, s), 1.0 / s, dtype=dtype, device=device) - torch.eye(s, dtype=dtype, device=device)

    def forward_rates(self, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        dtype = dtype or torch.get_default_dtype()
        return 1.0 / self.num_states - _one_hot(x, self.num_states, dtype)

    transposed_rates = forward_rates  # Q is symmetric

    def transition_probs(self, x0: Tensor, sigma_bar) -> Tensor:
        sigma = self.align_sigma(sigma_bar, x0)[..., None]
        moved = -torch.expm1(-sigma) / self.num_states
        return moved + torch.exp(-sigma) * _one_hot(x0, self.num_states, sigma.dtype)

    transposed_transition = transition_probs  # exp(sigma_bar Q) is symmetric

    def staggered_score(self, score: Tensor, x: Tensor, delta) -> Tensor:
        delta = self.align_sigma(delta, x).to(score.dtype)[..., None]
        score = score.scatter(-1, x[..., None], 1.0)
        return torch.exp(delta) * score - torch.expm1(delta) / self.num_states * score.sum(-1, keepdim=True)

    def prior_probs(self, dtype=torch.float32, device=None) -> Tensor:
        return torch.full((self.num_states,), 1.0 / self.num_states, dtype=dtype, device=device)

    def sample_transition(self, x0: Tensor, sigma_bar, generator=None) -> Tensor:
        sigma = self.align_sigma(sigma_bar, x0).to(torch.float64)
        u = torch.rand(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        fresh = torch.randint(0, self.num_states, x0.shape, generator=generator, device=x0.device)
        return torch.where(u < -torch.expm1(-sigma), fresh, x0)

    def sample_prior(self, shape, generator=None, device=None) -> Tensor:
        return torch.randint(0, self.num_states, tuple(shape), generator=generator, device=device)

    def score_entropy(self, log_score: Tensor, x: Tensor, x0: Tensor, sigma_bar) -> Tensor:
        # Weights Q[x, y] = 1/S. If x == x0 every ratio is r = E/(E + S) with E = e^sigma_bar - 1;
        # otherwise the ratio is 1 + S/E at y = x0 and 1 at the other S - 2 states.
        s = self.num_states
        sigma = self.align_sigma(sigma_bar, x).to(log_score.dtype).expand(x.shape)
        em1 = torch.expm1(sigma)
        at_x = log_score.gather(-1, x[..., None]).squeeze(-1)
        sum_exp = log_score.exp().sum(-1) - at_x.exp()
        sum_log = log_score.sum(-1) - at_x
        r = em1 / (em1 + s)
        stay = sum_exp - r * sum_log + (s - 1) * _kappa(r)
        at_x0 = log_score.gather(-1, x0[..., None]).squeeze(-1)
        moved = sum_exp - sum_log - (s / em1) * at_x0 + _kappa(1 + s / em1) - (s - 2)
        return torch.where(x == x0, stay, moved) / s

    def log_score_from_clean(self, log_probs: Tensor, x: Tensor, sigma_bar) -> Tensor:
        # With a = e^{-sigma_bar}, b = 1 - a:  for y != x,
        #   s(y) = p(x) b / (b + a S) + (1 - p(x)) + (a S / b) p(y).
        s = self.num_states
        sigma = self.align_sigma(sigma_bar, x).to(log_probs.dtype)[..., None]
        a, b = torch.exp(-sigma), -torch.expm1(-sigma)
        probs = log_probs.exp()
        p_x = probs.gather(-1, x[..., None])
        score = p_x * b / (b + a * s) + (1 - p_x) + (a * s / b) * probs
        score = score.scatter(-1, x[..., None], 1.0)
        return torch.log(score)
