"""Training configuration: nested dataclasses, YAML presets, dotted overrides.

    cfg = load_config("configs/shakespeare-char-masked.yaml", overrides=["model.n_layers=4", "steps=200"])
    cfg.model.n_layers  # 4

A YAML file holds any subset of the fields below, in the same nesting; everything else keeps its default.
An unknown key (in a file or an override) is a ValueError that names the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

__all__ = [
    "DataConfig",
    "DiffusionConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "valid_keys",
]


@dataclass
class ModelConfig:
    """The backbone: discdiff.nn.TransformerConfig minus what the data and the diffusion decide
    (num_states, output_size, causal, sedd_absorb_scale are filled in by the trainer)."""

    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    # None: the data context length (the model never sees longer sequences in training).
    max_len: int | None = None
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    # adaLN-zero conditioning on sigma_bar: needed by score models (SEDD); masked models are time-free.
    time_conditioning: bool = False
    cond_dim: int = 128
    tie_weights: bool = False
    norm: str = "layernorm"
    bias: bool = False
    rope_base: float = 10_000.0


@dataclass
class DiffusionConfig:
    """What is trained: a diffusion model (graph x schedule x parameterization x objective) or the AR baseline."""

    # "diffusion" or "ar" (the causal baseline, trained and evaluated by exact next-token NLL).
    kind: str = "diffusion"
    # "absorbing" (MASK is appended as id vocab_size) or "uniform".
    graph: str = "absorbing"
    # "loglinear", "geometric", "linear" or "cosine".
    schedule: str = "loglinear"
    # LogLinear's eps: sigma_bar(1) = -log(eps) keeps the absorbing endpoint finite.
    eps: float = 1e-3
    # Geometric's end points.
    sigma_min: float = 1e-4
    sigma_max: float = 20.0
    # "score" (network outputs log concrete scores, SEDD) or "denoiser" (clean-token logits, RADD/MDLM).
    parameterization: str = "denoiser"
    # None: score_entropy for "score", t_dce for "denoiser"; also "lambda_dce", "k_dce", "l2".
    objective: str | None = None
    t_min: float = 1e-5
    # SEDD's output sigma-scaling in the network head (absorbing graph, score parameterization).
    sedd_absorb_scale: bool = False


@dataclass
class DataConfig:
    """Where tokens come from (see discdiff/training/data.py for the accepted forms)."""

    # A prepared corpus directory (data/shakespeare), a token-file header (.json), a .npy of ids, a raw
    # .bin of ids (dtype below), or "synthetic" (a random Markov chain, for tests and smoke runs).
    train: str = "synthetic"
    # Same forms; None: the prepared corpus's "validation" split, or fresh synthetic data, or no validation.
    valid: str | None = None
    context: int = 256
    # Required for .npy / .bin / synthetic data (a prepared corpus records its own).
    vocab_size: int | None = None
    dtype: str = "uint16"
    synthetic_tokens: int = 200_000


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    # Linear warm-up from 0, then cosine decay to min_lr_ratio * lr at the last step.
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    # Clip the global gradient norm (0 disables).
    grad_clip: float = 1.0
    # EMA of the weights used for evaluation and save_pretrained (0 disables).
    ema_decay: float = 0.9999


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000
    # Global batch (sequences per optimizer step, summed over ranks and accumulation).
    batch_size: int = 32
    # Sequences per forward/backward. None: batch_size / world_size (no accumulation). Randomness is keyed
    # by global micro-batch index, so a fixed micro_batch_size gives the same run for any world size.
    micro_batch_size: int | None = None
    seed: int = 0
    out_dir: str = "runs/default"
    # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    # "auto": bf16 autocast on GPU, fp32 on CPU. Or "fp32", "bf16".
    precision: str = "auto"
    compile: bool = False
    # CPU threads per process (torch.set_num_threads); None leaves torch's default.
    threads: int | None = None
    # Multi-process strategy under torchrun: "ddp" or "fsdp" (FSDP2 fully_shard).
    parallel: str = "ddp"
    log_every: int = 10
    eval_every: int = 200
    # Validation micro-batches per evaluation (0 in eval_every disables periodic validation).
    eval_batches: int = 4
    save_every: int = 500
    keep_checkpoints: int = 2
    # Consecutive non-finite steps (skipped, never applied) before training stops.
    max_bad_steps: int = 5
    progress: bool = True


# ------------------------------------------------------------------ dict <-> dataclass


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def valid_keys(cls=TrainConfig, prefix: str = "") -> list[str]:
    """Every dotted key of a config class, e.g. ['model.d_model', ..., 'steps', ...]."""
    keys = []
    for f in fields(cls):
        sub = _dataclass_type(cls, f.name)
        keys += valid_keys(sub, f"{prefix}{f.name}.") if sub else [prefix + f.name]
    return keys


def _unknown_key(key: str, cls) -> ValueError:
    close = difflib.get_close_matches(key, valid_keys(cls), n=1, cutoff=0.5)
    if not close:  # try the last component alone ("n_layer" -> "model.n_layers")
        tails = {k.rsplit(".", 1)[-1]: k for k in valid_keys(cls)}
        last = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(tails), n=1, cutoff=0.6)
        close = [tails[last[0]]] if last else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown config key {key!r}{hint}")


def _dataclass_type(cls, name: str):
    hint = typing.get_type_hints(cls)[name]
    return hint if is_dataclass(hint) else None


def _coerce(value, hint, key: str):
    """Check (and minimally convert) a YAML value against a field's type annotation."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(hint)):
            raise ValueError(f"{key} must be a list of {len(typing.get_args(hint))} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, typing.get_args(hint), strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ValueError(f"{key} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def config_from_dict(d: dict, cls=TrainConfig, prefix: str = ""):
    """Build a config from a (partial) nested dict; unknown keys are a ValueError naming the closest key."""
    if not isinstance(d, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {d!r}")
    names = {f.name for f in fields(cls)}
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for key, value in d.items():
        if key not in names:
            raise _unknown_key(prefix + key, TrainConfig if prefix else cls)
        sub = _dataclass_type(cls, key)
        if sub:
            kwargs[key] = config_from_dict(value or {}, sub, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply 'a.b=value' strings to a nested dict (values parsed as YAML: 4, true, null, [0.9, 0.95])."""
    import yaml

    d = _deepcopy(d)
    allowed = set(valid_keys())
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. model.n_layers=4)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in allowed:
            raise _unknown_key(key, TrainConfig)
        node = d
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(raw) if raw.strip() else ""
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A preset YAML (or the defaults when path is None) with dotted overrides applied."""
    import yaml

    d = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return config_from_dict(apply_overrides(d, overrides or []))


def _deepcopy(d):
    return {k: _deepcopy(v) for k, v in d.items()} if isinstance(d, dict) else d
