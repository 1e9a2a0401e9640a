"""Sequences of their own length: records laid out as ``[BOS] body EOS EOS ... EOS`` in a fixed canvas.

A model trained on EOS-padded records (``discdiff.data.RecordDataset(padding="eos")``, LLaDA's recipe)
predicts the EOS padding like any token, so it learns where a record ends. Two ways to sample:

* **EOS-padded** (the default): pin BOS at position 0 (where the tokenizer uses one; never generated
  elsewhere), generate every other position, cut each row at its first EOS (``RecordFormat.cut``).
* **length-first**: choose the body length n of each row (from the training distribution,
  ``draw_lengths``, or from the user), pin EOS on positions [offset + n, L) (offset = 1 with BOS) and
  generate the body only: ``RecordFormat.condition(num_rows, length, body_lengths=...)``, with the
  special tokens excluded from the body (``without_tokens(model, fmt.specials)``).

``without_tokens(model, ids)`` wraps a model so no sampler ever draws those ids (their logit / log score is
a large negative number): ``fmt.inner_specials`` (BOS, PAD) in EOS-padded mode, so BOS is never generated
in the middle and PAD never at all. Pinned positions are never drawn, so excluding a token everywhere
excludes it on the generated positions only.

    >>> import torch
    >>> fmt = RecordFormat(eos_id=2, bos_id=1, pad_id=0)
    >>> cond = fmt.condition(2, 6, body_lengths=[2, 4])
    >>> cond.known.int().tolist()
    [[1, 0, 0, 1, 1, 1], [1, 0, 0, 0, 0, 1]]
    >>> fmt.cut(torch.tensor([[1, 5, 6, 2, 2, 2], [1, 7, 2, 5, 2, 0]]))
    [[5, 6], [7]]

Exactness: EOS-padded sampling with one token per model call (first_hitting) is exact for an exact model
(the joint law of length and content; tests/sampling/test_records.py). Length-first sampling gives every
row exactly the length asked for, but excluding EOS from the body renormalises each position's law on its
own, which is not the exact p(body | length): a heuristic, as in LLaDA's fixed-length generation.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from .conditioning import Condition

__all__ = ["RecordFormat", "RecordSampling", "draw_lengths", "infill_rows", "on_record_support", "record_format_of",
           "record_lengths", "record_sampling", "without_tokens"]

#: the logit given to an excluded token (finite, as the numerics contract asks)
_EXCLUDED = -1e9


@dataclass(frozen=True)
class RecordFormat:
    """Where a record's special tokens go: ``eos_id`` ends it (and pads it); ``bos_id`` (optional) sits at
    position 0; ``pad_id`` (optional) may appear only after the first EOS."""

    eos_id: int
    bos_id: int | None = None
    pad_id: int | None = None

    @property
    def offset(self) -> int:
        """1 when records start with BOS, else 0: the first body position."""
        return int(self.bos_id is not None)

    @property
    def inner_specials(self) -> tuple[int, ...]:
        """Tokens never generated in EOS-padded mode: BOS (pinned at 0) and PAD."""
        return tuple(i for i in (self.bos_id, self.pad_id) if i is not None and i != self.eos_id)

    @property
    def specials(self) -> tuple[int, ...]:
        """Every special token: never generated in a length-first body."""
        return (self.eos_id, *self.inner_specials)

    def max_body(self, length: int) -> int:
        """The longest body that fits a canvas of ``length`` with [BOS] and one EOS."""
        return length - self.offset - 1

    def condition(self, num_rows: int, length: int, body_lengths: Sequence[int] | Tensor | None = None,
                  prompt: Condition | None = None) -> Condition | None:
        """The positions a record sampler pins: BOS at 0; with ``body_lengths`` [num_rows], EOS from
        offset + n_b to the end of row b (length-first); ``prompt`` (a Condition, already broadcast to
        num_rows) is merged in. None when nothing is pinned. Raises ValueError on a length that does not fit
        or a prompt that contradicts the pinned tokens."""
        tokens = torch.zeros(num_rows, length, dtype=torch.long)
        known = torch.zeros(num_rows, length, dtype=torch.bool)
        if self.bos_id is not None:
            tokens[:, 0], known[:, 0] = self.bos_id, True
        if body_lengths is not None:
            n = _check_lengths(body_lengths, num_rows, self.max_body(length))
            eos = torch.arange(length)[None] >= (self.offset + n)[:, None]
            tokens, known = torch.where(eos, self.eos_id, tokens), known | eos
        if prompt is not None:
            p_tokens, p_known = prompt.tokens.cpu(), prompt.known.cpu()
            if p_known.shape != known.shape:
                raise ValueError(f"the prompt's condition has shape {tuple(p_known.shape)}, the canvas "
                                 f"{tuple(known.shape)}")
            clash = p_known & known & (p_tokens != tokens)
            if clash.any():
                row, pos = (int(i) for i in clash.nonzero()[0])
                raise ValueError(f"row {row}: the prompt sets position {pos}, which the record layout pins "
                                 f"(BOS at 0, EOS after the body); shorten the prompt or lengthen the record")
            tokens, known = torch.where(p_known, p_tokens, tokens), known | p_known
        return Condition(tokens, known) if known.any() else None

    def starts(self, samples: Tensor) -> Tensor:
        """[B] where each row's body starts: 1 when the row opens with BOS, else 0."""
        if self.bos_id is None:
            return torch.zeros(samples.shape[0], dtype=torch.long, device=samples.device)
        return (samples[:, 0] == self.bos_id).long()

    def body_lengths(self, samples: Tensor) -> Tensor:
        """[B] tokens between the optional BOS at position 0 and the first EOS of each row (the rest of the
        row when it has none)."""
        start = self.starts(samples)
        positions = torch.arange(samples.shape[1], device=samples.device)[None]
        is_eos = (samples == self.eos_id) & (positions >= start[:, None])
        first = torch.where(is_eos.any(-1), is_eos.int().argmax(-1), samples.shape[1])
        return first - start

    def ended(self, samples: Tensor) -> Tensor:
        """``samples`` [B, L] with every position after each row's first EOS set to EOS: the rows as records
        read (what follows the end is padding, whatever a sampler put there). Rows without an EOS unchanged."""
        end = self.starts(samples) + self.body_lengths(samples)  # [B] the first EOS (L where none)
        after = torch.arange(samples.shape[1], device=samples.device)[None] > end[:, None]
        return torch.where(after, self.eos_id, samples)

    def cut(self, samples: Tensor) -> list[list[int]]:
        """Each row's body: after the optional BOS at position 0, up to (not including) its first EOS."""
        start, n = self.starts(samples).tolist(), self.body_lengths(samples).tolist()
        return [row[s:s + k] for row, s, k in zip(samples.tolist(), start, n, strict=True)]


def record_format_of(layout: dict | None) -> RecordFormat | None:
    """The EOS-padded record layout a saved model names (its config's ``records``, written when it was trained
    with data.records=eos: eos_id, bos_id, pad_id, length_counts), else None (running text, PAD padding)."""
    if not layout or layout.get("padding") != "eos":
        return None
    return RecordFormat(eos_id=layout["eos_id"], bos_id=layout.get("bos_id"), pad_id=layout.get("pad_id"))


def record_lengths(value, fmt: RecordFormat | None, num_rows: int, length: int, length_counts=None, seed: int = 0,
                   name: str = "record_length") -> list[int] | None:
    """A requested record length as one body length per row: None (the model places EOS itself), an integer N
    (or its digits) for every row, or "auto" (each row's drawn from ``length_counts``, the training records'
    histogram, by a generator seeded with ``seed``). Raises a ValueError naming ``name`` (the flag or field)."""
    if value is None:
        return None
    if fmt is None:
        raise ValueError(f"{name} needs a model trained on records (data.records=eos)")
    longest = fmt.max_body(length)
    if value == "auto":
        if length_counts is None:
            raise ValueError(f"{name} auto needs the training records' length histogram, which this model was saved "
                             "without; give a number")
        return draw_lengths(length_counts, num_rows, torch.Generator().manual_seed(seed), longest=longest).tolist()
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if isinstance(number, bool) or not isinstance(number, numbers.Integral) or not 1 <= number <= longest:
        raise ValueError(f"{name} must be auto or an integer in [1, {longest}] (the length less BOS and one EOS), "
                         f"got {value!r}")
    return [int(number)] * num_rows


class RecordSampling(NamedTuple):
    """The model and the pinned positions a sampler draws records with (``record_sampling``)."""

    model: object
    condition: Condition | None


def record_sampling(model, fmt: RecordFormat, mask_id: int | None, num_rows: int, length: int,
                    body_lengths: Sequence[int] | Tensor | None = None,
                    prompt: Condition | None = None) -> RecordSampling:
    """How to sample ``num_rows`` records of ``fmt`` in a canvas of ``length``: BOS pinned at 0 and the model kept
    on the format's support (``on_record_support``: the model places EOS); or, with ``body_lengths`` (length-first),
    EOS pinned after each row's body and the special tokens never drawn (``without_tokens``). ``prompt``: a
    Condition already broadcast to num_rows, merged into the pinned positions (ValueError on a clash)."""
    condition = fmt.condition(num_rows, length, body_lengths, prompt=prompt)
    if body_lengths is not None:
        return RecordSampling(without_tokens(model, fmt.specials), condition)
    return RecordSampling(on_record_support(model, fmt, mask_id, length=length), condition)


def _check_lengths(body_lengths, num_rows: int, longest: int) -> Tensor:
    values = body_lengths.tolist() if isinstance(body_lengths, Tensor) else list(body_lengths)
    if len(values) != num_rows:
        raise ValueError(f"body_lengths needs one length per row: {num_rows} rows, got {len(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= longest:
            raise ValueError(f"a record length must be an integer in [1, {longest}] (the canvas less [BOS] and "
                             f"one EOS), got {v!r}")
    return torch.tensor(values, dtype=torch.long)


def draw_lengths(counts: Sequence[int] | Tensor, num: int, generator=None, longest: int | None = None) -> Tensor:
    """``num`` body lengths drawn from a histogram: ``counts[n]`` records of body length n (n >= 1 used;
    lengths above ``longest`` dropped). Long[num]."""
    weights = torch.as_tensor(counts, dtype=torch.float64).clone()
    if weights.ndim != 1 or (weights < 0).any():
        raise ValueError("length counts must be a 1-D list of non-negative numbers")
    weights[:1] = 0.0
    if longest is not None:
        weights[longest + 1:] = 0.0
    if not weights.sum() > 0:
        raise ValueError("the length distribution has no record of a length that fits")
    return torch.multinomial(weights, num, replacement=True, generator=generator)


def without_tokens(model, token_ids) -> object:
    """``model`` whose output gives ``token_ids`` a large negative (finite) logit / log score, so that no
    sampler draws them; its declared time-freedom is kept (``discdiff.model_call.is_time_free``)."""
    from discdiff.model_call import is_time_free

    ids = torch.as_tensor(list(token_ids), dtype=torch.long)

    def wrapped(x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        out = model(x_t, sigma_bar)
        return out.index_fill(-1, ids.to(out.device), _EXCLUDED) if ids.numel() else out

    wrapped.time_free = is_time_free(model)
    wrapped.inner = model
    return wrapped


def on_record_support(model, fmt: RecordFormat, mask_id: int | None, must_end: bool = True,
                      length: int | None = None) -> object:
    """``model`` whose predictions at x_t put no mass outside the EOS-padded layout ``[BOS] letter+ EOS*``:

        EOS excluded at i   when i is the first body position, or a body letter already stands at some j > i
        only EOS at i       when an EOS already stands at some j < i, or (``must_end``) i is the canvas's last
        BOS, PAD excluded   everywhere (BOS is pinned at 0)

    Every excluded event has probability 0 under any law of well-formed records, so for an exact model this
    changes nothing (tests/sampling/test_records.py); for a learned one it projects each position's prediction
    onto the format's support, the way pinning BOS does, so a sample is one well-formed record unless the model
    never places EOS within the canvas. The length stays the model's: the sampler still decides where EOS goes.
    ``must_end`` (the default) asks every record to end inside the canvas, as records do when training drops
    the ones that do not fit (``data.long_records=drop``); a model trained on cropped windows of long records
    learned rows without EOS, which this truncates. ``length``: the canvas's length, when the sampler may call the
    model on a prefix of it (block samplers call it on the finished blocks plus the current one): the last
    position is then forced to EOS only on a call that reaches it (None: every call covers the canvas).
    ``mask_id``: the graph's MASK id (None for graphs without one). Output [B, L, S], excluded entries at a large
    negative finite value; time-freedom kept."""
    from discdiff.model_call import is_time_free

    specials = torch.tensor([fmt.eos_id, *fmt.inner_specials], dtype=torch.long)
    inner = torch.tensor(fmt.inner_specials, dtype=torch.long)

    def wrapped(x_t: Tensor, sigma_bar: Tensor) -> Tensor:
        out = model(x_t, sigma_bar)
        S = out.shape[-1]
        clean = mask_id if mask_id is not None else S  # clean states are the ids below MASK (MASK last)
        letter = ~torch.isin(x_t, specials.to(x_t.device)) & (x_t != (-1 if mask_id is None else mask_id))
        is_eos = x_t == fmt.eos_id
        letter_after = (letter.flip(-1).cumsum(-1).flip(-1) - letter.long()) > 0  # [B, L] a letter at some j > i
        eos_before = (is_eos.cumsum(-1) - is_eos.long()) > 0  # [B, L] an EOS at some j < i
        if must_end and (length is None or x_t.shape[-1] == length):
            eos_before[:, -1] = True
        no_eos = letter_after.clone()
        no_eos[:, fmt.offset] = True
        columns = torch.arange(S, device=out.device)
        not_eos = (columns != fmt.eos_id) & (columns < clean)  # [S] the clean states other than EOS
        out = out.masked_fill(no_eos[..., None] & (columns == fmt.eos_id), _EXCLUDED)
        out = out.masked_fill(eos_before[..., None] & not_eos, _EXCLUDED)
        return out.index_fill(-1, inner.to(out.device), _EXCLUDED) if inner.numel() else out

    wrapped.time_free = is_time_free(model)
    wrapped.inner = model
    return wrapped


def infill_rows(rows: Sequence[Sequence[int | None]]) -> Condition:
    """A Condition with one row per list (``None`` marks a blank to fill; every list the same length):
    prompts of different lengths in one batch, e.g. [[5, 6, None, None], [7, None, None, None]]."""
    if not rows or len({len(r) for r in rows}) != 1 or not len(rows[0]):
        raise ValueError("infill_rows needs non-empty rows of one common length (pad with None blanks)")
    known = torch.tensor([[i is not None for i in r] for r in rows])
    tokens = torch.tensor([[0 if i is None else i for i in r] for r in rows])
    return Condition(tokens, known)
