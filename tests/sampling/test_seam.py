"""The seam between models and samplers: the Predictor, the pure steps, the cache rule, the default
sampler, the memory guard, and the import direction (sampling never imports diffusion)."""

import ast
from pathlib import Path

import pytest
import torch

import discdiff as dd
from discdiff.sampling import (
    Predictor,
    default_sampler,
    denoise_step,
    euler_step,
    sample,
    tau_leaping_step,
    time_grid,
    tweedie_step,
)

from .helpers import toy

TOY = toy()


class TimedModel(torch.nn.Module):
    """A time-conditioned denoiser: its logits depend on sigma_bar; declares it via config."""

    class config:  # noqa: N801 - mimics DiffusionTransformer.config
        time_conditioning = True

    def __init__(self, num_states=6, length=12):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.table = torch.randn(num_states, num_states, generator=gen)
        self.pos = torch.randn(length, num_states, generator=gen)

    def forward(self, x_t, sigma_bar):
        return (self.table[x_t] + self.pos[: x_t.shape[1]]) * (1 + 3 * torch.exp(-sigma_bar))[:, None, None]


class Hiding(torch.nn.Module):
    """A wrapper (a timer, a logger) that hides the network's config."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x_t, sigma_bar):
        return self.inner(x_t, sigma_bar)


def test_a_hidden_time_conditioned_model_is_not_cached():
    # regression: a wrapper without .config used to switch the cache on and reuse stale predictions
    diff = dd.Diffusion(dd.Absorbing(5), dd.LogLinear(), "denoiser")
    model = Hiding(TimedModel())
    default = diff.sample(model, 40, 12, "ancestral", steps=32, generator=torch.Generator().manual_seed(0))
    fresh = diff.sample(model, 40, 12, "ancestral", steps=32, cache=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(default.nfe_per_row, fresh.nfe_per_row)
    assert torch.equal(default.samples, fresh.samples)


def test_cache_true_is_refused_for_declared_time_conditioning_and_allowed_when_undeclared():
    diff = dd.Diffusion(dd.Absorbing(5), dd.LogLinear(), "denoiser")
    with pytest.raises(ValueError, match="time-free"):
        diff.sample(TimedModel(), 4, 12, "ancestral", steps=8, cache=True)
    out = diff.sample(Hiding(TimedModel()), 4, 12, "ancestral", steps=8, cache=True)  # the user's call
    assert out.samples.shape == (4, 12)
    with pytest.raises(ValueError, match="ancestral sampler only"):
        diff.sample(TimedModel(), 4, 12, "first_hitting", cache=False)


@pytest.mark.parametrize("graph, step, name", [
    (dd.Uniform(3), euler_step, "euler"),
    (dd.Uniform(3), tau_leaping_step, "tau_leaping"),
    (dd.Uniform(3), tweedie_step, "tweedie"),
    (dd.Absorbing(3), euler_step, "euler"),
])
def test_a_user_loop_of_pure_steps_reproduces_diff_sample(graph, step, name):
    schedule, model = dd.Geometric(), TOY.score_model(graph)
    steps, batch, t_end = 24, 200, 1e-5
    want = dd.Diffusion(graph, schedule, "score").sample(model, batch, 3, name, steps=steps, top_k=2,
                                                          generator=torch.Generator().manual_seed(7))
    pred = Predictor(model, graph, schedule, "score")  # no Diffusion involved
    g = torch.Generator().manual_seed(7)
    x = graph.sample_prior((batch, 3), generator=g)
    grid = time_grid(steps, t_end)
    for t, s in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        x = step(pred.log_score(x, pred.noise(t, batch).total), x, t, s, graph, schedule, g)
    x = denoise_step(pred.log_score(x, pred.noise(t_end, batch).total), x, t_end, graph, schedule, g, top_k=2)
    assert torch.equal(x, want.samples)
    assert pred.nfe == want.nfe == steps + 1


def test_a_predictor_built_by_hand_runs_any_sampler_like_diff_sample():
    graph, schedule = dd.Absorbing(3), dd.LogLinear()
    model = TOY.denoiser_model(graph)
    for name, opts in (("ancestral", {"steps": 8}), ("first_hitting", {}), ("confidence", {"steps": 3})):
        want = dd.Diffusion(graph, schedule, "denoiser").sample(model, 50, 3, name, temperature=0.7,
                                                                generator=torch.Generator().manual_seed(2), **opts)
        pred = Predictor(model, graph, schedule, "denoiser", temperature=0.7)
        for _ in range(2):  # a Predictor is reusable: each run starts its counters and cache afresh
            got = sample(pred, 50, 3, name, generator=torch.Generator().manual_seed(2), **opts)
            assert torch.equal(got.samples, want.samples) and torch.equal(got.nfe_per_row, want.nfe_per_row)
            assert got.nfe == want.nfe
    with pytest.raises(ValueError, match="Predictor setting"):
        sample(Predictor(model, graph, schedule, "denoiser"), 2, 3, "ancestral", temperature=0.5)


def test_the_predictor_counts_calls_per_row_and_checks_its_settings():
    graph = dd.Absorbing(3)
    pred = Predictor(TOY.denoiser_model(graph), graph, dd.LogLinear(), "denoiser", num_rows=4)
    x = torch.full((4, 3), graph.mask_id)
    pred.clean_log_probs(x[[1, 3]], torch.ones(2), rows=torch.tensor([1, 3]))
    pred.log_score(x, torch.ones(4))
    assert pred.nfe == 2 and pred.nfe_per_row.tolist() == [1, 2, 1, 2]
    for bad, match in (({"temperature": 0.0}, "temperature"), ({"guidance": 1.0}, "guidance needs a Condition"),
                       ({"top_p": 2.0}, "top_p"), ({"categorical": "fp16"}, "categorical")):
        with pytest.raises(ValueError, match=match):
            Predictor(TOY.denoiser_model(graph), graph, dd.LogLinear(), "denoiser", **bad)


def test_default_sampler_fits_the_graph():
    assert default_sampler(dd.Absorbing(3), "denoiser") == "ancestral"
    assert default_sampler(dd.Uniform(3), "score") == "tau_leaping"
    assert default_sampler(dd.DenseGraph.ordinal(3), "denoiser") == "tau_leaping"
    # regression: the default used to be ancestral, which refuses a uniform graph
    g = dd.Uniform(3)
    out = dd.Diffusion(g, dd.Geometric(), "score").sample(TOY.score_model(g), 5, 3, steps=8)
    assert out.samples.shape == (5, 3) and out.nfe == 9


@pytest.mark.parametrize("kwargs", [{"steps": 10**12}, {"num_samples": 10**11}, {"length": 10**11},
                                    {"steps": 10**9, "return_trajectory": True}])
def test_requests_beyond_the_memory_available_are_refused_before_allocating(kwargs):
    diff = dd.Diffusion(dd.Absorbing(3), dd.LogLinear(), "denoiser")
    args = {"num_samples": 2, "length": 3, "sampler": "ancestral"} | kwargs
    with pytest.raises(ValueError, match="GiB"):
        diff.sample(TOY.denoiser_model(dd.Absorbing(3)), **args)


def test_sampling_never_imports_or_reaches_into_diffusion():
    for path in Path(dd.__file__).parent.joinpath("sampling").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):  # e.g. ev.diffusion.schedule
                assert node.attr != "diffusion", path.name
            if isinstance(node, ast.ImportFrom):
                assert "diffusion" not in (node.module or ""), path.name
            if isinstance(node, ast.Import):
                assert not any("diffusion" in a.name for a in node.names), path.name


def test_the_exact_absorbing_denoiser_is_time_free_and_declares_it():
    from discdiff.model_call import is_time_free

    g = dd.Absorbing(3)
    model = TOY.denoiser_model(g)
    x = g.sample_transition(TOY.sample(64, torch.Generator().manual_seed(0)), torch.full((64,), 0.7))
    assert torch.allclose(model(x, torch.full((64,), 0.2)), model(x, torch.full((64,), 3.0)))
    assert is_time_free(model) is True and is_time_free(TOY.denoiser_model(dd.Uniform(3))) is False


def test_the_memory_estimate_counts_outputs_grid_and_trajectory():
    from discdiff.sampling.memory import available_memory, sampling_memory

    # [B, L, S] float32 outputs + float64 copies, steps + 1 float64 times, a trajectory of int64 states
    got = sampling_memory(4, 8, 6, steps=10, trajectory_len=12, guidance=False, dtype=torch.float32)
    assert got == 4 * 8 * 6 * (4 + 8) + 11 * 8 + 12 * 4 * 8 * 8
    guided = sampling_memory(4, 8, 6, steps=None, trajectory_len=0, guidance=True, dtype=torch.float32)
    assert guided == 2 * 4 * 8 * 6 * 12  # both passes of a guided call in one batch
    free = available_memory()
    assert free is None or free > 0
