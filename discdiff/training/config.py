"""Training configuration: nested dataclasses, YAML presets, dotted overrides.

    cfg = load_config("configs/shakespeare-char-masked.yaml", overrides=["model.n_layers=4", "steps=200"])
    cfg.model.n_layers  # 4

A YAML file holds any subset of the fields below, in the same nesting; everything else keeps its default.
An unknown key (in a file or an override) is a ValueError that names the closest valid key; every value is
type- and range-checked here, where it is parsed ("optim.lr must be > 0, got -1"), and invalid YAML names
its file and line. The `model:` section is discdiff.nn.ModelConfig (its fields are documented there).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

from discdiff.nn.config import ModelConfig

from . import choices
from .yaml_values import coerce

__all__ = ["DTYPES", "DataConfig", "DiffusionConfig", "ModelConfig", "OptimConfig", "TrainConfig", "apply_overrides",
           "config_from_dict", "config_to_dict", "load_config", "upgrade_saved_diffusion", "valid_keys"]


#: raw token-file dtypes data.dtype may name
DTYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64")


@dataclass
class DiffusionConfig:
    """What is trained: a diffusion model (graph x schedule x parameterization x objective) or the AR baseline.

    The graph- and schedule-specific keys are None unless set; a key that the chosen graph or schedule does
    not take is refused (see discdiff/training/choices.py for the table of what each takes).
    """

    # "diffusion" or "ar" (the causal baseline, trained and evaluated by exact next-token NLL; it takes none
    # of the keys below).
    kind: str = "diffusion"
    # "absorbing" (MASK is appended as id vocab_size), "uniform", "ordinal" (neighbour jumps between ordered
    # values), "dense" (rate_matrix below) or "similarity" (similarity + temperature below).
    graph: str = "absorbing"
    # graph: dense. A V x V rate matrix file (.npy, .csv, .safetensors): off-diagonal >= 0, columns sum to 0.
    rate_matrix: str | None = None
    # graph: similarity. A V x V similarity matrix file; rates proportional to it, mean exit rate 1.
    similarity: str | None = None
    # graph: similarity. Rates from exp(W / temperature), for log-odds scores (BLOSUM); None: W itself.
    temperature: float | None = None
    # "loglinear", "geometric", "linear" or "cosine".
    schedule: str = "loglinear"
    # loglinear / cosine: sigma_bar(1) = -log(eps) keeps the absorbing endpoint finite. None: 1e-3.
    eps: float | None = None
    # geometric (None: 1e-4 and 20, SEDD's) and linear (None: 0 and 10): sigma_bar at t = 0 and t = 1.
    sigma_min: float | None = None
    sigma_max: float | None = None
    # "score" (network outputs log concrete scores, SEDD) or "denoiser" (clean-token logits, RADD/MDLM).
    parameterization: str = "denoiser"
    # None: score_entropy for "score", t_dce for "denoiser"; also "l2", and "lambda_dce", "k_dce" (these and
    # t_dce mask tokens, so they need graph: absorbing).
    objective: str | None = None
    # Lower end of the time integral (weights such as 1/t stay finite); in (0, 1).
    t_min: float = 1e-5
    # SEDD's output sigma-scaling in the network head (graph: absorbing with parameterization: score).
    sedd_absorb_scale: bool = False

    def __post_init__(self) -> None:
        _one_of("kind", self.kind, ("diffusion", "ar"))
        _check(0 < self.t_min < 1, "t_min", "in (0, 1)", self.t_min)
        if self.kind == "ar":
            return self._check_ar()
        _one_of("graph", self.graph, choices.GRAPHS)
        _one_of("schedule", self.schedule, choices.SCHEDULES)
        _one_of("parameterization", self.parameterization, choices.PARAMETERIZATIONS)
        if self.objective is not None:
            _one_of("objective", self.objective, choices.OBJECTIVES)
        graph, schedule = choices.GRAPHS[self.graph], choices.SCHEDULES[self.schedule]
        for key in OPTION_KEYS:
            if getattr(self, key) is not None and key not in graph.options + schedule.options:
                owner, name, takes = ("graph", self.graph, graph) if key in GRAPH_KEYS else \
                    ("schedule", self.schedule, schedule)
                raise ValueError(f"{key} does not apply to {owner} {name!r} (it takes: "
                                 f"{', '.join(takes.options) or 'no options'})")
        for key in graph.required:
            if getattr(self, key) is None:
                raise ValueError(f"{key} is required by graph {self.graph!r} (a V x V matrix file: "
                                 f"{', '.join(choices.MATRIX_SUFFIXES)})")
        if self.temperature is not None:
            _check(0 < self.temperature < math.inf, "temperature", "> 0", self.temperature)
        try:
            schedule.build(**self.options(schedule))
        except ValueError as e:
            raise ValueError(f"schedule {self.schedule!r}: {e}") from None
        self._check_objective()

    def options(self, choice: choices.Choice) -> dict:
        """The keys a graph or schedule takes that are set here (unset ones keep the class's defaults)."""
        return {k: getattr(self, k) for k in choice.options if getattr(self, k) is not None}

    def _check_objective(self) -> None:
        objective = self.objective or choices.DEFAULT_OBJECTIVE[self.parameterization]
        if objective in choices.MASK_OBJECTIVES and self.graph not in choices.MASK_GRAPHS:
            what = "" if self.objective else f" (the default for parameterization {self.parameterization!r})"
            raise ValueError(f"objective {objective!r}{what} masks tokens and needs graph 'absorbing'; "
                             f"with graph {self.graph!r} use score_entropy or l2")
        if self.sedd_absorb_scale and (self.graph != "absorbing" or self.parameterization != "score"):
            raise ValueError("sedd_absorb_scale applies to graph 'absorbing' with parameterization 'score'")

    def _check_ar(self) -> None:
        default = DiffusionConfig.__dataclass_fields__
        for key in ("graph", "schedule", "parameterization", "objective", "sedd_absorb_scale", *OPTION_KEYS):
            if getattr(self, key) != default[key].default:
                raise ValueError(f"{key} does not apply to kind 'ar' (the exact next-token likelihood)")


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
    # Integer dtype of a raw .bin token file: one of DTYPES.
    dtype: str = "uint16"
    synthetic_tokens: int = 200_000
    # How a record corpus (proteins, DNA, FASTA) is laid out: "eos" (LLaDA: [BOS] body EOS ... EOS, the EOS
    # padding trained like any token, so the model learns where a record ends) or "pad" (PAD padding, never
    # trained). Running text keeps packing; pixels have no EOS and keep their fixed size.
    records: str = "eos"
    # A record longer than the context: "crop" (a random window), "drop" (left out) or "error".
    long_records: str = "crop"

    def __post_init__(self) -> None:
        _check(bool(self.train), "train", "a path or 'synthetic'", self.train)
        _check(self.valid is None or bool(self.valid), "valid", "a path or null", self.valid)
        _at_least("context", self.context, 1)
        if self.vocab_size is not None:
            _at_least("vocab_size", self.vocab_size, 2)  # one token has nothing to model
        _one_of("dtype", self.dtype, DTYPES)
        _at_least("synthetic_tokens", self.synthetic_tokens, 2)
        _one_of("records", self.records, ("eos", "pad"))
        _one_of("long_records", self.long_records, ("crop", "drop", "error"))


@dataclass
class OptimConfig:
    """AdamW with warm-up and cosine decay."""

    lr: float = 3e-4
    # Adam's moment decays, each in [0, 1).
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    # Linear warm-up from 0 (0: none), then cosine decay to min_lr_ratio * lr at the last step.
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    # Clip the global gradient norm (0 disables).
    grad_clip: float = 1.0
    # EMA of the weights used for evaluation and save_pretrained (0 disables).
    ema_decay: float = 0.9999

    def __post_init__(self) -> None:
        _check(self.lr > 0, "lr", "> 0", self.lr)
        for beta in self.betas:
            _check(0 <= beta < 1, "betas", "two numbers in [0, 1)", list(self.betas))
        _check(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        _check(self.eps > 0, "eps", "> 0", self.eps)
        _at_least("warmup_steps", self.warmup_steps, 0)
        _check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]", self.min_lr_ratio)
        _check(self.grad_clip >= 0, "grad_clip", ">= 0 (0 disables clipping)", self.grad_clip)
        _check(0 <= self.ema_decay < 1, "ema_decay", "in [0, 1) (0 disables the EMA)", self.ema_decay)


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
    # "auto" (cuda if available), "cpu", "cuda", "cuda:1", "mps".
    device: str = "auto"
    # "auto": bf16 autocast on GPU, fp32 on CPU. Or "fp32", "bf16".
    precision: str = "auto"
    compile: bool = False
    # CPU threads per process (torch.set_num_threads), >= 1; None leaves torch's default.
    threads: int | None = None
    # Multi-process strategy under torchrun: "ddp" or "fsdp" (FSDP2 fully_shard).
    parallel: str = "ddp"
    # Log the mean training loss every log_every steps (and at the last step).
    log_every: int = 10
    # Validate every eval_every steps; 0: only once, at the end (validation always runs at the end).
    eval_every: int = 200
    # Validation micro-batches per evaluation.
    eval_batches: int = 4
    # Checkpoint every save_every steps; 0: only the final checkpoint (one is always written at the end).
    save_every: int = 500
    keep_checkpoints: int = 2
    # Consecutive non-finite steps (skipped, never applied) before training stops.
    max_bad_steps: int = 5
    progress: bool = True
    # Conditional models: drop the condition (a class label becomes the null label model.num_classes; a pair's
    # prompt is shown as MASK) with this probability, so one network also learns the unconditional p(x).
    condition_dropout: float = 0.0
    # Start a NEW run (step 0, fresh optimizer) from the weights of this model (a run, pretrained/ or
    # checkpoint directory), e.g. supervised fine-tuning of a pretrained model; architectures must match.
    init_from: str | None = None

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "log_every", "eval_batches", "keep_checkpoints", "max_bad_steps"):
            _at_least(key, getattr(self, key), 1)
        for key in ("eval_every", "save_every"):
            _at_least(key, getattr(self, key), 0)
        if self.micro_batch_size is not None:
            _at_least("micro_batch_size", self.micro_batch_size, 1)
            if self.batch_size % self.micro_batch_size:
                raise ValueError(f"batch_size={self.batch_size} must be a multiple of "
                                 f"micro_batch_size={self.micro_batch_size}")
        if self.threads is not None:
            _at_least("threads", self.threads, 1)
        _check(bool(self.out_dir), "out_dir", "a directory path", self.out_dir)
        _check(re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None, "device",
               "auto, cpu, cuda, cuda:N or mps", self.device)
        _one_of("precision", self.precision, ("auto", "fp32", "bf16"))
        _one_of("parallel", self.parallel, ("ddp", "fsdp"))
        _check(0 <= self.condition_dropout < 1, "condition_dropout", "in [0, 1)", self.condition_dropout)
        if self.model.block_size is not None:
            self._check_blocks(self.model.block_size)

    def _check_blocks(self, b: int) -> None:
        """model.block_size trains a block diffusion model (discdiff.BlockDiffusion): masked diffusion inside blocks."""
        d = self.diffusion
        if self.data.context % b:
            raise ValueError(f"model.block_size={b} must divide data.context={self.data.context} (blocks tile it)")
        if d.kind == "ar":
            raise ValueError("model.block_size does not apply to diffusion.kind 'ar' (block_size=1 is the AR limit)")
        objective = d.objective or choices.DEFAULT_OBJECTIVE[d.parameterization]
        if d.graph != "absorbing" or d.parameterization != "denoiser" or objective not in choices.MASK_OBJECTIVES:
            raise ValueError("model.block_size needs graph 'absorbing', parameterization 'denoiser' and objective "
                             f"t_dce, lambda_dce or k_dce; got {d.graph!r}, {d.parameterization!r}, {objective!r}")


def upgrade_saved_diffusion(d: dict) -> dict:
    """A diffusion section saved before options were per schedule (pretrained format 1, old checkpoints):
    those always held eps, sigma_min and sigma_max; drop the ones its schedule (or kind 'ar') does not take."""
    schedule = choices.SCHEDULES.get(d.get("schedule", "loglinear"))
    takes = schedule.options if schedule is not None and d.get("kind", "diffusion") != "ar" else ()
    return {k: v for k, v in d.items() if k not in ("eps", "sigma_min", "sigma_max") or k in takes}


# ------------------------------------------------------------------ range checks
# Messages start with the key; config_from_dict prefixes the section ("optim.lr must be > 0, got -1").

OPTION_KEYS = ("rate_matrix", "similarity", "temperature", "eps", "sigma_min", "sigma_max")
GRAPH_KEYS = {k for c in choices.GRAPHS.values() for k in c.options}


def _check(ok: bool, key: str, rule: str, value) -> None:
    if not ok:  # written so that NaN fails every rule
        raise ValueError(f"{key} must be {rule}, got {value!r}")


def _at_least(key: str, value: int, low: int) -> None:
    _check(value >= low, key, f">= {low}", value)


def _one_of(key: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}; got {value!r}")


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
            kwargs[key] = coerce(value, hints[key], prefix + key)
    try:
        return cls(**kwargs)
    except ValueError as e:  # a range check: its message starts with the key, here given its section
        raise ValueError(f"{prefix}{e}") from None


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
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ValueError(f"{p} must be a mapping, got {node[p]!r}")
            node = node[p]
        try:
            node[last] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ValueError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(e)})") from None
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A preset YAML (or the defaults when path is None) with dotted overrides applied."""
    import yaml

    d = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ValueError(f"{where}: invalid YAML: {_yaml_problem(e)}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a UTF-8 text file") from None
        if not isinstance(d, dict):
            raise ValueError(f"{path}: a config file must be a mapping of keys (model:, diffusion:, ...), "
                             f"got {type(d).__name__}")
    return config_from_dict(apply_overrides(d, overrides or []))


def _yaml_problem(e) -> str:
    """yaml's own one-line reason ("could not find expected ':'"), without its multi-line context."""
    return " ".join(str(getattr(e, "problem", None) or e).split())


def _deepcopy(d):
    return {k: _deepcopy(v) for k, v in d.items()} if isinstance(d, dict) else d
