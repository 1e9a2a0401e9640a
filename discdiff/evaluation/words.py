"""Words-real fraction: how many of a text's whitespace-separated words occur in a reference corpus.

A character-level model's samples can look word-shaped without being words. This counts, over a set of
texts, the whitespace-separated words that also occur as whitespace-separated words of a corpus (usually
the training split):

    fraction = #{generated words w : w in corpus words} / #{generated words}

Words are compared exactly (case and attached punctuation included: "lord," is a word of the corpus if
"lord," occurs there). A text is a window cut out of running text, so its first word is a fragment unless
the text starts with whitespace, and its last unless it ends with whitespace; ``cut_edges=True`` (the
default) leaves such edge fragments uncounted, so real text scores 1.0 against a corpus that contains it.

    vocabulary = corpus_words(open("train.txt").read())
    words_real(["To be, or not to be"], vocabulary)      # WordsReal(real=4, words=4): "To" and "be" are cut
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WordsReal", "corpus_words", "decode_text", "load_corpus_words", "split_words", "words_real"]


@dataclass(frozen=True)
class WordsReal:
    """``real`` of the ``words`` counted occur in the corpus; ``fraction`` = real / words (nan when no word)."""

    real: int
    words: int

    @property
    def fraction(self) -> float:
        return self.real / self.words if self.words else float("nan")

    def __str__(self) -> str:
        if not self.words:  # e.g. passages of nothing but spaces: say so, not "nan"
            return "no whole words to count (0 of 0)"
        return f"{self.fraction:.2f} of words are real ({self.real} of {self.words})"


def split_words(text: str, cut_edges: bool = True) -> list[str]:
    """The whitespace-separated words of ``text``; with ``cut_edges``, without a first word that touches the
    start of the text or a last word that touches its end (fragments of a window cut from running text)."""
    words = text.split()
    if cut_edges and words:
        if not text[-1].isspace():
            words.pop()
        if words and not text[0].isspace():
            words.pop(0)
    return words


def corpus_words(text: str) -> frozenset[str]:
    """Every whitespace-separated word of a whole corpus (nothing is cut: the corpus is not a window)."""
    return frozenset(text.split())


def load_corpus_words(corpus_dir, split: str = "train") -> frozenset[str]:
    """The words of one split of a text corpus prepared by ``discdiff prepare`` (decoded with its tokenizer;
    each document's end-of-sequence token separates words like a newline)."""
    from discdiff.data.corpora import Manifest
    from discdiff.data.kinds import load_tokenizer
    from discdiff.data.packing import TokenFile

    manifest = Manifest.load(Path(corpus_dir))
    tokens = TokenFile.open(manifest.header(split))  # a missing split: one line, why and the fix
    tok = load_tokenizer(tokens.tokenizer_dir)
    words: set[str] = set()
    for i in range(tokens.num_records):
        words.update(decode_text(tok, tokens.record(i)).split())
    return frozenset(words)


def decode_text(tokenizer, ids) -> str:
    """Decode ids to text, each special token (end of sequence) as a newline: a boundary, never part of a word."""
    special_ids = set(tokenizer.special_tokens.values())
    pieces, run = [], []
    for i in (int(i) for i in ids):
        if i in special_ids:
            pieces.append(tokenizer.decode(run))
            run = []
        else:
            run.append(i)
    pieces.append(tokenizer.decode(run))
    return "\n".join(pieces)


def words_real(texts: Iterable[str], vocabulary: Collection[str], cut_edges: bool = True) -> WordsReal:
    """Count the words of ``texts`` (``split_words``) that are in ``vocabulary`` (``corpus_words``)."""
    if isinstance(texts, str):
        raise ValueError("texts must be an iterable of strings, not one string (wrap it in a list)")
    real = words = 0
    for text in texts:
        for word in split_words(text, cut_edges):
            words += 1
            real += word in vocabulary
    return WordsReal(real, words)
