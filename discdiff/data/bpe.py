"""Byte-level BPE tokenizers, backed by HuggingFace `tokenizers` (imported only when one is built).

- `ByteBPETokenizer.train(texts, vocab_size=8192)`: trained locally (an 8k vocabulary on 10 MB takes seconds).
- `GPT2Tokenizer.from_files("encoder.json", "vocab.bpe")`: GPT-2's own vocabulary, from files the user has.

Both are byte-level: every byte sequence has an encoding, so `decode(encode(s)) == s` for any string.
Special tokens are never parsed out of input text (a literal "<|eos|>" in a document stays text).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .tokenizer import SPECIAL_NAMES, Tokenizer


def _hf():
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "byte-level BPE needs the `tokenizers` package: pip install tokenizers "
            "(or pip install 'discdiff[train]')"
        ) from e
    return tokenizers


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _byte_level(hf_tok) -> None:
    """GPT-2's byte-level pre-tokenizer (its regex split, bytes as printable symbols) and decoder."""
    hf = _hf()
    hf_tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf_tok.decoder = hf.decoders.ByteLevel()
    hf_tok.encode_special_tokens = True  # special tokens come from code, never from input text


class _HFTokenizer(Tokenizer):
    def __init__(self, hf_tok, special_tokens: dict[str, int]):
        self._tok = hf_tok
        self.special_tokens = dict(special_tokens)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Many documents at once, on all cores."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise ValueError(f"ids must lie in [0, {self.vocab_size})")
        return self._tok.decode(ids, skip_special_tokens=False)


class ByteBPETokenizer(_HFTokenizer):
    """Byte-level BPE trained on your corpus. Specials are `<|name|>` tokens with the first ids."""

    kind = "byte_bpe"
    FILE = "bpe.json"

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8192, specials: Sequence[str] = ("eos",),
              min_frequency: int = 2) -> ByteBPETokenizer:
        hf = _hf()
        if not set(specials) <= set(SPECIAL_NAMES):
            raise ValueError(f"specials must be names from {SPECIAL_NAMES}, got {list(specials)}")
        alphabet = hf.pre_tokenizers.ByteLevel.alphabet()
        if vocab_size < len(alphabet) + len(specials):
            raise ValueError(f"vocab_size must be at least {len(alphabet) + len(specials)} (256 bytes + specials)")
        tok = hf.Tokenizer(hf.models.BPE())
        _byte_level(tok)
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
            special_tokens=[f"<|{name}|>" for name in specials], initial_alphabet=alphabet)
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok, {name: tok.token_to_id(f"<|{name}|>") for name in specials})

    def save_files(self, directory: Path) -> None:
        self._tok.save(str(directory / self.FILE))

    def config(self) -> dict[str, Any]:
        return {"file": self.FILE, "special_tokens": self.special_tokens}

    @classmethod
    def from_config(cls, config: dict[str, Any], directory: Path) -> ByteBPETokenizer:
        tok = _hf().Tokenizer.from_file(str(directory / config["file"]))
        _byte_level(tok)
        return cls(tok, config["special_tokens"])


class GPT2Tokenizer(_HFTokenizer):
    """GPT-2's BPE from its `encoder.json` (token -> id) and `vocab.bpe` (merges) files.

    `<|endoftext|>`, where the vocabulary has it, is the EOS token. Saving copies both files unchanged.
    """

    kind = "gpt2"
    EOS = "<|endoftext|>"

    @classmethod
    def from_files(cls, encoder_json: str | Path, vocab_bpe: str | Path) -> GPT2Tokenizer:
        hf = _hf()
        encoder_json, vocab_bpe = Path(encoder_json), Path(vocab_bpe)
        for path in (encoder_json, vocab_bpe):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: GPT-2 tokenizer file not found")
        try:
            vocab = json.loads(encoder_json.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{encoder_json}: not a JSON token -> id map ({e})") from e
        missing = [s for s in hf.pre_tokenizers.ByteLevel.alphabet() if s not in vocab]
        if missing:
            raise ValueError(f"{encoder_json}: lacks {len(missing)} of the 256 byte symbols, so some text "
                             "would have no encoding; this is not a byte-level GPT-2 vocabulary")
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise ValueError(f"{encoder_json}: ids must be exactly 0..{len(vocab) - 1}")
        tok = hf.Tokenizer(hf.models.BPE.from_file(str(encoder_json), str(vocab_bpe)))
        _byte_level(tok)
        specials = {"eos": vocab[cls.EOS]} if cls.EOS in vocab else {}
        out = cls(tok, specials)
        out._files = (encoder_json, vocab_bpe)
        return out

    def save_files(self, directory: Path) -> None:
        for src, name in zip(self._files, ("encoder.json", "vocab.bpe"), strict=True):
            if src.resolve() != (directory / name).resolve():
                shutil.copyfile(src, directory / name)

    def config(self) -> dict[str, Any]:
        return {"sha256": {name: _sha256(src) for src, name
                           in zip(self._files, ("encoder.json", "vocab.bpe"), strict=True)}}

    @classmethod
    def from_config(cls, config: dict[str, Any], directory: Path) -> GPT2Tokenizer:
        for name, digest in config["sha256"].items():
            if _sha256(directory / name) != digest:
                raise ValueError(f"{directory / name}: checksum differs from the one saved with the tokenizer")
        return cls.from_files(directory / "encoder.json", directory / "vocab.bpe")
