"""Evaluation windows a number can stand on: a seeded spread over the whole split, and intervals for the
split's mean under that design (exact answers from splits whose per-window NLL is known)."""

import math

import numpy as np
import pytest
import torch

import discdiff as dd
from discdiff.data.splits import spread_sample
from discdiff.evaluation import LikelihoodResult, diffusion_nll, load_eval_data

CONTEXT, WINDOWS = 8, 64
P0 = 0.9  # the model's probability of token 0 (and 1 - P0 of token 1), whatever the context


@pytest.fixture
def two_halves(tmp_path):
    """A split of 64 windows: the first half all token 0, the second half all token 1."""
    path = tmp_path / "halves.npy"
    np.save(path, np.repeat([0, 1], WINDOWS * CONTEXT // 2).astype(np.int64))
    return path


def _fixed_guess(x_t, sigma_bar):
    """A context-free denoiser over 2 tokens (+ MASK): log p(0) = log P0, log p(1) = log(1 - P0)."""
    logits = torch.tensor([math.log(P0), math.log(1 - P0), 0.0], dtype=torch.float64)
    return logits.expand(*x_t.shape, 3)


def test_spread_windows_cover_both_halves_of_the_split(two_halves):
    data = load_eval_data(two_halves, context=CONTEXT, vocab_size=2, max_sequences=8, batch_size=4)
    first_tokens = torch.cat([tokens[:, 0] for tokens, _ in data])
    assert sorted(first_tokens.tolist()) == [0] * 4 + [1] * 4  # the first 8 windows would all be token 0
    assert data.split_sample.method == "stratified" and data.split_sample.population == WINDOWS
    assert data.describe() == {"source": str(two_halves), "split": "validation", "method": "stratified",
                               "examples": 8, "population": WINDOWS, "seed": 0, "fraction": 8 / WINDOWS}


def test_interval_is_for_the_whole_splits_mean(two_halves):
    """k-DCE of a context-free model is exact per window (n * CE of its one repeated token), so the split's
    mean NLL per token is known exactly: (-log P0 - log(1 - P0)) / 2. The estimate must hit it."""
    truth = (-math.log(P0) - math.log(1 - P0)) / 2
    diff = dd.Diffusion(dd.Absorbing(2), dd.LogLinear(), parameterization="denoiser")
    for seed in range(3):
        data = load_eval_data(two_halves, context=CONTEXT, vocab_size=2, max_sequences=8, seed=seed)
        res = diffusion_nll(_fixed_guess, diff, data, "k_dce", num_draws=2)
        assert res.nats_per_token == pytest.approx(truth, rel=1e-6)
        lo, hi = res.ci_nats_per_token
        assert lo <= truth <= hi and hi - lo < 2.0
        assert res.to_dict()["drawn"]["examples"] == 8 and res.to_dict()["interval_for"] == "the split's mean"
        assert f"8 of the split's {WINDOWS} examples" in str(res)


def test_every_example_is_equally_likely_and_the_sample_is_spread():
    N, n = 10, 4
    counts = np.zeros(N)
    for seed in range(4000):
        s = spread_sample(N, n, seed)
        assert s.size == n and np.all(np.diff(s.indices) >= 0)  # in split order
        h = np.arange(n)  # one in each of the n equal strata [h N / n, (h + 1) N / n)
        assert np.all((np.floor(h * N / n) <= s.indices) & (s.indices < (h + 1) * N / n))
        np.add.at(counts, s.indices, 1)  # a draw twice (a window straddling two strata) counts twice
    np.testing.assert_allclose(counts / 4000, n / N, atol=0.04)  # every example: expected count n / N
    whole = spread_sample(N, None, 0)
    assert whole.method == "all" and whole.indices.tolist() == list(range(N)) and whole.fraction == 1.0
    with pytest.raises(ValueError, match="no examples"):
        spread_sample(0, 3)


def _result(values, mc_variance, drawn, length=16):
    n = len(values)
    return LikelihoodResult("t_dce", False, values, torch.full((n,), length), mc_variance, 4, "h",
                            split_sample=drawn)


def test_design_interval_covers_the_split_mean_about_95_percent():
    """Repeated spread samples of a split with a strong trend (plays that get harder) and Monte Carlo noise:
    the 95% interval for the split's mean per token covers the true mean in >= 93% of samples, and the
    stratified design's standard error is tighter than the i.i.d. one on the same values."""
    N, n, L, mc_sd = 400, 24, 16, 2.0
    position = torch.arange(N, dtype=torch.float64)
    population = 30 + 20 * (position / N) + 5 * torch.sin(position / 7)  # nats per window of L tokens
    truth = float(population.mean() / L)
    gen = torch.Generator().manual_seed(0)
    hits, design_se, iid_se = 0, 0.0, 0.0
    for seed in range(400):
        drawn = spread_sample(N, n, seed)
        values = population[drawn.indices] + mc_sd * torch.randn(n, generator=gen, dtype=torch.float64)
        mc = torch.full((n,), mc_sd**2, dtype=torch.float64)
        res = _result(values, mc, drawn)
        lo, hi = res.ci_nats_per_token
        hits += lo <= truth <= hi
        design_se += res.stderr_nats_per_token
        iid_se += _result(values, mc, None).stderr_nats_per_token
    assert hits / 400 >= 0.93, hits / 400
    assert design_se < 0.8 * iid_se


def test_the_whole_split_leaves_only_the_monte_carlo_error():
    values = torch.linspace(10, 50, 32, dtype=torch.float64)
    mc = torch.full((32,), 0.25, dtype=torch.float64)
    res = _result(values, mc, spread_sample(32, None))
    assert res.stderr_nats_per_token == pytest.approx(res.mc_stderr_nats_per_token, rel=1e-12)
    given = _result(values, mc, None)  # the same values handed over directly: the spread counts as data noise
    assert given.stderr_nats_per_token > 10 * res.stderr_nats_per_token
