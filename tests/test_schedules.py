import math

import pytest
import torch

import discdiff as dd

SCHEDULES = [dd.LogLinear(1e-3), dd.Geometric(1e-4, 20.0), dd.Linear(0.0, 8.0), dd.Cosine(1e-3)]


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
def test_rate_is_derivative_of_total(sched):
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    h = 1e-6
    numeric = (sched.total(t + h) - sched.total(t - h)) / (2 * h)
    assert torch.allclose(sched(t).rate, numeric, rtol=1e-5)


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
def test_inverse_recovers_time(sched):
    t = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    assert torch.allclose(sched.inverse(sched.total(t)), t, atol=1e-9)


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
def test_total_is_increasing_and_returns_named_tuple(sched):
    noise = sched(torch.linspace(0, 1, 20, dtype=torch.float64))
    assert isinstance(noise, dd.Noise)
    assert (noise.total.diff() > 0).all() and (noise.rate >= 0).all()


def test_sedd_conventions():
    # LogLinear: sigma_bar(1) = -log eps; masking probability (1 - eps) t
    sched = dd.LogLinear(eps=1e-3)
    assert sched.total(torch.tensor(1.0, dtype=torch.float64)).item() == pytest.approx(-math.log(1e-3))
    t = torch.tensor(0.3, dtype=torch.float64)
    assert (1 - torch.exp(-sched.total(t))).item() == pytest.approx(0.999 * 0.3)
    geo = dd.Geometric()
    assert (geo.sigma_min, geo.sigma_max) == (1e-4, 20.0)
    noise = geo(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(noise.total, torch.tensor([1e-4, 20.0], dtype=torch.float64))
    assert noise.rate[1].item() == pytest.approx(20.0 * math.log(20.0 / 1e-4))


def test_loglinear_tdce_weight_is_one_over_t():
    sched = dd.LogLinear(eps=1e-3)
    t = torch.linspace(0.01, 1.0, 30, dtype=torch.float64)
    noise = sched(t)
    assert torch.allclose(dd.losses.t_dce_weight(noise.total, noise.rate), 1 / t, rtol=1e-10)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_times_outside_unit_interval_raise(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dd.LogLinear()(torch.tensor([0.5, bad]))


def test_bad_parameters_raise():
    with pytest.raises(ValueError):
        dd.LogLinear(eps=0.0)
    with pytest.raises(ValueError):
        dd.Geometric(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError):
        dd.Linear(sigma_min=2.0, sigma_max=1.0)
