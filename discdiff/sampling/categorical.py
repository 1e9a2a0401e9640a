"""The float64 categorical draws every sampler uses; they live in ``discdiff.categorical`` so the graphs
(below the samplers in the dependency order) can use them too."""

from discdiff.categorical import NEG_INF, filter_logits, sample_categorical, sample_from_logits

__all__ = ["NEG_INF", "filter_logits", "sample_categorical", "sample_from_logits"]
