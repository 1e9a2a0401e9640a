"""Every objective, fed the exact model of a toy distribution, averages to the exact answer.

The exact answer for an integral over t in [t_min, 1] is I(x0; x_{t_min}) - I(x0; x_1), computed by
enumeration; it equals H(p_data) up to the schedule's end points (checked to be within 0.01 nats).
"""

import math

import pytest
import torch

import discdiff as dd
from discdiff.exact import ToyDistribution

CASES = [
    # graph, schedule, parameterization, objective
    (dd.Absorbing(3), dd.LogLinear(), "score", "score_entropy"),
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "t_dce"),
    (dd.Absorbing(3), dd.Cosine(), "denoiser", "t_dce"),
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "lambda_dce"),
    (dd.Absorbing(3), dd.LogLinear(), "score", "k_dce"),
    (dd.Uniform(3), dd.Geometric(), "score", "score_entropy"),
    (dd.Uniform(3), dd.Geometric(), "denoiser", "score_entropy"),
    (dd.DenseGraph.ordinal(3), dd.Geometric(), "score", "score_entropy"),
]


def _mc(diff, model, toy, objective, gen, batches=40, batch=500):
    """Mean and standard error of the loss over independent stratified batches."""
    means = []
    for _ in range(batches):
        x0 = toy.sample(batch, gen)
        means.append(diff.loss(model, x0, objective, generator=gen).double().mean())
    means = torch.stack(means)
    return means.mean().item(), means.std().item() / math.sqrt(batches)


def _target(diff, toy, objective):
    if objective == "k_dce":
        return toy.entropy()
    if objective == "lambda_dce":  # lambda = 1 masks everything: I(x0; x_1) = 0
        return toy.mutual_information(diff.graph, -math.log1p(-diff.t_min))
    total = diff.schedule.total
    lo = total(torch.tensor(diff.t_min, dtype=torch.float64)).item()
    hi = total(torch.tensor(1.0, dtype=torch.float64)).item()
    return toy.mutual_information(diff.graph, lo) - toy.mutual_information(diff.graph, hi)


def _oracle(toy, graph, parameterization):
    return toy.score_model(graph) if parameterization == "score" else toy.denoiser_model(graph)


@pytest.mark.parametrize("graph,sched,param,objective", CASES, ids=lambda v: repr(v))
def test_exact_model_averages_to_the_true_nll(toy, graph, sched, param, objective):
    diff = dd.Diffusion(graph, sched, param)
    mean, se = _mc(diff, _oracle(toy, graph, param), toy, objective, torch.Generator().manual_seed(7))
    target = _target(diff, toy, objective)
    assert abs(target - toy.entropy()) < 0.01
    assert abs(mean - target) < 3 * se, (mean, target, se)
    assert se < 0.05  # the check has teeth: 3 SE is well under the gap to a wrong model below


@pytest.mark.parametrize("graph,sched,param,objective", CASES, ids=lambda v: repr(v))
def test_wrong_model_gives_a_strictly_larger_bound(toy, graph, sched, param, objective):
    other = ToyDistribution.random(3, 3, generator=torch.Generator().manual_seed(99))
    diff = dd.Diffusion(graph, sched, param)
    mean, se = _mc(diff, _oracle(other, graph, param), toy, objective, torch.Generator().manual_seed(8), 20)
    assert mean - _target(diff, toy, objective) > 3 * se + 0.1


@pytest.mark.parametrize("graph", [dd.Absorbing(3), dd.Uniform(3), dd.DenseGraph.ordinal(3)], ids=repr)
def test_clean_posterior_gives_the_exact_concrete_score(toy, graph, gen):
    # log_score_from_clean (RADD's identity for absorbing) applied to the exact posterior reproduces the
    # concrete score computed directly from ratios of noisy marginals.
    x0 = toy.sample(64, gen)
    sigma = torch.rand(64, generator=gen, dtype=torch.float64) * 2 + 0.05
    x_t = graph.sample_transition(x0, sigma, generator=gen)
    want = toy.concrete_score(graph, x_t, sigma)
    got = graph.log_score_from_clean(toy.clean_log_probs(graph, x_t, sigma), x_t, sigma)
    has_rate = graph.transposed_rates(x_t, torch.float64).scatter(-1, x_t[..., None], 0.0) > 0
    assert torch.allclose(got[has_rate], want[has_rate], atol=1e-9)


def test_score_and_denoiser_views_agree_draw_by_draw(toy):
    g = dd.Absorbing(3)
    x0 = toy.sample(256, torch.Generator().manual_seed(0))
    by_score = dd.Diffusion(g, dd.LogLinear(), "score").loss(
        toy.score_model(g), x0, "score_entropy", generator=torch.Generator().manual_seed(5))
    by_denoiser = dd.Diffusion(g, dd.LogLinear(), "denoiser").loss(
        toy.denoiser_model(g), x0, "t_dce", generator=torch.Generator().manual_seed(5))
    assert torch.allclose(by_score, by_denoiser, atol=1e-8)  # SE with RADD scores == t-DCE, per draw


class _Table(torch.nn.Module):
    """Position-wise logits: output depends only on the token at that position."""

    def __init__(self, num_states):
        super().__init__()
        self.table = torch.nn.Embedding(num_states, num_states)

    def forward(self, x_t, sigma_bar):
        return self.table(x_t)


@pytest.mark.parametrize("objective", ["score_entropy", "l2", "t_dce", "lambda_dce", "k_dce"])
@pytest.mark.parametrize("t_value", [0.0, 1e-6, 0.5, 1.0])
def test_gradients_finite_near_both_ends(objective, t_value, gen):
    g = dd.Absorbing(5)
    model = _Table(g.num_states)
    diff = dd.Diffusion(g, dd.LogLinear(), "score" if objective in ("score_entropy", "l2") else "denoiser")
    x0 = torch.randint(0, 5, (8, 16), generator=gen)
    loss = diff.loss(model, x0, objective, t=torch.full((8,), t_value), generator=gen).mean()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(model.table.weight.grad).all()


@pytest.mark.parametrize("objective", ["score_entropy", "t_dce", "lambda_dce", "k_dce"])
def test_padding_costs_nothing(objective):
    g = dd.Absorbing(5)
    model = _Table(g.num_states)
    diff = dd.Diffusion(g, dd.LogLinear(), "score" if objective == "score_entropy" else "denoiser")
    x0 = torch.randint(0, 5, (6, 10), generator=torch.Generator().manual_seed(1))
    pad = torch.arange(10) < torch.tensor([10, 7, 3, 1, 5, 9])[:, None]
    other = torch.where(pad, x0, (x0 + 1) % 5)  # different tokens under the padding
    a = diff.loss(model, x0, objective, generator=torch.Generator().manual_seed(2), padding_mask=pad)
    b = diff.loss(model, other, objective, generator=torch.Generator().manual_seed(2), padding_mask=pad)
    assert torch.equal(a, b)
    full = diff.loss(model, x0, objective, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(a, full)


def test_bad_input_raises_clear_errors():
    g = dd.Absorbing(4)
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    model = lambda x, s: torch.zeros(*x.shape, 5)
    x0 = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="integer"):
        diff.loss(model, x0.float())
    with pytest.raises(ValueError, match="clean tokens"):
        diff.loss(model, x0 + 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        diff.loss(model, x0, t=torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="objective"):
        diff.loss(model, x0, "elbo")
    with pytest.raises(ValueError, match=r"\[B, L, S\]"):
        diff.loss(lambda x, s: torch.zeros(2, 5), x0)
    with pytest.raises(ValueError, match="padding_mask"):
        diff.loss(model, x0, padding_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="absorbing"):
        dd.Diffusion(dd.Uniform(4), dd.LogLinear(), "denoiser").loss(model, x0, "t_dce")
    with pytest.raises(ValueError, match="parameterization"):
        dd.Diffusion(g, dd.LogLinear(), "logits")
    with pytest.raises(ValueError, match=r"\[batch, length\]"):
        diff.loss(model, torch.zeros(3, dtype=torch.long))
