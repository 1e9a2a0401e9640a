"""What a model path names, verified: a pretrained/ directory, a run directory, or one training checkpoint.

    source = model_source("runs/x")                          # RUN/pretrained, else the newest verified checkpoint
    source = model_source("runs/x/checkpoints/step_00000100")  # its EMA weights when present, else the raw ones
    source = model_source("runs/x/pretrained")

from_pretrained (training/recipe.py) builds the model from a ModelSource, and load_model_weights fills it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from .artifacts import CheckpointError, load_weights, read_manifest, require_finite, verify_manifest
from .checkpoint import STEP_DIR, step_dirs, verify_checkpoint

__all__ = ["ModelSource", "load_model_weights", "model_source"]

PRETRAINED_FORMAT = "discdiff-pretrained"


class ModelSource(NamedTuple):
    path: Path  # the directory the weights come from
    config: dict  # in config.json's form: vocab_size, context, model, diffusion
    config_file: Path  # config.json or state.json, for error messages
    weights: Path  # model.safetensors
    ema: Path | None  # ema.safetensors of a training checkpoint (its parameters replace the raw ones)
    tokenizer: Path | None
    files: dict  # the manifest's entries: what is loaded is checked against them
    skipped: list[str]  # damaged checkpoints passed over on the way (a run directory without pretrained/)


def model_source(path) -> ModelSource:
    """Resolve and verify a pretrained, run or checkpoint directory (CheckpointError naming the bad file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such directory (no config.json, pretrained/, checkpoints/ or "
                                "state.json to load a model from)")
    if (path / "config.json").is_file():
        return _pretrained(path)
    if (path / "state.json").is_file() or STEP_DIR.fullmatch(path.name):
        return _checkpoint(path)
    if (path / "pretrained").is_dir():
        return _pretrained(path / "pretrained")
    if (path / "checkpoints").is_dir():
        skipped = []
        for _, checkpoint in step_dirs(path):
            try:
                source = _checkpoint(checkpoint, skipped)
            except CheckpointError as e:
                skipped.append(f"checkpoint {checkpoint.name} is damaged and was skipped: {e}")
                continue
            note = f"{path} has no pretrained/: using {checkpoint.name}, its newest checkpoint that verifies"
            return source._replace(skipped=[*source.skipped, note])
        raise CheckpointError(f"{path}: no checkpoint verifies" + (f" ({skipped[0]})" if skipped else ""))
    raise ValueError(f"{path}: not a model: no config.json (a pretrained directory), pretrained/ or checkpoints/ "
                     "(a run directory) or state.json (a checkpoint directory) in it")


def _tokenizer(directory: Path, files: dict) -> Path | None:
    return directory / "tokenizer" if any(name.startswith("tokenizer/") for name in files) else None


def _pretrained(directory: Path) -> ModelSource:
    files = verify_manifest(directory, ("config.json", "model.safetensors"))["files"]
    config_file = directory / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{config_file}: not valid JSON") from None
    if not isinstance(config, dict) or config.get("format") != PRETRAINED_FORMAT:
        raise CheckpointError(f"{config_file}: not a {PRETRAINED_FORMAT} config")
    for key in ("vocab_size", "context"):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointError(f"{config_file}: {key} must be a positive integer, got {value!r}")
    return ModelSource(directory, config, config_file, directory / "model.safetensors", None,
                       _tokenizer(directory, files), files, [])


def _checkpoint(directory: Path, skipped: list[str] | None = None) -> ModelSource:
    state = verify_checkpoint(directory)
    files = read_manifest(directory)["files"]
    cfg = state["config"]
    config = {"format": PRETRAINED_FORMAT, "version": 1, "vocab_size": state["vocab_size"],
              "context": cfg["data"]["context"], "model": cfg["model"], "diffusion": cfg["diffusion"]}
    if state.get("conditioning") is not None:  # a conditional model's labels and condition dropout
        config["conditioning"] = state["conditioning"]
    ema = directory / "ema.safetensors" if "ema.safetensors" in files else None
    return ModelSource(directory, config, directory / "state.json", directory / "model.safetensors", ema,
                       _tokenizer(directory, files), files, list(skipped or []))


def load_model_weights(model: nn.Module, source: ModelSource) -> None:
    """Load a source's weights into a freshly built model: finite, every key matching; EMA on top when given."""
    state = load_weights(source.weights, source.files[source.weights.name])
    require_finite(state, source.weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"{source.weights}: weights do not fit the model its config describes "
                              f"({' '.join(first[1:2]) or first[0]})") from None
    if source.ema is None:
        return
    ema = load_weights(source.ema, source.files[source.ema.name])
    require_finite(ema, source.ema)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied weights once, as the EMA stores them
            if name not in ema or ema[name].shape != p.shape:
                raise CheckpointError(f"{source.ema}: no EMA tensor {name!r} of shape {tuple(p.shape)}")
            p.copy_(ema[name])
