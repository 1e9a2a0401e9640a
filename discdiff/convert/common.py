"""What both importers share: reading a published checkpoint directory, checking its tensors against the
names and shapes its config implies, the algebra that maps a DDiT (SEDD / MDLM) onto DiffusionTransformer,
and writing the discdiff pretrained/ directory.

The algebra, all exact (float64, then float32):

* Rotary layout. SEDD and MDLM rotate each head's dims (j, j + hs/2) by pos * base^(-2j/hs) (rotate-half,
  the flash-attn non-interleaved layout); discdiff rotates (2j, 2j + 1) by the same angle. Permuting the rows
  of W_q and W_k within each head, new row 2j = old row j and new row 2j+1 = old row j + hs/2, permutes q and k
  identically, so every q.k (hence the attention) is unchanged. Their rotation of v is the identity (cos 1, sin 0).
* Norm weight into adaLN. Their LayerNorm has a weight w and no bias; adaLN-zero then gives
  norm(x) w (1 + scale) + shift with scale = W c + b. That equals norm(x) (1 + scale') + shift with
  scale' = (w o W) c + (w o b + w - 1): still linear in c, so w folds into the adaLN rows of `scale`.
* A fixed conditioning vector (MDLM with time_conditioning false feeds sigma = 0, so c is a constant):
  each adaLN output is a constant vector, so norm(x) (1 + scale) + shift is an affine LayerNorm
  (weight w (1 + scale), bias shift) and gate o (W h + b) is a Linear with rows scaled by gate.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["ROTARY_BASE", "Source", "check_state", "fold_norm_into_scale", "read_source", "rotary_rows",
           "write_pretrained"]

ROTARY_BASE = 10_000.0  # both codebases hard-code Rotary(dim, base=10_000)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# GPT-2 tokenizer files, as Hugging Face names them (vocab.json, merges.txt) or as OpenAI did (encoder.json, vocab.bpe)
GPT2_FILES = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))


@dataclass
class Source:
    """A published checkpoint directory: its config.json (a dict) and its tensors (name -> tensor)."""

    path: Path
    config: dict
    state: dict[str, torch.Tensor]
    weights_file: Path


def read_source(src) -> Source:
    """config.json and model.safetensors (or pytorch_model.bin, read with weights_only) from ``src``."""
    path = Path(src)
    if not path.is_dir():
        raise ValueError(f"{path}: not a directory (pass the downloaded checkpoint directory, holding config.json)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{path}: no config.json here; pass the checkpoint directory as downloaded")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_file}: not valid JSON ({e})") from None
    weights = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
    if weights is None:
        raise ValueError(f"{path}: no weights ({' or '.join(WEIGHT_FILES)}); sharded checkpoints are not supported")
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(weights)
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    return Source(path, config, dict(state), weights)


def check_state(source: Source, expected: dict[str, tuple[int, ...]], optional: dict[str, tuple[int, ...]]):
    """Every expected tensor present with its shape, nothing else (``optional`` ones may be absent).

    The error names the first mismatching key, in the order of ``expected``, so a wrong size in config.json
    reads as "blocks.0.attn_qkv.weight has shape (96, 32), config.json implies (192, 64)".
    """
    where = source.weights_file
    for key, shape in {**expected, **optional}.items():
        if key not in source.state:
            if key in optional:
                continue
            raise ValueError(f"{where}: missing tensor {key!r} (config.json implies shape {shape}); is this "
                             "the right kind of checkpoint?")
        got = tuple(source.state[key].shape)
        if got != tuple(shape):
            raise ValueError(f"{where}: tensor {key!r} has shape {got}, config.json implies {tuple(shape)}")
    extra = [k for k in source.state if k not in expected and k not in optional]
    if extra:
        raise ValueError(f"{where}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected in all); "
                         "this importer does not know what it is")


def check_inv_freq(source: Source, key: str, head_dim: int) -> None:
    """A stored rotary buffer must be base^(-2j/hs) with the hard-coded base (else the positions differ)."""
    if key not in source.state:
        return
    want = 1.0 / (ROTARY_BASE ** (torch.arange(0, head_dim, 2).float() / head_dim))
    if not torch.allclose(source.state[key].float(), want, rtol=1e-5, atol=0):
        raise ValueError(f"{source.weights_file}: {key!r} is not 10000^(-2j/{head_dim}); a rotary base other "
                         "than 10000 is not supported")


def rotary_rows(qkv_weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(3 D, D) fused q, k, v rows in rotate-half layout -> discdiff's interleaved layout (module docstring)."""
    three_d = qkv_weight.shape[0]
    d = three_d // 3
    hs = d // n_heads
    perm = torch.stack([torch.arange(hs // 2), torch.arange(hs // 2) + hs // 2], dim=-1).reshape(hs)  # (hs,)
    rows = qkv_weight.reshape(3, n_heads, hs, -1).clone()  # (3, nh, hs, D)
    rows[:2] = rows[:2, :, perm]  # q and k only; v keeps its order
    return rows.reshape(three_d, -1)


def fold_norm_into_scale(weight: torch.Tensor, bias: torch.Tensor, norm_weight: torch.Tensor, index: int,
                         n_chunks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """adaLN Linear (n_chunks D, cond) whose chunk ``index`` is a `scale`, with the preceding norm's weight w
    folded in: scale' = (w o W) c + w o b + w - 1. Returns new (weight, bias), float64."""
    weight, bias, w = weight.double().clone(), bias.double().clone(), norm_weight.double()
    d = w.shape[0]
    if weight.shape[0] != n_chunks * d:
        raise ValueError(f"adaLN layer has {weight.shape[0]} rows, expected {n_chunks} x {d}")
    rows = slice(index * d, (index + 1) * d)
    weight[rows] = w[:, None] * weight[rows]
    bias[rows] = w * bias[rows] + w - 1.0
    return weight, bias


def _gpt2_files(directory: Path):
    return next(((directory / a, directory / b) for a, b in GPT2_FILES
                 if (directory / a).is_file() and (directory / b).is_file()), None)


def write_pretrained(out, model, *, model_cfg, diffusion_cfg, vocab_size: int, context: int, tokenizer_dirs):
    """save_pretrained into ``out``, with the first GPT-2 tokenizer found in ``tokenizer_dirs`` (or none).
    Returns ``out`` as a Path."""
    from discdiff.training.recipe import save_pretrained

    files = next((f for d in tokenizer_dirs if d is not None and (f := _gpt2_files(Path(d))) is not None), None)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = None
        if files is not None:
            from discdiff.data.bpe import GPT2Tokenizer

            tok = GPT2Tokenizer.from_files(*files)
            if tok.vocab_size != vocab_size:
                raise ValueError(f"{files[0]}: the tokenizer has {tok.vocab_size} tokens but the model "
                                 f"{vocab_size} data tokens; pass the tokenizer the model was trained with")
            tokenizer_dir = tok.save(Path(tmp) / "tokenizer")
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        return save_pretrained(out, model, model_cfg=model_cfg, diffusion_cfg=diffusion_cfg, vocab_size=vocab_size,
                               context=context, weights=state, tokenizer_dir=tokenizer_dir)
