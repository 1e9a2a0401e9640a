"""Bits per *real* token on EOS-padded records: the record plus its one EOS counted, the EOS padding apart."""

import torch

import discdiff as dd
from discdiff.evaluation import diffusion_nll
from discdiff.evaluation.likelihood import real_tokens
from discdiff.exact import ToyDistribution, enumerate_sequences
from discdiff.sampling.records import RecordFormat


def test_real_tokens_count_the_record_and_its_one_eos():
    tokens = torch.tensor([[1, 5, 6, 2, 2, 2], [1, 5, 5, 5, 5, 2], [1, 5, 5, 5, 5, 5], [5, 2, 2, 2, 2, 2]])
    mask = torch.ones_like(tokens, dtype=torch.bool)
    assert real_tokens(tokens, mask, eos_id=2, bos_id=1).tolist() == [3, 5, 5, 2]
    assert real_tokens(tokens, mask, eos_id=None).tolist() == [6, 6, 6, 6]


def test_the_bound_is_per_real_token_and_the_padding_is_counted_apart():
    # exact denoiser of random records a|b{1,3} EOS+ over a canvas of 4: the per-sequence NLL does not change,
    # only what it is divided by
    fmt = RecordFormat(eos_id=2)
    seqs = enumerate_sequences(3, 4)
    n = fmt.body_lengths(seqs)
    valid = (n >= 1) & (n <= 3) & (seqs[:, :3] != 2).logical_or(torch.arange(3)[None] >= n[:, None]).all(1)
    valid &= ((seqs == 2) | (torch.arange(4)[None] < n[:, None])).all(1)
    probs = torch.where(valid, torch.rand(81, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 0)
    toy = ToyDistribution(probs / probs.sum(), vocab_size=3, length=4)
    g = dd.Absorbing(3)
    data = toy.sample(256, torch.Generator().manual_seed(1))
    diff = dd.Diffusion(g, dd.LogLinear(), "denoiser")
    plain = diffusion_nll(toy.denoiser_model(g), diff, data, "t_dce", num_draws=4)
    real = diffusion_nll(toy.denoiser_model(g), diff, data, "t_dce", num_draws=4,
                         records={"padding": "eos", "eos_id": 2, "bos_id": None})
    body = fmt.body_lengths(data)
    assert real.tokens == int((body + 1).sum()) and real.padding_tokens == int((3 - body).sum())
    assert plain.tokens == 4 * 256 and torch.equal(real.per_sequence, plain.per_sequence)
    assert real.nats_per_token > plain.nats_per_token
