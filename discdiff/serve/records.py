"""Record models in the demo (proteins, DNA trained with ``data.records=eos``): the glue between the engine
and the library's record tools, so the page samples records exactly as ``discdiff sample`` does.

* the canvas is ``[BOS] template...``: BOS pinned at position 0, the request's template after it;
* the model placing EOS (no record length): the model kept on the format's support (``on_record_support``),
  first_hitting by default (one token per model call keeps every record well formed);
* a record length N or "auto" (length-first): EOS pinned after each row's N body tokens, specials never drawn;
* every streamed state shows each row as its record reads (``RecordFormat.ended``: after the first EOS only
  EOS, the padding), and the result holds each row cut at its first EOS, its length and whether the raw
  sample is one well-formed record (``record_validity``).

    view = RecordView.of(layout, tokenizer, vocab_size)    # None for a model that is not trained on records
    lengths = request_lengths(view, "auto", rows=4, length=64, seed=0)   # [n_1, ..., n_4]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from discdiff.sampling import RecordFormat, record_format_of, record_lengths, record_sampling

from .limits import RequestError

__all__ = ["RecordView", "request_lengths"]


@dataclass(frozen=True)
class RecordView:
    """A record model's layout, the training length histogram (None: not saved) and the ids a body may hold."""

    fmt: RecordFormat
    length_counts: list[int] | None
    letters: tuple[int, ...]

    @classmethod
    def of(cls, layout: dict | None, tokenizer, vocab_size: int) -> RecordView | None:
        from discdiff.evaluation.records import record_letters

        fmt = record_format_of(layout)
        if fmt is None:
            return None
        return cls(fmt, layout.get("length_counts"), tuple(record_letters(tokenizer, vocab_size)))

    def info(self) -> dict:
        """What the page needs: the special ids and whether "auto" lengths are on offer."""
        return {"eos_id": self.fmt.eos_id, "bos_id": self.fmt.bos_id, "pad_id": self.fmt.pad_id,
                "auto_length": self.length_counts is not None}

    def head(self) -> list[int]:
        """The ids before the request's template: [BOS] when records start with one."""
        return [self.fmt.bos_id] if self.fmt.bos_id is not None else []

    def sampling(self, model, graph, template, rows: int, length: int, lengths):
        """(model, condition) from ``discdiff.sampling.record_sampling``; ``template`` is the request's one-row or
        per-row Condition. A prompt that covers a pinned EOS is a 400."""
        try:
            prompt = template.validate(rows, length, graph.num_clean_states)  # broadcast to the rows
            return record_sampling(model, self.fmt, graph.mask_id, rows, length, lengths, prompt)
        except ValueError as e:
            raise RequestError(str(e)) from None

    def shown(self, state: torch.Tensor) -> torch.Tensor:
        """[B, L] as the page draws it: EOS after each row's first EOS."""
        return self.fmt.ended(state)

    def result(self, samples: torch.Tensor) -> tuple[list[list[int]], list[dict]]:
        """Each row cut at its first EOS, and {"length", "well_formed"} per row of the raw ``samples`` [B, L]."""
        from discdiff.evaluation.validity import record_validity

        valid = record_validity(samples, self.fmt, self.letters).tolist()
        lengths = self.fmt.body_lengths(samples).tolist()
        return self.fmt.cut(samples), [{"length": n, "well_formed": v} for n, v in zip(lengths, valid, strict=True)]


def request_lengths(view: RecordView | None, value, rows: int, length: int, seed: int) -> list[int] | None:
    """A request's ``record_length`` (None, an integer, or "auto": drawn with ``seed``) as one body length per
    row (``discdiff.sampling.record_lengths``); a 400 when it does not fit or the model has no records."""
    try:
        if view is None:
            return record_lengths(value, None, rows, length)  # None, or: needs a model trained on records
        return record_lengths(value, view.fmt, rows, length, view.length_counts, seed=seed)
    except ValueError as e:
        raise RequestError(str(e)) from None
