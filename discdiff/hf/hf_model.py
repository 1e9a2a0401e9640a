"""The ``transformers`` model class of a discdiff ``pretrained/`` directory: ``AutoModel.from_pretrained(dir)``.

``DiscdiffModel`` is a ``PreTrainedModel`` holding discdiff's own network (``DiffusionTransformer``) under the
attribute ``net`` (its ``base_model_prefix``), so the keys of model.safetensors (``tok_emb.weight``,
``blocks.0.attn.qkv.weight``, ...) load as they are, with no renaming and no copy: transformers prepends
the base-model prefix to a checkpoint that lacks it. A tied head (``model.tie_weights``), stored once by
discdiff, is declared in ``_tied_weights_keys`` and tied again after loading. Its forward is discdiff's:

    logits = model(x_t, sigma_bar)            # (B, L, S) float32, the network's own output
    logits = model(x_t, sigma_bar, label=y)   # a class-conditional model (model.num_classes)
    logits = model(input_ids=x_t, attention_mask=m)   # the same, in transformers' argument names

so the loaded model is itself a discdiff model (``Diffusion.sample(model, ...)`` accepts it) and
``discdiff.hf.from_transformers`` wraps it like any other masked LM.
"""

from __future__ import annotations

import torch

# the defining modules, not the lazy `transformers` namespace: this runs from inside an import hook
from transformers.modeling_utils import PreTrainedModel
from transformers.models.auto.modeling_auto import AutoModel, AutoModelForMaskedLM

from discdiff.nn.layers import rotary_table

from .hf_config import DiscdiffConfig

__all__ = ["DiscdiffModel", "register_models"]


class DiscdiffModel(PreTrainedModel):
    """discdiff's DiffusionTransformer as a transformers model (see the module docstring)."""

    config_class = DiscdiffConfig
    base_model_prefix = "net"
    main_input_name = "x_t"
    _no_split_modules = ["Block"]

    def __init__(self, config: DiscdiffConfig):
        super().__init__(config)
        self.net = _build_network(config)
        if self.net.config.tie_weights:
            self._tied_weights_keys = {"net.head.weight": "net.tok_emb.weight"}
        self.post_init()

    @property
    def time_free(self) -> bool:
        """Whether the output ignores sigma_bar (discdiff.model_call.is_time_free reads this)."""
        cfg = self.net.config
        return not (cfg.time_conditioning or cfg.sedd_absorb_scale)

    def get_input_embeddings(self):
        return self.net.tok_emb

    def get_output_embeddings(self):
        return self.net.head

    def _init_weights(self, module):
        """Weights come from the checkpoint; only the rotary table (a non-persistent buffer) is rebuilt here.
        A weight the checkpoint lacks keeps discdiff's own init (DiffusionTransformer.reset_parameters)."""
        if module is self.net:
            cfg = module.config
            table = rotary_table(cfg.max_len, cfg.d_model // cfg.n_heads, cfg.rope_base)[:, None]
            with torch.no_grad():
                module.rope.copy_(table.to(module.rope.device, module.rope.dtype))

    def forward(self, x_t=None, sigma_bar=None, label=None, padding_mask=None, *, input_ids=None,
                attention_mask=None, **kwargs):
        """(B, L) ids, (B,) sigma_bar -> (B, L, S_out) float32: exactly ``DiffusionTransformer.forward``."""
        if kwargs:
            raise ValueError(f"DiscdiffModel.forward takes no {sorted(kwargs)} (it is a discdiff denoiser)")
        if (x_t is None) == (input_ids is None):
            raise ValueError("pass the tokens once: x_t (discdiff's name) or input_ids (transformers')")
        x_t = x_t if x_t is not None else input_ids
        if attention_mask is not None:
            if padding_mask is not None:
                raise ValueError("pass padding_mask or attention_mask, not both")
            padding_mask = attention_mask.bool()
        return self.net(x_t, sigma_bar, padding_mask, label)


def _build_network(config: DiscdiffConfig):
    """The DiffusionTransformer that config.json describes, built exactly as discdiff's from_pretrained does."""
    from discdiff.training.config import DiffusionConfig, ModelConfig, config_from_dict
    from discdiff.training.recipe import build_model

    if config.model is None or config.diffusion is None or config.vocab_size is None or config.context is None:
        raise ValueError("a discdiff config.json needs vocab_size, context, model and diffusion")
    model_cfg = config_from_dict(config.model, ModelConfig)
    diffusion_cfg = config_from_dict(config.diffusion, DiffusionConfig)
    return build_model(model_cfg, diffusion_cfg, config.vocab_size, config.context)


def register_models() -> None:
    """``AutoModel`` and ``AutoModelForMaskedLM`` build ``DiscdiffModel`` for ``model_type: "discdiff"``."""
    for auto in (AutoModel, AutoModelForMaskedLM):
        auto.register(DiscdiffConfig, DiscdiffModel, exist_ok=True)
