"""The backbone's configuration: ``ModelConfig`` (the ``model:`` section a user writes) and ``TransformerConfig``
(plus what the data and the diffusion decide). Comments say why each knob exists."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ModelConfig", "TransformerConfig"]


@dataclass(kw_only=True)
class ModelConfig:
    """The architecture a user chooses: the `model:` section of a training config (discdiff.training).

    Every field below is a knob; what the data and the diffusion decide (the number of states, the
    output width, causality, SEDD's output scaling) is added by TransformerConfig.
    """

    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 4
    # Longest sequence the rotary tables cover; longer inputs are a ValueError, not silent extrapolation.
    # None: the data context (training fills it in; the model never sees longer sequences there).
    max_len: int | None = None
    # MLP hidden width = mlp_ratio * d_model.
    mlp_ratio: float = 4.0
    # 0.0 means no dropout calls at all: at p=0 a dropout module still draws masks (~5% of a CPU step).
    dropout: float = 0.0
    # True: adaLN-zero conditioning on sigma_bar (DiT / SEDD), needed by score models whose output depends
    # on the noise level. False: time-free (RADD / MDLM / LLaDA): sigma_bar is accepted and ignored.
    time_conditioning: bool = False
    # Width of the noise-level embedding fed to every block's adaLN (SEDD uses 128).
    cond_dim: int = 128
    # Share the token embedding with the output head (requires output_size == num_states).
    tie_weights: bool = False
    # "layernorm" or "rmsnorm" (pre-norm).
    norm: str = "layernorm"
    # Biases in the linear layers and LayerNorms. Off by default (as in LLaMA, nanoGPT's advice): each
    # Linear bias costs a full extra pass over its output (addmm copies it in) and a reduction in the
    # backward, ~6% of a CPU training step at d=256.
    bias: bool = False
    rope_base: float = 10_000.0
    # The MLP's GELU: "none" (exact erf) or "tanh" (the tanh approximation, which SEDD's and MDLM's DiT use;
    # their imported checkpoints need it to reproduce their outputs, discdiff.convert).
    gelu_approximate: str = "none"
    # A bias on the output head (SEDD's and MDLM's final linear layer has one). Independent of `bias`.
    head_bias: bool = False
    # Block diffusion (discdiff.blocks): bidirectional inside blocks of this many tokens, causal across them.
    block_size: int | None = None
    # Class-conditional model: labels 0..num_classes-1, and id num_classes is the null label (the
    # unconditional branch that classifier-free guidance contrasts with). None: the model takes no label.
    num_classes: int | None = None

    def __post_init__(self) -> None:
        # Messages start with the field's name: a training config prefixes its section ("model.").
        for name in ("d_model", "n_layers", "n_heads", "cond_dim"):
            _at_least(name, getattr(self, name), 1)
        if self.max_len is not None:
            _at_least("max_len", self.max_len, 1)
        if self.block_size is not None:
            _at_least("block_size", self.block_size, 1)
            if self.max_len is not None and self.max_len % self.block_size:
                raise ValueError(f"block_size={self.block_size} must divide max_len={self.max_len}")
            if self.time_conditioning:
                raise ValueError("block_size needs a time-free model (time_conditioning: false): each block "
                                 "draws its own noise level")
        if self.num_classes is not None:
            _at_least("num_classes", self.num_classes, 1)
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2 != 0:
            raise ValueError(f"d_model / n_heads = {self.d_model // self.n_heads} (the head dim) must be even "
                             f"for rotary positions")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', got {self.norm!r}")
        if self.gelu_approximate not in ("none", "tanh"):
            raise ValueError(f"gelu_approximate must be 'none' or 'tanh', got {self.gelu_approximate!r}")
        if not self.rope_base > 0:
            raise ValueError(f"rope_base must be > 0, got {self.rope_base}")


@dataclass(kw_only=True)
class TransformerConfig(ModelConfig):
    """A ModelConfig plus what the data and the diffusion decide (discdiff.training fills these in)."""

    # Input vocabulary size S *including* MASK (absorbing graph: V + 1). Ids must lie in [0, S).
    num_states: int
    # Output width; None means S. A denoiser may predict only the V data tokens (output_size=V).
    output_size: int | None = None
    # Causal attention: the autoregressive baseline built from the same blocks (see discdiff.Autoregressive).
    causal: bool = False
    # SEDD's output sigma-scaling for the absorbing graph: raw - log(e^sigma_bar - 1) - log(S - 1), and the
    # entry at the current token set to 0. It makes the initial score the exact score of an all-uniform x0.
    sedd_absorb_scale: bool = False
    max_len: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        _at_least("num_states", self.num_states, 2)
        if self.output_size is not None:
            _at_least("output_size", self.output_size, 1)
        if self.tie_weights and self.out_size != self.num_states:
            raise ValueError("tie_weights needs output_size == num_states")
        if self.sedd_absorb_scale and self.out_size != self.num_states:
            raise ValueError("sedd_absorb_scale needs output_size == num_states (one score per state)")
        if self.block_size is not None and (self.causal or self.sedd_absorb_scale):
            raise ValueError("block_size is for a block diffusion denoiser: not with causal or sedd_absorb_scale")

    @property
    def out_size(self) -> int:
        return self.num_states if self.output_size is None else self.output_size

    def to_dict(self) -> dict:
        return asdict(self)


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
