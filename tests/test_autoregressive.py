"""discdiff.Autoregressive: exact chain-rule likelihood and left-to-right sampling, checked against exact answers."""

import itertools
import math

import pytest
import torch

import discdiff as dd
from discdiff.nn import DiffusionTransformer, ModelConfig, TransformerConfig
from discdiff.sampling import SampleOutput

V = 3  # data tokens; BOS = 3


def causal_model(max_len=8, **kw) -> DiffusionTransformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(num_states=V + 1, d_model=16, n_layers=2, n_heads=2, max_len=max_len, causal=True, **kw)
    model = DiffusionTransformer(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random weights everywhere, so the output depends on every input
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


def all_sequences(length: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(V), repeat=length)))


def test_nll_is_the_chain_rule_computed_prefix_by_prefix():
    model, ar = causal_model(), dd.Autoregressive(V)
    x = torch.randint(0, V, (4, 6), generator=torch.Generator().manual_seed(2))
    expected = torch.zeros(4, dtype=torch.float64)
    for i in range(6):  # p(x_i | BOS, x_<i) from a separate forward on each prefix
        prefix = torch.cat([torch.full((4, 1), V), x[:, :i]], dim=1)
        log_probs = torch.log_softmax(model(prefix, None)[:, -1, :V].double(), dim=-1)
        expected -= log_probs.gather(-1, x[:, i : i + 1]).squeeze(-1)
    torch.testing.assert_close(ar.loss(model, x).double(), expected, rtol=1e-5, atol=1e-5)
    estimate = ar.nll(model, x)
    assert isinstance(estimate, dd.NLLEstimate) and estimate.mean.dtype == torch.float64
    torch.testing.assert_close(estimate.mean, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(estimate.stderr, torch.zeros(4, dtype=torch.float64))


def test_likelihood_is_a_distribution_over_all_sequences():
    seqs = all_sequences(4)  # 81 sequences of length 4
    total = torch.exp(-dd.Autoregressive(V).loss(causal_model(), seqs).double()).sum()
    assert total.item() == pytest.approx(1.0, abs=1e-5)


def test_padding_drops_targets_and_hides_inputs():
    model, ar = causal_model(), dd.Autoregressive(V)
    x = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(3))
    real = torch.arange(8) < torch.tensor([[5], [8]])
    garbage = torch.where(real, x, (x + 1) % V)
    padded = ar.loss(model, garbage, padding_mask=real)
    torch.testing.assert_close(padded[0], ar.loss(model, x[:1, :5])[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded[1], ar.loss(model, x[1:])[0], rtol=1e-5, atol=1e-5)


class BigramTable:
    """A table model: the next token's logits depend on the current token only (row V is BOS)."""

    def __init__(self, seed=0):
        self.logits = torch.randn(V + 1, V, generator=torch.Generator().manual_seed(seed)) * 1.5
        self.calls = 0

    def __call__(self, inputs, sigma_bar, padding_mask=None):
        self.calls += 1
        return self.logits[inputs]  # [B, L, V]

    def law(self, length: int, temperature: float = 1.0) -> torch.Tensor:
        """Exact p(x) over all_sequences(length), from the table."""
        log_p = torch.log_softmax(self.logits.double() / temperature, dim=-1)
        seqs = all_sequences(length)
        prev = torch.cat([torch.full((len(seqs), 1), V), seqs[:, :-1]], dim=1)
        return log_p[prev, seqs].sum(1).exp()


def empirical(samples: torch.Tensor) -> torch.Tensor:
    codes = (samples * V ** torch.arange(samples.shape[1] - 1, -1, -1)).sum(1)
    return torch.bincount(codes, minlength=V ** samples.shape[1]).double() / len(samples)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_samples_follow_the_table_law(temperature):
    table, n, length = BigramTable(), 20_000, 3
    out = dd.Autoregressive(V).sample(table, n, length, generator=torch.Generator().manual_seed(0),
                                      temperature=temperature)
    assert isinstance(out, SampleOutput) and out.samples.shape == (n, length) and out.trajectory is None
    assert out.nfe == length == table.calls and torch.equal(out.nfe_per_row, torch.full((n,), length))
    tv = 0.5 * (empirical(out.samples) - table.law(length, temperature)).abs().sum().item()
    assert tv < 0.03  # sampling noise alone is ~0.01 here; a wrong law (e.g. temperature ignored) is > 0.1
    assert 0.5 * (table.law(length, 1.0) - table.law(length, 0.5)).abs().sum() > 0.1


def test_the_same_generator_gives_the_same_samples_and_top_k_1_is_greedy():
    table, ar = BigramTable(seed=4), dd.Autoregressive(V)
    a = ar.sample(table, 5, 4, generator=torch.Generator().manual_seed(7)).samples
    b = ar.sample(table, 5, 4, generator=torch.Generator().manual_seed(7)).samples
    assert torch.equal(a, b)
    greedy = ar.sample(table, 2, 4, top_k=1).samples
    prev, expected = V, []
    for _ in range(4):
        prev = int(table.logits[prev].argmax())
        expected.append(prev)
    assert greedy.tolist() == [expected, expected]


def test_bad_inputs_are_one_line_value_errors():
    ar = dd.Autoregressive(V)
    bidirectional = DiffusionTransformer(TransformerConfig(num_states=V + 1, d_model=16, n_layers=1, n_heads=2,
                                                           max_len=8))
    with pytest.raises(ValueError, match="causal"):
        ar.loss(bidirectional, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="ids must lie in"):
        ar.loss(causal_model(), torch.full((1, 4), V))
    with pytest.raises(ValueError, match="one objective"):
        ar.loss(causal_model(), torch.zeros(1, 4, dtype=torch.long), "t_dce")
    with pytest.raises(ValueError, match="length"):
        ar.sample(BigramTable(), 2, 0)
    with pytest.raises(ValueError, match="vocab_size"):
        dd.Autoregressive(0)


def test_training_objective_for_kind_ar_is_its_loss():
    from discdiff.training import DiffusionConfig, build_diffusion, build_model
    from discdiff.training.recipe import make_objective

    cfg = DiffusionConfig(kind="ar")
    ar = build_diffusion(cfg, V)
    assert isinstance(ar, dd.Autoregressive) and ar.vocab_size == V
    model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2), cfg, V, 8)
    assert model.config.causal and model.config.num_states == V + 1
    x0 = torch.randint(0, V, (3, 8), generator=torch.Generator().manual_seed(5))
    mask = torch.arange(8) < torch.tensor([[8], [6], [2]])
    got = make_objective(cfg, ar)(model, x0, mask, torch.zeros(3), torch.Generator())
    torch.testing.assert_close(got, ar.loss(model, x0, padding_mask=mask))
    assert math.isfinite(got.sum().item())


def test_a_prompt_is_kept_and_the_rest_follows_the_conditional_law():
    """Rows start with their prompt; what follows is drawn from p(x_{>=P} | prompt), here the table's chain
    from the prompt's last token, per row even when the prompts of one batch differ in length."""
    table, n, length = BigramTable(seed=2), 20_000, 3
    ar = dd.Autoregressive(V)
    out = ar.sample(table, n, length, generator=torch.Generator().manual_seed(3), prompt=[2])
    assert (out.samples[:, 0] == 2).all()
    joint = table.law(length)
    seqs = all_sequences(length)
    cond = torch.where(seqs[:, 0] == 2, joint, torch.zeros_like(joint))
    cond = cond / cond.sum()
    assert 0.5 * (empirical(out.samples) - cond).abs().sum().item() < 0.03
    mixed = ar.sample(table, 4, length, generator=torch.Generator().manual_seed(3), prompt=[[1], [0, 2], [], [2, 2]])
    rows = mixed.samples.tolist()
    assert rows[0][0] == 1 and rows[1][:2] == [0, 2] and rows[3][:2] == [2, 2]
    for bad, match in (([0, 1, 2], "leaves nothing"), ([[1]], "one list of ids per row"), ([5], "must lie in")):
        with pytest.raises(ValueError, match=match):
            ar.sample(table, 2, length, prompt=bad)


def test_a_prompt_gives_the_same_samples_with_the_cache_on_and_off():
    model = causal_model()
    ar = dd.Autoregressive(V)
    kw = {"prompt": [[1, 2], [0]], "generator": None}
    a = ar.sample(model, 2, 6, **{**kw, "generator": torch.Generator().manual_seed(0)}, kv_cache=True).samples
    b = ar.sample(model, 2, 6, **{**kw, "generator": torch.Generator().manual_seed(0)}, kv_cache=False).samples
    assert torch.equal(a, b) and a[0, :2].tolist() == [1, 2] and a[1, 0] == 0


def test_a_row_drawn_alone_equals_the_same_row_in_a_batch_with_other_prompts():
    model, ar = causal_model(), dd.Autoregressive(V)
    batch = ar.sample(model, 3, 7, prompt=[[1, 2, 0], [2], []], seeds=[11, 12, 13]).samples
    for b, (prompt, seed) in enumerate(zip([[1, 2, 0], [2], []], [11, 12, 13], strict=True)):
        alone = ar.sample(model, 1, 7, prompt=[prompt], seeds=[seed]).samples
        assert torch.equal(alone[0], batch[b])
    other = ar.sample(model, 3, 7, prompt=[[1, 2, 0], [2], []], seeds=[11, 99, 13]).samples
    assert torch.equal(other[0], batch[0]) and not torch.equal(other[1], batch[1])
