"""Small building blocks of the backbone: rotary positions, the noise-level embedding, norms.

Each one is a plain function or a tiny module so the transformer file reads top-down.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def rotary_tables(max_len: int, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin tables for rotary position embeddings, each (max_len, head_dim).

    Rotary (RoFormer, GPT-NeoX pairing) rotates the pair (x[i], x[i + hs/2]) of each query and key by
    the angle pos * base^(-2i/hs), so q.k depends on positions only through their difference:

        rot(x) = x * cos + [x2, x1] * [-sin, sin]        with x = [x1, x2] split in halves

    The tables are stored at full head width with the sign folded into sin, so applying them is a
    swap of halves, a multiply and a fused multiply-add, with no negation pass.
    """
    if head_dim % 2 != 0:
        raise ValueError(f"rotary positions need an even head dimension, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hs/2,)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, hs/2)
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1)  # (T, hs)
    signed_sin = torch.cat([-angles.sin(), angles.sin()], dim=-1)  # (T, hs)
    return cos.float(), signed_sin.float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, T, nh, hs) by tables from rotary_tables shaped to broadcast, e.g. (T, 1, hs).

    Used on queries and keys only: rotating values as well (as SEDD does) changes nothing the
    attention scores see and costs about 13% of a forward on CPU. Halves are taken with unbind
    (whose backward is one stack) rather than slicing (whose backward zero-fills a full-size
    gradient per slice): that alone is ~25% of the attention block's time on CPU.
    """
    x1, x2 = x.unflatten(-1, (2, x.shape[-1] // 2)).unbind(-2)  # 2 x (..., hs/2)
    swapped = torch.cat([x2, x1], dim=-1)  # (..., hs)
    return torch.addcmul(x * cos, swapped, signed_sin)


def sinusoidal_embedding(sigma_bar: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Fixed sinusoidal features of the noise level, (B,) -> (B, dim), as in DiT / SEDD.

    sigma_bar (total noise, not t) is embedded so one model serves every schedule.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=sigma_bar.device) / half
    )  # (dim/2,)
    args = sigma_bar.float()[:, None] * freqs[None, :]  # (B, dim/2)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * (dim/2))
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class NoiseEmbedding(nn.Module):
    """sigma_bar (B,) -> conditioning vector c (B, cond_dim): sinusoidal features, then a 2-layer MLP."""

    def __init__(self, cond_dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma_bar: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(sigma_bar, self.freq_dim))


class Norm(nn.Module):
    """Pre-norm: LayerNorm or RMSNorm, with or without a learned affine.

    Without affine (adaLN mode) the shift and scale come from the noise level instead.
    """

    def __init__(self, dim: int, kind: str = "layernorm", affine: bool = True, eps: float = 1e-5):
        super().__init__()
        if kind not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {kind!r}")
        self.kind = kind
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine and kind == "layernorm" else None
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layernorm":
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        return F.rms_norm(x, (self.dim,), self.weight, self.eps)
