"""Records of their own length on an exact toy space: vocab {a, b, EOS}, canvas 4, records a|b{1,3} EOS+.

The sampler fed the exact model reproduces the joint law of (length, content), in both modes: EOS-padded
(generate every position, cut at the first EOS) and length-first (draw the length, pin EOS after it)."""

import math

import numpy as np
import pytest
import torch

import discdiff as dd
from discdiff.evaluation.validity import image_validity, ks_noise_floor, length_ks, record_stats, record_validity
from discdiff.exact import ToyDistribution
from discdiff.sampling.records import RecordFormat, draw_lengths, on_record_support, record_lengths, without_tokens

from .helpers import total_variation

A, B, EOS = 0, 1, 2
FMT = RecordFormat(eos_id=EOS)
N = 20_000


def _record_toy() -> ToyDistribution:
    """Random probabilities on the 14 well-formed records (2 + 4 + 8 bodies of length 1-3), 0 elsewhere."""
    seqs = dd.exact.enumerate_sequences(3, 4)
    lengths = FMT.body_lengths(seqs)
    valid = record_validity(seqs, FMT, letters=(A, B))
    assert int(valid.sum()) == 14 and set(lengths[valid].tolist()) == {1, 2, 3}
    weights = torch.distributions.Dirichlet(torch.ones(14, dtype=torch.float64)).sample()
    probs = torch.zeros(len(seqs), dtype=torch.float64)
    probs[valid] = weights
    return ToyDistribution(probs, vocab_size=3, length=4)


torch.manual_seed(0)
TOY = _record_toy()


@pytest.mark.parametrize("sampler,opts", [("ancestral", {"steps": 64}), ("first_hitting", {}),
                                          ("confidence", {"steps": 4, "remasking": "random"})])
def test_eos_padded_sampling_reproduces_the_joint_law_of_length_and_content(sampler, opts):
    g = dd.Absorbing(3)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(TOY.denoiser_model(g), N, 4, sampler,
                                                             generator=torch.Generator().manual_seed(1), **opts)
    assert total_variation(out.samples, TOY.probs, 3) <= 0.03
    # one token per step (first_hitting; confidence here) is exact: never an invalid record. Ancestral reveals
    # several positions per step independently, so even the exact model yields a few (measured 0.2% at 64 steps)
    validity = record_validity(out.samples, FMT, (A, B)).double().mean().item()
    assert validity == 1.0 if sampler != "ancestral" else validity >= 0.99


def _exact_length_first_law(lengths_law: torch.Tensor) -> torch.Tensor:
    """sum_n q(n) * [p restricted to records of length n], the law length-first sampling aims at."""
    n = FMT.body_lengths(dd.exact.enumerate_sequences(3, 4))
    lengths_law = torch.nn.functional.pad(lengths_law, (0, 5 - len(lengths_law)))
    target = TOY.probs * lengths_law[n] / torch.zeros(5, dtype=torch.float64).index_add_(0, n, TOY.probs)[n]
    return torch.nan_to_num(target)


def test_length_first_sampling_gives_each_row_its_length():
    g = dd.Absorbing(3)
    counts = torch.tensor([0.0, 1, 1, 2])  # a length law of the user's, unlike the model's
    lengths = draw_lengths(counts, N, generator=torch.Generator().manual_seed(2), longest=FMT.max_body(4))
    cond = FMT.condition(N, 4, body_lengths=lengths)
    model = without_tokens(TOY.denoiser_model(g), FMT.specials)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(model, N, 4, "first_hitting", condition=cond,
                                                             generator=torch.Generator().manual_seed(3))
    assert torch.equal(FMT.body_lengths(out.samples), lengths)
    assert record_validity(out.samples, FMT, (A, B)).all()
    # the body law is the per-position renormalised one (a heuristic): close to p(body | n), not equal
    assert total_variation(out.samples, _exact_length_first_law(counts / counts.sum()), 3) <= 0.06  # measured 0.030


def test_a_model_that_ignores_the_end_is_told_apart():
    # validity and the TV check have teeth: the uniform law over the canvas is neither valid nor close
    g = dd.Absorbing(3)
    flat = ToyDistribution(torch.full((81,), 1 / 81, dtype=torch.float64), vocab_size=3, length=4)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(flat.denoiser_model(g), 4000, 4, "first_hitting",
                                                             generator=torch.Generator().manual_seed(1))
    stats = record_stats(out.samples, FMT, (A, B), reference_lengths=FMT.body_lengths(TOY.sample(4000)))
    assert stats.validity < 0.3 and total_variation(out.samples, TOY.probs, 3) > 0.3


@pytest.mark.parametrize("sampler,opts", [("ancestral", {"steps": 64}), ("first_hitting", {})])
def test_the_record_support_changes_nothing_for_the_exact_model(sampler, opts):
    """The excluded events have probability 0 under the record law: the exact model's samples keep its joint law,
    and its predictions on reachable states are unchanged where they carry mass."""
    g = dd.Absorbing(3)
    model = on_record_support(TOY.denoiser_model(g), FMT, g.mask_id)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(model, N, 4, sampler,
                                                             generator=torch.Generator().manual_seed(5), **opts)
    assert total_variation(out.samples, TOY.probs, 3) <= 0.03
    x_t = torch.tensor([[0, 3, 3, 3], [0, 1, 3, 2], [3, 3, 1, 3], [0, 2, 3, 3]])  # 3 = MASK
    plain = torch.softmax(TOY.denoiser_model(g)(x_t, torch.ones(4)).double()[..., :3], -1)
    kept = torch.softmax(model(x_t, torch.ones(4)).double()[..., :3], -1)
    torch.testing.assert_close(kept, plain, atol=1e-6, rtol=0)


def test_the_record_support_makes_a_model_that_ignores_the_end_well_formed():
    """The uniform model (validity < 0.3 plain) gives one well-formed record per row under the support, and its
    lengths stay its own (every length 1-3 drawn), with one token per model call."""
    g = dd.Absorbing(3)
    flat = ToyDistribution(torch.full((81,), 1 / 81, dtype=torch.float64), vocab_size=3, length=4)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(on_record_support(flat.denoiser_model(g), FMT, g.mask_id),
                                                             4000, 4, "first_hitting",
                                                             generator=torch.Generator().manual_seed(1))
    assert record_validity(out.samples, FMT, (A, B)).all()
    assert set(FMT.body_lengths(out.samples).tolist()) == {1, 2, 3}
    fmt = RecordFormat(eos_id=2, bos_id=1, pad_id=0)  # with BOS and PAD: BOS, PAD and an empty body excluded
    x_t = torch.tensor([[1, 5, 5, 3, 5, 5]])  # 5 = MASK of a 5-token vocabulary (letters 3, 4)
    out = on_record_support(lambda x, s: torch.zeros(*x.shape, 6), fmt, 5)(x_t, torch.ones(1))
    allowed = (out > -1e8)[0, :, :5].int().tolist()
    assert allowed[1] == [0, 0, 0, 1, 1]  # first body position: letters only
    assert allowed[2] == [0, 0, 0, 1, 1]  # a letter stands after it: no EOS
    assert allowed[4] == [0, 0, 1, 1, 1]  # after the last letter: EOS or a letter
    assert allowed[5] == [0, 0, 1, 0, 0]  # the canvas's last position: the record ends inside the canvas
    x_t = torch.tensor([[1, 3, 2, 5, 5]])  # an EOS at 2: only EOS after it
    out = on_record_support(lambda x, s: torch.zeros(*x.shape, 6), fmt, 5)(x_t, torch.ones(1))
    assert (out > -1e8)[0, 3:, :5].int().tolist() == [[0, 0, 1, 0, 0]] * 2


def test_bos_is_pinned_at_zero_and_lengths_fit_the_canvas():
    fmt = RecordFormat(eos_id=2, bos_id=1, pad_id=0)
    cond = fmt.condition(3, 5)
    assert cond.known[:, 0].all() and not cond.known[:, 1:].any() and (cond.tokens[:, 0] == 1).all()
    with pytest.raises(ValueError, match=r"\[1, 3\]"):
        fmt.condition(1, 5, body_lengths=[4])  # BOS + 4 + EOS does not fit 5
    with pytest.raises(ValueError, match="one length per row"):
        fmt.condition(2, 5, body_lengths=[1])
    prompt = dd.sampling.Condition(torch.tensor([[7, 7, 7, 7, 7]]).expand(1, 5), torch.tensor([[True] + [False] * 4]))
    with pytest.raises(ValueError, match="pins"):
        fmt.condition(1, 5, prompt=prompt)  # a prompt token on BOS's place


def test_validity_rules():
    fmt = RecordFormat(eos_id=2, bos_id=1, pad_id=0)
    rows = torch.tensor([
        [1, 5, 6, 2, 2, 0],  # BOS body EOS EOS PAD: valid
        [5, 6, 2, 0, 0, 0],  # no BOS: valid (BOS optional)
        [1, 2, 2, 2, 2, 2],  # empty body
        [1, 5, 6, 5, 6, 5],  # no EOS
        [1, 5, 1, 6, 2, 2],  # BOS in the middle
        [1, 5, 2, 6, 2, 2],  # a letter after EOS
        [1, 5, 0, 6, 2, 2],  # PAD inside the body
    ])
    assert record_validity(rows, fmt, range(3, 8)).tolist() == [True, True, False, False, False, False, False]
    assert image_validity(torch.tensor([[0, 15, 3], [0, 16, 3]]), 16).tolist() == [True, False]
    assert length_ks([1, 2, 3], [1, 2, 3]) == 0.0 and length_ks([1, 1], [5, 6]) == 1.0
    assert length_ks([1, 2], [2, 3]) == pytest.approx(0.5)


def test_the_ks_noise_floor_is_the_brownian_bridge_limit():
    # continuous lengths, a reference far larger than the sample: E[KS] -> sqrt(pi/2) ln 2 / sqrt(num)
    rng = np.random.default_rng(1)
    population = rng.uniform(0, 1, 200_000)
    mean, p95 = ks_noise_floor(population, population[:100_000], num=100, repeats=400)
    assert mean == pytest.approx(math.sqrt(math.pi / 2) * math.log(2) / 10, rel=0.08)
    # the 95th percentile of the Kolmogorov distribution is 1.358 / sqrt(num)
    assert p95 == pytest.approx(1.358 / 10, rel=0.1)
    # a shifted population is not noise: its floor sits far above
    assert ks_noise_floor(population + 0.2, population, num=100)[0] > 0.15
    with pytest.raises(ValueError, match="non-empty"):
        ks_noise_floor([], [1, 2], num=10)


def test_ended_pads_after_the_first_eos_and_record_lengths_parse_a_request():
    fmt = RecordFormat(eos_id=2, bos_id=1, pad_id=0)
    x = torch.tensor([[1, 5, 2, 6, 9, 0], [1, 5, 6, 7, 9, 6], [1, 2, 5, 2, 9, 9]])  # 9: MASK
    assert fmt.ended(x).tolist() == [[1, 5, 2, 2, 2, 2], [1, 5, 6, 7, 9, 6], [1, 2, 2, 2, 2, 2]]
    assert record_lengths(None, fmt, 3, 6) is None
    assert record_lengths(4, fmt, 2, 6) == record_lengths("4", fmt, 2, 6) == [4, 4]
    auto = record_lengths("auto", fmt, 50, 6, length_counts=[9, 0, 1, 0, 1, 5], seed=3)
    assert set(auto) == {2, 4} and auto == record_lengths("auto", fmt, 50, 6, [9, 0, 1, 0, 1, 5], seed=3)
    for bad in (0, 5, "x", 2.0, True):
        with pytest.raises(ValueError, match=r"record_length must be auto or an integer in \[1, 4\]"):
            record_lengths(bad, fmt, 1, 6)
    with pytest.raises(ValueError, match="--record-length needs a model trained on records"):
        record_lengths(3, None, 1, 6, name="--record-length")
    with pytest.raises(ValueError, match="length histogram"):
        record_lengths("auto", fmt, 1, 6)


@pytest.mark.parametrize("sampler,opts", [("ancestral", {"steps": 16}), ("first_hitting", {})])
def test_the_record_support_keeps_the_exact_law_under_block_sampling(sampler, opts):
    """A block sampler (b = 2 on the canvas of 4) calls the model on the finished blocks plus the current one; with
    the canvas length given, the support forces EOS only where a call reaches the canvas's end, so the exact block
    conditionals still reproduce the records' joint law. Without it the first block's last position would be
    forced to EOS (every body of length 1)."""
    g = dd.Absorbing(3)
    oracle = TOY.block_denoiser_model(g, 2)
    bd = dd.BlockDiffusion(g, dd.LogLinear(), 2)
    model = on_record_support(oracle, FMT, g.mask_id, length=4)
    out = bd.sample(model, N, 4, sampler, generator=torch.Generator().manual_seed(6), **opts)
    assert total_variation(out.samples, TOY.probs, 3) <= 0.03
    blind = bd.sample(on_record_support(oracle, FMT, g.mask_id), 64, 4, sampler,
                      generator=torch.Generator().manual_seed(6), **opts)
    assert set(FMT.body_lengths(blind.samples).tolist()) == {1}  # the defect the length argument removes
