"""Exact autoregressive likelihood for the causal baseline built from the same transformer blocks.

BOS convention: the sequence is shifted right by one with a BOS id in front, so position i sees
[BOS, x_0, ..., x_{i-1}] and its logits predict x_i. Then

    log p(x) = sum_{i=0}^{L-1} log p(x_i | x_<i)

covers all L tokens, the first one included, and is directly comparable with a diffusion model's NLL
bound over the same L tokens. BOS defaults to id `vocab_size` (the MASK slot of an absorbing vocabulary,
never a data token), so the causal model is built with num_states = vocab_size + 1 like its diffusion twin.
Log-probabilities are normalised over the vocab_size data tokens only: the output entries at ids
>= vocab_size (MASK/BOS) are dropped, so no mass is wasted on impossible tokens.

    >>> import torch
    >>> from discdiff.nn import ARWrapper, DiffusionTransformer, TransformerConfig
    >>> cfg = TransformerConfig(num_states=11, d_model=32, n_layers=1, n_heads=2, max_len=16, causal=True)
    >>> ar = ARWrapper(DiffusionTransformer(cfg), vocab_size=10)
    >>> ar.nll(torch.randint(0, 10, (2, 16))).shape
    torch.Size([2])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ARWrapper(nn.Module):
    """Wraps a causal DiffusionTransformer; `nll(x0)` is the exact negative log-likelihood in nats, (B,)."""

    def __init__(self, model: nn.Module, vocab_size: int, bos_id: int | None = None):
        super().__init__()
        cfg = getattr(model, "config", None)
        if cfg is not None and not cfg.causal:
            raise ValueError("ARWrapper needs a causal model (TransformerConfig(causal=True))")
        bos_id = vocab_size if bos_id is None else bos_id
        if cfg is not None and not 0 <= bos_id < cfg.num_states:
            raise ValueError(f"bos_id={bos_id} is not an input id of the model (num_states={cfg.num_states})")
        if cfg is not None and cfg.out_size < vocab_size:
            raise ValueError(f"model predicts {cfg.out_size} classes, fewer than vocab_size={vocab_size}")
        self.model = model
        self.vocab_size = vocab_size
        self.bos_id = bos_id

    def logits(self, x0: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, V) float32 logits: position i predicts x_i from [BOS, x_<i]."""
        bos = torch.full_like(x0[:, :1], self.bos_id)
        inputs = torch.cat([bos, x0[:, :-1]], dim=1)  # (B, L): shifted right by one
        in_pad = None
        if padding_mask is not None:
            in_pad = torch.cat([torch.ones_like(padding_mask[:, :1]), padding_mask[:, :-1]], dim=1)
        return self.model(inputs, None, in_pad)[..., : self.vocab_size].float()  # (B, L, V)

    def log_probs(self, x0: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, V) float32: entry [b, i, y] = log p(x_i = y | x_<i)."""
        return F.log_softmax(self.logits(x0, padding_mask), dim=-1)

    def nll(self, x0: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Exact -log p(x0) per sequence in nats, (B,).

        padding_mask (B, L) bool is True on real tokens; padded targets add nothing and padded inputs are
        invisible to real positions.
        """
        if x0.dim() != 2:
            raise ValueError(f"x0 must have shape (B, L), got {tuple(x0.shape)}")
        if x0.numel() and (int(x0.min()) < 0 or int(x0.max()) >= self.vocab_size):
            raise ValueError(f"x0 ids must lie in [0, {self.vocab_size})")
        logits = self.logits(x0, padding_mask)  # (B, L, V)
        B, L, V = logits.shape
        token_nll = F.cross_entropy(logits.reshape(B * L, V), x0.reshape(-1).long(), reduction="none")
        token_nll = token_nll.view(B, L)
        if padding_mask is not None:
            token_nll = token_nll.masked_fill(~padding_mask, 0.0)
        return token_nll.sum(dim=1)

    def forward(self, x0: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.nll(x0, padding_mask)

    @torch.no_grad()
    def sample(self, num_samples: int, length: int, generator: torch.Generator | None = None,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               device=None) -> torch.Tensor:
        """(num_samples, length) ids, drawn left to right in float64 (no KV cache: L forwards)."""
        from discdiff.categorical import sample_from_logits

        if device is None:
            device = next(self.model.parameters()).device
        out = torch.full((num_samples, length + 1), self.bos_id, dtype=torch.long, device=device)
        for i in range(length):
            logits = self.model(out[:, : i + 1], None)[:, -1, : self.vocab_size]  # (B, V)
            out[:, i + 1] = sample_from_logits(logits, generator, temperature, top_k, top_p)
        return out[:, 1:]
