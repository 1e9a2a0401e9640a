"""Templates with blanks: the demo's prompt syntax, turned into the ids of a ``Condition``.

    _        one blank token (for a character-level model: one character)
    {N}      N blank tokens, e.g. "To be, or {3} to be" (the same as "To be, or ___ to be")
    \\_ \\{ \\}  \\\\  a literal underscore, brace or backslash

Everything else is literal text, kept exactly. A ``length`` longer than the template appends blanks at
the end (completion: "ROMEO:" with length 128); an empty template with a length is unconditional
generation. Literal runs are encoded one at a time by the model's tokenizer, so for a BPE model a
blank is one BPE token, not one character.

    parse_template("ab{2}c_")  ->  [Literal("ab"), Blanks(2), Literal("c"), Blanks(1)]
    template_ids("ab{2}c_", tokenizer)  ->  [id(a), id(b), None, None, id(c), None]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Blanks", "Literal", "TemplateError", "parse_template", "template_ids"]

_COUNT = re.compile(r"\{(\d+)\}")
_ESCAPABLE = "_{}\\"


class TemplateError(ValueError):
    """A template that cannot be read; the message says where and how to fix it."""


@dataclass(frozen=True)
class Literal:
    text: str
    column: int  # 1-based column of its first character in the template (for error messages)


@dataclass(frozen=True)
class Blanks:
    count: int


def parse_template(template: str, max_blanks: int) -> list[Literal | Blanks]:
    """Split ``template`` into literal runs and blank runs (adjacent blanks merged).

    ``max_blanks`` bounds any single ``{N}`` so a typo like {100000000} fails fast, before allocation.
    """
    pieces: list[Literal | Blanks] = []
    text: list[str] = []
    start = 0  # index where the current literal run began
    i = 0

    def flush_literal() -> None:
        if text:
            pieces.append(Literal("".join(text), start + 1))
            text.clear()

    def add_blanks(n: int) -> None:
        flush_literal()
        if pieces and isinstance(pieces[-1], Blanks):
            pieces[-1] = Blanks(pieces[-1].count + n)
        else:
            pieces.append(Blanks(n))

    while i < len(template):
        ch = template[i]
        if not text:
            start = i
        if ch == "\\":
            if i + 1 >= len(template) or template[i + 1] not in _ESCAPABLE:
                raise TemplateError(f"column {i + 1}: '\\' escapes only _ {{ }} or \\ (write \\\\ for a backslash)")
            text.append(template[i + 1])
            i += 2
        elif ch == "_":
            add_blanks(1)
            i += 1
        elif ch == "{":
            m = _COUNT.match(template, i)
            if m is None:
                raise TemplateError(f"column {i + 1}: '{{' starts a blank count like {{12}}; "
                                    "write \\{ for a literal brace")
            n = int(m.group(1))
            if not 1 <= n <= max_blanks:
                raise TemplateError(f"column {i + 1}: {{{n}}} asks for {n} blanks; allowed 1 to {max_blanks}")
            add_blanks(n)
            i = m.end()
        else:
            text.append(ch)
            i += 1
    flush_literal()
    return pieces


def _encode(tokenizer, piece: Literal) -> list[int]:
    try:
        return list(tokenizer.encode(piece.text))
    except ValueError as e:
        raise TemplateError(f"the text {piece.text!r} at column {piece.column} cannot be encoded: {e}") from None


def _check_characters(tokenizer, pieces: list[Literal | Blanks]) -> None:
    """For character-level tokenizers, name the first character (and its column) outside the vocabulary."""
    from .tokenizer import CharTokenizer

    if not isinstance(tokenizer, CharTokenizer):
        return
    for piece in pieces:
        if isinstance(piece, Literal):
            for offset, ch in enumerate(piece.text):
                try:
                    tokenizer.encode(ch)
                except ValueError:
                    raise TemplateError(
                        f"character {ch!r} at column {piece.column + offset} is not in this model's "
                        f"{tokenizer.kind} vocabulary ({tokenizer.vocab_size} tokens)") from None


def template_ids(template: str, tokenizer, length: int | None, max_length: int) -> list[int | None]:
    """The ids of ``template`` with ``None`` at every blank, padded with blanks up to ``length``.

    ``tokenizer`` None (a checkpoint without one) admits blanks only. Raises TemplateError on a bad
    template, text the tokenizer cannot encode, a template longer than ``length`` or ``max_length``,
    or nothing to generate.
    """
    pieces = parse_template(template, max_blanks=max_length)
    if tokenizer is None and any(isinstance(p, Literal) for p in pieces):
        raise TemplateError("this checkpoint has no tokenizer: the template may hold blanks only (_ or {N})")
    _check_characters(tokenizer, pieces)
    ids: list[int | None] = []
    for piece in pieces:
        ids.extend([None] * piece.count if isinstance(piece, Blanks) else _encode(tokenizer, piece))
        if len(ids) > max_length:
            raise TemplateError(f"the template is longer than the maximum length of {max_length} tokens")
    if length is not None:
        if length < len(ids):
            raise TemplateError(f"the template is {len(ids)} tokens long, more than the length {length}; "
                                "raise the length or leave it empty")
        ids.extend([None] * (length - len(ids)))
    if not ids:
        raise TemplateError("nothing to generate: give a template with blanks (_ or {N}) or a length")
    if None not in ids:
        raise TemplateError(f"nothing to fill: the template has no blanks; add _ or {{N}}, or a length "
                            f"greater than its {len(ids)} tokens to complete it")
    return ids
