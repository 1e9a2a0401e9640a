"""ARWrapper: a causal network bound to a ``discdiff.Autoregressive`` as one ``nn.Module``.

The maths (BOS convention, exact chain-rule NLL, left-to-right sampling) lives in
``discdiff.autoregressive``; this adapter keeps the older one-object interface (``ar.nll(x0)``) for code
that passes a model and its likelihood around together (the AR judge, ``evaluation.ar_nll``).

    >>> import torch
    >>> from discdiff.nn import ARWrapper, DiffusionTransformer, TransformerConfig
    >>> cfg = TransformerConfig(num_states=11, d_model=32, n_layers=1, n_heads=2, max_len=16, causal=True)
    >>> ar = ARWrapper(DiffusionTransformer(cfg), vocab_size=10)
    >>> ar.nll(torch.randint(0, 10, (2, 16))).shape
    torch.Size([2])
"""

from __future__ import annotations

import torch
from torch import nn

from discdiff.autoregressive import Autoregressive


class ARWrapper(nn.Module):
    """Wraps a causal DiffusionTransformer; `nll(x0)` is the exact negative log-likelihood in nats, (B,)."""

    def __init__(self, model: nn.Module, vocab_size: int, bos_id: int | None = None):
        super().__init__()
        self.ar = Autoregressive(vocab_size, bos_id)
        self.ar.check_model(model)
        self.model = model

    @property
    def vocab_size(self) -> int:
        return self.ar.vocab_size

    @property
    def bos_id(self) -> int:
        return self.ar.bos_id

    def logits(self, x0: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, V) float32 logits: position i predicts x_i from [BOS, x_<i]."""
        return self.ar.logits(self.model, x0, padding_mask)

    def log_probs(self, x0: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, V) float32: entry [b, i, y] = log p(x_i = y | x_<i)."""
        return self.ar.log_probs(self.model, x0, padding_mask)

    def nll(self, x0: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Exact -log p(x0) per sequence in nats, (B,); padding_mask (B, L) bool is True on real tokens."""
        return self.ar.loss(self.model, x0, padding_mask=padding_mask)

    def forward(self, x0: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.nll(x0, padding_mask)

    def sample(self, num_samples: int, length: int, generator: torch.Generator | None = None,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               device=None) -> torch.Tensor:
        """(num_samples, length) ids, drawn left to right in float64 (see Autoregressive.sample)."""
        return self.ar.sample(self.model, num_samples, length, generator=generator, temperature=temperature,
                              top_k=top_k, top_p=top_p, device=device).samples
