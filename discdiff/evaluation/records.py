"""Sampling records from a trained model and measuring them: the glue between a tokenizer, a model and the
record tools of ``discdiff.sampling.records`` and ``discdiff.evaluation.validity``.

    fmt = record_format(pre.tokenizer)                       # RecordFormat(eos, bos, pad) or None (no EOS)
    out = sample_records(pre, 64, 256, mode="eos", seeds=range(64), steps=128)
    stats = record_stats(out, fmt, record_letters(pre.tokenizer, pre.vocab_size), reference_lengths(...))

Modes: "plain" (today's sampler: every position generated, nothing pinned, nothing excluded), "eos"
(BOS pinned at 0, BOS / PAD never drawn; the model places EOS, and a letter may follow it), "support" ("eos"
with each prediction kept on the record format's support: no EOS before a letter, only EOS after an EOS,
every record ending inside the canvas; ``on_record_support``; what ``discdiff sample`` does) and
"length_first" (each row's body length given or drawn from ``length_counts``, EOS pinned after it, special
tokens never drawn in the body).
"""

from __future__ import annotations

import numpy as np
import torch

from discdiff.data.splits import open_split
from discdiff.sampling.records import RecordFormat, draw_lengths, record_sampling, without_tokens

__all__ = ["MODES", "length_histogram", "record_format", "record_letters", "reference_lengths", "sample_records"]

MODES = ("plain", "eos", "support", "length_first")


def record_format(tokenizer) -> RecordFormat | None:
    """The record layout a tokenizer implies: None when it has no EOS (pixels, plain character sets)."""
    if tokenizer is None or getattr(tokenizer, "eos_id", None) is None:
        return None
    return RecordFormat(eos_id=tokenizer.eos_id, bos_id=tokenizer.bos_id, pad_id=tokenizer.pad_id)


def record_letters(tokenizer, vocab_size: int) -> list[int]:
    """The ids a record's body may hold: every id but the special tokens."""
    special = set(getattr(tokenizer, "special_tokens", {}).values())
    return [i for i in range(vocab_size) if i not in special]


def reference_lengths(source, *, context: int, split: str = "validation", long_records: str = "drop") -> np.ndarray:
    """Body lengths of a split's records as a model of ``context`` sees them (records that do not fit are
    left out with ``long_records="drop"``, cropped to the canvas with "crop")."""
    dataset = open_split(str(source), split, context=context, records="eos", long_records=long_records).dataset
    if not hasattr(dataset, "record_lengths"):
        raise ValueError(f"{source}: the {split!r} split is running text, not records")
    offset = int(dataset.bos_id is not None)
    real = dataset.record_lengths()  # [BOS] + body + EOS, clipped to the context
    return np.minimum(real - offset - 1, context - offset - 1)


def length_histogram(lengths, longest: int) -> list[int]:
    """counts[n] = how many of ``lengths`` equal n, for n in [0, longest] (longer ones dropped)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.bincount(lengths[lengths <= longest], minlength=longest + 1).tolist()


def sample_records(pre, num_samples: int, length: int, *, mode: str = "eos", body_lengths=None,
                   length_counts=None, seeds=None, generator=None, **options) -> torch.Tensor:
    """[num_samples, length] samples of a Pretrained record model in ``mode`` (see the module docstring);
    ``options`` go to ``Diffusion.sample`` (sampler, steps, temperature, ...)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    fmt = record_format(pre.tokenizer)
    model, condition = pre.model, None
    if mode != "plain":
        if fmt is None:
            raise ValueError("record sampling needs a tokenizer with an EOS token")
        if mode == "length_first" and body_lengths is None:
            if length_counts is None:
                raise ValueError("length_first needs body_lengths or length_counts")
            draw = torch.Generator().manual_seed(int(seeds[0]) if seeds is not None else 0)
            body_lengths = draw_lengths(length_counts, num_samples, draw, longest=fmt.max_body(length))
        if mode == "eos":  # BOS pinned, the inner specials never drawn; the model free to place EOS anywhere
            condition = fmt.condition(num_samples, length, None)
            model = without_tokens(pre.model, fmt.inner_specials)
        else:  # the same setup as discdiff sample and the web demo
            model, condition = record_sampling(pre.model, fmt, pre.diffusion.graph.mask_id, num_samples, length,
                                               body_lengths if mode == "length_first" else None)
    device = next(pre.model.parameters()).device
    with torch.no_grad():
        out = pre.diffusion.sample(model, num_samples, length, condition=condition, seeds=seeds, generator=generator,
                                   device=device, **options)
    return out.samples.cpu()
