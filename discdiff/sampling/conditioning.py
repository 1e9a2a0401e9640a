"""Conditioning for every sampler: fixed positions (prefix, suffix, any infill pattern) and guidance.

``Condition(tokens, known)``: ``tokens`` Long[B or 1, L] and ``known`` Bool[B or 1, L]; where ``known`` is
True the sample is pinned to ``tokens`` from the first step to the last, so the model always sees them.
For the absorbing graph this samples the exact conditional p(x | x[known] = tokens[known]) given an exact
model (the forward process acts on each position independently, so knowing x0 at a position is the same
as seeing it unmasked). For uniform and dense graphs pinning is SEDD's projection heuristic.

Classifier-free guidance with weight w combines a conditional pass (known positions visible) and an
unconditional pass (known positions replaced by MASK) made in one batch of 2B rows:

    guided = cond + w (cond - uncond)       (on log concrete scores or clean-token log-probs)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Condition", "infill_template"]


@dataclass
class Condition:
    """Known tokens ``tokens`` [B or 1, L] at positions where ``known`` [B or 1, L] is True."""

    tokens: Tensor
    known: Tensor

    def validate(self, num_samples: int, length: int, num_clean_states: int) -> Condition:
        """Check shapes, dtypes and ids; broadcast a single row to ``num_samples``. Raises ValueError."""
        if not isinstance(self.tokens, Tensor) or not isinstance(self.known, Tensor):
            raise ValueError("Condition.tokens and Condition.known must be tensors")
        if self.known.dtype != torch.bool:
            raise ValueError(f"Condition.known must be a BoolTensor, got {self.known.dtype}")
        if torch.is_floating_point(self.tokens) or self.tokens.dtype == torch.bool:
            raise ValueError(f"Condition.tokens must hold integer ids, got {self.tokens.dtype}")
        tokens = self.tokens[None] if self.tokens.ndim == 1 else self.tokens
        known = self.known[None] if self.known.ndim == 1 else self.known
        for name, t in (("tokens", tokens), ("known", known)):
            if t.ndim != 2 or t.shape[1] != length or t.shape[0] not in (1, num_samples):
                raise ValueError(
                    f"Condition.{name} must have shape [1 or {num_samples}, {length}], got {tuple(t.shape)}"
                )
        tokens, known = tokens.expand(num_samples, length).long(), known.expand(num_samples, length)
        pinned = tokens[known]
        if pinned.numel() and (pinned.min() < 0 or pinned.max() >= num_clean_states):
            raise ValueError(f"known tokens must be clean ids in [0, {num_clean_states - 1}]")
        return Condition(tokens, known)

    def to(self, device) -> Condition:
        """The same condition on ``device`` (None: unchanged)."""
        return self if device is None else Condition(self.tokens.to(device), self.known.to(device))

    def apply(self, x: Tensor, rows: Tensor | None = None) -> Tensor:
        """Pin the known positions of ``x`` (rows selects a subset of the batch)."""
        tokens, known = (self.tokens, self.known) if rows is None else (self.tokens[rows], self.known[rows])
        return torch.where(known, tokens, x)


def infill_template(ids: list[int | None]) -> Condition:
    """A one-row Condition from a list where ``None`` marks a blank to fill, e.g. [5, None, None, 7]."""
    known = torch.tensor([i is not None for i in ids])
    tokens = torch.tensor([0 if i is None else i for i in ids])
    return Condition(tokens[None], known[None])
