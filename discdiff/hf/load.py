"""``from_transformers``: a transformers masked LM (an object, a local directory or a Hub name) as a discdiff
``Pretrained`` (model, Diffusion on the absorbing graph, tokenizer), ready for every absorbing-graph sampler,
``Diffusion.nll`` and ``discdiff.evaluation.evaluate``.

    pre = discdiff.hf.from_transformers("answerdotai/ModernBERT-base")
    out = pre.diffusion.sample(pre.model, num_samples=2, length=64, sampler="first_hitting")
    print(pre.tokenizer.decode(out.samples[0].tolist()))
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

import discdiff as dd

from .masked_lm import MaskedLMDenoiser, TokenMap
from .tokenizer import MappedTokenizer

__all__ = ["from_transformers", "load_pretrained"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")
_CONFIG_SPECIALS = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id")


def from_transformers(model_or_path, tokenizer=None, *, mask_token_id: int | None = None, suppress="special",
                      schedule: dd.Schedule | None = None, shift_logits: bool = False, device="cpu",
                      **model_kwargs):
    """Wrap a masked LM as a discdiff denoiser: ``Pretrained(model, diffusion, tokenizer, config, source)``.

    Args:
        model_or_path: a loaded transformers model, or what ``AutoModelForMaskedLM.from_pretrained`` takes
            (``model_kwargs`` go there; default ``dtype=torch.float32``).
        tokenizer: a transformers tokenizer; None: the one stored beside the model (a directory with tokenizer
            files, a Hub name), else none (ids only).
        mask_token_id: the model's mask id if neither tokenizer nor config names it (they must agree).
        suppress: "special" (default): the tokenizer's special tokens but [UNK] (text can contain it), ids
            past its end and the config's pad / bos / eos / cls / sep ids are never predicted; "none":
            nothing suppressed; or a list of HF ids.
        schedule: the noise schedule (default ``dd.LogLinear()``, MDLM's); a discdiff model exported to
            transformers keeps its own diffusion section instead.
        shift_logits: True for AR-adapted diffusion LMs (Dream) whose logits at i - 1 predict token i.

    Returns a ``discdiff.training.Pretrained`` whose token ids are discdiff's (``TokenMap``: the mask token
    moved last); ``tokenizer`` (a ``MappedTokenizer``) encodes and decodes in those ids.
    """
    import transformers

    source = None
    if isinstance(model_or_path, nn.Module):
        hf_model = model_or_path
    else:
        source = model_or_path
        model_kwargs.setdefault("dtype", torch.float32)
        hf_model = transformers.AutoModelForMaskedLM.from_pretrained(model_or_path, **model_kwargs)
    if tokenizer is None and source is not None and _has_tokenizer(source):
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    name = str(source or getattr(hf_model, "name_or_path", "") or type(hf_model).__name__)
    token_map = TokenMap(_input_size(hf_model, name), _mask_id(hf_model, tokenizer, mask_token_id, name))
    suppressed = _suppressed(suppress, hf_model, tokenizer, token_map)
    denoiser = MaskedLMDenoiser(hf_model, token_map, suppressed, shift_logits=shift_logits)
    denoiser.to(device).eval()
    config, diffusion = _diffusion(hf_model, token_map, schedule, name)
    from discdiff.training.recipe import Pretrained

    mapped = MappedTokenizer(tokenizer, token_map) if tokenizer is not None else _own_tokenizer(source, hf_model)
    return Pretrained(denoiser, diffusion, mapped, config, Path(source) if _is_dir(source) else None)


def load_pretrained(path, device="cpu"):
    """What ``--model`` names on the command line: ``hf:NAME`` (a Hub name or directory for transformers),
    a transformers masked-LM directory (config.json without discdiff's ``format``), or else anything
    ``discdiff.training.from_pretrained`` loads (pretrained, run and checkpoint directories, verified).
    Imports transformers only for the first two."""
    text = str(path)
    if text.startswith("hf:"):
        return from_transformers(text[3:], device=device)
    config_file = Path(path) / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text())
        except (ValueError, UnicodeDecodeError):
            config = None  # from_pretrained names the damaged file
        if isinstance(config, dict) and "format" not in config and "model_type" in config:
            return from_transformers(Path(path), device=device)
    from discdiff.training import from_pretrained

    return from_pretrained(path, device=device)


def _is_dir(source) -> bool:
    return source is not None and Path(source).is_dir()


def _has_tokenizer(source) -> bool:
    if not _is_dir(source):
        return True  # a Hub name: the tokenizer lives beside the weights
    return any((Path(source) / f).is_file() for f in _TOKENIZER_FILES)


def _own_tokenizer(source, hf_model):
    """A discdiff model exported to transformers keeps discdiff's tokenizer/ (its ids are unchanged)."""
    if _is_dir(source) and getattr(hf_model.config, "model_type", None) == "discdiff":
        if (Path(source) / "tokenizer").is_dir():
            from discdiff.data import load_tokenizer

            return load_tokenizer(Path(source) / "tokenizer")
    return None


def _input_size(hf_model, name: str) -> int:
    try:  # remote-code models may not implement it (transformers' default raises NotImplementedError)
        embeddings = hf_model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        embeddings = None
    size = getattr(embeddings, "num_embeddings", None) or getattr(hf_model.config, "vocab_size", None)
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"{name}: cannot tell the model's vocabulary size (no input embeddings, no config.vocab_size)")
    return size


def _mask_id(hf_model, tokenizer, mask_token_id, name: str) -> int:
    found = {}
    config = getattr(hf_model, "config", None)
    named = getattr(tokenizer, "mask_token_id", None)
    for where, value in (("mask_token_id=", mask_token_id), ("the tokenizer", named),
                         ("the config", getattr(config, "mask_token_id", None))):
        if value is not None:
            found[where] = value
    if not found:
        raise ValueError(f"{name}: no mask token (neither the tokenizer nor the config names one): discdiff.hf "
                         "wraps masked LMs; pass mask_token_id= if the model has one")
    if len(set(found.values())) > 1:
        raise ValueError(f"{name}: mask token ids disagree: {found}")
    return int(next(iter(found.values())))


def _suppressed(suppress, hf_model, tokenizer, token_map: TokenMap) -> list[int]:
    if isinstance(suppress, str):
        if suppress == "none":
            return []
        if suppress != "special":
            raise ValueError(f"suppress must be 'special', 'none' or a list of token ids, got {suppress!r}")
        ids = {getattr(hf_model.config, attr, None) for attr in _CONFIG_SPECIALS}
        if tokenizer is not None:
            ids |= set(getattr(tokenizer, "all_special_ids", ()))
            ids |= set(range(len(tokenizer), token_map.hf_size))  # rows past the tokenizer's end
            ids.discard(getattr(tokenizer, "unk_token_id", None))  # tokenized text can hold [UNK]: keep it
        return sorted(i for i in ids if isinstance(i, int) and 0 <= i < token_map.hf_size)
    return [int(i) for i in suppress]


def _diffusion(hf_model, token_map: TokenMap, schedule, name: str):
    """The Diffusion and the config dict: the absorbing graph with MASK last over the N - 1 clean tokens."""
    config = hf_model.config
    if getattr(config, "model_type", None) == "discdiff":  # discdiff's own model, exported: keep its diffusion
        return _discdiff_diffusion(config, schedule, name)
    schedule = schedule if schedule is not None else dd.LogLinear()
    diffusion = dd.Diffusion(dd.Absorbing(token_map.vocab_size), schedule, "denoiser")
    context = getattr(config, "max_position_embeddings", None)
    out = {"format": "transformers-masked-lm", "vocab_size": token_map.vocab_size, "context": context,
           "diffusion": {"graph": "absorbing", "parameterization": "denoiser", "objective": None},
           "transformers": {"name_or_path": name, "model_type": getattr(config, "model_type", None),
                            "mask_token_id": token_map.mask_id}}
    return out, diffusion


def _discdiff_diffusion(config, schedule, name: str):
    from discdiff.training.config import DiffusionConfig, ModelConfig, config_from_dict
    from discdiff.training.recipe import build_diffusion

    model_cfg = config_from_dict(config.model, ModelConfig)
    diffusion_cfg = config_from_dict(config.diffusion, DiffusionConfig)
    if config.mask_token_id is None or diffusion_cfg.parameterization != "denoiser":
        raise ValueError(f"{name}: a discdiff {diffusion_cfg.graph} / {diffusion_cfg.parameterization} model is "
                         "no masked LM: load it with discdiff.training.from_pretrained")
    if model_cfg.block_size is not None or model_cfg.num_classes is not None:
        raise ValueError(f"{name}: block and class-conditional discdiff models sample through their own "
                         "machinery (KV cache, labels): load them with discdiff.training.from_pretrained")
    if schedule is not None:
        raise ValueError(f"{name}: a discdiff model keeps the schedule it was trained with (schedule= refused)")
    return config.discdiff_dict(), build_diffusion(diffusion_cfg, config.vocab_size)
