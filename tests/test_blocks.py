"""BlockDiffusion against exact answers: b = L is Diffusion's loss draw for draw, b = 1 is the exact AR NLL, every b
bounds H(p_data) tightly with the exact block oracle, and the block sampler fed exact block conditionals draws
p_data (and p(x | prompt))."""

import math

import pytest
import torch
from sampling.helpers import total_variation

import discdiff as dd
from discdiff.exact import ToyDistribution

OBJECTIVES = ["t_dce", "lambda_dce", "k_dce"]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def toy(length=4, seed=0):
    return ToyDistribution.random(vocab_size=3, length=length, generator=gen(seed))


class IgnoresCleanHalf(torch.nn.Module):
    """A fixed random time-free denoiser of x_t alone (it takes x0= and ignores it)."""

    def __init__(self, num_states=4):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(num_states, 8, num_states, generator=gen(5)))
        self.time_free = True

    def forward(self, x_t, sigma_bar, x0=None, padding_mask=None):
        context = self.table[x_t].mean(1, keepdim=True)  # (B, 1, 8, S): every position sees the whole x_t
        return (self.table[x_t] + context).sum(2)  # (B, L, S)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("padded", [False, True])
def test_one_block_is_full_sequence_masked_diffusion_draw_for_draw(objective, padded):
    graph, schedule, model = dd.Absorbing(3), dd.LogLinear(), IgnoresCleanHalf()
    x0 = torch.randint(0, 3, (16, 8), generator=gen(1))
    mask = torch.ones(16, 8, dtype=torch.bool)
    if padded:
        mask[::3, 5:] = False
    mask = mask if padded else None
    block = dd.BlockDiffusion(graph, schedule, block_size=8).loss(model, x0, objective, generator=gen(2),
                                                                  padding_mask=mask)
    full = dd.Diffusion(graph, schedule, "denoiser").loss(model, x0, objective, generator=gen(2), padding_mask=mask)
    assert torch.equal(block, full)
    assert torch.equal(dd.BlockDiffusion(graph, schedule, 8).draw_times(16, objective, generator=gen(3)),
                       dd.Diffusion(graph, schedule, "denoiser").draw_times(16, objective, generator=gen(3)))


def test_one_token_blocks_with_k_dce_are_the_exact_autoregressive_nll():
    """b = 1: every block has one token, always masked (k = 1, weight 1): the loss is -sum_k log p(x^k | x^{<k})."""
    data = toy()
    graph = dd.Absorbing(3)
    x0 = data.sample(64, gen(1))
    loss = dd.BlockDiffusion(graph, dd.LogLinear(), 1).loss(data.block_denoiser_model(graph, 1), x0, "k_dce",
                                                            generator=gen(2))
    torch.testing.assert_close(loss.double(), -data.prob_of(x0).log(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("b", [1, 2, 4])
def test_the_bound_with_exact_block_conditionals_is_the_entropy(objective, b):
    """E[loss] = sum_k H(x^k | x^{<k}) = H(p_data) for the exact block oracle (up to the schedule's O(eps) ends)."""
    data, graph = toy(), dd.Absorbing(3)
    bd = dd.BlockDiffusion(graph, dd.LogLinear(), b)
    x0 = data.sample(4000, gen(b))
    loss = bd.loss(data.block_denoiser_model(graph, b), x0, objective, generator=gen(10 + b)).double()
    se = loss.std() / math.sqrt(len(loss))
    assert abs(loss.mean() - data.entropy()) < 3 * se + 2e-3, (loss.mean(), data.entropy(), se)


def test_a_model_that_peeks_at_its_own_clean_block_is_caught():
    """The same check fails for a model that sees x0 of its own block (it would claim ~0 nats)."""
    data, graph = toy(), dd.Absorbing(3)
    cheat = data.block_denoiser_model(graph, 4)  # one block = every position, fed x0 as x_t
    model = lambda x_t, sigma_bar, x0=None: cheat(x0, sigma_bar)  # noqa: E731
    x0 = data.sample(400, gen(0))
    loss = dd.BlockDiffusion(graph, dd.LogLinear(), 2).loss(model, x0, "t_dce", generator=gen(1))
    assert loss.mean() < data.entropy() / 4


def test_block_times_are_stratified_in_every_block_and_start_from_the_rows_times():
    bd = dd.BlockDiffusion(dd.Absorbing(3), dd.LogLinear(), 2)
    n = 64
    for objective, low in (("t_dce", bd.t_min), ("k_dce", 0.0)):
        t = bd.draw_times(n, objective, generator=gen(4))
        raw = bd.block_times(t, 5, objective)
        assert raw.shape == (n, 5) and torch.equal(raw[:, 0], t.to(raw.dtype))
        times = raw.double()
        for k in range(5):  # one time in each of the n equal strata of [low, 1]
            strata = torch.floor((times[:, k] - low) / (1 - low) * n).long().clamp_max(n - 1)
            assert torch.equal(strata.sort().values, torch.arange(n)), (objective, k)


def _exact_samples(b, sampler, n, condition=None, length=3, seed=0, **options):
    data, graph = toy(length=length), dd.Absorbing(3)
    bd = dd.BlockDiffusion(graph, dd.LogLinear(), b)
    out = bd.sample(data.block_denoiser_model(graph, b), n, length, sampler, generator=gen(seed),
                    condition=condition, **options)
    return data, out


@pytest.mark.parametrize("sampler,options", [("ancestral", {"steps": 256}), ("first_hitting", {}),
                                             ("confidence", {"steps": 2, "remasking": "random"})])
@pytest.mark.parametrize("b", [1, 2])
def test_block_sampler_with_exact_block_conditionals_draws_p_data(b, sampler, options):
    if sampler == "ancestral" and b == 1:
        options = {"steps": 8}  # one token per block: exact at any step count
    data, out = _exact_samples(b, sampler, 20_000, **options)  # b = 2 on length 3: a short last block
    assert total_variation(out.samples, data.probs, 3) <= 0.03


def test_a_prompt_enters_as_clean_blocks_and_a_partial_block_is_pinned():
    """Known first two tokens with b = 2: the first block costs no model call; with b = 3 the two known tokens
    are pinned inside the first block. Either way the draw is p(x | x^0 x^1)."""
    prefix = torch.tensor([1, 0, 0])
    known = torch.tensor([True, True, False])
    condition = dd.sampling.Condition(prefix[None], known[None])
    for b in (2, 3):
        data, out = _exact_samples(b, "first_hitting", 8000, condition=condition, seed=b)
        assert torch.equal(out.samples[:, :2], prefix[:2].expand(8000, 2))
        assert torch.equal(out.nfe_per_row, torch.ones(8000, dtype=torch.long))  # one unknown token, one call
        given = data.probs.view(3, 3, 3)[1, 0]
        counts = torch.bincount(out.samples[:, 2], minlength=3).double() / 8000
        assert 0.5 * (counts - given / given.sum()).abs().sum() <= 0.03


def test_eos_stops_a_row_and_fills_its_tail():
    eos = 0
    data, out = _exact_samples(1, "first_hitting", 2000, length=4, seed=3, eos_id=eos)
    x = out.samples
    first = torch.where((x == eos).any(1), (x == eos).int().argmax(1), torch.full((len(x),), 4))
    after = torch.arange(4)[None] > first[:, None]
    assert (x[after] == eos).all() and (first < 4).any() and (first == 4).any()
    assert torch.equal(out.nfe_per_row, torch.clamp(first + 1, max=4))  # a call per token up to the EOS


def test_bad_block_diffusion_input_is_a_one_line_error():
    from discdiff.nn import DiffusionTransformer, TransformerConfig

    graph, sched = dd.Absorbing(3), dd.LogLinear()
    with pytest.raises(ValueError, match="absorbing graph"):
        dd.BlockDiffusion(dd.Uniform(3), sched, 2)
    with pytest.raises(ValueError, match="parameterization must be 'denoiser'"):
        dd.BlockDiffusion(graph, sched, 2, "score")
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        dd.BlockDiffusion(graph, sched, 0)
    bd = dd.BlockDiffusion(graph, sched, 2)
    oracle = toy(length=3).block_denoiser_model(graph, 2)
    with pytest.raises(ValueError, match="not a multiple of block_size=2"):
        bd.loss(oracle, torch.zeros(2, 3, dtype=torch.long))
    base = dict(num_states=4, d_model=16, n_layers=1, n_heads=2, max_len=8)
    full = DiffusionTransformer(TransformerConfig(**base))
    with pytest.raises(ValueError, match="a full-sequence model .* block_size=2"):
        bd.sample(full, 2, 8)
    with pytest.raises(ValueError, match="the model has block_size=4, this BlockDiffusion block_size=2"):
        bd.loss(DiffusionTransformer(TransformerConfig(**base, block_size=4)), torch.zeros(2, 8, dtype=torch.long))
    for kwargs, message in [({"sampler": "euler"}, "ancestral, first_hitting or confidence"),
                            ({"guidance": 1.0}, "guidance"), ({"eos_id": 3}, "eos_id"),
                            ({"kv_cache": True}, "kv_cache=True needs a model with a KV cache")]:
        with pytest.raises(ValueError, match=message):
            bd.sample(oracle, 2, 4, **kwargs)


def test_the_confidence_block_length_must_be_the_models_block_size():
    bd = dd.BlockDiffusion(dd.Absorbing(3), dd.LogLinear(), 2)
    oracle = toy(length=5).block_denoiser_model(dd.Absorbing(3), 2)
    with pytest.raises(ValueError, match="block_length=3 contradicts this block model's block_size=2") as err:
        bd.sample(oracle, 2, 5, "confidence", steps=2, block_length=3)
    assert "\n" not in str(err.value)
    # equal: the same draw as without it, the short last block (1 token) included
    same = bd.sample(oracle, 4, 5, "confidence", steps=2, block_length=2, generator=gen(3))
    plain = bd.sample(oracle, 4, 5, "confidence", steps=2, generator=gen(3))
    assert torch.equal(same.samples, plain.samples) and same.nfe == plain.nfe
    with pytest.raises(ValueError, match="block_length"):  # not a confidence run: still refused
        bd.sample(oracle, 2, 4, "ancestral", block_length=2)
