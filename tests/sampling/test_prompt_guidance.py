"""Classifier-free guidance against a dropped prompt (the prompt shown as MASK, the branch that training with
condition_dropout on prompt-response pairs teaches), checked against laws enumerated from a toy joint."""

import pytest
import torch

import discdiff as dd
from discdiff.exact import ToyDistribution
from discdiff.exact_conditional import guided_log_probs
from discdiff.sampling import Condition, Predictor

from .helpers import total_variation

V = 3
GRAPH = dd.Absorbing(V)


def _laws(joint: ToyDistribution, prompt: tuple[int, int], length: int):
    """Per response position i: log p(x_i | prompt) and log p(x_i), marginalised by enumeration [R, V] each."""
    probs = joint.probs.view(*(V,) * length)  # [V, V, ...]: p(prompt_0, prompt_1, response ...)
    given = probs[prompt[0], prompt[1]]
    cond, uncond = [], []
    for i in range(length - 2):
        others = [d for d in range(length - 2) if d != i]
        cond.append((given.sum(others) if others else given) / given.sum())
        plain = probs.sum((0, 1))
        uncond.append(plain.sum(others) if others else plain)
    return torch.stack(cond).log(), torch.stack(uncond).log()


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guided_log_probs_against_a_masked_prompt_are_the_contrast_per_position(w):
    joint = ToyDistribution.random(V, 4, torch.Generator().manual_seed(4), concentration=0.5)
    prompt = (2, 0)
    x = torch.tensor([[2, 0, V, V]])  # the prompt clean, the response masked
    cond = Condition(torch.tensor([[2, 0, 0, 0]]), torch.tensor([[True, True, False, False]]))
    pred = Predictor(joint.denoiser_model(GRAPH), GRAPH, dd.LogLinear(), "denoiser", condition=cond, guidance=w,
                     num_rows=1)
    got = pred.clean_log_probs(x, torch.ones(1))[0, 2:, :V].double()  # [2, V]
    c, u = _laws(joint, prompt, 4)
    torch.testing.assert_close(got, guided_log_probs(c, u, w), atol=1e-9, rtol=0)


@pytest.mark.parametrize("sampler,opts", [("ancestral", {"steps": 16}), ("first_hitting", {}),
                                          ("confidence", {"steps": 1})], ids=str)
def test_guided_sampling_after_a_prompt_draws_softmax_of_the_contrast(sampler, opts):
    joint = ToyDistribution.random(V, 3, torch.Generator().manual_seed(6), concentration=0.5)
    prompt, w, n = (1, 2), 2.0, 20_000
    cond = Condition(torch.tensor([[1, 2, 0]]), torch.tensor([[True, True, False]]))
    diff = dd.Diffusion(GRAPH, dd.LogLinear(), "denoiser")
    out = diff.sample(joint.denoiser_model(GRAPH), n, 3, sampler, condition=cond, guidance=w,
                      generator=torch.Generator().manual_seed(9), **opts)
    c, u = _laws(joint, prompt, 3)
    target = guided_log_probs(c[0], u[0], w).exp()  # softmax((1 + w) log p(x | c) - w log p(x))
    assert total_variation(out.samples[:, 2:], target, V) <= 0.02
    assert total_variation(out.samples[:, 2:], c[0].exp(), V) > 0.05  # guidance moved the law
