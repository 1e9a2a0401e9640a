"""Exponential moving average of the weights, with the usual warm-up of the decay.

    ema_t = d_t * ema_{t-1} + (1 - d_t) * theta_t,      d_t = min(decay, (1 + t) / (10 + t))

The warm-up keeps the average from being dominated by the random initialisation in short runs (at
t = 0 the EMA is 90% the new weights). Works on sharded (FSDP2 DTensor) parameters shard by shard.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names, self.params = zip(*model.named_parameters(), strict=True)  # tied weights once
        self.shadow = [p.detach().clone() for p in self.params]
        # every name of a tied parameter (head.weight and tok_emb.weight) -> its one EMA tensor
        index = {id(p): i for i, p in enumerate(self.params)}
        self.aliases = {n: index[id(p)] for n, p in model.named_parameters(remove_duplicate=False)}

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - d)

    def full_state(self, aliases: bool = False) -> dict[str, torch.Tensor]:
        """Full (unsharded) CPU tensors by parameter name; a collective under FSDP.

        aliases=True also lists every other name of a tied parameter (as the model's state_dict does).
        """
        full = [_full(t).cpu() for t in self.shadow]
        if aliases:
            return {n: full[i] for n, i in self.aliases.items()}
        return dict(zip(self.names, full, strict=True))

    @torch.no_grad()
    def load_full_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise ValueError(f"EMA state lacks {sorted(missing)[:3]}")
        for name, p, t in zip(self.names, self.params, self.shadow, strict=True):
            t.copy_(_like(state[name], p))

    @contextlib.contextmanager
    def swapped_in(self):
        """Temporarily put the EMA weights into the model (for evaluation)."""
        with torch.no_grad():
            backup = [p.detach().clone() for p in self.params]
            for p, e in zip(self.params, self.shadow, strict=True):  # per tensor: DTensor has no foreach_copy
                p.detach().copy_(e)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self.params, backup, strict=True):
                    p.detach().copy_(b)


def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _like(full: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """A full tensor laid out like parameter p (sharded the same way when p is a DTensor)."""
    if hasattr(p, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(full.to(p.device, p.dtype), p.device_mesh, p.placements)
    return full.to(p.device, p.dtype)
