"""Batch invariance: with ``seeds=[...]`` a row's sample depends only on its own prompt and its own seed, so
the row drawn alone or inside a batch of 8 with other prompts is token-for-token identical. For every
sampler, caching on and off, on an exact toy model and on a small random-initialised transformer."""

import pytest
import torch

import discdiff as dd
from discdiff.exact import ToyDistribution
from discdiff.nn import DiffusionTransformer, TransformerConfig
from discdiff.row_random import RowGenerators, uniform
from discdiff.sampling import Condition

SEEDS = [11, 5, 99, 0, 7, 123456789, 3, 42]

# sampler, graph kind, options
CASES = [
    ("ancestral", "absorbing", {"steps": 8, "cache": True}),
    ("ancestral", "absorbing", {"steps": 8, "cache": False}),
    ("first_hitting", "absorbing", {}),
    ("confidence", "absorbing", {"steps": 4}),
    ("confidence", "absorbing", {"steps": 8, "remasking": "random", "block_length": 3}),
    ("confidence", "absorbing", {"threshold": 0.4, "top_k": 2}),
    ("euler", "uniform", {"steps": 6}),
    ("tau_leaping", "uniform", {"steps": 6}),
    ("tweedie", "absorbing", {"steps": 6, "temperature": 0.8}),
    ("tweedie", "uniform", {"steps": 6}),
]


def _prompts(length: int, vocab: int) -> Condition:
    """8 rows with prompts of different lengths (0 to 3 tokens) and, in two rows, a pinned last token."""
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab, (8, length), generator=gen)
    known = torch.arange(length)[None] < torch.tensor([0, 1, 2, 3, 0, 2, 1, 3])[:, None]
    known[4, -1] = known[6, -1] = True
    return Condition(tokens, known)


def _graph(kind: str, vocab: int):
    return dd.Absorbing(vocab) if kind == "absorbing" else dd.Uniform(vocab)


def _alone_and_in_batch(diff, model, length, sampler, cond, opts):
    batch = diff.sample(model, 8, length, sampler, condition=cond, seeds=SEEDS, **opts).samples
    alone = torch.cat([diff.sample(model, 1, length, sampler, seeds=[SEEDS[b]], **opts,
                                   condition=Condition(cond.tokens[b:b + 1], cond.known[b:b + 1])).samples
                       for b in range(8)])
    return batch, alone


@pytest.mark.parametrize("sampler,kind,opts", CASES, ids=lambda v: str(v))
def test_a_row_is_the_same_alone_and_in_a_batch_exact_model(sampler, kind, opts):
    graph = _graph(kind, 3)
    toy = ToyDistribution.random(3, 5, generator=torch.Generator().manual_seed(2))
    param = "denoiser" if graph.mask_id is not None and sampler != "tweedie" else "score"
    model = toy.denoiser_model(graph) if param == "denoiser" else toy.score_model(graph)
    batch, alone = _alone_and_in_batch(dd.Diffusion(graph, dd.LogLinear(), param), model, 5, sampler,
                                       _prompts(5, 3), opts)
    assert torch.equal(batch, alone)


def _transformer(graph, time_conditioning: bool) -> DiffusionTransformer:
    cfg = TransformerConfig(num_states=graph.num_states, d_model=32, n_layers=2, n_heads=2, max_len=12, cond_dim=16,
                            time_conditioning=time_conditioning)
    torch.manual_seed(0)
    model = DiffusionTransformer(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():  # random everywhere (adaLN and head too): no path is trivially zero
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


@pytest.mark.parametrize("sampler,kind,opts", CASES, ids=lambda v: str(v))
def test_a_row_is_the_same_alone_and_in_a_batch_transformer(sampler, kind, opts):
    graph = _graph(kind, 6)
    score = graph.mask_id is None or sampler == "tweedie"
    model = _transformer(graph, time_conditioning=score)
    diff = dd.Diffusion(graph, dd.LogLinear(), "score" if score else "denoiser")
    batch, alone = _alone_and_in_batch(diff, model, 12, sampler, _prompts(12, 6), opts)
    assert torch.equal(batch, alone)


def test_the_transformer_answers_a_row_alike_alone_and_in_a_batch():
    # What the token-for-token equality above rests on (fp32, CPU). A time-free transformer's answer on a row
    # is bit-identical alone and in a batch. A time-conditioned one differs in the last bits: adaLN's
    # [B, cond] matmuls take another BLAS kernel when B = 1 (measured: probabilities within 4e-6 on one machine,
    # 1.1e-5 on an AMD EPYC, with these deliberately large random weights and logits up to 13), so a token can
    # differ only when a float64 uniform falls that close to a CDF boundary (about 1e-5 per draw). The bound
    # below leaves room for other kernels; a row mixed up with another moves probabilities by O(0.1).
    x = torch.randint(0, 7, (8, 12), generator=torch.Generator().manual_seed(3))
    sigma = torch.rand(8, generator=torch.Generator().manual_seed(4)) * 3
    for time_conditioning in (False, True):
        model = _transformer(dd.Absorbing(6), time_conditioning)
        with torch.no_grad():
            batch = torch.softmax(model(x, sigma).double(), -1)
            alone = torch.cat([torch.softmax(model(x[b:b + 1], sigma[b:b + 1]).double(), -1) for b in range(8)])
        if time_conditioning:
            assert torch.allclose(batch, alone, rtol=0, atol=1e-4)
        else:
            assert torch.equal(batch, alone)


def test_one_generator_for_the_batch_is_not_batch_invariant():
    # The check above has teeth: with one generator shared by the batch, row b's sample depends on its batch.
    graph = dd.Absorbing(3)
    toy = ToyDistribution.random(3, 5, generator=torch.Generator().manual_seed(2))
    diff = dd.Diffusion(graph, dd.LogLinear(), "denoiser")
    batch = diff.sample(toy.denoiser_model(graph), 8, 5, "ancestral", steps=8,
                        generator=torch.Generator().manual_seed(0)).samples
    alone = torch.cat([diff.sample(toy.denoiser_model(graph), 1, 5, "ancestral", steps=8,
                                   generator=torch.Generator().manual_seed(0)).samples for _ in range(8)])
    assert not torch.equal(batch, alone)


def test_seeds_give_each_row_its_own_draws_and_repeat():
    graph = dd.Absorbing(3)
    toy = ToyDistribution.random(3, 5, generator=torch.Generator().manual_seed(2))
    diff = dd.Diffusion(graph, dd.LogLinear(), "denoiser")
    first = diff.sample(toy.denoiser_model(graph), 64, 5, "first_hitting", seeds=list(range(64))).samples
    again = diff.sample(toy.denoiser_model(graph), 64, 5, "first_hitting", seeds=list(range(64))).samples
    assert torch.equal(first, again)
    assert len({tuple(r) for r in first.tolist()}) > 10  # distinct seeds, distinct rows


@pytest.mark.parametrize("kwargs,match", [
    ({"seeds": [1, 2]}, "one per row"),
    ({"seeds": [1, 2, 3], "generator": torch.Generator()}, "not both"),
    ({"seeds": [1, -2, 3]}, r"\[0, 2\*\*63\)"),
    ({"seeds": [1, 2.5, 3]}, "integer"),
    ({"seeds": "123"}, "list of integers"),
])
def test_bad_seeds_are_refused(kwargs, match):
    graph = dd.Absorbing(3)
    toy = ToyDistribution.random(3, 5, generator=torch.Generator().manual_seed(2))
    with pytest.raises(ValueError, match=match):
        dd.Diffusion(graph, dd.LogLinear(), "denoiser").sample(toy.denoiser_model(graph), 3, 5, **kwargs)


def test_per_row_uniforms_come_from_each_rows_generator():
    gens = RowGenerators.from_seeds([4, 9, 4])
    u = uniform((3, 6), gens)
    assert torch.equal(u[0], u[2]) and not torch.equal(u[0], u[1])
    assert torch.equal(u[1], torch.rand(6, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
