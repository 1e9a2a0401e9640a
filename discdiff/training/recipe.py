"""From a config to the objects that train: backbone, Diffusion, the per-sequence objective; and the
save_pretrained / from_pretrained format that rebuilds them for sampling and evaluation.

    pre = from_pretrained("runs/shakespeare/pretrained")
    out = pre.diffusion.sample(pre.model, num_samples=4, length=256)
    text = pre.tokenizer.decode(out.samples[0].tolist())
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import discdiff as dd
from discdiff.nn import ARWrapper, DiffusionTransformer, TransformerConfig

from .artifacts import MANIFEST, CheckpointError, ManifestWriter, require_finite, safetensors_bytes
from .checkpoint import copy_tree_into
from .config import DiffusionConfig, ModelConfig, config_from_dict
from .sources import load_model_weights, model_source

__all__ = ["Pretrained", "build_diffusion", "build_model", "from_pretrained", "make_objective", "save_pretrained"]

SCHEDULES = {
    "loglinear": lambda c: dd.LogLinear(eps=c.eps),
    "geometric": lambda c: dd.Geometric(sigma_min=c.sigma_min, sigma_max=c.sigma_max),
    "linear": lambda c: dd.Linear(),
    "cosine": lambda c: dd.Cosine(eps=c.eps),
}
GRAPHS = {"absorbing": dd.Absorbing, "uniform": dd.Uniform}


def transformer_config(model: ModelConfig, diffusion: DiffusionConfig, vocab_size: int, context: int):
    """The backbone's full config: states, output width and causality follow from what is trained."""
    if diffusion.kind == "ar":
        num_states, causal = vocab_size + 1, True  # id vocab_size is BOS (see discdiff.nn.ar)
    elif diffusion.kind == "diffusion":
        num_states, causal = _graph(diffusion, vocab_size).num_states, False
    else:
        raise ValueError(f"diffusion.kind must be 'diffusion' or 'ar', got {diffusion.kind!r}")
    fields = {k: v for k, v in vars(model).items() if k != "max_len"}
    return TransformerConfig(
        num_states=num_states,
        max_len=model.max_len or context,
        causal=causal,
        sedd_absorb_scale=diffusion.sedd_absorb_scale,
        **fields,
    )


def build_model(model: ModelConfig, diffusion: DiffusionConfig, vocab_size: int, context: int):
    return DiffusionTransformer(transformer_config(model, diffusion, vocab_size, context))


def _graph(c: DiffusionConfig, vocab_size: int):
    if c.graph not in GRAPHS:
        raise ValueError(f"diffusion.graph must be one of {sorted(GRAPHS)}, got {c.graph!r}")
    return GRAPHS[c.graph](vocab_size)


def build_diffusion(c: DiffusionConfig, vocab_size: int) -> dd.Diffusion | None:
    """The Diffusion a config describes (None for the AR baseline)."""
    if c.kind == "ar":
        return None
    if c.schedule not in SCHEDULES:
        raise ValueError(f"diffusion.schedule must be one of {sorted(SCHEDULES)}, got {c.schedule!r}")
    if c.sedd_absorb_scale and (c.graph != "absorbing" or c.parameterization != "score"):
        raise ValueError("diffusion.sedd_absorb_scale applies to graph='absorbing' with parameterization='score'")
    diff = dd.Diffusion(_graph(c, vocab_size), SCHEDULES[c.schedule](c), c.parameterization, t_min=c.t_min)
    if c.objective is not None and c.objective not in diff.objectives:
        raise ValueError(f"diffusion.objective must be one of {diff.objectives}, got {c.objective!r}")
    return diff


def make_objective(c: DiffusionConfig, diff: dd.Diffusion | None, vocab_size: int):
    """objective(model, x0, mask, t, generator) -> per-sequence loss [B] in nats (an NLL bound, or exact for AR).

    `t` is this micro-batch's slice of one stratified draw over the global batch (see draw_times).
    Padding adds nothing to the loss, and when a batch has any, the backbone gets `padding_mask` so no
    real position attends to a pad token (an all-real batch keeps the fast unmasked attention path).
    """
    if diff is None:

        def ar_objective(model, x0, mask, t, generator):
            return ARWrapper(model, vocab_size).nll(x0, mask)

        return ar_objective
    objective = c.objective or diff.default_objective

    def diffusion_objective(model, x0, mask, t, generator):
        if not bool(mask.all()):
            backbone = model
            model = lambda x_t, sigma_bar: backbone(x_t, sigma_bar, padding_mask=mask)  # noqa: E731
        return diff.loss(model, x0, objective, t=t, generator=generator, padding_mask=mask)

    return diffusion_objective


def draw_times(c: DiffusionConfig, diff: dd.Diffusion | None, n: int, generator: torch.Generator):
    """One stratified draw of n times in [t_min, 1] (k_dce draws its u in [0, 1]), for the global batch."""
    if diff is None:
        return torch.zeros(n)
    objective = c.objective or diff.default_objective
    low = 0.0 if objective == "k_dce" else diff.t_min
    return dd.stratified_uniform(n, generator, low=low)


# ------------------------------------------------------------------ pretrained directories


@dataclass
class Pretrained:
    model: nn.Module
    diffusion: dd.Diffusion | None  # None for the AR baseline
    tokenizer: object | None
    config: dict
    source: Path | None = None  # the directory the weights were loaded from

    @property
    def is_ar(self) -> bool:
        return self.diffusion is None

    @property
    def vocab_size(self) -> int:
        return self.config["vocab_size"]


def save_pretrained(directory, model: nn.Module, *, model_cfg: ModelConfig, diffusion_cfg: DiffusionConfig,
                    vocab_size: int, context: int, weights: dict | None = None, tokenizer_dir=None) -> Path:
    """config.json + model.safetensors (+ tokenizer/) + manifest.json: a directory from_pretrained rebuilds exactly.

    The manifest goes last (and the old one first), so a save killed half way is refused, never half-loaded.
    Non-finite weights are refused (CheckpointError).
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is not a directory")
    state = weights if weights is not None else model.state_dict()
    require_finite(state, f"refusing to save {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(directory / "tokenizer", ignore_errors=True)
    config = {"format": "discdiff-pretrained", "version": 1, "vocab_size": vocab_size, "context": context,
              "model": vars(model_cfg), "diffusion": vars(diffusion_cfg)}
    writer = ManifestWriter(directory)
    writer.write("model.safetensors", safetensors_bytes(state))
    if tokenizer_dir is not None:
        copy_tree_into(writer, Path(tokenizer_dir), "tokenizer")
    writer.write("config.json", json.dumps(config, indent=1) + "\n")
    writer.finish()
    return directory


def from_pretrained(path, device="cpu") -> Pretrained:
    """Rebuild model, Diffusion and tokenizer from a verified directory (see training/sources.py).

    `path`: a save_pretrained directory; a run directory (its pretrained/, or else its newest checkpoint that
    verifies, with a warning per damaged newer one); or a checkpoint directory checkpoints/step_N (its EMA
    weights when it has them, else the raw weights). Any mismatch with the manifest, a config that does not
    parse, or NaN/inf weights is a CheckpointError (a ValueError) naming the file.
    """
    source = model_source(path)
    for line in source.skipped:
        warnings.warn(line, stacklevel=2)
    config = source.config
    try:
        model_cfg = config_from_dict(config["model"], ModelConfig)
        diffusion_cfg = config_from_dict(config["diffusion"], DiffusionConfig)
        model = build_model(model_cfg, diffusion_cfg, config["vocab_size"], config["context"])
        diffusion = build_diffusion(diffusion_cfg, config["vocab_size"])
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{source.config_file}: {e}") from None
    load_model_weights(model, source)
    model.to(device).eval()
    tokenizer = None
    if source.tokenizer is not None:
        from discdiff.data import load_tokenizer

        tokenizer = load_tokenizer(source.tokenizer)
    return Pretrained(model, diffusion, tokenizer, config, source.path)
