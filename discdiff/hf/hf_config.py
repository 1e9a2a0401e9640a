"""The ``transformers`` config class of a discdiff ``pretrained/`` directory (``model_type: "discdiff"``).

config.json as ``discdiff.training.save_pretrained`` writes it is already this config's JSON: the discdiff
keys (format, version, vocab_size, context, model, diffusion, conditioning, records) are its fields, and
``model_type`` / ``architectures`` tell ``transformers.AutoConfig`` / ``AutoModel`` which classes to build.

This module imports transformers (its light configuration layer only): it is imported on demand, never by
``import discdiff`` (see discdiff/hf/hook.py for when the classes are registered).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict

# the defining modules, not the lazy `transformers` namespace: this runs from inside an import hook
from transformers.configuration_utils import PretrainedConfig
from transformers.models.auto.configuration_auto import AutoConfig

__all__ = ["MODEL_TYPE", "DiscdiffConfig", "register_config"]

MODEL_TYPE = "discdiff"


@strict(accept_kwargs=True)
class DiscdiffConfig(PretrainedConfig):
    """A discdiff model's config.json, readable by ``transformers.AutoConfig``.

    ``vocab_size`` is the number of clean tokens V; the network reads V + 1 states on the absorbing graph
    (MASK = V, ``mask_token_id``). ``model`` and ``diffusion`` are the sections of discdiff's training config
    (``discdiff.training.ModelConfig`` / ``DiffusionConfig`` as dicts).
    """

    model_type = MODEL_TYPE

    format: str = "discdiff-pretrained"
    version: int = 1
    vocab_size: int | None = None
    context: int | None = None
    model: dict | None = None
    diffusion: dict | None = None
    conditioning: dict | None = None
    records: dict | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if self.model is not None:  # the head shares the token embedding exactly when discdiff tied them
            self.tie_word_embeddings = bool(self.model.get("tie_weights", False))
        super().__post_init__(**kwargs)

    @property
    def mask_token_id(self) -> int | None:
        """MASK's id (the last state, V) on the absorbing graph; None on graphs without a mask state."""
        graph = (self.diffusion or {}).get("graph", "absorbing")
        is_diffusion = (self.diffusion or {}).get("kind", "diffusion") == "diffusion"
        return self.vocab_size if graph == "absorbing" and is_diffusion else None

    def discdiff_dict(self) -> dict:
        """The config in discdiff's own form (what discdiff.training.from_pretrained reads)."""
        out = {"format": self.format, "version": self.version, "vocab_size": self.vocab_size,
               "context": self.context, "model": self.model, "diffusion": self.diffusion}
        out.update({k: v for k, v in (("conditioning", self.conditioning), ("records", self.records)) if v})
        return out


def register_config() -> None:
    """``AutoConfig`` knows ``model_type: "discdiff"`` (idempotent)."""
    AutoConfig.register(MODEL_TYPE, DiscdiffConfig, exist_ok=True)
