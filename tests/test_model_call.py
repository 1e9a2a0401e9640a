"""discdiff.model_call: the one padding policy and the one time-free rule."""

import inspect

import pytest
import torch

import discdiff as dd
from discdiff.model_call import accepts_padding_mask, call_model, is_time_free


class Recorder(torch.nn.Module):
    """Position-wise logits; records the padding_mask it was given (None when called plainly)."""

    def __init__(self, num_states=6):
        super().__init__()
        self.table = torch.nn.Embedding(num_states, num_states)
        self.masks = []

    def forward(self, x_t, sigma_bar, padding_mask=None):
        self.masks.append(padding_mask)
        out = self.table(x_t)
        return out if padding_mask is None else out + padding_mask[..., None].float()


class Wrapper(torch.nn.Module):
    """A user wrapper that hides the inner network's config and signature."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x_t, sigma_bar):
        return self.inner(x_t, sigma_bar)


class DDPLike(torch.nn.Module):
    """Looks like DistributedDataParallel: forward(*inputs, **kwargs), the network in .module."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)


def _batch():
    x = torch.randint(0, 5, (3, 4), generator=torch.Generator().manual_seed(0))
    pad = torch.tensor([[True] * 4, [True, True, False, False], [True] * 4])
    return x, torch.ones(3), pad


def test_padded_batches_pass_the_mask_and_all_real_batches_do_not():
    model, (x, sigma, pad) = Recorder(), _batch()
    call_model(model, x, sigma, pad, num_clean_states=5)
    call_model(model, x, sigma, torch.ones_like(pad), num_clean_states=5)  # fast path
    call_model(model, x, sigma, num_clean_states=5)
    assert model.masks[0] is pad and model.masks[1] is None and model.masks[2] is None


def test_models_without_the_parameter_are_called_plainly_and_wrappers_are_looked_through():
    x, sigma, pad = _batch()
    plain = lambda x_t, sigma_bar: torch.zeros(*x_t.shape, 6)  # noqa: E731
    assert call_model(plain, x, sigma, pad, num_clean_states=5).shape == (3, 4, 6)
    inner = Recorder()
    call_model(DDPLike(inner), x, sigma, pad, num_clean_states=5)
    assert inner.masks[-1] is pad
    call_model(Wrapper(inner), x, sigma, pad, num_clean_states=5)  # the wrapper's own signature rules
    assert inner.masks[-1] is None


def test_the_signature_is_checked_once_per_model(monkeypatch):
    calls = []
    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda f: calls.append(f) or real(f))
    model, (x, sigma, pad) = Recorder(), _batch()
    for _ in range(3):
        call_model(model, x, sigma, pad, num_clean_states=5)
    assert len(calls) == 1 and accepts_padding_mask(model)


@pytest.mark.parametrize("output, match", [
    (torch.zeros(3, 6), r"\[B, L, S\]"), ("logits", r"\[B, L, S\]"), (torch.zeros(3, 4, 4), "at least 5")])
def test_bad_outputs_are_refused(output, match):
    x, sigma, _ = _batch()
    with pytest.raises(ValueError, match=match):
        call_model(lambda x_t, s: output, x, sigma, num_clean_states=5)


def test_diffusion_loss_gives_the_padding_mask_to_models_that_take_it():
    # the policy lives in Diffusion.loss: no wrapper lambda is needed around the backbone
    diff = dd.Diffusion(dd.Absorbing(5), dd.LogLinear(), "denoiser")
    model, (x0, _, pad) = Recorder(), _batch()
    diff.loss(model, x0, "t_dce", padding_mask=pad, generator=torch.Generator().manual_seed(0))
    diff.loss(model, x0, "k_dce", padding_mask=pad, generator=torch.Generator().manual_seed(0))
    assert model.masks[0] is pad and model.masks[1] is pad
    diff.loss(model, x0, "t_dce", padding_mask=torch.ones_like(pad))
    assert model.masks[-1] is None


class Declared:
    def __init__(self, **attrs):
        self.__dict__.update(attrs)

    def __call__(self, x_t, sigma_bar):
        return torch.zeros(*x_t.shape, 6)


@pytest.mark.parametrize("model, expected", [
    (Declared(time_free=True), True),
    (Declared(time_conditioning=True), False),
    (Declared(config=Declared(time_conditioning=False)), True),
    (DDPLike(Declared(config=Declared(time_conditioning=True))), False),
    (Declared(), None),
    (Wrapper(Declared(config=Declared(time_conditioning=True))), None),  # hidden: undeclared
    (lambda x, s: x, None),
])
def test_is_time_free_reads_declarations_only(model, expected):
    assert is_time_free(model) is expected


def test_the_transformer_declares_itself():
    from discdiff.nn import DiffusionTransformer, TransformerConfig

    for timed in (False, True):
        net = DiffusionTransformer(TransformerConfig(num_states=6, max_len=8, d_model=16, n_layers=1, n_heads=2,
                                                     cond_dim=8, time_conditioning=timed))
        assert is_time_free(net) is (not timed)
