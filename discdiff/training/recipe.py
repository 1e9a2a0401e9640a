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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

import discdiff as dd
from discdiff.nn import DiffusionTransformer, TransformerConfig

from . import choices
from .artifacts import MANIFEST, CheckpointError, ManifestWriter, require_finite, safetensors_bytes
from .checkpoint import copy_tree_into
from .config import DiffusionConfig, ModelConfig, config_from_dict
from .sources import load_model_weights, model_source

__all__ = ["Pretrained", "build_diffusion", "build_graph", "build_model", "from_pretrained", "make_objective",
           "save_pretrained"]


def transformer_config(model: ModelConfig, diffusion: DiffusionConfig, vocab_size: int, context: int):
    """The backbone's full config: the model section plus what the data and the diffusion decide
    (states, causality, SEDD's head; max_len defaults to the data context)."""
    if diffusion.kind == "ar":
        num_states, causal = dd.Autoregressive(vocab_size).num_states, True  # BOS = id vocab_size
    else:
        num_states, causal = vocab_size + choices.GRAPHS[diffusion.graph].extra_states, False
    return TransformerConfig(
        **{**asdict(model), "max_len": model.max_len or context},
        num_states=num_states,
        causal=causal,
        sedd_absorb_scale=diffusion.sedd_absorb_scale,
    )


def build_model(model: ModelConfig, diffusion: DiffusionConfig, vocab_size: int, context: int):
    return DiffusionTransformer(transformer_config(model, diffusion, vocab_size, context))


def build_graph(c: DiffusionConfig, vocab_size: int, root: str | Path | None = None) -> dd.Graph:
    """The graph a config names (see choices.GRAPHS); matrix files are read relative to ``root``."""
    choice = choices.GRAPHS[c.graph]
    options = c.options(choice)
    for key in choices.PATH_KEYS:
        if key in options and root is not None:
            options[key] = str(Path(root) / options[key])
    return choice.build(vocab_size, **options)


def build_diffusion(c: DiffusionConfig, vocab_size: int, root: str | Path | None = None,
                    block_size: int | None = None) -> dd.Diffusion | dd.Autoregressive:
    """The Diffusion a config describes, or the Autoregressive baseline for kind 'ar'.

    ``root``: the directory relative matrix paths (diffusion.rate_matrix, diffusion.similarity) are read
    from; None: the working directory. ``block_size`` (model.block_size): a ``dd.BlockDiffusion``. The config
    itself was checked where it was parsed.
    """
    if c.kind == "ar":
        return dd.Autoregressive(vocab_size)
    schedule = choices.SCHEDULES[c.schedule]
    if block_size is not None:
        return dd.BlockDiffusion(build_graph(c, vocab_size, root), schedule.build(**c.options(schedule)), block_size,
                                 c.parameterization, t_min=c.t_min)
    return dd.Diffusion(build_graph(c, vocab_size, root), schedule.build(**c.options(schedule)),
                        c.parameterization, t_min=c.t_min)


def make_objective(c: DiffusionConfig, diff: dd.Diffusion | dd.Autoregressive, vocab_size: int | None = None):
    """objective(model, x0, mask, t, generator) -> per-sequence loss [B] in nats (an NLL bound, or exact for AR).
    (``vocab_size`` is unused: ``diff`` knows it.)

    ``loss_mask`` (prompt-response pairs: the response and its padding) and ``label`` (class labels) go
    to ``loss`` as they are; the attention mask stays ``mask``.
    `t` is this micro-batch's slice of one stratified draw over the global batch (see draw_times; the AR
    loss draws nothing). Padding adds nothing to the loss; ``loss(..., padding_mask=)`` hands the mask to a
    backbone that takes one (discdiff.model_call's single padding rule), so no real position attends to a pad
    token, and an all-real batch keeps the fast unmasked attention path.
    """
    objective = c.objective or diff.default_objective

    def objective_fn(model, x0, mask, t, generator, *, loss_mask=None, label=None):
        padded = not bool(mask.all())
        kwargs = {} if loss_mask is None and label is None else {"loss_mask": loss_mask, "label": label}
        return diff.loss(model, x0, objective, t=t, generator=generator, padding_mask=mask if padded else None,
                         **kwargs)

    return objective_fn


def draw_times(c: DiffusionConfig, diff: dd.Diffusion | dd.Autoregressive, n: int, generator: torch.Generator):
    """One stratified draw of n times for the global batch: ``Diffusion.draw_times`` (zeros for AR)."""
    if isinstance(diff, dd.Autoregressive):
        return torch.zeros(n)
    return diff.draw_times(n, c.objective, generator=generator).to(torch.get_default_dtype())


# ------------------------------------------------------------------ pretrained directories


@dataclass
class Pretrained:
    model: nn.Module
    diffusion: dd.Diffusion | dd.Autoregressive
    tokenizer: object | None
    config: dict
    source: Path | None = None  # the directory the weights were loaded from

    @property
    def is_ar(self) -> bool:
        return isinstance(self.diffusion, dd.Autoregressive)

    @property
    def vocab_size(self) -> int:
        return self.config["vocab_size"]


def save_pretrained(directory, model: nn.Module, *, model_cfg: ModelConfig, diffusion_cfg: DiffusionConfig,
                    vocab_size: int, context: int, weights: dict | None = None, tokenizer_dir=None,
                    conditioning: dict | None = None, records: dict | None = None) -> Path:
    """config.json + model.safetensors (+ tokenizer/) + manifest.json: a directory from_pretrained rebuilds exactly.

    ``records``: the training data's record layout (``discdiff.data.RecordDataset.record_layout``: EOS
    padding, BOS, the body-length histogram), kept in config.json for sampling; None for running text.

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
    writer = ManifestWriter(directory)
    diffusion = dict(vars(diffusion_cfg))
    for key in choices.PATH_KEYS:  # a rate matrix named by file travels with the model, by a relative name
        if diffusion.get(key) is not None:
            source = Path(diffusion[key])
            diffusion[key] = f"{key}{source.suffix}"
            writer.write(diffusion[key], source.read_bytes())
    config = {"format": "discdiff-pretrained", "version": 1, "vocab_size": vocab_size, "context": context,
              "model": vars(model_cfg), "diffusion": diffusion,
              # transformers' AutoConfig / AutoModel read these two (discdiff.hf registers the classes)
              "model_type": "discdiff", "architectures": ["DiscdiffModel"]}
    if conditioning is not None:  # labels, their names, condition dropout: what sampling checks against
        config["conditioning"] = conditioning
    if records is not None:
        config["records"] = records
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
        root = source.path if source.config_file.name == "config.json" else None  # save_pretrained copies
        diffusion = build_diffusion(diffusion_cfg, config["vocab_size"], root=root,  # matrix files beside it
                                    block_size=model_cfg.block_size)
    except (ValueError, KeyError, OSError) as e:
        raise CheckpointError(f"{source.config_file}: {e}") from None
    load_model_weights(model, source)
    model.to(device).eval()
    tokenizer = None
    if source.tokenizer is not None:
        from discdiff.data import load_tokenizer

        tokenizer = load_tokenizer(source.tokenizer)
    return Pretrained(model, diffusion, tokenizer, config, source.path)
