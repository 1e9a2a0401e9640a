"""DiffusionTransformer: the one backbone for SEDD, RADD, MDLM/MD4, LLaDA and the AR baseline.

Read top-down: attention, MLP, block, model (the configs are in nn/config.py). A model maps

    x_t: LongTensor[B, L], sigma_bar: Tensor[B]  ->  FloatTensor[B, L, S_out]   (always float32)

which is exactly the model contract of `discdiff.Diffusion`: log concrete scores under
`parameterization="score"`, clean-token logits under `"denoiser"`.

    >>> import torch
    >>> from discdiff.nn import DiffusionTransformer, TransformerConfig
    >>> cfg = TransformerConfig(num_states=66, d_model=64, n_layers=2, n_heads=2, max_len=32)
    >>> model = DiffusionTransformer(cfg)
    >>> model(torch.randint(0, 66, (3, 32)), torch.rand(3)).shape
    torch.Size([3, 32, 66])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BlockCacheMethods, KVCache, block_forward
from .config import TransformerConfig
from .labels import LabelEmbedding
from .layers import NoiseEmbedding, Norm, rotary_qkv, rotary_table


class SelfAttention(nn.Module):
    """Multi-head attention: fused qkv projection, rotary on q and k, F.scaled_dot_product_attention."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.causal = cfg.causal
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)

    def forward(self, x, rope, attn_mask, kv=None):
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_heads, C // self.n_heads)  # (B, T, 3, nh, hs)
        q, k, v = rotary_qkv(qkv, rope)  # 3 x (B, T, nh, hs); rotary on q and k only
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, hs)
        if kv is not None:  # block diffusion's KV cache (nn/blocks.py): finished blocks' keys first
            k, v = kv(k, v)  # (B, nh, P + T, hs)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and attn_mask is None,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        y = self.proj(y)
        if self.dropout > 0.0:
            y = F.dropout(y, self.dropout, self.training)
        return y


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        hidden = int(cfg.mlp_ratio * cfg.d_model)
        self.fc = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        self.fc2 = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.approximate = cfg.gelu_approximate

    def forward(self, x):
        y = self.fc2(F.gelu(self.fc(x), approximate=self.approximate))
        if self.dropout > 0.0:
            y = F.dropout(y, self.dropout, self.training)
        return y


class Block(nn.Module):
    """Pre-norm transformer block; with a conditioning vector c it is a DiT adaLN-zero block:

        x = x + gate1 * attn(norm(x) * (1 + scale1) + shift1)
        x = x + gate2 * mlp(norm(x) * (1 + scale2) + shift2)

    with (shift, scale, gate) = Linear(c) initialised at zero, so every block starts as the identity.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        affine = not cfg.time_conditioning
        self.norm1 = Norm(cfg.d_model, cfg.norm, affine=affine, bias=cfg.bias)
        self.attn = SelfAttention(cfg)
        self.norm2 = Norm(cfg.d_model, cfg.norm, affine=affine, bias=cfg.bias)
        self.mlp = MLP(cfg)
        self.adaln = nn.Linear(cfg.cond_dim, 6 * cfg.d_model) if cfg.time_conditioning else None

    def forward(self, x, rope, attn_mask, c=None, kv=None):
        if self.adaln is None:
            x = x + self.attn(self.norm1(x), rope, attn_mask, kv)
            return x + self.mlp(self.norm2(x))
        mod = self.adaln(c)[:, None, :].chunk(6, dim=-1)  # 6 x (B, 1, C)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod
        h = torch.addcmul(shift1, self.norm1(x), 1 + scale1)
        x = torch.addcmul(x, gate1, self.attn(h, rope, attn_mask, kv))
        h = torch.addcmul(shift2, self.norm2(x), 1 + scale2)
        return torch.addcmul(x, gate2, self.mlp(h))


class DiffusionTransformer(BlockCacheMethods, nn.Module):
    """Bidirectional (or causal) transformer over discrete states, optionally conditioned on sigma_bar."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = cfg = config
        self.tok_emb = nn.Embedding(cfg.num_states, cfg.d_model)
        self.noise_emb = NoiseEmbedding(cfg.cond_dim) if cfg.time_conditioning else None
        # Class label (num_classes + 1 rows, the last one the null label): added to the adaLN conditioning
        # vector of a time-conditioned model (DiT), to every token embedding of a time-free one (see forward).
        width = cfg.cond_dim if cfg.time_conditioning else cfg.d_model
        self.label_emb = LabelEmbedding(cfg.num_classes, width) if cfg.num_classes is not None else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = Norm(cfg.d_model, cfg.norm, affine=not cfg.time_conditioning, bias=cfg.bias)
        # Final adaLN: (shift, scale) of the last norm, from the noise level (SEDD's DDitFinalLayer).
        self.final_adaln = nn.Linear(cfg.cond_dim, 2 * cfg.d_model) if cfg.time_conditioning else None
        self.head = nn.Linear(cfg.d_model, cfg.out_size, bias=cfg.head_bias)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight
        # (T, 1, hs/2, 2): broadcasts over the heads of (B, T, nh, hs/2 pairs).
        rope = rotary_table(cfg.max_len, cfg.d_model // cfg.n_heads, cfg.rope_base)
        self.register_buffer("rope", rope[:, None], persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 init; residual projections scaled by 1/sqrt(2 n_layers); adaLN layers at zero (adaLN-zero)."""
        cfg = self.config
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))
            nn.init.normal_(block.mlp.fc2.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))
            if block.adaln is not None:
                nn.init.zeros_(block.adaln.weight)
                nn.init.zeros_(block.adaln.bias)
        if self.final_adaln is not None:
            nn.init.zeros_(self.final_adaln.weight)
            nn.init.zeros_(self.final_adaln.bias)
            if not cfg.tie_weights:  # DiT zero-initialises the output layer too
                nn.init.zeros_(self.head.weight)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        x_t: torch.Tensor,
        sigma_bar: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        label: torch.Tensor | None = None,
        *,
        x0: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> torch.Tensor:
        """x_t (B, L) ids in [0, S); sigma_bar (B,) total noise; padding_mask (B, L) bool, True on real
        tokens and False on padding (the convention of Diffusion.loss and discdiff.data.Batch.mask);
        label (B,) class ids in [0, num_classes], num_classes being the null label (None: all null).

        A label enters as one embedding per sequence: in a time-conditioned model it is added to the
        noise embedding that drives every adaLN (c = emb(sigma_bar) + emb(label), as in DiT); a time-free
        model has no such path, so it is added to every token embedding instead (x_i = emb(x_t^i) +
        emb(label)). Neither adds a position, so rotary positions, padding and block masks are unchanged.

        Returns (B, L, S_out) float32. Padding positions never influence real ones (their outputs are
        finite but meaningless). sigma_bar may be None for a time-free model without sedd_absorb_scale.
        Block models (config.block_size) take ``x0`` (training) or ``kv_cache``: nn.blocks.block_forward.
        """
        self._check_inputs(x_t, sigma_bar, padding_mask)
        if self.config.block_size is not None or x0 is not None or kv_cache is not None:
            if x0 is not None:
                self._check_inputs(x0, sigma_bar, padding_mask)
            return block_forward(self, x_t, padding_mask, x0=x0, kv_cache=kv_cache, label=label)
        cfg = self.config
        B, T = x_t.shape
        x = self.tok_emb(x_t)  # (B, T, C)
        if label is not None and self.label_emb is None:
            raise ValueError("this model takes no class label (model.num_classes is not set)")
        label_vec = self.label_emb(label, B) if self.label_emb is not None else None  # (B, cond or C)
        c = self.noise_emb(sigma_bar) if self.noise_emb is not None else None  # (B, cond)
        if label_vec is not None and c is not None:
            c = c + label_vec
        elif label_vec is not None:
            x = x + label_vec[:, None, :]  # (B, T, C): time-free, the label joins every token
        c = F.silu(c) if c is not None else None
        rope = self.rope[:T]  # (T, 1, hs/2, 2)
        attn_mask = self._attention_mask(padding_mask, T)
        for block in self.blocks:
            x = block(x, rope, attn_mask, c)
        if self.final_adaln is None:
            x = self.final_norm(x)
        else:
            shift, scale = self.final_adaln(c)[:, None, :].chunk(2, dim=-1)  # 2 x (B, 1, C)
            x = torch.addcmul(shift, self.final_norm(x), 1 + scale)
        out = self.head(x).float()  # (B, T, S_out): float32 whatever the autocast dtype
        if cfg.sedd_absorb_scale:
            out = sedd_absorb_scale(out, x_t, sigma_bar)
        return out

    def _attention_mask(self, padding_mask: torch.Tensor | None, T: int) -> torch.Tensor | None:
        """Boolean SDPA mask (True = may attend), (B, 1, T, T), or None when nothing is padded.

        Real queries see only real keys. Every position also sees itself, so a padding query (or a
        fully padded row) never has an empty row, which would give NaN.
        """
        if padding_mask is None:
            return None
        device = padding_mask.device
        allowed = padding_mask[:, None, None, :]  # (B, 1, 1, T): real keys
        if self.config.causal:
            allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=device).tril()
        return allowed | torch.eye(T, dtype=torch.bool, device=device)  # (B, 1, T, T)

    def _check_inputs(self, x_t, sigma_bar, padding_mask) -> None:
        cfg = self.config
        if x_t.dtype not in (torch.long, torch.int32):
            raise ValueError(f"x_t must be an integer (long) tensor of token ids, got {x_t.dtype}")
        if x_t.dim() != 2:
            raise ValueError(f"x_t must have shape (B, L), got {tuple(x_t.shape)}")
        B, T = x_t.shape
        if T > cfg.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len={cfg.max_len}")
        needs_sigma = cfg.time_conditioning or cfg.sedd_absorb_scale
        if sigma_bar is None and needs_sigma:
            raise ValueError("this model is conditioned on the noise level: pass sigma_bar of shape (B,)")
        if sigma_bar is not None:
            if sigma_bar.shape != (B,):
                raise ValueError(f"sigma_bar must have shape ({B},), got {tuple(sigma_bar.shape)}")
            if not sigma_bar.is_floating_point():
                raise ValueError(f"sigma_bar must be a float tensor, got {sigma_bar.dtype}")
        if padding_mask is not None:
            if padding_mask.dtype != torch.bool:
                raise ValueError(f"padding_mask must be bool (True on real tokens), got {padding_mask.dtype}")
            if padding_mask.shape != x_t.shape:
                raise ValueError(f"padding_mask shape {tuple(padding_mask.shape)} != x_t {tuple(x_t.shape)}")
        # Value checks read the data; on an accelerator that would sync the host every step, so they
        # run on CPU tensors only (a bad id on GPU still fails, in the embedding kernel).
        if x_t.device.type == "cpu" and not torch.compiler.is_compiling() and x_t.numel():
            lo, hi = int(x_t.min()), int(x_t.max())
            if lo < 0 or hi >= cfg.num_states:
                raise ValueError(f"token ids must lie in [0, {cfg.num_states}), got range [{lo}, {hi}]")
            if cfg.sedd_absorb_scale and bool((sigma_bar <= 0).any()):
                raise ValueError("sedd_absorb_scale needs sigma_bar > 0 (log(e^0 - 1) = -inf)")

    # ------------------------------------------------------------------ accounting

    def num_parameters(self, exclude_embedding: bool = False) -> int:
        """Number of distinct parameters (a tied head counts once)."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embedding and not self.config.tie_weights:
            n -= self.tok_emb.weight.numel()
        return n

    def matmul_parameters(self) -> int:
        """Weights that multiply every token: block projections and the output head.

        Excludes the embedding (a lookup), biases and norms (elementwise), and the noise-level MLP and
        adaLN layers (applied once per sequence, not per token).
        """
        n = self.head.weight.numel()
        for block in self.blocks:
            for lin in (block.attn.qkv, block.attn.proj, block.mlp.fc, block.mlp.fc2):
                n += lin.weight.numel()
        return n

    def flops_per_token(self, seq_len: int, training: bool = True) -> float:
        """Model FLOPs per token (PaLM appendix B convention, as used for MFU).

        Training (forward + backward): 6 N + 12 n_layers d L, with N = matmul_parameters(): 2 FLOPs per
        multiply-add, times 3 for forward + backward; the attention term counts q k^T and attn @ v over
        the full L x L (causal models are counted the same, as is customary). Forward only: a third.
        """
        cfg = self.config
        flops = 6 * self.matmul_parameters() + 12 * cfg.n_layers * cfg.d_model * seq_len
        return flops if training else flops / 3


def sedd_absorb_scale(raw: torch.Tensor, x_t: torch.Tensor, sigma_bar: torch.Tensor) -> torch.Tensor:
    """SEDD's output scaling for the absorbing graph, S states:

        log_score = raw - log(e^sigma_bar - 1) - log(S - 1),   log_score[..., x_t] = 0

    With raw = 0 this is the exact log score of a uniform clean distribution; the entry at the current
    token is the ratio p(x)/p(x) = 1. e^sigma_bar - 1 is expm1 below 0.5 (where exp(.) - 1 cancels) and
    above 30 log(e^s - 1) is s to float32 precision (exp would overflow near 88).
    """
    S = raw.shape[-1]
    sb = sigma_bar.float()
    esigm1 = torch.where(sb < 0.5, torch.expm1(sb), sb.exp() - 1)
    log_esigm1 = torch.where(sb > 30.0, sb, esigm1.log())  # (B,)
    out = raw - log_esigm1[:, None, None] - math.log(S - 1)
    return out.scatter(-1, x_t[..., None].long(), 0.0)
