"""MDLM (Sahoo et al. 2024) checkpoints, as published on the Hugging Face Hub (kuleshov-group/mdlm-owt), into
discdiff.

    convert_mdlm("downloads/mdlm-owt", "models/mdlm-owt")
    pre = discdiff.training.from_pretrained("models/mdlm-owt")

The source directory is what transformers wrote for their MDLM class: config.json (MDLMConfig: vocab_size,
model_length, hidden_dim, cond_dim, n_blocks, n_heads, dropout, time_conditioning) and model.safetensors or
pytorch_model.bin, the DDiT under the prefix ``backbone.``.

The result is parameterization "denoiser": the network outputs MDLM's backbone logits over all
``vocab_size`` ids, MASK last. MDLM's SUBS parameterization needs nothing extra in discdiff: the clean-token
distribution is the softmax over the data tokens only (the MASK column is ignored, which is MDLM's
``logits[MASK] = -inf``), and at unmasked positions the absorbing graph's reverse process never moves a
token, which is SUBS's carry-over. With time_conditioning false (mdlm-owt) MDLM feeds its network sigma = 0;
that constant conditioning is folded in and the converted model is time-free (discdiff/convert/ddit.py).

MASK must be the last id (vocab_size - 1), as with GPT-2, which has no mask token. A checkpoint trained with
a tokenizer that has its own [MASK] elsewhere (bert-base-uncased for LM1B) is not handled.
"""

from __future__ import annotations

from pathlib import Path

from .ddit import convert_ddit

__all__ = ["convert_mdlm", "mdlm_configs"]

PREFIX = "backbone."
_FIELDS = ("vocab_size", "model_length", "hidden_dim", "cond_dim", "n_blocks", "n_heads")


def mdlm_configs(config: dict):
    """(ModelConfig, DiffusionConfig, vocab_size, context) from MDLM's Hugging Face config.json dict."""
    from discdiff.training.config import DiffusionConfig, ModelConfig

    missing = [f for f in _FIELDS if f not in config]
    if missing:
        raise ValueError(f"config.json has no {missing[0]!r}; is this an MDLM checkpoint (kuleshov-group/mdlm-owt)?")
    if config.get("model_type", "mdlm") != "mdlm":
        raise ValueError(f"config.json model_type is {config['model_type']!r}, not 'mdlm'")
    time_conditioning = bool(config.get("time_conditioning", False))
    length = int(config["model_length"])
    model = ModelConfig(d_model=int(config["hidden_dim"]), n_layers=int(config["n_blocks"]),
                        n_heads=int(config["n_heads"]), max_len=length, mlp_ratio=4.0, dropout=0.0,
                        time_conditioning=time_conditioning, cond_dim=int(config["cond_dim"]), norm="layernorm",
                        bias=True, rope_base=10_000.0, gelu_approximate="tanh", head_bias=True)
    # MDLM's log-linear noise (eps 1e-3) and its loss, the t-DCE bound, are discdiff's denoiser defaults
    diffusion = DiffusionConfig(graph="absorbing", schedule="loglinear", eps=1e-3, parameterization="denoiser")
    return model, diffusion, int(config["vocab_size"]) - 1, length  # vocab_size counts MASK


def convert_mdlm(src, out, tokenizer=None) -> Path:
    """Write a discdiff pretrained/ directory at ``out`` from the MDLM checkpoint directory ``src``.

    ``tokenizer``: a directory holding GPT-2's vocab.json + merges.txt (or encoder.json + vocab.bpe); None:
    looked for in ``src``. Without one the converted model has no tokenizer (docs/convert.md says how to add it).
    A tensor missing, unexpected or of the wrong shape is a ValueError naming the first such key.
    Returns ``out``.
    """
    return convert_ddit(src, out, tokenizer, mdlm_configs, PREFIX)
