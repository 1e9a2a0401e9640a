"""evaluation.records: a record model sampled plain (today), EOS-padded and length-first."""

import torch

from discdiff.data import DNATokenizer
from discdiff.evaluation.records import length_histogram, record_format, record_letters, sample_records
from discdiff.evaluation.validity import record_validity
from discdiff.training import DiffusionConfig, ModelConfig, build_model, from_pretrained, save_pretrained

TINY = ModelConfig(d_model=16, n_layers=1, n_heads=2, cond_dim=8)


def _pretrained(tmp_path):
    tok = DNATokenizer()
    torch.manual_seed(0)
    model = build_model(TINY, DiffusionConfig(), tok.vocab_size, 10)
    save_pretrained(tmp_path / "m", model.eval(), model_cfg=TINY, diffusion_cfg=DiffusionConfig(),
                    vocab_size=tok.vocab_size, context=10, tokenizer_dir=tok.save(tmp_path / "tok"))
    return from_pretrained(tmp_path / "m")


def test_modes(tmp_path):
    pre = _pretrained(tmp_path)
    fmt = record_format(pre.tokenizer)
    assert (fmt.eos_id, fmt.bos_id, fmt.pad_id) == (2, 1, 0)
    letters = record_letters(pre.tokenizer, pre.vocab_size)
    assert letters == [3, 4, 5, 6, 7]
    plain = sample_records(pre, 32, 10, mode="plain", seeds=range(32), steps=4)
    eos = sample_records(pre, 32, 10, mode="eos", seeds=range(32), steps=4)
    assert (eos[:, 0] == 1).all() and not torch.isin(eos[:, 1:], torch.tensor([0, 1])).any()
    assert torch.isin(plain, torch.tensor([0, 1])).any()  # a random model draws BOS / PAD anywhere
    counts = length_histogram([3, 3, 5, 20], longest=fmt.max_body(10))
    assert counts == [0, 0, 0, 2, 0, 1, 0, 0, 0]
    first = sample_records(pre, 32, 10, mode="length_first", length_counts=counts, seeds=range(32), steps=4)
    assert set(fmt.body_lengths(first).tolist()) == {3, 5}
    assert record_validity(first, fmt, letters).all()
