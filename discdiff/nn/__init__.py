"""Neural backbones: the DiffusionTransformer (time-conditioned or time-free, bidirectional or causal)."""

from .ar import ARWrapper
from .config import ModelConfig, TransformerConfig
from .transformer import DiffusionTransformer, sedd_absorb_scale

__all__ = ["ARWrapper", "DiffusionTransformer", "ModelConfig", "TransformerConfig", "sedd_absorb_scale"]
