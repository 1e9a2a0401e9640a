"""Likelihood with error bars: NLL bounds of diffusion models, exact NLLs of the AR baseline, on the same tokens.

For a diffusion model every objective's expectation over its noise is an upper bound on -log p_theta(x0)
(``discdiff.diffusion``). ``Diffusion.nll`` estimates it per sequence b (n_b real tokens) from D draws of t,
stratified *per sequence*; here the per-sequence values are aggregated:

    m_b = 1/D sum_d loss(x0_b, t_{b,d})              nats, float64 (Diffusion.nll's mean)
    nats per token  R = sum_b m_b / sum_b n_b        (a ratio: bits per *real* token under padding)

The interval comes from the spread of the residuals r_b = m_b - R n_b (the delta method for a ratio of
means) and says what it is for:

- sequences handed over directly: independent draws from the data distribution, the i.i.d. variance;
- ``load_eval_data``'s windows, a seeded stratified sample of a split's N examples (one random draw in
  each of n equal strata, every example equally likely): the interval is for the mean over the *whole
  split*, with the variance of that design (successive differences: adjacent strata collapsed, which
  can only over-state it); evaluating the whole split leaves only the Monte Carlo error. On Shakespeare's
  validation split (1786 windows of 256) 95% intervals from 32, 64 or 256 drawn windows covered the
  whole split's value in 96-97% of 300 seeds.

It covers both sources of error: which sequences were drawn and which times. ``mc_stderr_nats_per_token``
isolates the Monte Carlo part (the within-sequence variance of the draws / D; conservative, since
stratified draws vary less than independent ones): the error of this number on *this* evaluation set.
The AR baseline's NLL is exact (no Monte Carlo), so its interval is the data's alone.

Compare two results on the same sequences with ``compare``: paired per-sequence differences cancel
most of the data's variance, so the interval of a difference (or of a ratio such as diffusion / AR)
is much tighter than the two intervals side by side. Each result carries a hash of the tokens it saw;
``compare`` refuses results computed on different data.

Example::

    >>> import torch, discdiff as dd
    >>> from discdiff.exact import ToyDistribution
    >>> from discdiff.evaluation import diffusion_nll
    >>> toy = ToyDistribution.random(3, 3, generator=torch.Generator().manual_seed(0))
    >>> g = dd.Absorbing(3)
    >>> diff = dd.Diffusion(g, dd.LogLinear(), parameterization="denoiser")
    >>> res = diffusion_nll(toy.denoiser_model(g), diff, toy.sample(64, torch.Generator().manual_seed(1)),
    ...                     objective="k_dce", num_draws=4)
    >>> lo, hi = res.ci_nats_per_sequence
    >>> bool(lo < toy.entropy() < hi)
    True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from discdiff.data.splits import SplitSample
from discdiff.diffusion import Diffusion
from discdiff.model_call import is_time_free

from .data import as_batches, data_hash
from .estimator import BatchNLL, Counted, batch_nll, counted_tokens, real_tokens
from .intervals import Interval, ratio_stderr, stderr_of_mean, z_value

__all__ = [
    "Comparison",
    "Interval",
    "Evaluation",
    "LikelihoodResult",
    "BatchNLL",
    "Counted",
    "ar_nll",
    "batch_nll",
    "compare",
    "counted_tokens",
    "real_tokens",
    "diffusion_nll",
    "evaluate",
]

LN2 = math.log(2.0)


def _exp(nats: float) -> float:
    """exp that reports inf past float range (a model that puts ~0 mass on the data), never OverflowError."""
    return math.exp(nats) if nats < 709.0 else math.inf


@dataclass(frozen=True)
class LikelihoodResult:
    """One estimator on one evaluation set: per-sequence values and everything derived from them.

    ``per_sequence`` [N] float64 nats (the bound's estimate, or the exact NLL), ``lengths`` [N] real tokens,
    ``mc_variance`` [N] the Monte Carlo variance of each entry (zeros when exact), ``split_sample`` which
    examples of a split these are (None: sequences given directly, treated as independent draws).
    Intervals are for the split's mean when ``split_sample`` is set, else for the data distribution's.
    """

    estimator: str
    exact: bool
    per_sequence: Tensor
    lengths: Tensor
    mc_variance: Tensor
    draws: int
    data_hash: str
    confidence: float = 0.95
    split_sample: SplitSample | None = None
    padding_tokens: int = 0  # EOS padding after each record's first EOS: in the NLL, not in ``lengths``

    @property
    def sequences(self) -> int:
        return len(self.per_sequence)

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def nats_per_token(self) -> float:
        return float(self.per_sequence.sum() / self.lengths.sum())

    @property
    def stderr_nats_per_token(self) -> float:
        """Standard error (data + Monte Carlo) of nats per token, delta method for the ratio of sums."""
        return ratio_stderr(self.per_sequence, self.lengths.double(), self.mc_variance, self.split_sample)

    @property
    def mc_stderr_nats_per_token(self) -> float:
        """Monte Carlo error alone (re-running with another seed on the same sequences), an upper estimate:
        it treats each sequence's stratified draws as independent, and stratified draws vary less."""
        return float(self.mc_variance.sum().sqrt() / self.lengths.sum())

    @property
    def ci_nats_per_token(self) -> Interval:
        half = z_value(self.confidence) * self.stderr_nats_per_token
        return Interval(self.nats_per_token - half, self.nats_per_token + half)

    @property
    def bits_per_token(self) -> float:
        return self.nats_per_token / LN2

    @property
    def ci_bits_per_token(self) -> Interval:
        lo, hi = self.ci_nats_per_token
        return Interval(lo / LN2, hi / LN2)

    @property
    def perplexity(self) -> float:
        return _exp(self.nats_per_token)

    @property
    def ci_perplexity(self) -> Interval:
        lo, hi = self.ci_nats_per_token
        return Interval(_exp(lo), _exp(hi))

    @property
    def nats_per_sequence(self) -> float:
        return float(self.per_sequence.mean())

    @property
    def ci_nats_per_sequence(self) -> Interval:
        ones = torch.ones_like(self.per_sequence)
        half = z_value(self.confidence) * ratio_stderr(self.per_sequence, ones, self.mc_variance, self.split_sample)
        return Interval(self.nats_per_sequence - half, self.nats_per_sequence + half)

    def to_dict(self) -> dict:
        """Plain numbers for JSON (the per-sequence tensors are left out)."""
        return {
            "estimator": self.estimator, "exact": self.exact, "sequences": self.sequences, "tokens": self.tokens,
            "padding_tokens": self.padding_tokens,
            "draws": self.draws, "confidence": self.confidence, "data_hash": self.data_hash,
            "nats_per_token": self.nats_per_token, "ci_nats_per_token": list(self.ci_nats_per_token),
            "stderr_nats_per_token": self.stderr_nats_per_token,
            "mc_stderr_nats_per_token": self.mc_stderr_nats_per_token,
            "bits_per_token": self.bits_per_token, "ci_bits_per_token": list(self.ci_bits_per_token),
            "perplexity": self.perplexity, "ci_perplexity": list(self.ci_perplexity),
            "nats_per_sequence": self.nats_per_sequence, "ci_nats_per_sequence": list(self.ci_nats_per_sequence),
            "drawn": self.split_sample.to_dict() if self.split_sample is not None else {"method": "given"},
            "interval_for": "the split's mean" if self.split_sample is not None
            else "the data distribution's mean (sequences as independent draws)",
        }

    def __str__(self) -> str:
        lo, hi = self.ci_bits_per_token
        kind = "exact NLL" if self.exact else f"bound, {self.draws} draws"
        drawn = self.split_sample
        where = (f"; {drawn.size} of the split's {drawn.population} examples, {drawn.method}, seed {drawn.seed}"
                 if drawn is not None else "")
        return (f"{self.estimator}: {self.bits_per_token:.4f} bits/token [{lo:.4f}, {hi:.4f}] "
                f"({kind}; {self.tokens} tokens in {self.sequences} sequences{where})")


# ------------------------------------------------------------------ estimators


@contextlib.contextmanager
def _eval_mode(model):
    was_training = getattr(model, "training", None)
    if was_training:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def _device(model, device):
    if device is not None:
        return torch.device(device)
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


def diffusion_nll(model, diffusion: Diffusion, data, objective: str | None = None, *, num_draws: int = 16,
                  seed: int = 0, batch_size: int = 32, device=None, confidence: float = 0.95,
                  records: dict | None = None, labels: bool = False) -> LikelihoodResult:
    """The NLL bound of ``objective`` (default: the diffusion's default) per sequence, by ``Diffusion.nll``
    (``num_draws`` times stratified per sequence, float64), aggregated with intervals and a data hash.

    Deterministic given (seed, data, batch order, device): every draw comes from one generator seeded
    with ``seed`` on the model's device. ``data``: anything ``as_batches`` takes; ``load_eval_data``'s
    spread windows make the interval one for the whole split's mean. ``records`` (a model's record layout,
    config ``records``): bits per *real* token (each record plus its one EOS, ``real_tokens``), the EOS
    padding counted apart in ``padding_tokens``. ``labels=True``: condition a class-conditional model on the
    labels ``data`` carries (``EvalData.labels``): -log p(x | c), estimator ``<objective>_conditional``.
    """
    eos_id, bos_id = (records["eos_id"], records.get("bos_id")) if records else (None, None)
    objective = objective or diffusion.default_objective
    if objective not in diffusion.objectives:
        raise ValueError(f"unknown objective {objective!r}; choose one of {diffusion.objectives}")
    if objective == "l2":
        raise ValueError("objective 'l2' is not a likelihood bound; evaluate score_entropy or a DCE instead")
    if num_draws < 2:
        raise ValueError(f"num_draws must be >= 2 to estimate the Monte Carlo error, got {num_draws}")
    batches = as_batches(data, batch_size)
    device = _device(model, device)
    generator = torch.Generator(device).manual_seed(seed)
    label_batches = batches.labels if labels else None
    if labels and label_batches is None:
        raise ValueError("labels=True needs data with class labels (load_eval_data of a labelled split)")
    parts = []
    with _eval_mode(model):
        for i, (tokens, mask) in enumerate(batches):
            label = None if label_batches is None else label_batches[i].to(device)
            # Diffusion.loss gives a backbone that takes padding_mask the mask (one padding policy)
            parts.append(batch_nll(model, diffusion, tokens.to(device), mask.to(device), objective,
                                   num_draws=num_draws, generator=generator, label=label, eos_id=eos_id,
                                   bos_id=bos_id))
    name = f"{objective}_conditional" if labels else objective
    return result_of(name, False, parts, num_draws, data_hash(batches), confidence, batches.split_sample)


def result_of(estimator: str, exact: bool, parts: list[BatchNLL], draws: int, hashed: str, confidence: float = 0.95,
              split_sample: SplitSample | None = None) -> LikelihoodResult:
    """A ``LikelihoodResult`` from the ``batch_nll`` of each batch, in order."""
    return LikelihoodResult(estimator, exact, torch.cat([p.mean for p in parts]), torch.cat([p.lengths for p in parts]),
                            torch.cat([p.variance for p in parts]), draws, hashed, confidence, split_sample,
                            sum(p.padding for p in parts))


def ar_nll(model, data, *, vocab_size: int | None = None, batch_size: int = 32, device=None,
           confidence: float = 0.95, records: dict | None = None) -> LikelihoodResult:
    """Exact -log p(x0) of the AR baseline, per sequence, summed in float64 over real tokens (``batch_nll``
    with ``dd.Autoregressive``; ``records`` as in ``diffusion_nll``: bits per real token of EOS records).

    ``model``: a ``discdiff.nn.ARWrapper``, or a causal ``DiffusionTransformer`` with ``vocab_size``.
    """
    from discdiff.nn import ARWrapper

    if not isinstance(model, ARWrapper):
        if vocab_size is None:
            raise ValueError("pass vocab_size with a bare causal model (or wrap it in discdiff.nn.ARWrapper)")
        model = ARWrapper(model, vocab_size)
    eos_id, bos_id = (records["eos_id"], records.get("bos_id")) if records else (None, None)
    batches = as_batches(data, batch_size)
    device = _device(model, device)
    with _eval_mode(model):
        parts = [batch_nll(model.model, model.ar, tokens.to(device), mask.to(device), num_draws=1, generator=None,
                           eos_id=eos_id, bos_id=bos_id) for tokens, mask in batches]
    return result_of("exact_ar", True, parts, 0, data_hash(batches), confidence, batches.split_sample)


# ------------------------------------------------------------------ comparisons


@dataclass(frozen=True)
class Comparison:
    """Paired comparison of two estimators on the same sequences, in nats per token.

    ``difference`` = a - b with its interval; ``ratio`` = a / b (e.g. diffusion bound / AR NLL) with its
    interval; ``agree``: the interval of the difference contains 0.
    """

    a: str
    b: str
    difference: float
    ci_difference: Interval
    ratio: float
    ci_ratio: Interval
    agree: bool

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "difference_nats_per_token": self.difference,
                "ci_difference": list(self.ci_difference), "ratio": self.ratio, "ci_ratio": list(self.ci_ratio),
                "agree": self.agree}


def compare(a: LikelihoodResult, b: LikelihoodResult, confidence: float | None = None) -> Comparison:
    """Paired difference and ratio of two results; both must come from the same sequences."""
    if a.data_hash != b.data_hash or not torch.equal(a.lengths, b.lengths):
        raise ValueError(f"{a.estimator} and {b.estimator} were evaluated on different data "
                         f"({a.data_hash} vs {b.data_hash}); a paired comparison needs identical sequences")
    z = z_value(confidence if confidence is not None else a.confidence)
    drawn, lengths = a.split_sample, a.lengths.double()
    diff = a.nats_per_token - b.nats_per_token
    half = z * ratio_stderr(a.per_sequence - b.per_sequence, lengths, a.mc_variance + b.mc_variance, drawn)
    ratio = float(a.per_sequence.sum() / b.per_sequence.sum())
    # delta method for sum(a)/sum(b): linearise around the ratio, per sequence
    scale = b.per_sequence.mean()
    resid = (a.per_sequence - ratio * b.per_sequence) / scale
    ratio_half = z * stderr_of_mean(resid, (a.mc_variance + ratio**2 * b.mc_variance) / scale**2, drawn)
    return Comparison(a.estimator, b.estimator, diff, Interval(diff - half, diff + half), ratio,
                      Interval(ratio - ratio_half, ratio + ratio_half), abs(diff) <= half)


@dataclass(frozen=True)
class Evaluation:
    """Every estimator run on one model and one evaluation set, and their pairwise agreement.

    ``agreements`` compares the primary estimator with each other one; ``same_model`` says whether the
    estimators bound the same generative model (a time-free denoiser on the absorbing graph: t-, lambda-,
    k-DCE and score entropy then agree in expectation, up to the schedule's O(eps) end pieces), so a
    disagreement there points at a bug or too few draws.
    """

    results: dict[str, LikelihoodResult]
    agreements: list[Comparison]
    same_model: bool

    @property
    def primary(self) -> LikelihoodResult:
        return next(iter(self.results.values()))

    def to_dict(self) -> dict:
        return {"primary": self.primary.estimator, "results": {k: r.to_dict() for k, r in self.results.items()},
                "agreements": [c.to_dict() for c in self.agreements], "same_model": self.same_model}


def evaluate(pretrained, data, *, objectives: Iterable[str] | None = None, num_draws: int = 16, seed: int = 0,
             batch_size: int = 32, device=None, confidence: float = 0.95) -> Evaluation:
    """Evaluate a ``discdiff.training.Pretrained`` (or anything with .model, .diffusion, .config) on ``data``.

    AR baseline: the exact NLL. Diffusion: ``objectives`` (default: the training objective, plus the k-DCE
    any-order bound on an absorbing graph), all on the same batches, with paired agreement checks; a
    class-conditional model on labelled data is conditioned on each sequence's label.
    """
    batches = as_batches(data, batch_size)
    if not isinstance(pretrained.diffusion, Diffusion):  # the AR baseline (discdiff.Autoregressive)
        result = ar_nll(pretrained.model, batches, vocab_size=pretrained.config["vocab_size"], device=device,
                        confidence=confidence, records=_eos_records(pretrained.config))
        return Evaluation({result.estimator: result}, [], True)
    diff = pretrained.diffusion
    if objectives is None:
        objectives = [pretrained.config["diffusion"].get("objective") or diff.default_objective]
        if diff.graph.mask_id is not None and "k_dce" not in objectives:
            objectives.append("k_dce")
    # a class-conditional model on a labelled split: -log p(x | c), as training-time validation reports it
    labelled = batches.labels is not None and (pretrained.config.get("model") or {}).get("num_classes") is not None
    results = {}
    for objective in dict.fromkeys(objectives):
        results[objective] = diffusion_nll(pretrained.model, diff, batches, objective, num_draws=num_draws,
                                           seed=seed, device=device, confidence=confidence,
                                           records=_eos_records(pretrained.config), labels=labelled)
    first = next(iter(results.values()))
    agreements = [compare(first, r) for r in list(results.values())[1:]]
    time_free = is_time_free(pretrained.model) is True  # the one rule (discdiff.model_call)
    same_model = diff.parameterization.name == "denoiser" and time_free and diff.graph.mask_id is not None
    return Evaluation(results, agreements, same_model)


def _eos_records(config: dict) -> dict | None:
    """A model's record layout when it was trained on EOS-padded records, else None."""
    layout = config.get("records")
    return layout if layout and layout.get("padding") == "eos" else None
