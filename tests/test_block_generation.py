"""Generation beyond the training context (the sliding KV cache against a from-scratch recomputation of the same
window), EOS stopping at any length, and the autoregressive baseline's exact KV cache."""

import pytest
import torch

import discdiff as dd
from discdiff.nn import DiffusionTransformer, TransformerConfig
from discdiff.nn.blocks import block_causal_mask, sliding_block_mask, sliding_window_forward


def gen(seed):
    return torch.Generator().manual_seed(seed)


def block_model(block_size=2, max_len=8, n_layers=2, seed=0):
    torch.manual_seed(seed)
    cfg = TransformerConfig(num_states=5, d_model=32, n_layers=n_layers, n_heads=2, max_len=max_len,
                            time_conditioning=False, block_size=block_size)
    return DiffusionTransformer(cfg).eval()


def causal_model(max_len=24, seed=0):
    torch.manual_seed(seed)
    cfg = TransformerConfig(num_states=5, d_model=32, n_layers=2, n_heads=2, max_len=max_len,
                            time_conditioning=False, causal=True)
    return DiffusionTransformer(cfg).eval()


def test_sliding_mask_against_its_definition_and_block_causal_inside_the_context():
    mask = sliding_block_mask(12, 2, 4)
    for q in range(12):
        for j in range(12):
            assert bool(mask[q, j]) == (q // 2 - 2 <= j // 2 <= q // 2)
    assert torch.equal(sliding_block_mask(6, 2, 4), block_causal_mask(6, 2))
    with pytest.raises(ValueError, match="multiple of block_size"):
        sliding_block_mask(12, 2, 3)


def test_inside_the_context_the_sliding_forward_is_the_ordinary_forward():
    model, x = block_model(), torch.randint(0, 5, (3, 8), generator=gen(1))
    torch.testing.assert_close(sliding_window_forward(model, x), model(x, None), rtol=0, atol=1e-5)


@torch.no_grad()
def test_the_sliding_kv_cache_equals_a_from_scratch_recomputation_of_the_window_at_every_block():
    """20 tokens through a model of context 8, b = 2: every block's cached logits equal the sliding-window
    forward over the whole sequence so far (float32, 1e-5), and the cache never holds more than 8 - 2 tokens."""
    model, b = block_model(), 2
    clean = torch.randint(0, 4, (3, 20), generator=gen(2))
    noised = torch.where(torch.rand(3, 20, generator=gen(3)) < 0.5, 4, clean)  # 4 = MASK
    cache = model.new_kv_cache()
    for start in range(0, 20, b):
        cached = model(noised[:, start: start + b], None, kv_cache=cache)
        scratch = sliding_window_forward(model, torch.cat([clean[:, :start], noised[:, start: start + b]], 1))
        torch.testing.assert_close(cached, scratch[:, start:], rtol=0, atol=1e-5)
        model.extend_kv_cache(cache, clean[:, start: start + b])
        assert cache.length == min(start + b, 6) and cache.position == start + b


@torch.no_grad()
def test_tokens_that_left_the_window_are_invisible_to_a_one_layer_model():
    """With one layer, block k's logits depend on blocks k-3 .. k only (window 6 = 3 blocks of 2)."""
    model = block_model(n_layers=1)
    x = torch.randint(0, 4, (1, 16), generator=gen(4))
    base = sliding_window_forward(model, x)[:, 12:14]  # block 6 sees blocks 3..6 = positions 6..13
    outside, inside = x.clone(), x.clone()
    outside[0, 5] = (x[0, 5] + 1) % 4
    inside[0, 6] = (x[0, 6] + 1) % 4
    assert torch.equal(sliding_window_forward(model, outside)[:, 12:14], base)
    assert not torch.allclose(sliding_window_forward(model, inside)[:, 12:14], base)


@pytest.mark.parametrize("sampler", ["ancestral", "first_hitting"])
def test_beyond_the_context_cache_on_and_off_give_identical_samples(sampler):
    model, bd = block_model(), dd.BlockDiffusion(dd.Absorbing(4), dd.LogLinear(), block_size=2)
    on = bd.sample(model, 3, 21, sampler, steps=4, generator=gen(5), kv_cache=True)
    off = bd.sample(model, 3, 21, sampler, steps=4, generator=gen(5), kv_cache=False)
    assert on.samples.shape == (3, 21) and torch.equal(on.samples, off.samples)
    assert (on.samples < 4).all()


def test_a_row_stops_at_eos_beyond_any_context():
    """A denoiser certain of token 1 everywhere except EOS (0) at position 9 of row 0: row 0 is `... EOS EOS`
    from position 9 and stops there (fewer predictions), row 1 runs to the full 30 tokens."""

    def model(x_t, sigma_bar, x0=None):
        logits = torch.full((*x_t.shape, 5), -30.0)
        logits[..., 1] = 0.0
        return logits

    def one_eos(x_t, sigma_bar, x0=None):
        logits = model(x_t, sigma_bar)
        if x_t.shape[1] > 9 and x_t.shape[0] == 2:
            logits[0, 9] = -30.0
            logits[0, 9, 0] = 0.0
        return logits

    one_eos.time_free = True
    bd = dd.BlockDiffusion(dd.Absorbing(4), dd.LogLinear(), block_size=4)
    out = bd.sample(one_eos, 2, 30, "first_hitting", generator=gen(6), eos_id=0)
    assert out.samples[0, :9].eq(1).all() and out.samples[0, 9:].eq(0).all()
    assert out.samples[1].eq(1).all()
    assert out.nfe_per_row[0] < out.nfe_per_row[1]


@torch.no_grad()
def test_autoregressive_kv_cache_logits_equal_the_full_causal_forward():
    model = causal_model()
    x = torch.randint(0, 5, (3, 24), generator=gen(7))
    full = model(x, None)
    cache, steps = model.new_kv_cache(), []
    for i in range(0, 24, 5):  # chunks of 5 tokens, then 4: causal inside a chunk as in the full pass
        steps.append(model.causal_step(cache, x[:, i: i + 5]))
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-5)


def test_autoregressive_samples_with_and_without_the_cache_are_identical():
    model, ar = causal_model(), dd.Autoregressive(vocab_size=4)
    on = ar.sample(model, 4, 24, generator=gen(8), kv_cache=True)
    off = ar.sample(model, 4, 24, generator=gen(8), kv_cache=False)
    assert torch.equal(on.samples, off.samples) and on.nfe == off.nfe == 24


def test_kv_cache_errors():
    model, ar = causal_model(max_len=8), dd.Autoregressive(vocab_size=4)
    with pytest.raises(ValueError, match="kv_cache=True needs a causal model"):
        ar.sample(lambda x, s: torch.zeros(*x.shape, 5), 1, 3, kv_cache=True)
    cache = model.new_kv_cache()
    model.causal_step(cache, torch.zeros(2, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds max_len=8"):
        model.causal_step(cache, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="holds blocks of 1 tokens but the model.s block_size is 2"):
        block_model().extend_kv_cache(model.new_kv_cache(), torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="needs a causal model"):
        block_model().causal_step(block_model().new_kv_cache(), torch.zeros(1, 2, dtype=torch.long))


@torch.no_grad()
def test_autoregressive_sliding_cache_equals_the_sliding_forward_and_a_one_layer_window():
    """30 tokens through a causal model of context 8: every cached step (cache trimmed to 7) equals the causal
    sliding-window forward over the whole sequence; with one layer, position i's logits are the ordinary forward's
    last ones over the 8 tokens i-7 .. i alone (rotary scores depend on position differences only)."""
    for n_layers in (2, 1):
        torch.manual_seed(0)
        model = DiffusionTransformer(TransformerConfig(num_states=5, d_model=32, n_layers=n_layers, n_heads=2,
                                                       max_len=8, time_conditioning=False, causal=True)).eval()
        x = torch.randint(0, 5, (3, 30), generator=gen(9))
        slid = sliding_window_forward(model, x)
        cache, steps = model.new_kv_cache(), []
        for i in range(30):
            steps.append(model.causal_step(cache, x[:, i: i + 1]))
            cache.trim(7)
            assert cache.length == min(i + 1, 7) and cache.position == i + 1
        torch.testing.assert_close(torch.cat(steps, 1), slid, rtol=0, atol=1e-5)
        torch.testing.assert_close(slid[:, :8], model(x[:, :8], None), rtol=0, atol=1e-5)
    window = torch.stack([model(x[:, i - 7: i + 1], None)[:, -1] for i in range(8, 30)], 1)
    torch.testing.assert_close(slid[:, 8:], window, rtol=0, atol=1e-5)


def test_autoregressive_beyond_the_context_cache_on_and_off_give_identical_samples():
    model, ar = causal_model(max_len=8), dd.Autoregressive(vocab_size=4)
    on = ar.sample(model, 3, 27, generator=gen(10), kv_cache=True)
    off = ar.sample(model, 3, 27, generator=gen(10), kv_cache=False)
    assert on.samples.shape == (3, 27) and torch.equal(on.samples, off.samples) and (on.samples < 4).all()
