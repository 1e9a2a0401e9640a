"""discdiff.convert against the original code: tests/fixtures/{sedd,mdlm}_tiny hold tiny random checkpoints in
the published layouts and the outputs SEDD's and MDLM's own code computed from them (see each README.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from discdiff import cli
from discdiff.convert import convert_mdlm, convert_sedd
from discdiff.convert.ddit import expected_shapes
from discdiff.training import from_pretrained

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEDD, MDLM = FIXTURES / "sedd_tiny", FIXTURES / "mdlm_tiny"
V = 50  # data tokens in both fixtures; MASK = 50
TOL = 1e-5


def _io(fixture: Path) -> dict:
    return load_file(fixture / "io.safetensors")


def _copy(fixture: Path, dest: Path, **config) -> Path:
    shutil.copytree(fixture, dest)
    cfg = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**cfg, **config}))
    return dest


def test_sedd_reproduces_their_log_scores(tmp_path):
    pre = from_pretrained(convert_sedd(SEDD, tmp_path / "out"))
    io = _io(SEDD)
    with torch.no_grad():
        out = pre.model(io["x_t"], io["sigma"])
    assert pre.diffusion.parameterization.name == "score" and pre.model.config.sedd_absorb_scale
    assert io["log_score"].std() > 1.0  # a fixture with something to get wrong
    # every entry, including the 0 SEDD scatters at x_t (discdiff's head writes the same 0)
    assert (out - io["log_score"]).abs().max() < TOL


@pytest.mark.parametrize("time_conditioning", [False, True])
def test_mdlm_reproduces_their_logits_and_subs(tmp_path, time_conditioning):
    src = _copy(MDLM, tmp_path / "src", time_conditioning=time_conditioning)
    pre = from_pretrained(convert_mdlm(src, tmp_path / "out"))
    tag = "time_cond" if time_conditioning else "time_free"
    io = _io(MDLM)
    x_t, sigma = io["x_t"], io["sigma"]
    assert pre.model.config.time_conditioning is time_conditioning  # time-free: constant adaLN folded away
    with torch.no_grad():
        out = pre.model(x_t, sigma)
    assert (out - io[f"logits_{tag}"]).abs().max() < TOL  # MDLM's backbone logits, all 51 columns
    # SUBS: on masked positions their log-probs over the 50 data tokens (MASK at -1e6) = discdiff's clean ones
    diff = pre.diffusion
    log_probs = diff.parameterization.clean_log_probs(out, x_t, sigma, diff.graph)
    masked = x_t == V
    assert masked.sum() > 10 and (~masked).sum() > 5
    assert (log_probs[masked] - io[f"subs_{tag}"][masked][:, :V]).abs().max() < TOL
    assert (io[f"subs_{tag}"][masked][:, V] < -1e5).all()
    # SUBS carries unmasked tokens over; discdiff's absorbing graph never moves them (score 0 off the mask)
    log_score = diff.parameterization.log_score(out, x_t, sigma, diff.graph)
    assert (log_score[~masked] == 0).all()
    assert (io[f"subs_{tag}"][~masked].argmax(-1) == x_t[~masked]).all()


@pytest.mark.parametrize("kind", ["sedd", "mdlm"])
def test_imported_models_sample_and_score(tmp_path, kind):
    convert, fixture = (convert_sedd, SEDD) if kind == "sedd" else (convert_mdlm, MDLM)
    pre = from_pretrained(convert(fixture, tmp_path / "out"))
    out = pre.diffusion.sample(pre.model, num_samples=2, length=16, steps=4, generator=torch.Generator().manual_seed(0))
    assert out.samples.shape == (2, 16) and out.samples.min() >= 0 and out.samples.max() < V
    x0 = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(1))
    nll = pre.diffusion.nll(pre.model, x0, num_draws=2, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(nll.mean).all() and (nll.mean > 0).all()
    assert pre.tokenizer is None  # the fixtures carry no tokenizer files


def _rewrite_weights(src: Path, edit) -> None:
    state = load_file(src / "model.safetensors")
    edit(state)
    save_file(state, src / "model.safetensors")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.__setitem__("blocks.1.mlp.0.weight", torch.zeros(64, 32)), "'blocks.1.mlp.0.weight' has shape"),
        (lambda s: s.pop("output_layer.linear.bias"), "missing tensor 'output_layer.linear.bias'"),
        (lambda s: s.__setitem__("blocks.0.extra", torch.zeros(1)), "unexpected tensor 'blocks.0.extra'"),
    ],
)
def test_mismatching_tensor_is_named(tmp_path, edit, message):
    src = _copy(SEDD, tmp_path / "src")
    _rewrite_weights(src, edit)
    with pytest.raises(ValueError, match=message):
        convert_sedd(src, tmp_path / "out")


def test_config_that_does_not_fit_names_first_key(tmp_path):
    src = _copy(MDLM, tmp_path / "src", hidden_dim=64)
    with pytest.raises(ValueError, match=r"'backbone.vocab_embed.embedding' has shape \(51, 32\).*\(51, 64\)"):
        convert_mdlm(src, tmp_path / "out")


def test_pytorch_model_bin_is_read(tmp_path):
    src = _copy(SEDD, tmp_path / "src")
    torch.save(load_file(src / "model.safetensors"), src / "pytorch_model.bin")
    (src / "model.safetensors").unlink()
    pre = from_pretrained(convert_sedd(src, tmp_path / "out"))
    io = _io(SEDD)
    with torch.no_grad():
        assert (pre.model(io["x_t"], io["sigma"]) - io["log_score"]).abs().max() < TOL


def _gpt2_files(directory: Path) -> None:
    """A byte-level GPT-2 vocabulary with no merges: 256 byte symbols and <|endoftext|> (257 tokens)."""
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {s: i for i, s in enumerate(sorted(ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")


def test_gpt2_tokenizer_is_carried(tmp_path):
    """A random SEDD-layout checkpoint with 257 tokens and GPT-2 tokenizer files beside it."""
    src = tmp_path / "src"
    src.mkdir()
    cfg = json.loads((SEDD / "config.json").read_text())
    cfg["tokens"] = 257
    (src / "config.json").write_text(json.dumps(cfg))
    gen = torch.Generator().manual_seed(0)
    shapes = expected_shapes("", 258, 32, 16, 2)
    save_file({k: torch.randn(s, generator=gen) for k, s in shapes.items()}, src / "model.safetensors")
    _gpt2_files(src)
    pre = from_pretrained(convert_sedd(src, tmp_path / "out"))
    assert pre.tokenizer is not None and pre.tokenizer.vocab_size == 257
    assert pre.tokenizer.decode(pre.tokenizer.encode("hi there")) == "hi there"
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "vocab.json").write_text(json.dumps({"a": 0}))
    (wrong / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(ValueError, match="lacks"):
        convert_sedd(src, tmp_path / "out2", tokenizer=wrong)
    with pytest.raises(ValueError, match="the tokenizer has 257 tokens but the model 50"):
        convert_sedd(_copy(SEDD, tmp_path / "tiny"), tmp_path / "out3", tokenizer=src)


def test_cli_convert(tmp_path, capsys):
    assert cli.main(["convert", "sedd", str(SEDD), str(tmp_path / "out")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert from_pretrained(tmp_path / "out").diffusion.parameterization.name == "score"
    assert cli.main(["convert", "mdlm", str(SEDD), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "discdiff convert: error: config.json has no 'vocab_size'; is this an MDLM checkpoint " \
        "(kuleshov-group/mdlm-owt)?"
