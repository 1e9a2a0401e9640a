"""Tokenizers: text, protein and DNA strings or pixel images <-> integer ids in [0, vocab_size).

Every tokenizer has the same small interface and round-trips through a directory, so a checkpoint can
carry the exact tokenizer that produced its training data:

    tok = CharTokenizer.from_texts(["to be or not to be"], specials=("eos",))
    ids = tok.encode("not to be")           # list[int]
    tok.decode(ids) == "not to be"
    tok.save("run/tokenizer")               # writes run/tokenizer/discdiff_tokenizer.json
    load_tokenizer("run/tokenizer")         # (data/kinds.py) dispatches on the saved `kind`; same ids, strings

Special tokens (PAD / BOS / EOS) are ordinary ids inside the vocabulary, listed in `special_tokens`.
The diffusion MASK is *not* a token of any tokenizer: `Absorbing(vocab_size=tokenizer.vocab_size)`
appends it as id `vocab_size` (its `num_states` is `vocab_size + 1`). So the model's `vocab_size` is
`tokenizer.vocab_size`, always.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

CONFIG_FILE = "discdiff_tokenizer.json"
FORMAT_VERSION = 1

# Special-token names a modality may ask for, and how `decode` renders them.
SPECIAL_NAMES = ("pad", "bos", "eos")


class Tokenizer(ABC):
    """The interface shared by every tokenizer. Subclasses register themselves under `kind`."""

    kind: ClassVar[str]
    registry: ClassVar[dict[str, type[Tokenizer]]] = {}
    special_tokens: dict[str, int]  # e.g. {"pad": 0, "eos": 2}; empty where the modality needs none

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            Tokenizer.registry[cls.kind] = cls

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str: ...

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description; with the files `save` writes, enough to rebuild exactly."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any], directory: Path) -> Tokenizer: ...

    def save_files(self, directory: Path) -> None:  # noqa: B027 (optional hook, not abstract)
        """Write any files besides the config (a BPE model, say). Default: none."""

    @property
    def pad_id(self) -> int | None:
        return self.special_tokens.get("pad")

    @property
    def bos_id(self) -> int | None:
        return self.special_tokens.get("bos")

    @property
    def eos_id(self) -> int | None:
        return self.special_tokens.get("eos")

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.save_files(directory)
        payload = {"kind": self.kind, "format_version": FORMAT_VERSION, "vocab_size": self.vocab_size,
                   **self.config()}
        (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        return directory

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, special_tokens={self.special_tokens})"


class CharTokenizer(Tokenizer):
    """One id per character: specials first (in the order given), then `chars` in order.

    With `uppercase=True` the input is upper-cased before lookup (FASTA's soft-masked lower case).
    `encode` raises ValueError naming the first character outside the vocabulary, with its line and column.
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], specials: Sequence[str] = (), uppercase: bool = False):
        chars, specials = list(chars), list(specials)
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars) or not chars:
            raise ValueError("chars must be distinct single characters, at least one")
        if len(set(specials)) != len(specials) or not set(specials) <= set(SPECIAL_NAMES):
            raise ValueError(f"specials must be distinct names from {SPECIAL_NAMES}, got {specials}")
        self.chars, self.specials, self.uppercase = chars, specials, uppercase
        self.special_tokens = {name: i for i, name in enumerate(specials)}
        self._strings = [f"<{name}>" for name in specials] + chars
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        order = np.argsort(codes)
        self._sorted_codes = codes[order]
        self._sorted_ids = order + len(specials)

    @classmethod
    def from_texts(cls, texts: Iterable[str], specials: Sequence[str] = ()) -> CharTokenizer:
        """Vocabulary = the sorted set of characters seen in `texts`."""
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        if not seen:
            raise ValueError("cannot build a character vocabulary from empty text")
        return cls(sorted(seen), specials)

    @property
    def vocab_size(self) -> int:
        return len(self._strings)

    def encode_array(self, text: str) -> np.ndarray:
        """Like `encode`, as an int64 array (vectorised: ~50 MB/s)."""
        if self.uppercase:
            text = text.upper()
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
        pos = np.searchsorted(self._sorted_codes, codes).clip(max=len(self._sorted_codes) - 1)
        bad = np.flatnonzero(self._sorted_codes[pos] != codes)
        if bad.size:
            i = int(bad[0])
            line = text.count("\n", 0, i) + 1
            col = i - (text.rfind("\n", 0, i) + 1) + 1
            raise ValueError(f"character {text[i]!r} (line {line}, column {col}) is not in the "
                             f"{self.kind} vocabulary ({bad.size} such characters in all)")
        return self._sorted_ids[pos]

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}); got {min(ids)}..{max(ids)}")
        return "".join(self._strings[i] for i in ids)

    def config(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars), "specials": self.specials, "uppercase": self.uppercase}

    @classmethod
    def from_config(cls, config: dict[str, Any], directory: Path) -> CharTokenizer:
        return CharTokenizer(list(config["chars"]), config["specials"], config["uppercase"])


class _FixedAlphabet(CharTokenizer):
    """A CharTokenizer whose alphabet is fixed by the modality (so every corpus shares ids)."""

    ALPHABET: ClassVar[str]
    SPECIALS: ClassVar[tuple[str, ...]] = ("pad", "bos", "eos")

    def __init__(self):
        super().__init__(list(self.ALPHABET), self.SPECIALS, uppercase=True)

    @classmethod
    def from_config(cls, config: dict[str, Any], directory: Path) -> CharTokenizer:
        tok = cls()
        if tok.config() != config:
            raise ValueError(f"{directory}: saved {cls.kind} alphabet {config} differs from this version's")
        return tok


class ProteinTokenizer(_FixedAlphabet):
    """The 20 standard amino acids then IUPAC's extras (B=D/N, Z=E/Q, X=any, U=selenocysteine,
    O=pyrrolysine); ids: <pad>=0, <bos>=1, <eos>=2, A=3, ... Lower case is folded to upper case."""

    kind = "protein"
    ALPHABET = "ACDEFGHIKLMNPQRSTVWY" + "BZXUO"


class DNATokenizer(_FixedAlphabet):
    """A C G T and N (unknown base); ids: <pad>=0, <bos>=1, <eos>=2, A=3, C=4, G=5, T=6, N=7."""

    kind = "dna"
    ALPHABET = "ACGTN"


class PixelTokenizer(Tokenizer):
    """8-bit grey images <-> `levels` grey-level ids in raster order (row by row).

    encode: uint8 array [..., height, width] -> int64 ids [..., height * width], id = floor(x * levels / 256)
    decode: ids [..., height * width] -> uint8 array [..., height, width], each id at its bin's centre.
    Unlike the text tokenizers, `encode` / `decode` take and return numpy arrays. No special tokens.
    """

    kind = "pixels"

    def __init__(self, levels: int, height: int, width: int):
        if not 2 <= levels <= 256:
            raise ValueError(f"levels must be in [2, 256] for 8-bit images, got {levels}")
        if height < 1 or width < 1:
            raise ValueError(f"image shape must be positive, got {height}x{width}")
        self.levels, self.height, self.width = int(levels), int(height), int(width)
        self.special_tokens = {}

    @property
    def vocab_size(self) -> int:
        return self.levels

    def encode(self, image) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (0..255), got dtype {image.dtype}")
        if image.shape[-2:] != (self.height, self.width):
            raise ValueError(f"expected images of shape [..., {self.height}, {self.width}], got {image.shape}")
        ids = (image.astype(np.int64) * self.levels) >> 8
        return ids.reshape(*image.shape[:-2], self.height * self.width)

    def decode(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.shape[-1:] != (self.height * self.width,):
            raise ValueError(f"expected ids of shape [..., {self.height * self.width}], got {ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.levels):
            raise ValueError(f"ids must lie in [0, {self.levels})")
        grey = ((2 * ids + 1) * 256) // (2 * self.levels)  # the centre of each id's bin of 256 / levels
        return grey.clip(0, 255).astype(np.uint8).reshape(*ids.shape[:-1], self.height, self.width)

    def config(self) -> dict[str, Any]:
        return {"levels": self.levels, "height": self.height, "width": self.width}

    @classmethod
    def from_config(cls, config: dict[str, Any], directory: Path) -> PixelTokenizer:
        return cls(config["levels"], config["height"], config["width"])
