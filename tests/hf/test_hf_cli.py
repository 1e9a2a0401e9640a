"""`discdiff sample` and `discdiff eval` take a transformers masked-LM directory as --model."""

import json

import numpy as np
import pytest
from hf_helpers import tiny_bert

from discdiff import cli
from discdiff.hf import from_transformers


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf") / "tinybert"
    model, tokenizer = tiny_bert()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_sample_prints_words_of_the_masked_lm(bert_dir, capsys):
    assert cli.main(["sample", "--model", str(bert_dir), "--num-samples", "2", "--length", "6", "--steps", "6",
                     "--sampler", "first_hitting"]) == 0
    words = [line.split() for line in capsys.readouterr().out.splitlines() if not line.startswith("---")]
    vocab = {"the", "cat", "sat", "[UNK]", *"abcdefghij"}
    assert len(words) == 2 and all(len(w) == 6 and set(w) <= vocab for w in words)


def test_eval_reports_the_bound_on_token_ids(bert_dir, tmp_path, capsys):
    pre = from_transformers(bert_dir)
    ids = np.array(pre.tokenizer.encode("the cat sat a b c d e " * 4), dtype=np.int64)  # 1-D: a token stream
    np.save(tmp_path / "ids.npy", ids)
    assert cli.main(["eval", "--model", str(bert_dir), "--data", str(tmp_path / "ids.npy"), "--context", "8",
                     "--draws", "2", "--batch-size", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["results"]) == {"t_dce", "k_dce"} and report["same_model"]


def test_load_pretrained_tells_the_two_kinds_of_directory_apart(bert_dir, tmp_path):
    from hf_helpers import save_tiny

    from discdiff.hf import MaskedLMDenoiser, load_pretrained
    from discdiff.nn import DiffusionTransformer
    from discdiff.training import ModelConfig

    assert isinstance(load_pretrained(bert_dir).model, MaskedLMDenoiser)
    assert isinstance(load_pretrained(f"hf:{bert_dir}").model, MaskedLMDenoiser)
    save_tiny(tmp_path / "m", ModelConfig(d_model=16, n_layers=1, n_heads=2))
    assert isinstance(load_pretrained(tmp_path / "m").model, DiffusionTransformer)  # verified, natively
