"""Diffusion.draw_times (the one home of the time draw) and Diffusion.nll (the one NLL estimator),
against exact answers from the toy distribution's enumerated NLL."""

import math

import pytest
import torch

import discdiff as dd

# two-sided 97.5% quantiles of Student's t, by degrees of freedom (D - 1 for D draws)
T975 = {7: 2.365}


def _strata(t, low, count):
    return torch.floor((t - low) / (1 - low) * count + 1e-9).long()


@pytest.mark.parametrize("objective, low", [("t_dce", 1e-3), ("score_entropy", 1e-3), ("lambda_dce", 1e-3),
                                            ("k_dce", 0.0)])
def test_draw_times_one_per_stratum_from_the_objectives_low_end(objective, low):
    diff = dd.Diffusion(dd.Absorbing(4), dd.LogLinear(), "denoiser", t_min=1e-3)
    gen = torch.Generator().manual_seed(0)
    batch = diff.draw_times(8, objective, generator=gen)  # one stratified draw over a batch
    assert batch.shape == (8,) and batch.dtype == torch.float64
    assert batch.min() >= low and batch.max() < 1
    assert sorted(_strata(batch, low, 8).tolist()) == list(range(8))
    per_row = diff.draw_times(5, objective, draws=4, generator=gen)  # stratified per sequence
    assert per_row.shape == (5, 4) and per_row.min() >= low
    assert torch.equal(_strata(per_row, low, 4).sort(1).values, torch.arange(4).expand(5, 4))
    assert len(set(per_row[:, 0].tolist())) == 5  # each row has its own offset


def test_draw_times_is_what_loss_draws():
    """loss(t=None) draws its times by draw_times: the same generator state gives the same loss."""
    g = dd.Absorbing(5)
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    model = lambda x, s: torch.log_softmax(torch.randn(*x.shape, 6, generator=torch.Generator().manual_seed(9)), -1)
    x0 = torch.randint(0, 5, (6, 8), generator=torch.Generator().manual_seed(1))
    for objective in ("t_dce", "k_dce"):
        a = diff.loss(model, x0, objective, generator=torch.Generator().manual_seed(2))
        gen = torch.Generator().manual_seed(2)
        t = diff.draw_times(6, objective, generator=gen)
        b = diff.loss(model, x0, objective, t=t, generator=gen)
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_draw_times_rejects_bad_requests():
    diff = dd.Diffusion(dd.Absorbing(4), dd.LogLinear(), "denoiser")
    with pytest.raises(ValueError, match="objective"):
        diff.draw_times(4, "elbo")
    with pytest.raises(ValueError, match="draws"):
        diff.draw_times(4, draws=0)
    with pytest.raises(ValueError, match="n >= 1"):
        diff.draw_times(0)


CASES = [  # graph, parameterization, objective
    (dd.Absorbing(3), "denoiser", "t_dce"),
    (dd.Absorbing(3), "denoiser", "lambda_dce"),
    (dd.Absorbing(3), "denoiser", "k_dce"),
    (dd.Absorbing(3), "score", "score_entropy"),
    (dd.Uniform(3), "score", "score_entropy"),
]


@pytest.mark.parametrize("graph, param, objective", CASES, ids=[f"{c[2]}-{c[0].__class__.__name__}" for c in CASES])
def test_nll_matches_the_exact_nll_within_its_standard_error(toy, graph, param, objective):
    """The exact model's bound is -log p(x0) per sequence (up to the schedule's O(eps) end pieces): the
    mean over sequences lies within 3 SE of the enumerated value."""
    schedule = dd.LogLinear() if isinstance(graph, dd.Absorbing) else dd.Geometric()
    diff = dd.Diffusion(graph, schedule, param)
    model = toy.denoiser_model(graph) if param == "denoiser" else toy.score_model(graph)
    x0 = toy.sample(1024, torch.Generator().manual_seed(0))
    exact = -toy.prob_of(x0).log()
    est = diff.nll(model, x0, objective, num_draws=16, generator=torch.Generator().manual_seed(1))
    assert est.mean.shape == est.stderr.shape == (1024,) and est.mean.dtype == torch.float64
    se_of_mean = float(est.stderr.square().sum().sqrt() / len(x0))
    assert abs(float(est.mean.mean() - exact.mean())) < 3 * se_of_mean
    assert se_of_mean < 0.07  # teeth: 3 SE is well under the 0.23-nat gap to a uniform guess (3 log 3 vs H)


def test_nll_per_sequence_intervals_cover_the_exact_nll(toy):
    """k-DCE's integrand is bounded, so Student-t intervals (D - 1 degrees of freedom) from one sequence's
    D stratified draws are honest: they cover that sequence's exact -log p(x0) about 95% of the time."""
    graph = dd.Absorbing(3)
    diff = dd.Diffusion(graph, dd.LogLinear(), "denoiser")
    x0 = toy.sample(512, torch.Generator().manual_seed(0))
    exact = -toy.prob_of(x0).log()
    est = diff.nll(toy.denoiser_model(graph), x0, "k_dce", num_draws=8, generator=torch.Generator().manual_seed(1))
    covered = float(((est.mean - exact).abs() <= T975[7] * est.stderr + 1e-9).double().mean())
    assert 0.92 < covered < 0.995, covered  # stratified draws: conservative, yet not vacuous


def test_nll_has_power_against_a_wrong_model(toy):
    diff = dd.Diffusion(dd.Absorbing(3), dd.LogLinear(), "denoiser")
    x0 = toy.sample(64, torch.Generator().manual_seed(0))
    est = diff.nll(lambda x, s: torch.zeros(*x.shape, 4), x0, "k_dce", num_draws=4)
    torch.testing.assert_close(est.mean, torch.full((64,), 3 * math.log(3), dtype=torch.float64))  # n log V


def test_nll_is_seeded_and_counts_padding_as_nothing():
    V = 5
    diff = dd.Diffusion(dd.Absorbing(V), dd.LogLinear(), "denoiser")
    x0 = torch.randint(0, V, (4, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.arange(10) < torch.tensor([10, 6, 3, 1])[:, None]
    est = diff.nll(lambda x, s: torch.zeros(*x.shape, V + 1), x0, "t_dce", num_draws=4, padding_mask=mask,
                   generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(est.mean).all()
    model = lambda x, s: torch.log_softmax(x.double()[..., None] * torch.arange(V + 1.0), -1)  # depends on x_t
    run = lambda seed: diff.nll(model, x0, "t_dce", num_draws=3, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(5).mean, run(5).mean) and not torch.equal(run(5).mean, run(6).mean)


def test_nll_rejects_what_is_no_bound():
    diff = dd.Diffusion(dd.Absorbing(3), dd.LogLinear(), "score")
    x0 = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="not a likelihood bound"):
        diff.nll(lambda x, s: torch.zeros(*x.shape, 4), x0, "l2")
    with pytest.raises(ValueError, match="num_draws"):
        diff.nll(lambda x, s: torch.zeros(*x.shape, 4), x0, num_draws=1)
