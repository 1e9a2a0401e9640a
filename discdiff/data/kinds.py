"""Every tokenizer kind, and `load_tokenizer(dir)`, which rebuilds whichever one a directory holds.

It sits above tokenizer.py (the interface and the character / sequence / pixel kinds) and bpe.py (the
byte-level BPE kinds), which never import it: importing both here registers every kind before a lookup.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import bpe  # noqa: F401  (registers the BPE kinds; imports `tokenizers` only when one is built)
from .tokenizer import CONFIG_FILE, FORMAT_VERSION, Tokenizer

__all__ = ["load_tokenizer"]


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Rebuild the tokenizer saved in `directory` by `Tokenizer.save`, whatever its kind."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved tokenizer here (expected {CONFIG_FILE})")
    config = json.loads(path.read_text(encoding="utf-8"))
    kind = config.pop("kind", None)
    if kind not in Tokenizer.registry:
        raise ValueError(f"{path}: unknown tokenizer kind {kind!r}; known: {sorted(Tokenizer.registry)}")
    if config.pop("format_version", None) != FORMAT_VERSION:
        raise ValueError(f"{path}: saved with another tokenizer format version")
    saved_vocab = config.pop("vocab_size")
    tok = Tokenizer.registry[kind].from_config(config, Path(directory))
    if tok.vocab_size != saved_vocab:
        raise ValueError(f"{path}: rebuilt vocab_size {tok.vocab_size} != saved {saved_vocab}")
    return tok
