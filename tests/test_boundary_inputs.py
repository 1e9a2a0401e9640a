"""Inputs the reliability probe found passing the library boundary as torch errors or accepted silently.

Each must be a one-line ValueError that names the problem (before the fix: RuntimeError / TypeError from torch,
an 8 GB allocation, or an evaluation on another tokenizer's ids)."""

import subprocess
import sys

import pytest
import torch

import discdiff as dd
from discdiff import cli
from discdiff.data import CharTokenizer, prepare
from discdiff.exact import ToyDistribution
from discdiff.sampling import memory

GRAPHS = [dd.Absorbing(3), dd.Uniform(3), dd.DenseGraph.ordinal(3)]


@pytest.mark.parametrize("graph", GRAPHS, ids=repr)
@pytest.mark.parametrize("ids, words", [([7], "valid ids"), ([-1], "valid ids"), ([0.5], "integer token ids")])
def test_token_taking_graph_methods_check_their_ids(graph, ids, words):
    x = torch.tensor(ids)
    for call in (lambda: graph.transition_probs(x, 1.0), lambda: graph.sample_transition(x, 1.0),
                 lambda: graph.transposed_transition(x, 1.0)):
        with pytest.raises(ValueError, match=words):
            call()


@pytest.mark.parametrize("graph", GRAPHS, ids=repr)
def test_sample_prior_checks_its_shape(graph):
    with pytest.raises(ValueError, match="non-negative integers"):
        graph.sample_prior((2, -1))
    assert graph.sample_prior((2, 3)).shape == (2, 3) and graph.sample_prior(torch.Size([1, 4])).shape == (1, 4)


def _toy():
    toy = ToyDistribution.random(3, 3, generator=torch.Generator().manual_seed(0))
    graph = dd.Absorbing(3)
    return dd.Diffusion(graph, dd.LogLinear(), "denoiser"), toy.denoiser_model(graph)


@pytest.mark.parametrize("kwargs, words", [(dict(generator="seed"), "torch.Generator"),
                                           (dict(device="bogus"), "unknown device")])
def test_sample_refuses_a_bad_generator_or_device(kwargs, words):
    diff, model = _toy()
    with pytest.raises(ValueError, match=words):
        diff.sample(model, 2, 3, **kwargs)


def test_the_memory_guard_respects_the_address_space_limit(monkeypatch):
    diff, model = _toy()
    monkeypatch.setattr(memory, "address_space_left", lambda: 2**20)  # 1 MiB left under `ulimit -v`
    with pytest.raises(ValueError, match="available"):
        diff.sample(model, 2, 3, steps=10**6)  # an 8 MB time grid
    monkeypatch.setattr(memory, "address_space_left", lambda: None)
    assert diff.sample(model, 2, 3, steps=8).samples.shape == (2, 3)


def test_address_space_left_reads_the_process_limit():
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, resource.RLIM_INFINITY)); "
            "from discdiff.sampling.memory import address_space_left; left = address_space_left(); "
            "print(0 < left < 8 * 2**30)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


def test_eval_refuses_a_corpus_of_another_tokenizer_with_the_same_vocabulary_size(tmp_path, capsys):
    lower, upper = "the quick brown fox jumps\n" * 60, "THE QUICK BROWN FOX JUMPS\n" * 60
    (tmp_path / "lower.txt").write_text(lower)
    (tmp_path / "upper.txt").write_text(upper)
    assert CharTokenizer.from_texts([lower]).vocab_size == CharTokenizer.from_texts([upper]).vocab_size
    mine = prepare(str(tmp_path / "lower.txt"), tmp_path / "data", verbose=False)
    other = prepare(str(tmp_path / "upper.txt"), tmp_path / "data", verbose=False)
    run = tmp_path / "run"
    args = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "data.context=16", "batch_size=4",
            "steps=2", "eval_every=0", "progress=false", "threads=1", f"data.train={mine.root}"]
    assert cli.main(["train", "--out", str(run), *[a for s in args for a in ("--set", s)]]) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(run), "--data", str(other.root), "--max-batches", "1",
                     "--draws", "2"]) == 2
    assert "another tokenizer" in capsys.readouterr().err
    assert cli.main(["eval", "--model", str(run), "--data", str(mine.root), "--max-batches", "1",
                     "--draws", "2"]) == 0


def _tiny_run(path):
    args = ["model.d_model=32", "model.n_layers=1", "model.n_heads=2", "data.context=16", "batch_size=4",
            "steps=4", "save_every=2", "keep_checkpoints=3", "eval_every=0", "progress=false", "threads=1",
            "data.vocab_size=12", "data.synthetic_tokens=4000"]
    assert cli.main(["train", "--out", str(path), *[a for s in args for a in ("--set", s)]]) == 0
    return args


def test_recoveries_say_what_they_used(tmp_path, capsys):
    """A `latest` naming a missing folder, and a run without pretrained/, are recovered from, and said so."""
    import shutil

    args = _tiny_run(tmp_path / "run")
    capsys.readouterr()
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step_00000099\n")
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--resume", "--set", "steps=6"]) == 0
    assert "names 'step_00000099', which is missing or incomplete; ignoring it" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "run" / "pretrained")
    assert cli.main(["sample", "--model", str(tmp_path / "run"), "--num-samples", "1", "--steps", "2"]) == 0
    assert "has no pretrained/: using step_00000006" in capsys.readouterr().err
    assert args


def test_a_huge_number_of_rows_is_refused_at_once(tmp_path, capsys):
    _tiny_run(tmp_path / "run")
    capsys.readouterr()
    assert cli.main(["sample", "--model", str(tmp_path / "run"), "--num-samples", "100000000", "--steps", "4"]) == 2
    assert "GiB" in capsys.readouterr().err
