"""NFE accounting, caching, decoding rules, numerics and input checks of the samplers."""

import math

import pytest
import torch

import discdiff as dd
from discdiff.sampling import Condition, sample_categorical

from .helpers import toy

TOY = toy()


class PositionModel(torch.nn.Module):
    """Time-free denoiser whose logits depend on the token at each position and on the position."""

    def __init__(self, num_states, length, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.table = torch.randn(num_states, num_states, generator=gen)
        self.pos = torch.randn(length, num_states, generator=gen)

    def forward(self, x_t, sigma_bar):
        return self.table[x_t] + self.pos[: x_t.shape[1]]


class TimeFreePositionModel(PositionModel):
    """The same model, declaring that it ignores sigma_bar: samplers may cache it."""

    time_free = True


@pytest.mark.parametrize("steps,length", [(128, 64), (32, 16), (256, 8)])
def test_caching_nfe_matches_the_expected_count(steps, length):
    g = dd.Absorbing(5)
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    out = diff.sample(TimeFreePositionModel(6, length), 400, length, "ancestral", steps=steps,
                      generator=torch.Generator().manual_seed(0))
    expected = steps * (1 - (1 - 1 / steps) ** length)
    assert abs(out.nfe_per_row.double().mean().item() / expected - 1) < 0.05
    assert out.nfe <= steps  # batch-level calls: at most one per step


def test_cache_changes_cost_not_samples():
    g = dd.Absorbing(5)
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    model = PositionModel(6, 12)
    on = diff.sample(model, 50, 12, "ancestral", steps=64, cache=True, generator=torch.Generator().manual_seed(3))
    off = diff.sample(model, 50, 12, "ancestral", steps=64, cache=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(on.samples, off.samples)
    assert on.nfe_per_row.sum() < off.nfe_per_row.sum()
    # per row, never invalidated by other rows: a row is re-evaluated only after its own tokens changed
    assert (on.nfe_per_row < on.nfe).any()


def test_cache_refused_for_time_conditioned_score_models():
    g = dd.Absorbing(3)
    with pytest.raises(ValueError, match="time-free"):
        dd.Diffusion(g, dd.LogLinear(), "score").sample(TOY.score_model(g), 4, 3, "ancestral", cache=True)


@pytest.mark.parametrize("length", [1, 7, 20])
def test_first_hitting_uses_exactly_one_call_per_token(length):
    g = dd.Absorbing(5)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(
        PositionModel(6, length), 9, length, "first_hitting", generator=torch.Generator().manual_seed(0))
    assert out.nfe == length and (out.nfe_per_row == length).all()
    assert (out.samples < 5).all()


def test_first_hitting_counts_only_unknown_positions():
    g = dd.Absorbing(5)
    known = torch.zeros(4, 10, dtype=torch.bool)
    known[:, :3] = True
    known[0, 3:6] = True  # row 0 has 6 known positions, the others 3
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(
        PositionModel(6, 10), 4, 10, "first_hitting", condition=Condition(torch.ones(4, 10, dtype=torch.long), known),
        generator=torch.Generator().manual_seed(0))
    assert out.nfe_per_row.tolist() == [4, 7, 7, 7]
    assert (out.samples[known] == 1).all()


def test_confidence_threshold_decodes_in_fewer_calls_and_blocks_go_left_to_right():
    g = dd.Absorbing(5)
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    model = PositionModel(6, 16)
    topk = diff.sample(model, 8, 16, "confidence", steps=16, block_length=4, return_trajectory=True,
                       generator=torch.Generator().manual_seed(0))
    assert topk.nfe == 16  # 4 blocks x 4 steps, one token per step
    for state in topk.trajectory:  # a later block never unmasks before an earlier one is complete
        masked = state == g.mask_id
        first_masked = torch.where(masked.any(-1), masked.float().argmax(-1), torch.full((8,), 16))
        later = torch.arange(16) >= ((first_masked // 4 + 1) * 4)[:, None]
        assert (masked | ~later).all()
    fast = diff.sample(model, 8, 16, "confidence", steps=16, threshold=0.3, generator=torch.Generator().manual_seed(0))
    assert fast.nfe < topk.nfe
    assert (fast.samples < 5).all()


def test_confidence_greedy_on_a_deterministic_distribution_returns_its_mode():
    probs = torch.zeros(27, dtype=torch.float64)
    probs[5] = 1.0  # the sequence (0, 1, 2)
    point = type(TOY)(probs, 3, 3)
    g = dd.Absorbing(3)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(
        point.denoiser_model(g), 4, 3, "confidence", steps=3, greedy=True)
    assert (out.samples == torch.tensor([0, 1, 2])).all()


def test_trajectory_starts_at_the_prior_and_ends_at_the_sample():
    g = dd.Absorbing(5)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(
        PositionModel(6, 6), 3, 6, "ancestral", steps=10, return_trajectory=True,
        generator=torch.Generator().manual_seed(1))
    assert (out.trajectory[0] == g.mask_id).all() and torch.equal(out.trajectory[-1], out.samples)
    assert len(out.trajectory) == 11
    masked_counts = [(s == g.mask_id).sum().item() for s in out.trajectory]
    assert masked_counts == sorted(masked_counts, reverse=True)  # masks only ever go away


def test_top_k_top_p_and_temperature_never_choose_mask():
    g = dd.Absorbing(5)
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    mask_loving = lambda x, s: torch.nn.functional.one_hot(torch.full_like(x, 5), 6).float() * 50
    for opts in ({"top_k": 1}, {"top_p": 0.5}, {"temperature": 3.0}, {"top_k": 2, "top_p": 0.9}):
        for sampler in ("ancestral", "first_hitting", "confidence"):
            out = diff.sample(mask_loving, 4, 5, sampler, steps=5, generator=torch.Generator().manual_seed(0), **opts)
            assert (out.samples < 5).all()


def test_top_k_one_is_greedy():
    g = dd.Absorbing(3)
    out = dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(
        TOY.denoiser_model(g), 200, 3, "first_hitting", top_k=1, generator=torch.Generator().manual_seed(0))
    # each draw takes the most likely token of its conditional, so far fewer distinct sequences appear
    assert len(torch.unique(out.samples, dim=0)) <= 9


@pytest.mark.slow
def test_float64_draws_are_unbiased_and_fp32_gumbel_loses_the_tail():
    # A peaked distribution: a head token and 2^17 tail tokens each e^-18 times as likely (tail mass ~0.2%).
    # fp32 uniforms cap the Gumbel noise at -log(-log(1 - 2^-24)) ~ 16.6, so the tail is (almost) never drawn,
    # which lowers the sample entropy; float64 inverse-CDF draws hit the tail at its true rate.
    tail = 2**17
    logits = torch.cat([torch.zeros(1), torch.full((tail,), -18.0)]).double()
    probs = torch.softmax(logits, 0)
    tail_mass = 1 - probs[0].item()
    rows, chunks = 25, 400  # 10,000 draws; chunks under 32 MB keep the allocator off mmap
    gen64, gen32 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    hits64 = hits32 = 0
    for _ in range(chunks):
        batch = probs.expand(rows, -1)
        hits64 += (sample_categorical(batch, gen64) > 0).sum().item()
        hits32 += (sample_categorical(batch, gen32, method="gumbel_fp32") > 0).sum().item()
    n = rows * chunks
    expected = n * tail_mass  # about 20
    assert abs(hits64 - expected) < 4 * math.sqrt(expected) + 1
    assert hits32 < expected / 3

    def entropy(k):  # plug-in entropy of head-vs-tail, plus the uniform spread inside the tail
        q = k / n
        return -(1 - q) * math.log(1 - q) - (q * math.log(q) if q else 0) + q * math.log(tail)

    assert entropy(hits32) < entropy(hits64) - 0.005


def test_fp32_gumbel_noise_is_capped():
    # the largest fp32 uniform below 1 gives the largest Gumbel value fp32 sampling can ever add
    u = torch.tensor(1 - 2**-24, dtype=torch.float32)
    assert -torch.log(-torch.log(u)).item() == pytest.approx(16.64, abs=0.01)


def test_float64_draws_match_their_probabilities():
    probs = torch.tensor([0.5, 0.25, 0.125, 0.125], dtype=torch.float64)
    draws = sample_categorical(probs.expand(200_000, 4), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / 200_000
    assert (freq - probs).abs().max() < 0.004


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"steps": 0}, "steps"),
        ({"steps": -3}, "steps"),
        ({"length": 0}, "length"),
        ({"num_samples": 0}, "num_samples"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"temperature": 0.0}, "temperature"),
        ({"sampler": "ddim"}, "unknown sampler"),
        ({"stepz": 3}, "did you mean 'steps'"),
        ({"condition": Condition(torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 5, dtype=torch.bool))}, "shape"),
        ({"condition": Condition(torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool))}, "shape"),
        ({"condition": Condition(torch.zeros(1, 4), torch.ones(1, 4, dtype=torch.bool))}, "integer"),
        ({"condition": Condition(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4))}, "BoolTensor"),
        ({"condition": Condition(torch.full((1, 4), 3), torch.ones(1, 4, dtype=torch.bool))}, "clean ids"),
        ({"guidance": 1.0}, "guidance needs a Condition"),
        ({"sampler": "confidence", "threshold": 1.5}, "threshold"),
        ({"sampler": "confidence", "block_length": 9}, "block_length"),
    ],
)
def test_bad_input_raises_value_error(kwargs, match):
    g = dd.Absorbing(3)
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    args = {"num_samples": 3, "length": 4, "sampler": "ancestral"} | kwargs
    with pytest.raises(ValueError, match=match):
        diff.sample(TOY.denoiser_model(g) if args["length"] == 3 else PositionModel(4, 4), **args)


def test_mask_samplers_refuse_graphs_without_mask():
    g = dd.Uniform(3)
    with pytest.raises(ValueError, match="absorbing"):
        dd.Diffusion(g, dd.Geometric(), "score").sample(TOY.score_model(g), 2, 3, "first_hitting")


def test_callback_sees_every_state_and_can_stop_sampling():
    g = dd.Absorbing(5)
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    seen = []
    out = diff.sample(PositionModel(6, 8), 2, 8, "ancestral", steps=10, return_trajectory=True,
                      callback=lambda step, state, nfe: seen.append((step, state.clone(), nfe)),
                      generator=torch.Generator().manual_seed(0))
    assert [s for s, _, _ in seen] == list(range(11))
    assert all(torch.equal(a, b) for (_, a, _), b in zip(seen, out.trajectory, strict=True))
    assert [n for _, _, n in seen] == sorted(n for _, _, n in seen) and seen[-1][2] == out.nfe

    class Stop(Exception):
        pass

    def stop_at_three(step, state, nfe):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        diff.sample(PositionModel(6, 8), 2, 8, "ancestral", steps=10, callback=stop_at_three)


class TimedPositionModel(PositionModel):
    """A denoiser whose logits depend on sigma_bar, and which says so (config.time_conditioning)."""

    class config:  # noqa: N801 - mimics DiffusionTransformer.config
        time_conditioning = True

    def __init__(self, *args):
        super().__init__(*args)
        self.seen = []

    def forward(self, x_t, sigma_bar):
        self.seen.append(sigma_bar.detach().clone())
        return super().forward(x_t, sigma_bar) * (1 + 3 * torch.exp(-sigma_bar))[:, None, None]


def test_time_conditioned_denoisers_are_never_cached_by_default():
    g = dd.Absorbing(5)
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    model = TimedPositionModel(6, 12)
    default = diff.sample(model, 40, 12, "ancestral", steps=32, generator=torch.Generator().manual_seed(0))
    fresh = diff.sample(model, 40, 12, "ancestral", steps=32, cache=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(default.samples, fresh.samples) and torch.equal(default.nfe_per_row, fresh.nfe_per_row)
    with pytest.raises(ValueError, match="time-free"):
        diff.sample(model, 4, 12, "ancestral", steps=8, cache=True)


def test_confidence_tells_a_time_conditioned_model_the_noise_level():
    g = dd.Absorbing(5)
    model = TimedPositionModel(6, 8)
    dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(model, 3, 8, "confidence", steps=8,
                                                        generator=torch.Generator().manual_seed(0))
    levels = [s[0].item() for s in model.seen]
    assert len(levels) == 8 and levels == sorted(levels, reverse=True) and levels[0] > levels[-1] > 0
    # masked fraction 1 - k/8 before step k: sigma_bar = -log(1 - fraction), the top clamped below 1
    assert levels[1] == pytest.approx(-math.log(1 - 7 / 8), rel=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_samples": 2.0}, "num_samples"),
    ({"guidance": float("nan")}, "guidance"),
    ({"guidance": -1.0}, "guidance"),
    ({"sampler": "confidence", "block_length": 0}, "block_length"),
    ({"sampler": "confidence", "block_length": 2.5}, "block_length"),
])
def test_more_bad_input(kwargs, match):
    g = dd.Absorbing(3)
    args = {"num_samples": 3, "length": 4, "sampler": "ancestral"} | kwargs
    with pytest.raises(ValueError, match=match):
        dd.Diffusion(g, dd.LogLinear(), "denoiser").sample(PositionModel(4, 4), **args)
