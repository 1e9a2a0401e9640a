"""What a network's output means: log concrete scores ("score", SEDD) or clean-token logits ("denoiser", RADD).

A model is any callable ``model(x_t: Long[B, L], sigma_bar: [B]) -> [B, L, S]``.

* ``"score"``: the output *is* ``log s_theta(x_t, t)[i, y]``, the log of p_t(x with x^i = y) / p_t(x);
  the entry at the current token is ignored (it is 1 by definition). SEDD's output scaling
  ``- log(e^sigma_bar - 1) - log(S - 1)`` belongs in the network's head, not here.
* ``"denoiser"``: the output is logits of p_theta(x0^i = y | x_t) over the clean states; a trailing MASK
  column (absorbing graph, S = V + 1 outputs) is ignored. A time-free network ignores ``sigma_bar``.

The bridge between them is exact for a factorised forward process (``Graph.log_score_from_clean``);
for the absorbing graph it is RADD's identity

    s_theta(x_t, t)[i, y] = e^{-sigma_bar} / (1 - e^{-sigma_bar}) * p_theta(x0^i = y | x_t^{UM})   (x_t^i = MASK),

and conversely a score model's clean-token distribution is softmax(log s[i, :V]) at masked positions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from .graphs import Graph

__all__ = ["Parameterization", "ScoreParameterization", "DenoiserParameterization", "get_parameterization"]


def _as_float(output: Tensor) -> Tensor:
    """Losses and softmaxes run in float32 or wider (bf16/fp16 only inside the backbone)."""
    return output if output.dtype in (torch.float32, torch.float64) else output.float()


class Parameterization(ABC):
    """Reads a network output as log concrete scores and as clean-token log-probabilities."""

    name: str

    @abstractmethod
    def log_score(self, output: Tensor, x_t: Tensor, sigma_bar: Tensor, graph: Graph) -> Tensor:
        """[B, L, S] log concrete scores at the noisy tokens ``x_t``."""

    @abstractmethod
    def clean_log_probs(self, output: Tensor, x_t: Tensor, sigma_bar: Tensor, graph: Graph) -> Tensor:
        """[B, L, C] log p_theta(x0^i = y | x_t) over the C = graph.num_clean_states clean states."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ScoreParameterization(Parameterization):
    """The network outputs log concrete scores (SEDD)."""

    name = "score"

    def log_score(self, output, x_t, sigma_bar, graph):
        return _as_float(output)

    def clean_log_probs(self, output, x_t, sigma_bar, graph):
        if graph.mask_id is None:
            raise ValueError(
                "clean-token probabilities from a score model are defined here for the absorbing graph only "
                "(RADD's identity); use parameterization='denoiser' for other graphs"
            )
        # RADD: at masked positions the score is proportional to p(x0^i = . | x_t^UM); normalise it.
        return torch.log_softmax(_as_float(output)[..., : graph.num_clean_states], dim=-1)


class DenoiserParameterization(Parameterization):
    """The network outputs logits over clean tokens (RADD / MDLM / LLaDA), usually time-free."""

    name = "denoiser"

    def log_score(self, output, x_t, sigma_bar, graph):
        return graph.log_score_from_clean(self.clean_log_probs(output, x_t, sigma_bar, graph), x_t, sigma_bar)

    def clean_log_probs(self, output, x_t, sigma_bar, graph):
        return torch.log_softmax(_as_float(output)[..., : graph.num_clean_states], dim=-1)


_PARAMETERIZATIONS: dict[str, Parameterization] = {
    "score": ScoreParameterization(),
    "denoiser": DenoiserParameterization(),
}


def get_parameterization(name: str | Parameterization) -> Parameterization:
    """Look up a parameterization by name ('score' or 'denoiser'), or pass an instance through."""
    if isinstance(name, Parameterization):
        return name
    try:
        return _PARAMETERIZATIONS[name]
    except KeyError:
        raise ValueError(f"unknown parameterization {name!r}; choose one of {sorted(_PARAMETERIZATIONS)}") from None
