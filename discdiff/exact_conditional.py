"""Exact conditional oracles on toy spaces: a class-conditional family p(x | c) with its null branch, and a
joint over (prompt, response) whose exact denoiser conditions on a clean prompt by itself.

    p(x | c)   one ``ToyDistribution`` per class c = 0..C-1
    p(x)       = sum_c pi_c p(x | c): what the null label (id C) must give, the unconditional branch
    guided     softmax_y((1 + w) log p(x^i = y | x_t, c) - w log p(x^i = y | x_t))   per position

With the absorbing graph a clean prompt position x_t^j = x0^j is evidence like any unmasked token, so the
exact denoiser of the joint ``ToyDistribution`` over [prompt ; response] *is* p(response | prompt, x_t)
(``prompt_response_entropy`` gives H(response | prompt), the SFT loss's expectation under it).

    >>> import torch, discdiff as dd
    >>> from discdiff.exact_conditional import ClassConditionalToy
    >>> gen = torch.Generator().manual_seed(0)
    >>> toy = ClassConditionalToy.random(num_classes=2, vocab_size=3, length=2, generator=gen)
    >>> model = toy.denoiser_model(dd.Absorbing(3))
    >>> model(torch.full((2, 2), 3), torch.ones(2), label=torch.tensor([0, 2])).shape
    torch.Size([2, 2, 4])
"""

from __future__ import annotations

import torch
from torch import Tensor

from .exact import _LOG_ZERO, ToyDistribution
from .graphs import Graph

__all__ = ["ClassConditionalToy", "guided_log_probs", "prompt_response_entropy"]


class ClassConditionalToy:
    """``classes[c]``: p(x | c) for c < C; ``prior`` [C]: pi_c. Label C is the null label, p(x)."""

    def __init__(self, classes: list[ToyDistribution], prior: Tensor):
        prior = torch.as_tensor(prior, dtype=torch.float64)
        if prior.shape != (len(classes),) or (prior < 0).any() or abs(float(prior.sum()) - 1) > 1e-9:
            raise ValueError("prior must be a probability vector with one entry per class")
        shapes = {(c.vocab_size, c.length) for c in classes}
        if len(shapes) != 1:
            raise ValueError("every class must live on the same space (vocab_size, length)")
        self.classes, self.prior = classes, prior
        self.num_classes = len(classes)
        vocab_size, length = shapes.pop()
        mixture = (prior[:, None] * torch.stack([c.probs for c in classes])).sum(0)
        self.marginal = ToyDistribution(mixture, vocab_size, length)  # the null label's law

    @classmethod
    def random(cls, num_classes: int, vocab_size: int, length: int, generator=None, concentration: float = 0.5):
        classes = [ToyDistribution.random(vocab_size, length, generator, concentration) for _ in range(num_classes)]
        prior = torch.rand(num_classes, generator=generator, dtype=torch.float64) + 0.5
        return cls(classes, prior / prior.sum())

    def law(self, label: int) -> ToyDistribution:
        """p(x | label); label ``num_classes`` is the null label, p(x)."""
        return self.marginal if label == self.num_classes else self.classes[label]

    def denoiser_model(self, graph: Graph):
        """``model(x_t, sigma_bar, label=None) -> [B, L, S]`` exact clean log-probs under each row's label
        (None: the null label for every row). Time-free on the absorbing graph, like ``denoiser_model``."""
        oracles = [self.law(c).denoiser_model(graph) for c in range(self.num_classes + 1)]

        def model(x_t: Tensor, sigma_bar: Tensor, label: Tensor | None = None) -> Tensor:
            if label is None:
                label = torch.full((x_t.shape[0],), self.num_classes, dtype=torch.long)
            out = torch.empty(*x_t.shape, graph.num_states, dtype=torch.float64)
            sigma = torch.as_tensor(sigma_bar, dtype=torch.float64).expand(x_t.shape[0])
            for c in label.unique().tolist():
                rows = label == c
                out[rows] = oracles[c](x_t[rows], sigma[rows])
            return out

        model.time_free = graph.mask_id is not None
        model.num_classes = self.num_classes
        return model


def guided_log_probs(cond_log_probs: Tensor, uncond_log_probs: Tensor, w: float) -> Tensor:
    """log softmax((1 + w) log p(. | c) - w log p(.)) over the last dim (float64)."""
    logits = (1 + w) * cond_log_probs.double() - w * uncond_log_probs.double()
    return torch.log_softmax(logits.clamp_min(_LOG_ZERO * (1 + 2 * w)), dim=-1)


def prompt_response_entropy(joint: ToyDistribution, prompt_length: int) -> float:
    """H(response | prompt) in nats for a joint over [prompt (prompt_length tokens) ; response]."""
    n_response = joint.vocab_size ** (joint.length - prompt_length)
    table = joint.probs.reshape(-1, n_response)  # [prompts, responses] (lexicographic order)
    prompt_probs = table.sum(1)
    h_joint = float(-torch.xlogy(table, table).sum())
    h_prompt = float(-torch.xlogy(prompt_probs, prompt_probs).sum())
    return h_joint - h_prompt
