"""Samplers fed the exact score / denoiser of a toy distribution reproduce it (20,000 samples)."""

import pytest
import torch

import discdiff as dd
from discdiff.exact import ToyDistribution
from discdiff.sampling import Condition

from .helpers import total_variation, toy

TOY = toy()
N = 20_000

EXACT = [
    # graph, schedule, parameterization, sampler, options
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "ancestral", {"steps": 32}),
    (dd.Absorbing(3), dd.LogLinear(), "score", "ancestral", {"steps": 32}),
    (dd.Absorbing(3), dd.Geometric(), "denoiser", "first_hitting", {}),
    (dd.Absorbing(3), dd.LogLinear(), "score", "tweedie", {"steps": 64}),
    (dd.Uniform(3), dd.Geometric(), "score", "tweedie", {"steps": 64}),
    (dd.DenseGraph.ordinal(3), dd.Geometric(), "score", "tweedie", {"steps": 64}),
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "confidence", {"steps": 3, "remasking": "random"}),
    # an order chosen from the revealed tokens alone keeps any-order sampling exact; the default rule (max_prob)
    # is one of them, so the confidence sampler with one token per step and temperature 1 is exact by default
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "confidence", {"steps": 3}),
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "confidence", {"steps": 3, "remasking": "margin"}),
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "confidence", {"steps": 3, "remasking": "entropy"}),
]


def _model(graph, param, dist=TOY):
    return dist.score_model(graph) if param == "score" else dist.denoiser_model(graph)


@pytest.mark.parametrize("graph,sched,param,sampler,opts", EXACT, ids=lambda v: repr(v))
def test_exact_samplers_reproduce_the_data(graph, sched, param, sampler, opts):
    diff = dd.Diffusion(graph, sched, param)
    out = diff.sample(_model(graph, param), N, 3, sampler, generator=torch.Generator().manual_seed(1), **opts)
    assert out.samples.shape == (N, 3) and out.samples.max() < 3  # no MASK left
    assert total_variation(out.samples, TOY.probs, 3) <= 0.03


def test_choosing_the_position_after_the_draw_sharpens():
    # LLaDA's low-confidence rule keeps the position whose *drawn* token is likeliest: not exact (TV ~0.26 here,
    # against ~0.015 for the rules above with the same draws), which is why the ordered rules exist
    g = dd.Absorbing(3)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(
        TOY.denoiser_model(g), N, 3, "confidence", steps=3, remasking="low_confidence",
        generator=torch.Generator().manual_seed(1))
    assert total_variation(out.samples, TOY.probs, 3) > 0.1


def test_wrong_model_is_detected():
    # the TV check has teeth: samples of another distribution are far away
    other = ToyDistribution.random(3, 3, generator=torch.Generator().manual_seed(5))
    g = dd.Absorbing(3)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(
        other.denoiser_model(g), N, 3, "first_hitting", generator=torch.Generator().manual_seed(1))
    assert total_variation(out.samples, TOY.probs, 3) > 0.1


@pytest.mark.parametrize("sampler", ["euler", "tau_leaping"])
def test_approximate_samplers_error_decreases_with_steps(sampler):
    # Measured (seed 1, 20k samples, uniform graph, geometric schedule): see the closing note of issue 3.
    g = dd.Uniform(3)
    diff = dd.Diffusion(g, dd.Geometric(), "score")
    errors = []
    for steps in (2, 8, 64):
        out = diff.sample(TOY.score_model(g), N, 3, sampler, steps=steps, generator=torch.Generator().manual_seed(1))
        errors.append(total_variation(out.samples, TOY.probs, 3))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] <= 0.03


def _conditional(known_pos, known_tok):
    """Exact p(x | x[known_pos] = known_tok) over all 27 sequences."""
    keep = (TOY.sequences[:, known_pos] == torch.tensor(known_tok)).all(-1)
    probs = torch.where(keep, TOY.probs, 0.0)
    return probs / probs.sum()


INFILL = [
    ("denoiser", "ancestral", {"steps": 16}),
    ("denoiser", "first_hitting", {}),
    ("score", "tweedie", {"steps": 64}),
    ("score", "euler", {"steps": 64}),
    ("denoiser", "confidence", {"steps": 1, "remasking": "random"}),
]


@pytest.mark.parametrize("param,sampler,opts", INFILL, ids=lambda v: repr(v))
def test_infilling_reproduces_the_exact_conditional(param, sampler, opts):
    g = dd.Absorbing(3)
    cond = Condition(torch.tensor([[2, 0, 1]]), torch.tensor([[True, False, True]]))  # fill the middle
    out = dd.Diffusion(g, dd.LogLinear(), param).sample(
        _model(g, param), N, 3, sampler, condition=cond, generator=torch.Generator().manual_seed(2), **opts)
    assert (out.samples[:, 0] == 2).all() and (out.samples[:, 2] == 1).all()
    assert total_variation(out.samples, _conditional([0, 2], [2, 1]), 3) <= 0.03


def test_prefix_condition_with_per_row_prompts():
    g = dd.Absorbing(3)
    tokens = torch.zeros(N, 3, dtype=torch.long)
    tokens[N // 2:, 0] = 1
    known = torch.zeros(N, 3, dtype=torch.bool)
    known[:, 0] = True
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(
        TOY.denoiser_model(g), N, 3, "ancestral", steps=16, condition=Condition(tokens, known),
        generator=torch.Generator().manual_seed(3))
    assert total_variation(out.samples[: N // 2], _conditional([0], [0]), 3) <= 0.035
    assert total_variation(out.samples[N // 2:], _conditional([0], [1]), 3) <= 0.035


def test_guidance_sharpens_towards_the_condition_exactly():
    # One unknown position, drawn once: guided law = softmax((1 + w) log p(y | c) - w log p(y)).
    g = dd.Absorbing(3)
    w = 1.5
    cond = Condition(torch.tensor([[1, 0, 2]]), torch.tensor([[True, False, True]]))
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(
        TOY.denoiser_model(g), N, 3, "first_hitting", condition=cond, guidance=w,
        generator=torch.Generator().manual_seed(4))
    p_cond = _conditional([0, 2], [1, 2]).reshape(3, 3, 3)[1, :, 2]
    p_marg = TOY.probs.reshape(3, 3, 3).sum((0, 2))  # the unconditional pass sees only masks
    guided = torch.softmax((1 + w) * p_cond.log() - w * p_marg.log(), 0)
    freq = torch.bincount(out.samples[:, 1], minlength=3).double() / N
    assert 0.5 * (freq - guided).abs().sum() <= 0.02
    assert 0.5 * (guided - p_cond).abs().sum() > 0.05  # guidance really changed the law
    assert out.nfe == 1  # conditional and unconditional passes share one batched call
