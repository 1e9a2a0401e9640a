"""A transformers tokenizer seen through a ``TokenMap``: text <-> discdiff ids (the mask token moved last)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .masked_lm import TokenMap

__all__ = ["MappedTokenizer"]


class MappedTokenizer:
    """``encode`` / ``decode`` in discdiff's ids, for samplers, ``discdiff eval`` data and the web demo.

    ``encode(text)`` adds no special tokens ([CLS] / [SEP] are not data); ``decode`` renders a discdiff id
    sequence through the HF tokenizer (special tokens kept, so a sample shows exactly what was drawn).
    """

    def __init__(self, hf_tokenizer, token_map: TokenMap):
        self.hf_tokenizer = hf_tokenizer
        self.token_map = token_map
        names = {"pad": "pad_token_id", "bos": "bos_token_id", "eos": "eos_token_id"}
        self.special_tokens = {}
        for name, attr in names.items():
            hf_id = getattr(hf_tokenizer, attr, None)
            if isinstance(hf_id, int) and hf_id != token_map.mask_id and hf_id < token_map.hf_size:
                self.special_tokens[name] = int(token_map.to_discdiff[hf_id])

    @property
    def vocab_size(self) -> int:
        return self.token_map.vocab_size

    @property
    def pad_id(self) -> int | None:
        return self.special_tokens.get("pad")

    @property
    def bos_id(self) -> int | None:
        return self.special_tokens.get("bos")

    @property
    def eos_id(self) -> int | None:
        return self.special_tokens.get("eos")

    def encode(self, text: str) -> list[int]:
        return self.token_map.encode(self.hf_tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if any(not 0 <= i < self.token_map.vocab_size for i in ids):
            raise ValueError(f"ids must lie in [0, {self.token_map.vocab_size - 1}] (clean tokens)")
        return self.hf_tokenizer.decode(self.token_map.decode(ids))

    def config(self) -> dict[str, Any]:
        return {"kind": "transformers", "name_or_path": getattr(self.hf_tokenizer, "name_or_path", None),
                "mask_token_id": self.token_map.mask_id}

    def __repr__(self) -> str:
        return f"MappedTokenizer({type(self.hf_tokenizer).__name__}, vocab_size={self.vocab_size})"
