"""The SFT loss (prompt as clean context, loss mask on the response) against H(response | prompt), exactly."""

import math

import pytest
import torch

import discdiff as dd
from discdiff.exact import ToyDistribution
from discdiff.exact_conditional import prompt_response_entropy

PROMPT, RESPONSE = 2, 2
JOINT = ToyDistribution.random(3, PROMPT + RESPONSE, torch.Generator().manual_seed(11), concentration=0.3)
GRAPH = dd.Absorbing(3)


def _hiding_oracle():
    """The exact denoiser of the joint that honours padding_mask: a hidden position carries no evidence
    (it is read as MASK), so a trainer that hid the prompt would score H(response), not H(response | prompt)."""
    exact = JOINT.denoiser_model(GRAPH)

    def model(x_t, sigma_bar, padding_mask=None):
        return exact(x_t if padding_mask is None else torch.where(padding_mask, x_t, GRAPH.mask_id), sigma_bar)

    return model


@pytest.mark.parametrize("objective", ["k_dce", "t_dce", "lambda_dce"])
def test_sft_loss_expectation_is_the_conditional_entropy(objective):
    diff = dd.Diffusion(GRAPH, dd.LogLinear(eps=1e-4), "denoiser")
    n = 4000
    gen = torch.Generator().manual_seed(0)
    x0 = JOINT.sample(n, gen)
    loss_mask = torch.arange(PROMPT + RESPONSE).expand(n, -1) >= PROMPT
    loss = diff.loss(_hiding_oracle(), x0, objective, generator=gen, loss_mask=loss_mask).double()
    target = prompt_response_entropy(JOINT, PROMPT)
    stderr = loss.std().item() / math.sqrt(n)
    assert abs(loss.mean().item() - target) <= 3 * stderr + 1e-3 * target
    unconditional = ToyDistribution(JOINT.probs.reshape(-1, 9).sum(0), 3, RESPONSE).entropy()
    assert unconditional - target > 6 * stderr  # hiding the prompt would be detected


def test_the_prompt_is_never_noised_and_always_visible():
    seen = []

    def spy(x_t, sigma_bar, padding_mask=None):
        seen.append((x_t.clone(), padding_mask))
        return torch.zeros(*x_t.shape, 4)

    x0 = torch.tensor([[0, 1, 2, 2, 0, 0]] * 64)
    padding = torch.tensor([[True] * 5 + [False]] * 64)
    loss_mask = torch.tensor([[False, False, True, True, True, False]] * 64)
    diff = dd.Diffusion(GRAPH, dd.LogLinear(), "denoiser")
    for objective in diff.objectives:
        seen.clear()
        diff.loss(spy, x0, objective, padding_mask=padding, loss_mask=loss_mask,
                  generator=torch.Generator().manual_seed(1))
        x_t, attention = seen[0]
        assert torch.equal(x_t[:, :2], x0[:, :2]), objective  # prompt: never noised
        assert (x_t[:, 2:5] == GRAPH.mask_id).any() or objective in ("score_entropy", "l2")
        assert torch.equal(attention, padding), objective  # the attention mask is the padding mask


def test_a_loss_mask_outside_the_real_tokens_is_refused():
    diff = dd.Diffusion(GRAPH, dd.LogLinear(), "denoiser")
    with pytest.raises(ValueError, match="loss_mask marks padding positions"):
        diff.loss(lambda x, s: torch.zeros(*x.shape, 4), torch.zeros(1, 3, dtype=torch.long),
                  padding_mask=torch.tensor([[True, True, False]]), loss_mask=torch.tensor([[False, True, True]]))
