"""The graphs, schedules and objectives a training config can name, and which diffusion.* keys each takes.

One table per kind of choice: config.py checks a config against them where it is parsed (unknown names,
missing required keys, keys that do not apply to the chosen graph or schedule), and recipe.py builds the
objects from them. Adding a graph or a schedule is adding a row.

    diffusion:                      diffusion:                     diffusion:
      graph: dense                    graph: similarity              graph: ordinal     # grey levels
      rate_matrix: Q.npy              similarity: blosum62.csv
                                      temperature: 2.0

Matrix files: ``.npy`` (numpy, no pickles), ``.csv`` / ``.txt`` (comma-separated numbers, one matrix row
per line, ``#`` comments), or ``.safetensors`` holding exactly one tensor. Relative paths are read from
the working directory (or the ``root`` recipe.build_diffusion is given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import discdiff as dd

__all__ = ["GRAPHS", "MASK_OBJECTIVES", "OBJECTIVES", "PATH_KEYS", "SCHEDULES", "Choice", "load_matrix"]


@dataclass(frozen=True)
class Choice:
    """build(**options) -> the object; ``options``: the diffusion.* keys it takes; ``required``: those
    among them that must be set. A graph's build also takes ``vocab_size`` (from the data) first, and
    ``extra_states`` says how many states it adds to the data's (absorbing: MASK)."""

    build: Callable
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    extra_states: int = 0


#: Keys whose value is a file path (resolved against a root directory before building).
PATH_KEYS = ("rate_matrix", "similarity")

MATRIX_SUFFIXES = (".npy", ".csv", ".txt", ".safetensors")


def load_matrix(path: str | Path, key: str = "matrix"):
    """A square float64 matrix from .npy / .csv / .txt / .safetensors (one tensor); ValueError naming ``key``."""
    import numpy as np
    import torch

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MATRIX_SUFFIXES:
        raise ValueError(f"diffusion.{key}: {path} must end in one of {', '.join(MATRIX_SUFFIXES)}")
    if not path.is_file():
        raise ValueError(f"diffusion.{key}: no such file {path}")
    try:
        if suffix == ".npy":
            matrix = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float64))
        elif suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(path)
            if len(tensors) != 1:
                raise ValueError(f"holds {len(tensors)} tensors ({', '.join(sorted(tensors))}); expected exactly one")
            matrix = next(iter(tensors.values())).to(torch.float64)
        else:
            matrix = torch.from_numpy(np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64))
    except ValueError as e:
        raise ValueError(f"diffusion.{key}: cannot read {path}: {str(e).splitlines()[0]}") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"diffusion.{key}: {path} holds shape {tuple(matrix.shape)}; a square S x S matrix is needed")
    return matrix


def _sized(graph, vocab_size: int, key: str, path):
    if graph.num_states != vocab_size:
        raise ValueError(f"diffusion.{key}: {path} is {graph.num_states} x {graph.num_states} but the data has "
                         f"vocab_size {vocab_size} (a dense graph has one state per token)")
    return graph


def _dense(vocab_size: int, rate_matrix: str):
    graph = _with_key("rate_matrix", lambda: dd.DenseGraph(load_matrix(rate_matrix, "rate_matrix")))
    return _sized(graph, vocab_size, "rate_matrix", rate_matrix)


def _similarity(vocab_size: int, similarity: str, temperature: float | None = None):
    build = lambda: dd.DenseGraph.from_similarity(load_matrix(similarity, "similarity"), temperature)  # noqa: E731
    return _sized(_with_key("similarity", build), vocab_size, "similarity", similarity)


def _with_key(key: str, build):
    try:
        return build()
    except ValueError as e:
        message = str(e)
        raise ValueError(message if message.startswith("diffusion.") else f"diffusion.{key}: {message}") from None


GRAPHS: dict[str, Choice] = {
    # MASK is appended as id vocab_size; the masked-diffusion objectives need it.
    "absorbing": Choice(dd.Absorbing, extra_states=1),
    "uniform": Choice(dd.Uniform),
    # A birth-death chain: each token moves to its neighbours (ordered values such as grey levels).
    "ordinal": Choice(dd.DenseGraph.ordinal),
    # Any rate matrix Q (V x V, off-diagonal >= 0, columns summing to zero) read from a file.
    "dense": Choice(_dense, ("rate_matrix",), ("rate_matrix",)),
    # Rates from a V x V similarity matrix (exp(W / temperature) with a temperature: log-odds such as BLOSUM).
    "similarity": Choice(_similarity, ("similarity", "temperature"), ("similarity",)),
}

SCHEDULES: dict[str, Choice] = {
    "loglinear": Choice(dd.LogLinear, ("eps",)),
    "cosine": Choice(dd.Cosine, ("eps",)),
    "geometric": Choice(dd.Geometric, ("sigma_min", "sigma_max")),
    "linear": Choice(dd.Linear, ("sigma_min", "sigma_max")),
}

#: objective -> what it needs; None: the parameterization's default (score_entropy / t_dce).
OBJECTIVES = ("score_entropy", "l2", "t_dce", "lambda_dce", "k_dce")
#: objectives that mask tokens, so they need a graph with a MASK state
MASK_OBJECTIVES = ("t_dce", "lambda_dce", "k_dce")
#: graphs with a MASK state
MASK_GRAPHS = ("absorbing",)
PARAMETERIZATIONS = ("score", "denoiser")
DEFAULT_OBJECTIVE = {"score": "score_entropy", "denoiser": "t_dce"}
