"""Every graph and schedule of the library is reachable from a config, built from one table."""

import inspect
import math
from dataclasses import fields

import numpy as np
import pytest
import torch

import discdiff as dd
from discdiff.nn import ModelConfig, TransformerConfig
from discdiff.training import Trainer, build_diffusion, build_model, from_pretrained, load_config
from discdiff.training.choices import GRAPHS, SCHEDULES

V = 5


def ring_rates(n: int = V) -> np.ndarray:
    """A non-symmetric rate matrix: x -> x + 1 at rate 1, x -> x - 1 at rate 0.5 (mod n); columns sum to 0."""
    q = np.zeros((n, n))
    for x in range(n):
        q[(x + 1) % n, x] += 1.0
        q[(x - 1) % n, x] += 0.5
        q[x, x] = -1.5
    return q


def write_matrix(path, matrix: np.ndarray):
    if path.suffix == ".npy":
        np.save(path, matrix)
    elif path.suffix == ".csv":
        path.write_text("# a comment line\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in matrix))
    else:
        from safetensors.torch import save_file

        save_file({"q": torch.from_numpy(matrix)}, str(path))
    return path


def diffusion_for(*overrides, root=None):
    cfg = load_config(None, list(overrides))
    return build_diffusion(cfg.diffusion, V, root=root)


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".safetensors"])
def test_dense_graph_from_a_file_is_that_matrix(tmp_path, suffix):
    path = write_matrix(tmp_path / f"q{suffix}", ring_rates())
    diff = diffusion_for("diffusion.graph=dense", f"diffusion.rate_matrix={path}",
                         "diffusion.objective=score_entropy")
    assert isinstance(diff.graph, dd.DenseGraph)
    torch.testing.assert_close(diff.graph.rate_matrix(), torch.from_numpy(ring_rates()), rtol=0, atol=1e-15)


def test_relative_matrix_paths_are_read_from_root(tmp_path):
    write_matrix(tmp_path / "q.npy", ring_rates())
    diff = diffusion_for("diffusion.graph=dense", "diffusion.rate_matrix=q.npy", "diffusion.objective=l2",
                         root=tmp_path)
    torch.testing.assert_close(diff.graph.rate_matrix(), torch.from_numpy(ring_rates()))


def test_similarity_and_ordinal_graphs_match_the_library_constructors(tmp_path):
    w = np.random.default_rng(0).normal(size=(V, V))
    w = w + w.T
    path = write_matrix(tmp_path / "w.npy", w)
    diff = diffusion_for("diffusion.graph=similarity", f"diffusion.similarity={path}", "diffusion.temperature=0.7",
                         "diffusion.objective=score_entropy", "diffusion.parameterization=score")
    expected = dd.DenseGraph.from_similarity(torch.from_numpy(w), temperature=0.7)
    torch.testing.assert_close(diff.graph.rate_matrix(), expected.rate_matrix())
    ordinal = diffusion_for("diffusion.graph=ordinal", "diffusion.objective=score_entropy").graph
    torch.testing.assert_close(ordinal.rate_matrix(), dd.DenseGraph.ordinal(V).rate_matrix())


@pytest.mark.parametrize("make, message", [
    (lambda d: write_matrix(d / "q.npy", ring_rates(V + 1)), "is 6 x 6 but the data has vocab_size 5"),
    (lambda d: write_matrix(d / "q.npy", -ring_rates()), "diffusion.rate_matrix: off-diagonal rates must be >= 0"),
    (lambda d: write_matrix(d / "q.npy", np.ones((V, V + 1))), "a square S x S matrix is needed"),
    (lambda d: d / "missing.npy", "diffusion.rate_matrix: no such file"),
    (lambda d: d / "q.json", "must end in one of .npy, .csv"),
    (lambda d: (d / "q.csv").write_text("1,2\nx,y\n") and d / "q.csv", "diffusion.rate_matrix: cannot read"),
])
def test_bad_matrix_files_are_one_line_errors_naming_the_key(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError) as err:
        diffusion_for("diffusion.graph=dense", f"diffusion.rate_matrix={path}", "diffusion.objective=l2")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_tiny_model_trains_on_a_dense_graph_given_by_a_file(tiny, tmp_path):
    path = write_matrix(tmp_path / "q.npy", ring_rates(12))
    cfg = tiny("steps=3", "eval_batches=1", "diffusion.graph=dense", f"diffusion.rate_matrix={path}",
               "diffusion.parameterization=score", "diffusion.objective=score_entropy", "model.time_conditioning=true")
    result = Trainer(cfg).fit()
    assert result["step"] == 3 and math.isfinite(result["loss"]) and math.isfinite(result["val_loss"])
    pre = from_pretrained(tmp_path / "pretrained")
    assert pre.model.config.num_states == 12
    torch.testing.assert_close(pre.diffusion.graph.rate_matrix(), torch.from_numpy(ring_rates(12)))


def test_the_tables_match_the_constructors():
    for name, choice in SCHEDULES.items():
        params = inspect.signature(choice.build).parameters
        assert set(choice.options) == set(params), name
    for name, choice in GRAPHS.items():
        params = list(inspect.signature(choice.build).parameters.values())[1:]  # after vocab_size
        assert set(choice.options) == {p.name for p in params}, name
        assert set(choice.required) == {p.name for p in params if p.default is inspect.Parameter.empty}, name
        cfg = load_config(None, [f"diffusion.graph={name}", "diffusion.objective=score_entropy",
                                 *(f"diffusion.{k}=x.npy" for k in choice.required)])
        model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2), cfg.diffusion, V, 8)
        if not choice.required:  # the backbone's states are the graph's
            assert model.config.num_states == build_diffusion(cfg.diffusion, V).graph.num_states


def test_one_model_config_transformer_config_extends_it():
    decided = {"num_states", "output_size", "causal", "sedd_absorb_scale"}
    model_fields = [f.name for f in fields(ModelConfig)]
    assert [f.name for f in fields(TransformerConfig) if f.name not in decided] == model_fields
    assert issubclass(TransformerConfig, ModelConfig)
    from discdiff.training import ModelConfig as TrainingModelConfig

    assert TrainingModelConfig is ModelConfig
    assert not hasattr(TransformerConfig, "from_dict")
    cfg = load_config(None, ["model.d_model=32", "model.n_heads=2", "data.context=24"])
    built = build_model(cfg.model, cfg.diffusion, V, cfg.data.context).config
    assert built.max_len == 24 and built.d_model == 32 and built.num_states == V + 1
