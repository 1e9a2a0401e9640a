"""SEDD (Lou, Meng & Ermon 2024) checkpoints, as published (louaaron/sedd-small, sedd-medium), into discdiff.

    convert_sedd("downloads/sedd-small", "models/sedd-small")
    pre = discdiff.training.from_pretrained("models/sedd-small")
    pre.diffusion.sample(pre.model, num_samples=2, length=1024, steps=128)

The source directory is what PyTorchModelHubMixin wrote: config.json (their hydra config as a dict: tokens,
graph.type, noise.{type, sigma_min, sigma_max}, model.{hidden_size, cond_dim, length, n_blocks, n_heads,
scale_by_sigma}) and model.safetensors or pytorch_model.bin (the SEDD module's state dict).

The result is parameterization "score": the network outputs log concrete scores, with SEDD's head
``raw - log(e^sigma_bar - 1) - log(S - 1)`` and 0 at x_t (TransformerConfig.sedd_absorb_scale), sigma_bar
being the total noise SEDD's network is fed.
"""

from __future__ import annotations

from pathlib import Path

from .ddit import convert_ddit

__all__ = ["convert_sedd", "sedd_configs"]

_SCHEDULES = {"loglinear": "loglinear", "geometric": "geometric"}
_GRAPHS = {"absorb": "absorbing", "uniform": "uniform"}


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"config.json has no {dotted!r}; is this a SEDD checkpoint (louaaron/sedd-*)?")
        node = node[part]
    return node


def sedd_configs(config: dict):
    """(ModelConfig, DiffusionConfig, vocab_size, context) from SEDD's config.json dict."""
    from discdiff.training.config import DiffusionConfig, ModelConfig

    graph = _get(config, "graph.type")
    if graph not in _GRAPHS:
        raise ValueError(f"config.json graph.type {graph!r}: only {sorted(_GRAPHS)} are known")
    scale = bool(_get(config, "model.scale_by_sigma"))
    if scale and graph != "absorb":  # SEDD itself asserts this
        raise ValueError("config.json sets model.scale_by_sigma with graph.type 'uniform', which SEDD does not run")
    noise = _get(config, "noise.type")
    if noise not in _SCHEDULES:
        raise ValueError(f"config.json noise.type {noise!r}: only {sorted(_SCHEDULES)} are known")
    options = {"sigma_min": float(_get(config, "noise.sigma_min")),
               "sigma_max": float(_get(config, "noise.sigma_max"))} if noise == "geometric" else {"eps": 1e-3}
    d, heads = int(_get(config, "model.hidden_size")), int(_get(config, "model.n_heads"))
    length, cond = int(_get(config, "model.length")), int(_get(config, "model.cond_dim"))
    model = ModelConfig(d_model=d, n_layers=int(_get(config, "model.n_blocks")), n_heads=heads, max_len=length,
                        mlp_ratio=4.0, dropout=0.0, time_conditioning=True, cond_dim=cond,
                        norm="layernorm", bias=True, rope_base=10_000.0, gelu_approximate="tanh", head_bias=True)
    diffusion = DiffusionConfig(graph=_GRAPHS[graph], schedule=_SCHEDULES[noise], parameterization="score",
                                sedd_absorb_scale=scale, **options)
    return model, diffusion, int(_get(config, "tokens")), length


def convert_sedd(src, out, tokenizer=None) -> Path:
    """Write a discdiff pretrained/ directory at ``out`` from the SEDD checkpoint directory ``src``.

    ``tokenizer``: a directory holding GPT-2's vocab.json + merges.txt (or encoder.json + vocab.bpe); None:
    looked for in ``src``. Without one the converted model has no tokenizer (docs/convert.md says how to add it).
    A tensor missing, unexpected or of the wrong shape is a ValueError naming the first such key.
    Returns ``out``.
    """
    return convert_ddit(src, out, tokenizer, sedd_configs)
