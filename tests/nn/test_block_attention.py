"""Block diffusion in the backbone: the masks against their definition, the 2L training pass against the
block-causal view sampling uses, and the KV cache against recomputation at every step of a generation."""

import pytest
import torch

import discdiff as dd
from discdiff.nn import DiffusionTransformer, TransformerConfig
from discdiff.nn.blocks import block_causal_mask, training_mask

V = 10
S = V + 1  # + MASK


def make(block_size=4, max_len=16, seed=0, **kw) -> DiffusionTransformer:
    torch.manual_seed(seed)
    cfg = TransformerConfig(num_states=S, d_model=32, n_layers=2, n_heads=2, max_len=max_len, block_size=block_size,
                            **kw)
    model = DiffusionTransformer(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # random everywhere (no path trivially zero)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def ids(B, L, high=S, seed=0):
    return torch.randint(0, high, (B, L), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("length,b", [(8, 1), (8, 2), (8, 4), (8, 8), (6, 3)])
def test_training_mask_is_its_definition(length, b):
    mask = training_mask(length, b)
    assert mask.shape == (2 * length, 2 * length) and mask.dtype == torch.bool
    for q in range(2 * length):
        for j in range(2 * length):
            hq, kq, hj, kj = q // length, (q % length) // b, j // length, (j % length) // b
            if hq == 0:  # noised query: its own noised block, and clean blocks before it
                expected = (hj == 0 and kj == kq) or (hj == 1 and kj < kq)
            else:  # clean query: clean blocks up to its own
                expected = hj == 1 and kj <= kq
            assert bool(mask[q, j]) == expected, (q, j)


def test_block_causal_mask_is_its_definition_with_a_short_last_block():
    mask = block_causal_mask(7, 3)
    expected = torch.tensor([[j // 3 <= i // 3 for j in range(7)] for i in range(7)])
    assert torch.equal(mask, expected)


def test_what_each_noised_block_sees_in_the_training_pass():
    """Changing clean block k changes the noised blocks after k only; changing noised block k, block k only."""
    model = make()
    x_t, x0 = ids(2, 16, seed=1), ids(2, 16, high=V, seed=2)
    base = model(x_t, None, x0=x0)
    for k in range(4):
        blocks = slice(4 * k, 4 * k + 4)
        x0_changed = x0.clone()
        x0_changed[:, blocks] = (x0_changed[:, blocks] + 1) % V
        out = model(x_t, None, x0=x0_changed)
        assert torch.equal(out[:, : 4 * k + 4], base[:, : 4 * k + 4])  # masked-out keys: exactly no effect
        if k < 3:
            assert (out[:, 4 * k + 4:] - base[:, 4 * k + 4:]).abs().amax() > 1e-3
        x_t_changed = x_t.clone()
        x_t_changed[:, blocks] = (x_t_changed[:, blocks] + 1) % S
        out = model(x_t_changed, None, x0=x0)
        others = torch.ones(16, dtype=torch.bool)
        others[blocks] = False
        assert torch.equal(out[:, others], base[:, others])
        assert (out[:, blocks] - base[:, blocks]).abs().amax() > 1e-3


def test_training_pass_equals_the_block_causal_view_of_clean_prefix_and_noised_block():
    """Block k of the 2L pass = the L-path over [x0 blocks < k ; x_t block k] (what the sampler computes)."""
    model = make()
    x_t, x0 = ids(3, 16, seed=3), ids(3, 16, high=V, seed=4)
    two_l = model(x_t, None, x0=x0)
    for k in range(4):
        view = torch.cat([x0[:, : 4 * k], x_t[:, 4 * k: 4 * k + 4]], dim=1)
        torch.testing.assert_close(two_l[:, 4 * k: 4 * k + 4], model(view)[:, 4 * k:], rtol=0, atol=1e-5)


def test_one_block_is_the_full_sequence_model():
    full = make(block_size=None)
    one_block = make(block_size=16)  # same seed: same weights
    x_t, x0 = ids(3, 16, seed=5), ids(3, 16, high=V, seed=6)
    torch.testing.assert_close(one_block(x_t, None, x0=x0), full(x_t), rtol=0, atol=1e-5)
    torch.testing.assert_close(one_block(x_t), full(x_t), rtol=0, atol=1e-5)


def test_padding_keys_never_reach_real_positions_in_the_training_pass():
    model = make()
    x_t, x0 = ids(2, 16, seed=7), ids(2, 16, high=V, seed=8)
    real = torch.ones(2, 16, dtype=torch.bool)
    real[0, 10:] = False
    out = model(x_t, None, real, x0=x0)
    out2 = model(torch.where(real, x_t, (x_t + 1) % S), None, real, x0=torch.where(real, x0, (x0 + 3) % V))
    assert torch.isfinite(out2).all()
    torch.testing.assert_close(out2[real], out[real], rtol=0, atol=1e-6)


def _cached_logits(model, finished, block):
    cache = model.new_kv_cache()
    for start in range(0, finished.shape[1], model.config.block_size):
        model.extend_kv_cache(cache, finished[:, start: start + model.config.block_size])
    return model(block, None, kv_cache=cache)


@pytest.mark.parametrize("sampler", ["ancestral", "first_hitting", "confidence"])
def test_kv_cache_logits_equal_recomputed_ones_at_every_step(sampler):
    """At every state of a generation (fp32): cached logits of the current block = from-scratch logits."""
    model, b = make(), 4
    bd = dd.BlockDiffusion(dd.Absorbing(V), dd.LogLinear(), block_size=b)
    out = bd.sample(model, 3, 14, sampler, steps=6, generator=torch.Generator().manual_seed(0),
                    return_trajectory=True)  # 14: a short last block
    checked = 0
    for state in out.trajectory:
        masked = (state == V).any(0).nonzero()
        if masked.numel() == 0:
            continue
        start = int(masked[0]) // b * b
        stop = min(start + b, 14)
        scratch = model(state[:, :stop])[:, start:]
        cached = _cached_logits(model, state[:, :start], state[:, start:stop])
        assert (cached - scratch).abs().max() <= 1e-5
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("sampler", ["ancestral", "first_hitting", "confidence"])
def test_cache_on_and_off_give_identical_samples(sampler):
    model = make()
    bd = dd.BlockDiffusion(dd.Absorbing(V), dd.LogLinear(), block_size=4)
    runs = [bd.sample(model, 4, 16, sampler, steps=8, kv_cache=cache, generator=torch.Generator().manual_seed(3))
            for cache in (True, False)]
    assert torch.equal(runs[0].samples, runs[1].samples)
    assert runs[0].nfe == runs[1].nfe and torch.equal(runs[0].nfe_per_row, runs[1].nfe_per_row)
    assert not (runs[0].samples == V).any()


def test_bad_block_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="block_size=3 must divide max_len=16"):
        make(block_size=3)
    with pytest.raises(ValueError, match="time-free"):
        make(time_conditioning=True)
    with pytest.raises(ValueError, match="not with causal"):
        make(causal=True)
    with pytest.raises(ValueError, match="full-sequence"):
        make(block_size=None).new_kv_cache()
    with pytest.raises(ValueError, match="need a block model"):
        make(block_size=None)(ids(1, 16), None, x0=ids(1, 16, high=V))
    cache = make(block_size=8).new_kv_cache()
    with pytest.raises(ValueError, match="holds blocks of 8 tokens but the model's block_size is 4"):
        make(block_size=4)(ids(1, 4), None, kv_cache=cache)
    with pytest.raises(ValueError, match="not a multiple of block_size=4"):
        make()(ids(1, 14), None, x0=ids(1, 14, high=V))


def test_a_kv_cache_of_another_model_is_a_one_line_error_before_any_shape_error():
    wide = make(block_size=8).new_kv_cache()
    with pytest.raises(ValueError, match="holds blocks of 8 tokens but the model's block_size is 4") as err:
        make(block_size=4).extend_kv_cache(wide, ids(1, 4, high=V))  # a whole block of the model's own size
    assert "\n" not in str(err.value)
    causal = DiffusionTransformer(TransformerConfig(num_states=S, d_model=32, n_layers=2, n_heads=2, max_len=16,
                                                    causal=True))
    with pytest.raises(ValueError, match="holds blocks of 4 tokens but the model is causal"):
        causal.causal_step(make().new_kv_cache(), ids(1, 1, high=V))
    filled = make().new_kv_cache()
    make().extend_kv_cache(filled, ids(1, 4, high=V))
    with pytest.raises(ValueError, match="holds 2 heads of size 16, the model 4 of size 8"):
        DiffusionTransformer(TransformerConfig(num_states=S, d_model=32, n_layers=2, n_heads=4, max_len=16,
                                               block_size=4)).eval()(ids(1, 4), None, kv_cache=filled)
