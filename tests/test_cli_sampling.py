"""`discdiff sample`: sampler flags made from the option table, out-of-range values refused, a default
sampler that fits the model, and errors in the command line's words."""

import pytest
import torch

from discdiff import cli
from discdiff.data import CharTokenizer
from discdiff.training import DiffusionConfig, ModelConfig, build_model, save_pretrained

TEXT = "to be or not to be that is the question"
TINY = ModelConfig(d_model=16, n_layers=1, n_heads=2, cond_dim=8)


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _checkpoint(directory, diffusion):
    tokenizer = CharTokenizer.from_texts([TEXT])
    torch.manual_seed(0)
    model = build_model(TINY, diffusion, tokenizer.vocab_size, 16)
    tok_dir = tokenizer.save(directory.parent / f"{directory.name}-tokenizer")
    return save_pretrained(directory, model.eval(), model_cfg=TINY, diffusion_cfg=diffusion,
                           vocab_size=tokenizer.vocab_size, context=16, tokenizer_dir=tok_dir)


@pytest.fixture(scope="module")
def masked(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "masked", DiffusionConfig())


@pytest.fixture(scope="module")
def uniform(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "uniform",
                       DiffusionConfig(graph="uniform", parameterization="score", schedule="geometric"))


def sample(path, *argv):
    return cli.main(["sample", "--model", str(path), "--num-samples", "2", "--length", "8", *argv])


@pytest.mark.parametrize("argv, message", [
    (["--sampler", "confidence", "--threshold", "0"], "--threshold must lie in (0, 1), got 0.0"),
    (["--sampler", "confidence", "--block-length", "0"], "--block-length must be >= 1, got 0"),
])
def test_zero_threshold_and_block_length_are_refused_not_dropped(masked, argv, message, capsys):
    # regression: `if v` dropped these silently and sampled with the defaults
    with pytest.raises(SystemExit) as exit_:
        sample(masked, "--steps", "4", *argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_default_sampler_fits_a_uniform_model_and_says_which(uniform, capsys):
    # regression: the default (ancestral) used to refuse every uniform-graph model
    assert sample(uniform, "--steps", "4") == 0
    err = capsys.readouterr().err
    assert err.startswith("sampler: tau_leaping") and err.count("\n") == 1


def test_the_default_sampler_of_a_masked_model_is_ancestral(masked, capsys):
    assert sample(masked, "--steps", "4") == 0
    assert capsys.readouterr().err.startswith("sampler: ancestral")


@pytest.mark.parametrize("model, argv, message", [
    ("masked", ["--guidance", "1"], "--guidance needs a prompt: use --prompt or --template"),
    ("uniform", ["--sampler", "ancestral"], "--sampler ancestral needs a masked (absorbing) model; this one is "
                                            "Uniform: use one of euler, tau_leaping, tweedie"),
    ("masked", ["--threshold", "0.5"], "--threshold applies to --sampler confidence only"),
])
def test_errors_speak_in_flags(model, argv, message, capsys, request):
    assert sample(request.getfixturevalue(model), "--steps", "4", *argv) == 2
    assert message in capsys.readouterr().err
