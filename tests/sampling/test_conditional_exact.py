"""Class-conditional sampling and classifier-free guidance against exact answers (toy spaces, enumeration)."""

import pytest
import torch

import discdiff as dd
from discdiff.exact_conditional import ClassConditionalToy, guided_log_probs
from discdiff.sampling import Condition, Predictor

from .helpers import total_variation

N = 20_000
GRAPH = dd.Absorbing(3)
TOY = ClassConditionalToy.random(num_classes=3, vocab_size=3, length=2, generator=torch.Generator().manual_seed(3))
MODEL = TOY.denoiser_model(GRAPH)
EXACT_SAMPLERS = [("ancestral", {"steps": 64}), ("first_hitting", {}),
                  ("confidence", {"steps": 2, "remasking": "random"})]


@pytest.mark.parametrize("sampler,opts", EXACT_SAMPLERS, ids=lambda v: str(v))
@pytest.mark.parametrize("label", [0, 2, 3])  # 3 is the null label: the mixture p(x)
def test_the_exact_conditional_model_reproduces_p_x_given_label(sampler, opts, label):
    diff = dd.Diffusion(GRAPH, dd.LogLinear(), "denoiser")
    out = diff.sample(MODEL, N, 2, sampler, label=label, generator=torch.Generator().manual_seed(label), **opts)
    assert total_variation(out.samples, TOY.law(label).probs, 3) <= 0.03
    other = TOY.law((label + 1) % 4).probs  # the check has teeth: another class's law is far away
    assert total_variation(out.samples, other, 3) > 0.1


def test_per_row_labels_follow_each_row():
    diff = dd.Diffusion(GRAPH, dd.LogLinear(), "denoiser")
    labels = torch.tensor([0, 1] * (N // 2))
    out = diff.sample(MODEL, N, 2, "first_hitting", label=labels, generator=torch.Generator().manual_seed(5))
    for c in (0, 1):
        assert total_variation(out.samples[labels == c], TOY.law(c).probs, 3) <= 0.04


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guided_log_probs_are_the_renormalised_contrast_per_position(w):
    x = torch.tensor([[3, 3], [1, 3], [3, 2]])  # all masked, and one known token in each row
    sigma = torch.ones(3)
    pred = Predictor(MODEL, GRAPH, dd.LogLinear(), "denoiser", label=1, guidance=w, num_rows=3)
    got = pred.clean_log_probs(x, sigma)
    cond = TOY.law(1).clean_log_probs(GRAPH, x, sigma)
    uncond = TOY.marginal.clean_log_probs(GRAPH, x, sigma)
    torch.testing.assert_close(got.double(), guided_log_probs(cond, uncond, w), atol=1e-9, rtol=0)
    assert pred.nfe == 1  # both branches in one batch of 2B rows


@pytest.mark.parametrize("sampler,opts", EXACT_SAMPLERS, ids=lambda v: str(v))
def test_guided_sampling_draws_the_guided_law_on_one_position(sampler, opts):
    toy = ClassConditionalToy.random(num_classes=2, vocab_size=4, length=1, generator=torch.Generator().manual_seed(7))
    graph, w = dd.Absorbing(4), 2.0
    diff = dd.Diffusion(graph, dd.LogLinear(), "denoiser")
    out = diff.sample(toy.denoiser_model(graph), N, 1, sampler, label=0, guidance=w,
                      generator=torch.Generator().manual_seed(8), **opts)
    target = guided_log_probs(toy.law(0).probs.log(), toy.marginal.probs.log(), w).exp()
    assert total_variation(out.samples, target, 4) <= 0.02
    assert total_variation(out.samples, toy.law(0).probs, 4) > 0.05  # guidance did sharpen the law


def test_null_and_infill_modes_contrast_different_branches():
    x = torch.tensor([[1, 3]])
    cond = Condition(torch.tensor([[1, 0]]), torch.tensor([[True, False]]))
    sigma = torch.ones(1)
    null = Predictor(MODEL, GRAPH, dd.LogLinear(), "denoiser", label=0, guidance=1.0, condition=cond, num_rows=1)
    infill = Predictor(MODEL, GRAPH, dd.LogLinear(), "denoiser", label=0, guidance=1.0, condition=cond, num_rows=1,
                       guidance_mode="infill")
    c0 = TOY.law(0).clean_log_probs(GRAPH, x, sigma)
    uncond = TOY.marginal.clean_log_probs(GRAPH, x, sigma)
    torch.testing.assert_close(null.clean_log_probs(x, sigma).double(), guided_log_probs(c0, uncond, 1.0),
                               atol=1e-9, rtol=0)
    masked = TOY.law(0).clean_log_probs(GRAPH, torch.tensor([[3, 3]]), sigma)  # label kept, known token hidden
    torch.testing.assert_close(infill.clean_log_probs(x, sigma).double(), guided_log_probs(c0, masked, 1.0),
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"label": 0, "guidance": 1.0, "null_label": None, "model": lambda x, s, label=None: x}, "null_label"),
    ({"guidance": 1.0}, "guidance needs a Condition"),
    ({"label": 0, "guidance": 1.0, "guidance_mode": "infill"}, "guidance needs a Condition"),
    ({"guidance_mode": "cfg"}, "guidance_mode must be one of null, infill"),
])
def test_guidance_refuses_what_it_cannot_do(kwargs, match):
    model = kwargs.pop("model", MODEL)
    with pytest.raises(ValueError, match=match):
        Predictor(model, GRAPH, dd.LogLinear(), "denoiser", num_rows=2, **kwargs)


def test_a_label_for_a_model_without_labels_is_refused():
    diff = dd.Diffusion(GRAPH, dd.LogLinear(), "denoiser")
    with pytest.raises(ValueError, match="the model takes none"):
        diff.sample(lambda x, s: torch.zeros(*x.shape, 4), 2, 2, "ancestral", label=0, steps=2)
