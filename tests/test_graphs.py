import pytest
import torch

import discdiff as dd


def _random_rates(n, gen, symmetric=False):
    w = torch.rand(n, n, generator=gen, dtype=torch.float64)
    if symmetric:
        w = w + w.T
    w.fill_diagonal_(0)
    return w - torch.diag(w.sum(0))


def graphs():
    gen = torch.Generator().manual_seed(3)
    return [
        dd.Absorbing(4),
        dd.Uniform(5),
        dd.DenseGraph.ordinal(5),
        dd.DenseGraph(_random_rates(4, gen)),  # not symmetric: matrix_exp path
        dd.DenseGraph.from_similarity(torch.rand(6, 6, generator=gen) + 0.1),
    ]


GRAPHS = graphs()


def _x(graph, gen, shape=(3, 7)):
    return torch.randint(0, graph.num_states, shape, generator=gen)


@pytest.mark.parametrize("graph", GRAPHS, ids=repr)
def test_transition_probs_are_matrix_exp_columns(graph, gen):
    q = graph.rate_matrix()
    x = _x(graph, gen)
    sigma = torch.tensor([0.01, 0.7, 3.0], dtype=torch.float64)
    got = graph.transition_probs(x, sigma)
    for b in range(3):
        expm = torch.linalg.matrix_exp(sigma[b] * q)
        assert torch.allclose(got[b], expm[:, x[b]].T, atol=1e-10)
        assert torch.allclose(graph.transposed_transition(x[b], sigma[b]), expm[x[b], :], atol=1e-10)
    assert torch.allclose(got.sum(-1), torch.ones_like(got[..., 0]), atol=1e-12)


@pytest.mark.parametrize("graph", GRAPHS, ids=repr)
def test_limits_identity_and_stationary(graph, gen):
    x = _x(graph, gen)
    zero = graph.transition_probs(x, torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(zero, torch.nn.functional.one_hot(x, graph.num_states).double(), atol=1e-12)
    far = graph.transition_probs(x, torch.full((3,), 60.0, dtype=torch.float64))
    prior = graph.prior_probs(torch.float64)
    assert torch.allclose(far, prior.expand_as(far), atol=1e-8)
    assert torch.allclose(graph.rate_matrix() @ prior, torch.zeros_like(prior), atol=1e-10)  # Q pi = 0


@pytest.mark.parametrize("graph", GRAPHS, ids=repr)
def test_rates_are_rows_and_columns_of_q(graph, gen):
    q = graph.rate_matrix().float()
    x = _x(graph, gen)
    assert torch.allclose(graph.forward_rates(x), q[:, x].permute(1, 2, 0))
    assert torch.allclose(graph.transposed_rates(x), q[x, :])
    score = torch.rand(*x.shape, graph.num_states, generator=gen)
    rev = graph.reverse_rates(x, score)
    off = q[x, :] * score
    off = off.scatter(-1, x[..., None], 0.0)
    assert torch.allclose(rev.sum(-1), torch.zeros(x.shape), atol=1e-6)
    assert torch.allclose(rev.scatter(-1, x[..., None], 0.0), off)


@pytest.mark.parametrize("graph", GRAPHS, ids=repr)
def test_staggered_score_is_backward_matrix_exp(graph, gen):
    x = _x(graph, gen, (2, 5))
    score = torch.rand(2, 5, graph.num_states, generator=gen, dtype=torch.float64) + 0.1
    delta = torch.tensor([0.05, 0.4], dtype=torch.float64)
    got = graph.staggered_score(score, x, delta)
    s = score.scatter(-1, x[..., None], 1.0)
    for b in range(2):
        back = torch.linalg.matrix_exp(-delta[b] * graph.rate_matrix())
        assert torch.allclose(got[b], s[b] @ back.T, atol=1e-10)


@pytest.mark.parametrize("graph", GRAPHS, ids=repr)
def test_sample_transition_and_prior_match_their_distributions(graph, gen):
    n = 40_000
    x0 = torch.full((n,), 1, dtype=torch.long)
    sigma = torch.tensor(0.8, dtype=torch.float64)
    draws = graph.sample_transition(x0, sigma, generator=gen)
    freq = torch.bincount(draws, minlength=graph.num_states).double() / n
    assert (freq - graph.transition_probs(x0[:1], sigma)[0]).abs().sum() / 2 < 0.015
    prior = torch.bincount(graph.sample_prior((n,), generator=gen).flatten(), minlength=graph.num_states) / n
    assert (prior.double() - graph.prior_probs(torch.float64)).abs().sum() / 2 < 0.015


@pytest.mark.parametrize("closed", [dd.Absorbing(4), dd.Uniform(5)], ids=repr)
def test_closed_forms_equal_the_dense_generic_formulas(closed, gen):
    dense = dd.DenseGraph(closed.rate_matrix())
    x0 = torch.randint(0, closed.num_clean_states, (4, 6), generator=gen)
    sigma = torch.tensor([1e-3, 0.3, 2.0, 9.0], dtype=torch.float64)
    x_t = closed.sample_transition(x0, sigma, generator=gen)
    log_score = torch.randn(4, 6, closed.num_states, generator=gen, dtype=torch.float64)
    assert torch.allclose(
        closed.score_entropy(log_score, x_t, x0, sigma), dense.score_entropy(log_score, x_t, x0, sigma), rtol=1e-9
    )
    log_probs = torch.log_softmax(
        torch.randn(4, 6, closed.num_clean_states, generator=gen, dtype=torch.float64), -1
    )
    got = closed.log_score_from_clean(log_probs, x_t, sigma)
    want = dense.log_score_from_clean(log_probs, x_t, sigma)
    relevant = closed.transposed_rates(x_t).scatter(-1, x_t[..., None], 0.0) > 0  # entries with a reverse rate
    assert torch.allclose(got[relevant], want[relevant], rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("graph", GRAPHS, ids=repr)
def test_score_entropy_nonnegative_and_zero_at_true_ratio(graph, gen):
    x0 = torch.randint(0, graph.num_clean_states, (64, 4), generator=gen)
    sigma = torch.rand(64, generator=gen, dtype=torch.float64) * 3 + 0.01
    x_t = graph.sample_transition(x0, sigma, generator=gen)
    probs = graph.transition_probs(x0, sigma)
    true_log = (probs / probs.gather(-1, x_t[..., None])).clamp_min(1e-300).log()
    at_truth = dd.losses.score_entropy(graph, true_log, x_t, x0, sigma)
    assert at_truth.abs().max() < 1e-9
    wrong = true_log + torch.randn(true_log.shape, generator=gen, dtype=torch.float64)
    off = dd.losses.score_entropy(graph, wrong, x_t, x0, sigma)
    assert (off >= -1e-12).all() and off.sum() > 0.1


def test_absorbing_conventions():
    g = dd.Absorbing(vocab_size=7)
    assert (g.num_states, g.mask_id, g.num_clean_states) == (8, 7, 7)
    assert (g.sample_prior((2, 3)) == 7).all()
    u = dd.Uniform(7)
    want = torch.full((7, 7), 1 / 7, dtype=torch.float64) - torch.eye(7, dtype=torch.float64)
    assert torch.allclose(u.rate_matrix(), want)


def test_dense_graph_validation_messages():
    with pytest.raises(ValueError, match="square"):
        dd.DenseGraph(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r">= 0"):
        dd.DenseGraph(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    with pytest.raises(ValueError, match="sum to zero"):
        dd.DenseGraph(torch.tensor([[-1.0, 1.0], [2.0, -1.0]]))
    with pytest.raises(ValueError, match="stationary"):
        block = torch.zeros(4, 4)
        block[:2, :2] = torch.tensor([[-1.0, 1.0], [1.0, -1.0]])
        block[2:, 2:] = torch.tensor([[-1.0, 1.0], [1.0, -1.0]])
        dd.DenseGraph(block)
    with pytest.raises(ValueError, match="temperature"):
        dd.DenseGraph.from_similarity(torch.tensor([[1.0, -2.0], [-2.0, 1.0]]))
    blosum_like = torch.tensor([[4.0, -1.0, 0.0], [-1.0, 5.0, -2.0], [0.0, -2.0, 6.0]])
    g = dd.DenseGraph.from_similarity(blosum_like, temperature=2.0)
    q = g.rate_matrix()
    assert -torch.diag(q).mean().item() == pytest.approx(1.0)  # mean exit rate normalised to 1
    assert q[0, 2] > q[1, 2]  # the more similar pair exchanges faster


def test_bad_tokens_and_shapes_raise():
    g = dd.Absorbing(3)
    sigma = torch.tensor([0.5, 0.5])
    with pytest.raises(ValueError, match="integer"):
        dd.losses.score_entropy(g, torch.zeros(2, 3, 4), torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), sigma)
    with pytest.raises(ValueError, match="valid ids"):
        g.check_tokens(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="clean tokens"):
        g.check_tokens(torch.tensor([3]), clean=True)
    with pytest.raises(ValueError, match="shape"):
        dd.losses.score_entropy(g, torch.zeros(2, 3, 5), torch.zeros(2, 3, dtype=torch.long),
                                torch.zeros(2, 3, dtype=torch.long), sigma)
    with pytest.raises(ValueError, match="broadcast"):
        g.transition_probs(torch.zeros(2, 3, dtype=torch.long), torch.ones(3))


def test_more_validation():
    with pytest.raises(ValueError, match="not stationary"):
        dd.DenseGraph(dd.DenseGraph.ordinal(3).rate_matrix(), stationary=torch.tensor([1.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="NaN"):
        dd.Absorbing(3).transition_probs(torch.zeros(2, dtype=torch.long), torch.tensor(float("nan")))
    with pytest.raises(ValueError, match="t_min"):
        dd.Diffusion(dd.Absorbing(3), dd.LogLinear(), t_min=0.0)
