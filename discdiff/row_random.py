"""Randomness per batch row: ``RowGenerators`` gives row b of a batch its own ``torch.Generator``.

A sampler that draws every random number of row b from generator b alone, in an order that depends only
on row b's own state, produces for row b the same tokens whether the row is drawn alone or inside any
batch (given a model whose answer for a row does not depend on the other rows). So ``seeds=[...]`` makes a
row's sample a function of its own seed and prompt, never of its neighbours.

Every draw a sampler makes takes a ``generator`` that is either one ``torch.Generator`` (or None) for the
whole batch, or a ``RowGenerators`` whose length is the draw's leading dimension::

    >>> import torch
    >>> from discdiff.row_random import RowGenerators, uniform
    >>> gens = RowGenerators.from_seeds([3, 7])
    >>> both = uniform((2, 4), gens)                                  # row b from generator b
    >>> alone = uniform((1, 4), RowGenerators.from_seeds([7]))
    >>> torch.equal(both[1:], alone)
    True

``rows_of(generator, rows)`` narrows a ``RowGenerators`` to the rows a step works on (a plain generator is
returned as it is). Per-row draws cost one small ``torch.rand`` per row: exact, and cheap beside a model
call. This module imports nothing from the rest of discdiff.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["RowGenerators", "resolve_generator", "rows_of", "uniform"]


class RowGenerators:
    """One ``torch.Generator`` per batch row; ``len`` is the number of rows."""

    def __init__(self, generators: Sequence[torch.Generator]):
        generators = list(generators)
        if not generators or not all(isinstance(g, torch.Generator) for g in generators):
            raise ValueError("RowGenerators needs a non-empty list of torch.Generator objects")
        self.generators = generators

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], device=None) -> RowGenerators:
        """Generators seeded with ``seeds`` (one non-negative integer per row) on ``device``."""
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
            raise ValueError(f"seeds must be a non-empty list of integers, one per row; got {seeds!r}")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or not 0 <= s < 2**63:
                raise ValueError(f"each seed must be an integer in [0, 2**63), got {s!r}")
        device = torch.device(device if device is not None else "cpu")
        return cls([torch.Generator(device).manual_seed(int(s)) for s in seeds])

    def __len__(self) -> int:
        return len(self.generators)

    def __getitem__(self, row: int) -> torch.Generator:
        return self.generators[row]

    def subset(self, rows: Tensor | Sequence[int]) -> RowGenerators:
        """The generators of ``rows`` (indices into this batch), in that order."""
        rows = rows.tolist() if isinstance(rows, Tensor) else list(rows)
        return RowGenerators([self.generators[r] for r in rows]) if rows else _EMPTY

    def _check(self, shape) -> None:
        if len(shape) == 0 or shape[0] != len(self):
            raise ValueError(f"a per-row draw needs a leading dimension of {len(self)} rows, got shape {tuple(shape)}")

    def __repr__(self) -> str:
        return f"RowGenerators({len(self)} rows)"


class _Empty(RowGenerators):
    def __init__(self):
        self.generators = []


_EMPTY = _Empty()


def rows_of(generator, rows: Tensor | Sequence[int]):
    """``generator`` narrowed to ``rows`` when it is per row; a plain generator (or None) unchanged."""
    return generator.subset(rows) if isinstance(generator, RowGenerators) else generator


def uniform(shape, generator=None, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """U[0, 1) of ``shape``; with ``RowGenerators`` row b (the leading index) comes from generator b."""
    shape = tuple(shape)
    if not isinstance(generator, RowGenerators):
        return torch.rand(shape, generator=generator, dtype=dtype, device=device)
    generator._check(shape)
    if not len(generator):
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.stack([torch.rand(shape[1:], generator=g, dtype=dtype, device=device) for g in generator.generators])



def resolve_generator(generator, seeds: Sequence[int] | None, num_rows: int, device=None):
    """What a sampler draws from: ``RowGenerators.from_seeds(seeds)`` when seeds are given (one per row,
    never together with ``generator``), else ``generator`` (a RowGenerators must then have num_rows rows)."""
    if seeds is not None:
        if generator is not None:
            raise ValueError("pass generator= or seeds=, not both")
        generator = RowGenerators.from_seeds(seeds, device)
    if isinstance(generator, RowGenerators) and len(generator) != num_rows:
        raise ValueError(f"seeds / RowGenerators must give one per row: {num_rows} rows, got {len(generator)}")
    return generator
