"""The DDiT network that SEDD and MDLM share (SEDD's model/transformer.py, MDLM's models/dit.py), mapped onto
discdiff's DiffusionTransformer.

Their network, per block (D = hidden size, C = cond_dim, V' = embedding rows incl. MASK):

    c = silu(MLP(sinusoid_256(sigma)))                        sigma_map.mlp.{0,2}: the noise embedding
    h = LN(x) w1 (1 + scale1) + shift1                        LN without affine; w1 = norm1.weight, no bias
    x = x + gate1 attn_out(attn(rotary(attn_qkv h)))          no biases; rotary on q, k (rotate-half layout)
    h = LN(x) w2 (1 + scale2) + shift2
    x = x + gate2 mlp.2(gelu_tanh(mlp.0 h))                   with biases
    (shift1, scale1, gate1, shift2, scale2, gate2) = adaLN_modulation(c)   chunk order, as in discdiff
    out = linear(LN(x) wf (1 + scale) + shift) + bias         output_layer: (shift, scale) = adaLN(c)

DiffusionTransformer reproduces this with three options, not a second network: ``gelu_approximate="tanh"``,
``head_bias=True`` and ``bias=True`` (their MLP biases; the attention biases this adds are set to zero).
The norm weights, the rotary layout and (time-free MDLM) the constant conditioning are folded into the
weights exactly; see discdiff/convert/common.py. Dropout is a training-time choice and is not carried.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import check_inv_freq, check_state, fold_norm_into_scale, read_source, rotary_rows, write_pretrained

__all__ = ["convert_ddit", "expected_shapes", "time_conditioned_state", "time_free_state"]


def convert_ddit(src, out, tokenizer, configs, prefix: str = ""):
    """The conversion SEDD and MDLM share: read ``src``, ``configs(config) -> (model_cfg, diffusion_cfg, vocab,
    length)``, check every tensor's name and shape (their names under ``prefix``), map the state
    (time-conditioned, or time-free with sigma = 0 folded in), load it into a DiffusionTransformer strictly and
    write the pretrained/ directory at ``out`` (tokenizer from ``tokenizer`` or ``src``). Returns its path."""
    from discdiff.nn import DiffusionTransformer
    from discdiff.training.recipe import transformer_config

    source = read_source(src)
    model_cfg, diffusion_cfg, vocab, length = configs(source.config)
    tcfg = transformer_config(model_cfg, diffusion_cfg, vocab, length)
    d, heads, n = model_cfg.d_model, model_cfg.n_heads, model_cfg.n_layers
    inv_freq = f"{prefix}rotary_emb.inv_freq"
    check_state(source, expected_shapes(prefix, tcfg.num_states, d, model_cfg.cond_dim, n),
                optional={inv_freq: (d // heads // 2,)})
    check_inv_freq(source, inv_freq, d // heads)
    mapping = time_conditioned_state if model_cfg.time_conditioning else time_free_state
    model = DiffusionTransformer(tcfg)
    model.load_state_dict(mapping({k: v.float() for k, v in source.state.items()}, prefix, heads, n), strict=True)
    return write_pretrained(out, model, model_cfg=model_cfg, diffusion_cfg=diffusion_cfg, vocab_size=vocab,
                            context=length, tokenizer_dirs=(tokenizer, source.path))


def expected_shapes(prefix: str, rows: int, d: int, cond: int, n_blocks: int, mlp_ratio: int = 4):
    """Their state-dict names and shapes, in their module order (the first mismatch is the one reported)."""
    shapes = {f"{prefix}vocab_embed.embedding": (rows, d),
              f"{prefix}sigma_map.mlp.0.weight": (cond, 256), f"{prefix}sigma_map.mlp.0.bias": (cond,),
              f"{prefix}sigma_map.mlp.2.weight": (cond, cond), f"{prefix}sigma_map.mlp.2.bias": (cond,)}
    for i in range(n_blocks):
        b = f"{prefix}blocks.{i}."
        shapes.update({f"{b}norm1.weight": (d,), f"{b}attn_qkv.weight": (3 * d, d), f"{b}attn_out.weight": (d, d),
                       f"{b}norm2.weight": (d,), f"{b}mlp.0.weight": (mlp_ratio * d, d),
                       f"{b}mlp.0.bias": (mlp_ratio * d,), f"{b}mlp.2.weight": (d, mlp_ratio * d),
                       f"{b}mlp.2.bias": (d,), f"{b}adaLN_modulation.weight": (6 * d, cond),
                       f"{b}adaLN_modulation.bias": (6 * d,)})
    o = f"{prefix}output_layer."
    shapes.update({f"{o}norm_final.weight": (d,), f"{o}linear.weight": (rows, d), f"{o}linear.bias": (rows,),
                   f"{o}adaLN_modulation.weight": (2 * d, cond), f"{o}adaLN_modulation.bias": (2 * d,)})
    return shapes


def _shared(src: dict, prefix: str, n_heads: int, n_blocks: int) -> dict:
    """The tensors both mappings take as they are (rotary rows permuted)."""
    out = {"tok_emb.weight": src[f"{prefix}vocab_embed.embedding"],
           "head.weight": src[f"{prefix}output_layer.linear.weight"],
           "head.bias": src[f"{prefix}output_layer.linear.bias"]}
    for i in range(n_blocks):
        b, n = f"{prefix}blocks.{i}.", f"blocks.{i}."
        qkv = src[f"{b}attn_qkv.weight"]
        out.update({f"{n}attn.qkv.weight": rotary_rows(qkv, n_heads), f"{n}attn.qkv.bias": qkv.new_zeros(qkv.shape[0]),
                    f"{n}attn.proj.weight": src[f"{b}attn_out.weight"],
                    f"{n}attn.proj.bias": qkv.new_zeros(qkv.shape[1]),
                    f"{n}mlp.fc.weight": src[f"{b}mlp.0.weight"], f"{n}mlp.fc.bias": src[f"{b}mlp.0.bias"],
                    f"{n}mlp.fc2.weight": src[f"{b}mlp.2.weight"], f"{n}mlp.fc2.bias": src[f"{b}mlp.2.bias"]})
    return out


def time_conditioned_state(src: dict, prefix: str, n_heads: int, n_blocks: int) -> dict:
    """discdiff state dict of a time-conditioned DiffusionTransformer (adaLN on sigma_bar): SEDD, and MDLM
    with time_conditioning true. Norm weights folded into the adaLN `scale` rows."""
    out = _shared(src, prefix, n_heads, n_blocks)
    for j in (0, 2):
        out[f"noise_emb.mlp.{j}.weight"] = src[f"{prefix}sigma_map.mlp.{j}.weight"]
        out[f"noise_emb.mlp.{j}.bias"] = src[f"{prefix}sigma_map.mlp.{j}.bias"]
    for i in range(n_blocks):
        b = f"{prefix}blocks.{i}."
        w, bias = src[f"{b}adaLN_modulation.weight"], src[f"{b}adaLN_modulation.bias"]
        w, bias = fold_norm_into_scale(w, bias, src[f"{b}norm1.weight"], 1, 6)  # chunk 1: scale_msa
        w, bias = fold_norm_into_scale(w, bias, src[f"{b}norm2.weight"], 4, 6)  # chunk 4: scale_mlp
        out[f"blocks.{i}.adaln.weight"], out[f"blocks.{i}.adaln.bias"] = w.float(), bias.float()
    o = f"{prefix}output_layer."
    w, bias = fold_norm_into_scale(src[f"{o}adaLN_modulation.weight"], src[f"{o}adaLN_modulation.bias"],
                                   src[f"{o}norm_final.weight"], 1, 2)  # (shift, scale)
    out["final_adaln.weight"], out["final_adaln.bias"] = w.float(), bias.float()
    return out


def _constant_condition(src: dict, prefix: str, sigma: float = 0.0) -> torch.Tensor:
    """c = silu(MLP(sinusoid_256(sigma))) for one fixed sigma, float64 (cond,)."""
    from discdiff.nn.layers import sinusoidal_embedding

    feats = sinusoidal_embedding(torch.tensor([sigma]), 256).double()[0]  # (256,)
    w0, b0 = src[f"{prefix}sigma_map.mlp.0.weight"].double(), src[f"{prefix}sigma_map.mlp.0.bias"].double()
    w2, b2 = src[f"{prefix}sigma_map.mlp.2.weight"].double(), src[f"{prefix}sigma_map.mlp.2.bias"].double()
    return F.silu(w2 @ F.silu(w0 @ feats + b0) + b2)


def time_free_state(src: dict, prefix: str, n_heads: int, n_blocks: int) -> dict:
    """discdiff state dict of a time-free DiffusionTransformer: MDLM with time_conditioning false, whose
    network always sees sigma = 0, so every adaLN output is a constant folded into norms and projections."""
    out = _shared(src, prefix, n_heads, n_blocks)
    c = _constant_condition(src, prefix)
    for i in range(n_blocks):
        b, n = f"{prefix}blocks.{i}.", f"blocks.{i}."
        mod = src[f"{b}adaLN_modulation.weight"].double() @ c + src[f"{b}adaLN_modulation.bias"].double()
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6)
        for k, (w, shift, scale) in enumerate(((src[f"{b}norm1.weight"], shift1, scale1),
                                               (src[f"{b}norm2.weight"], shift2, scale2)), start=1):
            out[f"{n}norm{k}.weight"] = (w.double() * (1 + scale)).float()
            out[f"{n}norm{k}.bias"] = shift.float()
        out[f"{n}attn.proj.weight"] = (gate1[:, None] * out[f"{n}attn.proj.weight"].double()).float()
        out[f"{n}mlp.fc2.weight"] = (gate2[:, None] * out[f"{n}mlp.fc2.weight"].double()).float()
        out[f"{n}mlp.fc2.bias"] = (gate2 * out[f"{n}mlp.fc2.bias"].double()).float()
    o = f"{prefix}output_layer."
    mod = src[f"{o}adaLN_modulation.weight"].double() @ c + src[f"{o}adaLN_modulation.bias"].double()
    shift, scale = mod.chunk(2)
    out["final_norm.weight"] = (src[f"{o}norm_final.weight"].double() * (1 + scale)).float()
    out["final_norm.bias"] = shift.float()
    return out
