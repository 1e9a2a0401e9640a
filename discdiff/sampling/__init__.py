"""Reverse-process samplers. ``categorical`` holds the float64 draws every layer uses."""

from .categorical import NEG_INF, filter_logits, sample_categorical, sample_from_logits

__all__ = ["NEG_INF", "filter_logits", "sample_categorical", "sample_from_logits"]
