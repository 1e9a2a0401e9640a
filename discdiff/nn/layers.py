"""Small building blocks of the backbone: rotary positions, the noise-level embedding, norms.

Each one is a plain function or a tiny module so the transformer file reads top-down.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def rotary_table(max_len: int, head_dim: int, base: float = 10_000.0) -> torch.Tensor:
    """Rotary position table, (max_len, head_dim / 2, 2) float32: (cos, sin) of pos * base^(-2j/hs).

    Rotary (RoFormer) rotates each pair (x[2j], x[2j+1]) of a query or key by the angle
    pos * base^(-2j/hs), so q.k depends on positions only through their difference. Read as complex
    numbers (torch.view_as_complex) the rotation is one complex multiply, x * e^(i angle). Stored
    as real numbers so the buffer survives .to(dtype), DDP's buffer broadcast and safetensors.
    """
    if head_dim % 2 != 0:
        raise ValueError(f"rotary positions need an even head dimension, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hs/2,)
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, hs/2)
    return torch.stack([angles.cos(), angles.sin()], dim=-1).float()  # (T, hs/2, 2)


def apply_rotary(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Reference rotation in real arithmetic: x (B, T, nh, hs), table broadcastable, e.g. (T, 1, hs/2, 2).

    Used on queries and keys only: rotating values as well (as SEDD does) changes nothing the
    attention scores see and costs about 13% of a forward on CPU. The model uses rotary_qkv.
    """
    cos, sin = table[..., 0], table[..., 1]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1).flatten(-2)


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    """(..., hs) real -> (..., hs/2) complex, a view (copied first only if the strides do not allow one)."""
    if x.stride(-1) != 1 or x.storage_offset() % 2 or any(st % 2 for st in x.stride()[:-1]):
        x = x.contiguous()
    return torch.view_as_complex(x.unflatten(-1, (-1, 2)))


def _rotate_into(out: torch.Tensor, x: torch.Tensor, phase: torch.Tensor) -> None:
    """out = x rotated by the complex phase, one pass, written in place (out may be a strided view)."""
    torch.mul(_as_complex(x), phase, out=_as_complex(out))


class _RotaryQKV(torch.autograd.Function):
    """(B, T, 3, nh, hs) fused projections -> rotated q, rotated k, v, each (B, T, nh, hs).

    Autograd through a rotation and unbind would materialise and add several full-size gradients;
    here the backward writes the rotated-back dq and dk (the transpose of a rotation is the rotation
    by the conjugate phase) and dv straight into one qkv gradient: two passes for q and k each way.
    Complex multiplies need float32/64, so other dtypes (bf16 autocast) rotate in float32.
    """

    @staticmethod
    def forward(ctx, qkv, table):
        work = qkv if qkv.dtype in (torch.float32, torch.float64) else qkv.float()
        phase = torch.view_as_complex(table.to(work.dtype).contiguous())  # (T, 1, hs/2) complex
        q = torch.empty_like(work[:, :, 0], memory_format=torch.contiguous_format)
        k = torch.empty_like(q)
        _rotate_into(q, work[:, :, 0], phase)
        _rotate_into(k, work[:, :, 1], phase)
        ctx.save_for_backward(table)
        ctx.in_dtype = qkv.dtype
        return q.to(qkv.dtype), k.to(qkv.dtype), qkv[:, :, 2]

    @staticmethod
    def backward(ctx, dq, dk, dv):
        (table,) = ctx.saved_tensors
        ref = next(g for g in (dq, dk, dv) if g is not None)
        dtype = ref.dtype if ref.dtype in (torch.float32, torch.float64) else torch.float32
        phase = torch.view_as_complex(table.to(dtype).contiguous()).conj()
        grad = torch.empty((*ref.shape[:2], 3, *ref.shape[2:]), dtype=dtype, device=ref.device)  # (B,T,3,nh,hs)
        for i, g in enumerate((dq, dk)):
            if g is None:
                grad[:, :, i].zero_()
            else:
                _rotate_into(grad[:, :, i], g.to(dtype), phase)
        if dv is None:
            grad[:, :, 2].zero_()
        else:
            grad[:, :, 2].copy_(dv)
        return grad.to(ctx.in_dtype), None


def rotary_qkv(qkv: torch.Tensor, table: torch.Tensor):
    """q, k rotated and v untouched from the fused (B, T, 3, nh, hs) projection; table (T, 1, hs/2, 2).

    Same values as apply_rotary on q and k (tests check it, and the gradient), in a fraction of the
    memory traffic: one complex multiply per tensor and direction. Under torch.compile the plain
    real-arithmetic version is traced instead: the compiler fuses it, and complex views do not trace.
    """
    if torch.compiler.is_compiling():
        q, k, v = qkv.unbind(2)
        return apply_rotary(q, table.to(q.dtype)), apply_rotary(k, table.to(k.dtype)), v
    return _RotaryQKV.apply(qkv, table)


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

    def __init__(self, dim: int, kind: str = "layernorm", affine: bool = True, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        if kind not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {kind!r}")
        self.kind = kind
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None
        self.bias = nn.Parameter(torch.zeros(dim)) if affine and bias and kind == "layernorm" else None
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layernorm":
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)
        return F.rms_norm(x, (self.dim,), self.weight, self.eps)
