import math

import pytest
import torch

from discdiff.nn import ARWrapper, DiffusionTransformer, TransformerConfig, sedd_absorb_scale
from discdiff.nn.layers import apply_rotary, rotary_table

S = 11  # 10 data tokens + MASK


def make(**kw) -> DiffusionTransformer:
    base = dict(num_states=S, d_model=32, n_layers=2, n_heads=2, max_len=16, cond_dim=16)
    torch.manual_seed(0)
    return DiffusionTransformer(TransformerConfig(**{**base, **kw}))


def randomize(model: DiffusionTransformer) -> DiffusionTransformer:
    """Give every parameter (adaLN and head included) a random value so no path is trivially zero."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


def tokens(B=3, L=16, seed=0):
    return torch.randint(0, S, (B, L), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("time_conditioning", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_shapes_and_float32(time_conditioning, causal):
    model = make(time_conditioning=time_conditioning, causal=causal)
    out = model(tokens(), torch.rand(3))
    assert out.shape == (3, 16, S) and out.dtype == torch.float32
    out = make(output_size=S - 1)(tokens(L=7), None)
    assert out.shape == (3, 7, S - 1)


def test_bf16_autocast_output_is_float32():
    model = make(time_conditioning=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(tokens(), torch.rand(3))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_causal_is_causal():
    """Position i's output depends on tokens <= i only (the model itself does not shift)."""
    model = randomize(make(causal=True))
    x = tokens(B=2)
    out = model(x)
    for j in (0, 5, 15):
        x2 = x.clone()
        x2[:, j] = (x2[:, j] + 1) % S
        out2 = model(x2)
        torch.testing.assert_close(out2[:, :j], out[:, :j], rtol=0, atol=1e-6)
        assert not torch.allclose(out2[:, j], out[:, j])


def test_bidirectional_sees_the_future():
    model = randomize(make())
    x = tokens(B=1)
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] + 1) % S
    assert not torch.allclose(model(x)[:, 0], model(x2)[:, 0])


@pytest.mark.parametrize("causal", [False, True])
def test_padding_does_not_influence_real_positions(causal):
    model = randomize(make(causal=causal, time_conditioning=True))
    x = tokens(B=2)
    real = torch.ones(2, 16, dtype=torch.bool)  # True on real tokens
    real[0, 10:] = False  # right padding
    real[1, :4] = False  # left padding
    sigma = torch.rand(2) + 0.1
    out = model(x, sigma, real)
    x2 = torch.where(real, x, (x + 3) % S)  # change only padded tokens
    out2 = model(x2, sigma, real)
    assert torch.isfinite(out2).all()
    torch.testing.assert_close(out2[real], out[real], rtol=0, atol=1e-6)
    # the unpadded prefix of row 0 equals the same model run on the prefix alone
    torch.testing.assert_close(out[0, :10], model(x[:1, :10], sigma[:1])[0], rtol=1e-5, atol=1e-5)


def test_fully_padded_row_is_finite():
    model = make()
    no_real = torch.zeros(2, 16, dtype=torch.bool)
    assert torch.isfinite(model(tokens(B=2), None, no_real)).all()


def test_adaln_zero_init_is_time_independent():
    model = make(time_conditioning=True)
    x = tokens()
    h = {}
    model.blocks[-1].register_forward_hook(lambda m, i, o: h.setdefault("out", []).append(o))
    out_a = model(x, torch.full((3,), 0.1))
    out_b = model(x, torch.full((3,), 5.0))
    torch.testing.assert_close(h["out"][0], h["out"][1], rtol=0, atol=0)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    # ... but after training moves the adaLN weights, the noise level matters
    randomize(model)
    assert not torch.allclose(model(x, torch.full((3,), 0.1)), model(x, torch.full((3,), 5.0)))


def test_time_free_model_ignores_sigma():
    model = randomize(make())
    x = tokens()
    torch.testing.assert_close(model(x, torch.rand(3)), model(x, None), rtol=0, atol=0)


def test_tie_weights_shares_storage():
    model = make(tie_weights=True)
    assert model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))
    with pytest.raises(ValueError):
        make(tie_weights=True, output_size=S - 1)


def test_sedd_absorb_scale_matches_formula():
    model = randomize(make(time_conditioning=True, sedd_absorb_scale=True))
    x, sigma = tokens(), torch.tensor([1e-3, 0.4, 3.0])
    out = model(x, sigma)
    model.config.sedd_absorb_scale = False
    raw = model(x, sigma).double()
    expected = raw - torch.log(torch.expm1(sigma.double()))[:, None, None] - math.log(S - 1)
    expected.scatter_(-1, x[..., None], 0.0)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    assert (out.gather(-1, x[..., None]) == 0).all()
    # at initialisation (zero head) the output is the exact log score of a uniform x0
    fresh = make(time_conditioning=True, sedd_absorb_scale=True)(x, sigma)
    uniform = (-torch.log(torch.expm1(sigma)) - math.log(S - 1))[:, None, None].expand(3, 16, S)
    torch.testing.assert_close(fresh, uniform.scatter(-1, x[..., None], 0.0), rtol=1e-5, atol=1e-5)
    # large sigma_bar stays finite
    assert torch.isfinite(sedd_absorb_scale(torch.zeros(1, 2, S), x[:1, :2], torch.tensor([200.0]))).all()


def test_gradients_finite_and_reach_every_parameter():
    model = make(time_conditioning=True, sedd_absorb_scale=True)
    randomize(model)
    out = model(tokens(), torch.rand(3) + 0.01)
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_bad_inputs_raise_value_error():
    model = make(time_conditioning=True)
    x, sigma = tokens(), torch.rand(3)
    with pytest.raises(ValueError, match="integer"):
        model(x.float(), sigma)
    with pytest.raises(ValueError, match="max_len"):
        model(tokens(L=17), sigma)
    with pytest.raises(ValueError, match="sigma_bar"):
        model(x, torch.rand(4))
    with pytest.raises(ValueError, match="sigma_bar"):
        model(x, None)
    with pytest.raises(ValueError, match="padding_mask"):
        model(x, sigma, torch.zeros(3, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="padding_mask"):
        model(x, sigma, torch.zeros(3, 16))
    with pytest.raises(ValueError, match="token ids"):
        model(torch.full((1, 4), S), sigma[:1])
    with pytest.raises(ValueError, match="shape"):
        model(x[0], sigma)
    with pytest.raises(ValueError):
        TransformerConfig(num_states=S, d_model=30, n_heads=4)


def test_rotary_is_relative():
    """q.k after rotary depends on the positions only through their difference."""
    table = rotary_table(32, 8)
    q, k = torch.randn(8), torch.randn(8)

    def score(i, j):
        return (apply_rotary(q[None], table[i : i + 1]) * apply_rotary(k[None], table[j : j + 1])).sum()

    torch.testing.assert_close(score(3, 1), score(20, 18))
    torch.testing.assert_close(apply_rotary(q[None], table[:1]), q[None])  # position 0: identity
    assert torch.allclose(apply_rotary(q[None], table[5:6]).norm(), q.norm())  # a rotation


def test_flops_accounting():
    model = make(d_model=64, n_layers=2, n_heads=2)
    n = model.matmul_parameters()
    assert n == 2 * 12 * 64 * 64 + 64 * S
    assert model.flops_per_token(16) == 6 * n + 12 * 2 * 64 * 16
    assert model.flops_per_token(16, training=False) == model.flops_per_token(16) / 3


def test_ar_wrapper_exact_nll():
    model = randomize(make(causal=True))
    ar = ARWrapper(model, vocab_size=S - 1)
    x = torch.randint(0, S - 1, (2, 16))
    nll = ar.nll(x)
    # the chain rule by hand: p(x_i | BOS, x_<i) from separate forwards on each prefix
    manual = torch.zeros(2)
    for i in range(16):
        inp = torch.cat([torch.full((2, 1), S - 1), x[:, :i]], dim=1)
        log_probs = torch.log_softmax(model(inp)[:, -1, : S - 1], dim=-1)
        manual -= log_probs.gather(-1, x[:, i : i + 1]).squeeze(-1)
    torch.testing.assert_close(nll, manual, rtol=1e-5, atol=1e-4)
    # probabilities over all length-2 sequences sum to 1
    short = ARWrapper(make(causal=True, max_len=2), vocab_size=3, bos_id=S - 1)
    seqs = torch.cartesian_prod(torch.arange(3), torch.arange(3))
    torch.testing.assert_close(torch.exp(-short.nll(seqs)).sum(), torch.tensor(1.0))
    with pytest.raises(ValueError):
        ARWrapper(make(), vocab_size=S - 1)


def test_ar_wrapper_padding_skips_targets():
    ar = ARWrapper(randomize(make(causal=True)), vocab_size=S - 1)
    x = torch.randint(0, S - 1, (1, 16))
    real = torch.ones(1, 16, dtype=torch.bool)
    real[:, 12:] = False
    torch.testing.assert_close(ar.nll(x, real), ar.nll(x[:, :12]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "graph_name, parameterization, objective, model_kw",
    [
        ("absorbing", "score", "score_entropy", dict(time_conditioning=True, sedd_absorb_scale=True)),
        ("absorbing", "denoiser", "t_dce", dict()),
        ("absorbing", "denoiser", "k_dce", dict(output_size=S - 1)),
        ("uniform", "score", "score_entropy", dict(time_conditioning=True, num_states=S - 1)),
    ],
)
def test_plugs_into_diffusion_loss(graph_name, parameterization, objective, model_kw):
    import discdiff as dd

    graph = dd.Absorbing(S - 1) if graph_name == "absorbing" else dd.Uniform(S - 1)
    diff = dd.Diffusion(graph, dd.LogLinear(), parameterization=parameterization)
    model = make(**model_kw)
    x0 = torch.randint(0, S - 1, (4, 16))
    loss = diff.loss(model, x0, objective, generator=torch.Generator().manual_seed(0))
    assert loss.shape == (4,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_fused_rotary_qkv_matches_reference_and_gradcheck():
    from discdiff.nn.layers import rotary_qkv

    table = rotary_table(8, 6)[:, None].double()  # (T, 1, hs/2, 2)
    qkv = torch.randn(2, 8, 3, 2, 6, dtype=torch.float64, requires_grad=True)
    q, k, v = rotary_qkv(qkv, table)
    torch.testing.assert_close(q, apply_rotary(qkv[:, :, 0], table))
    torch.testing.assert_close(k, apply_rotary(qkv[:, :, 1], table))
    torch.testing.assert_close(v, qkv[:, :, 2])
    assert torch.autograd.gradcheck(lambda t: rotary_qkv(t, table), (qkv,))
    assert torch.autograd.gradcheck(lambda t: rotary_qkv(t, table)[0].sum(), (qkv,))  # dk, dv unused
    # gradients arriving transposed (as from attention) and in bf16 (autocast) work too
    half = qkv.detach().bfloat16().requires_grad_()
    outs = rotary_qkv(half, table.float())
    assert all(o.dtype == torch.bfloat16 for o in outs)
    torch.autograd.backward([o.transpose(1, 2).transpose(1, 2) for o in outs], [torch.ones_like(o) for o in outs])
    assert half.grad.dtype == torch.bfloat16 and torch.isfinite(half.grad).all()


def test_imported_checkpoint_options():
    """gelu_approximate and head_bias (for SEDD / MDLM checkpoints, discdiff.convert): validated, and in effect."""
    import torch.nn.functional as F

    with pytest.raises(ValueError, match="gelu_approximate"):
        TransformerConfig(num_states=5, d_model=8, n_layers=1, n_heads=2, gelu_approximate="erf")
    cfg = TransformerConfig(num_states=5, d_model=8, n_layers=1, n_heads=2, max_len=4, gelu_approximate="tanh",
                            head_bias=True)
    model = DiffusionTransformer(cfg)
    assert model.head.bias is not None and model.head.bias.shape == (5,)
    x = torch.randn(2, 3, 8)
    mlp = model.blocks[0].mlp
    assert torch.equal(mlp(x), mlp.fc2(F.gelu(mlp.fc(x), approximate="tanh")))
