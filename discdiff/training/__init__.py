"""Training: config presets and overrides, a resumable (DDP / FSDP2) trainer, checkpoints, pretrained dirs.

    from discdiff.training import Trainer, load_config, from_pretrained
    Trainer(load_config("configs/shakespeare-char-masked.yaml", ["steps=200"])).fit()
    pre = from_pretrained("runs/shakespeare-char-masked/pretrained")
"""

from .config import (
    DataConfig,
    DiffusionConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    valid_keys,
)
from .recipe import Pretrained, build_diffusion, build_model, from_pretrained, save_pretrained
from .trainer import Trainer, TrainingDiverged, lr_at

__all__ = [
    "DataConfig",
    "DiffusionConfig",
    "ModelConfig",
    "OptimConfig",
    "Pretrained",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "apply_overrides",
    "build_diffusion",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "from_pretrained",
    "load_config",
    "lr_at",
    "save_pretrained",
    "valid_keys",
]
