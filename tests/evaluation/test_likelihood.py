"""The likelihood estimator against exact answers: toy entropy inside the interval, AR NLL by enumeration."""

import itertools
import math
from types import SimpleNamespace

import pytest
import torch

import discdiff as dd
from discdiff.evaluation import ar_nll, as_batches, compare, diffusion_nll, evaluate
from discdiff.exact import ToyDistribution, enumerate_sequences
from discdiff.nn import ARWrapper, DiffusionTransformer, TransformerConfig


@pytest.fixture(scope="module")
def toy():
    return ToyDistribution.random(vocab_size=3, length=3, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def toy_data(toy):
    return toy.sample(256, torch.Generator().manual_seed(1))


CASES = [  # graph, schedule, parameterization, objective
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "t_dce"),
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "lambda_dce"),
    (dd.Absorbing(3), dd.LogLinear(), "denoiser", "k_dce"),
    (dd.Absorbing(3), dd.LogLinear(), "score", "score_entropy"),
    (dd.Uniform(3), dd.Geometric(), "score", "score_entropy"),
]


@pytest.mark.parametrize("graph, schedule, param, objective", CASES, ids=[c[3] + "-" + c[2] for c in CASES])
def test_exact_model_interval_contains_entropy(toy, toy_data, graph, schedule, param, objective):
    diff = dd.Diffusion(graph, schedule, parameterization=param)
    model = toy.denoiser_model(graph) if param == "denoiser" else toy.score_model(graph)
    res = diffusion_nll(model, diff, toy_data, objective, num_draws=4, seed=3)
    lo, hi = res.ci_nats_per_sequence
    assert lo < toy.entropy() < hi
    assert hi - lo < 1.0  # an informative interval (H = 3.07 nats), not a vacuous one
    per_token_lo, per_token_hi = res.ci_nats_per_token
    assert per_token_lo < toy.entropy() / 3 < per_token_hi
    assert res.tokens == 256 * 3 and res.sequences == 256 and not res.exact
    assert 0 < res.mc_stderr_nats_per_token < 2 * res.stderr_nats_per_token  # an upper estimate (stratified)
    assert res.per_sequence.dtype == torch.float64
    assert res.bits_per_token == pytest.approx(res.nats_per_token / math.log(2))
    assert res.perplexity == pytest.approx(math.exp(res.nats_per_token))


def test_wrong_model_interval_excludes_entropy(toy, toy_data):
    """The test has power: a uniform guess's bound lies clearly above H."""
    diff = dd.Diffusion(dd.Absorbing(3), dd.LogLinear(), parameterization="denoiser")
    res = diffusion_nll(lambda x, s: torch.zeros(*x.shape, 4), diff, toy_data, "k_dce", num_draws=4)
    assert res.ci_nats_per_sequence[0] > toy.entropy()
    assert res.nats_per_sequence == pytest.approx(3 * math.log(3))  # k-DCE of a uniform guess: n log V exactly


def test_estimators_agree_on_exact_model(toy, toy_data):
    graph = dd.Absorbing(3)
    pre = SimpleNamespace(model=toy.denoiser_model(graph), config={"vocab_size": 3, "diffusion": {"objective": None}},
                          diffusion=dd.Diffusion(graph, dd.LogLinear(), parameterization="denoiser"))
    ev = evaluate(pre, toy_data, num_draws=4)
    assert list(ev.results) == ["t_dce", "k_dce"] and ev.same_model
    (agreement,) = ev.agreements
    assert agreement.agree and agreement.ci_difference[0] < 0 < agreement.ci_difference[1]
    assert agreement.ci_ratio[0] < 1 < agreement.ci_ratio[1]
    assert set(ev.to_dict()["results"]) == {"t_dce", "k_dce"}


def test_padding_counts_real_tokens_only():
    """Bits per *real* token: a uniform guess over V tokens scores log V per real token whatever the padding."""
    V = 5
    diff = dd.Diffusion(dd.Absorbing(V), dd.LogLinear(), parameterization="denoiser")
    tokens = torch.randint(0, V, (6, 10), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([10, 7, 3, 1, 0, 5])
    mask = torch.arange(10) < lengths[:, None]
    res = diffusion_nll(lambda x, s: torch.zeros(*x.shape, V + 1), diff, (tokens, mask), "k_dce", num_draws=3)
    assert res.tokens == int(lengths.sum()) and res.sequences == 5  # the empty row is dropped
    assert res.nats_per_token == pytest.approx(math.log(V), rel=1e-6)  # the model's log-softmax is float32
    assert res.stderr_nats_per_token == pytest.approx(0.0, abs=1e-6)


def test_seeded_and_reproducible(toy, toy_data):
    graph = dd.Absorbing(3)
    diff = dd.Diffusion(graph, dd.LogLinear(), parameterization="denoiser")
    run = lambda seed: diffusion_nll(toy.denoiser_model(graph), diff, toy_data[:64], num_draws=2, seed=seed)
    assert torch.equal(run(5).per_sequence, run(5).per_sequence)
    assert not torch.equal(run(5).per_sequence, run(6).per_sequence)


# ------------------------------------------------------------------ the AR baseline, exactly


def _tiny_ar(V=3, L=3, seed=0):
    torch.manual_seed(seed)
    cfg = TransformerConfig(num_states=V + 1, d_model=16, n_layers=2, n_heads=2, max_len=L, causal=True)
    model = DiffusionTransformer(cfg)
    with torch.no_grad():  # make the conditionals far from uniform, so a wrong sum would show
        model.head.weight.normal_(0, 1.0)
    return ARWrapper(model.eval(), vocab_size=V)


def _chain_rule(ar, x):
    """-log p(x) by the chain rule, each conditional from a forward over the prefix only (no future input)."""
    total = 0.0
    for i in range(len(x)):
        inputs = torch.tensor([[ar.bos_id, *x[:i]]])
        logits = ar.model(inputs, None)[0, -1, : ar.vocab_size].double()
        total -= torch.log_softmax(logits, -1)[x[i]].item()
    return total


def test_ar_exact_nll_equals_enumeration():
    ar = _tiny_ar()
    seqs = enumerate_sequences(3, 3)  # all 27 sequences
    res = ar_nll(ar, seqs, batch_size=10)
    assert res.exact and res.mc_stderr_nats_per_token == 0.0 and res.tokens == 81
    assert torch.exp(-res.per_sequence).sum().item() == pytest.approx(1.0, abs=1e-5)  # a normalised distribution
    brute = torch.tensor([_chain_rule(ar, x.tolist()) for x in seqs], dtype=torch.float64)
    torch.testing.assert_close(res.per_sequence, brute, atol=2e-5, rtol=0)


def test_ar_padding_matches_unpadded_rows():
    ar = _tiny_ar(V=4, L=6, seed=1)
    tokens = torch.randint(0, 4, (3, 6), generator=torch.Generator().manual_seed(2))
    lengths = [6, 4, 2]
    mask = torch.arange(6) < torch.tensor(lengths)[:, None]
    padded = ar_nll(ar, (tokens.masked_fill(~mask, 3), mask))
    alone = [ar_nll(ar, tokens[i:i + 1, :n]).per_sequence.item() for i, n in enumerate(lengths)]
    torch.testing.assert_close(padded.per_sequence, torch.tensor(alone, dtype=torch.float64), atol=1e-5, rtol=0)
    assert padded.tokens == 12


def test_diffusion_vs_ar_on_identical_data(toy, toy_data):
    ar = _tiny_ar()
    diff = dd.Diffusion(dd.Absorbing(3), dd.LogLinear(), parameterization="denoiser")
    bound = diffusion_nll(toy.denoiser_model(dd.Absorbing(3)), diff, toy_data, "k_dce", num_draws=2)
    exact = ar_nll(ar, toy_data)
    cmp = compare(bound, exact)
    # the exact toy model (entropy ~1.02 nats/token) beats an untrained AR (~log 3 = 1.10 per token): the
    # paired interval of the ratio must say so, and must contain the ratio of the true values
    assert cmp.ci_ratio[1] < 1.0
    truth = (toy.entropy() / 3) / exact.nats_per_token
    assert cmp.ci_ratio[0] < truth < cmp.ci_ratio[1]
    with pytest.raises(ValueError, match="different data"):
        compare(bound, ar_nll(ar, toy_data[:100]))


# ------------------------------------------------------------------ input checks


def test_rejects_bad_requests(toy_data):
    diff = dd.Diffusion(dd.Absorbing(3), dd.LogLinear(), parameterization="denoiser")
    model = lambda x, s: torch.zeros(*x.shape, 4)
    with pytest.raises(ValueError, match="not a likelihood bound"):
        diffusion_nll(model, diff, toy_data, "l2")
    with pytest.raises(ValueError, match="num_draws"):
        diffusion_nll(model, diff, toy_data, num_draws=1)
    with pytest.raises(ValueError, match="no data"):
        as_batches((toy_data, torch.zeros_like(toy_data, dtype=torch.bool)))
    with pytest.raises(ValueError, match="mask"):
        as_batches((toy_data, torch.ones(2, 2, dtype=torch.bool)))
    with pytest.raises(ValueError, match="vocab_size"):
        ar_nll(_tiny_ar().model, toy_data)


def test_as_batches_accepts_every_form(toy_data):
    from discdiff.data import Batch

    mask = torch.ones_like(toy_data, dtype=torch.bool)
    forms = [toy_data, (toy_data, mask), Batch(toy_data, mask, None), [Batch(toy_data, mask, None)]]
    for form, n in zip(forms, [8, 8, 8, 1], strict=True):
        batches = as_batches(form, batch_size=32)
        assert len(batches) == n and sum(len(t) for t, _ in batches) == 256
    assert list(itertools.chain(*[t.tolist() for t, _ in as_batches(toy_data, 7)])) == toy_data.tolist()


def test_load_eval_data_batching_does_not_change_the_examples():
    from discdiff.evaluation import load_eval_data

    batches = load_eval_data("synthetic", context=16, vocab_size=8, max_sequences=5, batch_size=2)
    assert [len(t) for t, _ in batches] == [2, 2, 1] and all(m.all() for _, m in batches)
    again = load_eval_data("synthetic", context=16, vocab_size=8, max_sequences=5, batch_size=5)
    assert torch.equal(torch.cat([t for t, _ in batches]), again[0][0])
    assert batches.split_sample.size == 5 and batches.split_sample.population == 64


def test_padded_evaluation_is_blind_to_pad_tokens_like_training():
    import discdiff as dd
    from discdiff.evaluation import diffusion_nll
    from discdiff.nn import DiffusionTransformer, TransformerConfig

    torch.manual_seed(0)
    model = DiffusionTransformer(TransformerConfig(num_states=8, d_model=32, n_layers=1, n_heads=2, max_len=10))
    diff = dd.Diffusion(dd.Absorbing(7), dd.LogLinear(), "denoiser")
    x0 = torch.randint(0, 7, (6, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.arange(10) < torch.tensor([10, 4, 7, 2, 9, 6])[:, None]
    a = diffusion_nll(model, diff, [(x0, mask)], "t_dce", num_draws=3)
    b = diffusion_nll(model, diff, [(torch.where(mask, x0, (x0 + 2) % 7), mask)], "t_dce", num_draws=3)
    assert torch.allclose(a.per_sequence, b.per_sequence, atol=1e-6)


def test_a_model_with_no_mass_on_the_data_reports_infinite_perplexity_not_an_overflow():
    """A wrapped masked LM that suppresses a token the data holds scores ~1e9 nats: perplexity is inf, the
    bits per token stay finite (reported), and nothing raises OverflowError."""
    from discdiff.evaluation.likelihood import LikelihoodResult

    per_sequence = torch.tensor([1e9, 2e9], dtype=torch.float64)
    result = LikelihoodResult("t_dce", False, per_sequence, torch.tensor([4, 4]), torch.zeros(2), 1, "h")
    assert result.perplexity == math.inf and math.isinf(result.ci_perplexity.high)
    assert math.isfinite(result.bits_per_token)
    assert "perplexity" in result.to_dict()
