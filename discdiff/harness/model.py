"""``DiscdiffLM``: a discdiff model as an lm-evaluation-harness ``LM`` (registered as ``--model discdiff``).

    python -m discdiff.harness --model_args pretrained=runs/sc/pretrained,num_draws=64 --tasks lambada_openai

A diffusion model has no exact log-likelihood. For a request (context c, continuation y) the adapter reports
the negative of the Monte Carlo bound that ``discdiff eval`` reports (LLaDA's conditional estimator):

    log p(y | c) >= -E_t[ loss(x0 = [c ; y], t, loss_mask on y) ]  ~=  -1/D sum_d loss(x0, t_d)

with D = ``num_draws`` stratified times (``Diffusion.nll`` through ``discdiff.evaluation.estimator.batch_nll``):
c is clean context (never noised, always visible), y is noised and scored. The value is a *lower bound* on
log p(y | c) in expectation, with Monte Carlo error ``Bound.stderr``; the AR baseline's value is exact.
``is_greedy`` is always False (a diffusion model has no single greedy continuation to compare with).

Randomness: batch k of ``batch_size`` rows draws from one generator seeded ``seed_for(seed, i)``, i the index
of its first row; with ``batch_size=1`` (the default) that is one generator per request, so a request's value
depends only on (seed, its index, its text). Everything is deterministic for a given seed and batch size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from discdiff.devices import resolve_device
from discdiff.evaluation.estimator import batch_nll
from discdiff.seeding import seed_for

from .generation import generate
from .requests import Row, encode, pad_rows, pair_row, rolling_rows

__all__ = ["Bound", "DiscdiffLM"]

KNOWN_ARGS = ("pretrained", "num_draws", "seed", "batch_size", "steps", "sampler", "device", "objective",
              "max_gen_toks", "max_batch_size")


SHAPES = {"loglikelihood": "(context, continuation) strings", "loglikelihood_rolling": "(text,)",
          "generate_until": "(context, gen_kwargs)"}


class Bound(NamedTuple):
    """A request's bound on -log p in nats (float) and its Monte Carlo standard error (0 when exact)."""

    nll: float
    stderr: float


def _int_arg(name: str, value, default: int | None, minimum: int) -> int | None:
    """A model_args integer (lm-eval hands strings or ints); one-line ValueError otherwise."""
    if value is None:
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        raise ValueError(f"model_args {name} must be an integer >= {minimum}, got {value!r}")
    return number


def _load(pretrained, device):
    """A ``Pretrained`` as it is, or a directory (discdiff's, a run, a transformers masked LM) loaded."""
    if hasattr(pretrained, "model") and hasattr(pretrained, "diffusion") and hasattr(pretrained, "config"):
        return pretrained
    from discdiff.hf import load_pretrained  # discdiff and transformers masked-LM directories (cli_sample's)

    return load_pretrained(str(pretrained), device=device)


@register_model("discdiff")
class DiscdiffLM(LM):
    """lm-eval ``LM`` over a discdiff ``Pretrained`` (see the module doc for what the numbers mean).

    Args (strings from ``--model_args``): ``pretrained`` a pretrained/run directory (or a loaded
    ``Pretrained``), ``num_draws`` Monte Carlo draws per request (default 32), ``seed`` (0), ``batch_size``
    rows per model batch (1), ``objective`` the bound (default: the training objective), ``steps`` and
    ``sampler`` for ``generate_until`` (defaults: the library's), ``max_gen_toks`` (64), ``device`` (auto).
    """

    def __init__(self, pretrained=None, num_draws=32, seed=0, batch_size=1, steps=None, sampler=None, device=None,
                 objective=None, max_gen_toks=64, max_batch_size=None, **unknown):
        super().__init__()
        if unknown:
            raise ValueError(f"unknown model_args {', '.join(sorted(unknown))}; known: {', '.join(KNOWN_ARGS)}")
        if pretrained is None:
            raise ValueError("model_args needs pretrained=DIR (a discdiff pretrained or run directory)")
        if isinstance(batch_size, str) and batch_size.strip().startswith("auto"):
            raise ValueError("batch_size=auto is not supported by the discdiff model; give an integer, e.g. 8")
        self.num_draws = _int_arg("num_draws", num_draws, 32, 2)
        self.seed = _int_arg("seed", seed, 0, 0)
        self.batch_size = _int_arg("batch_size", batch_size, 1, 1)
        self.steps = _int_arg("steps", steps, None, 1)
        self.max_gen_toks = _int_arg("max_gen_toks", max_gen_toks, 64, 1)
        self.sampler = None if sampler is None else str(sampler)
        self._device = resolve_device("auto" if device is None else device)
        self.pre = _load(pretrained, self._device)
        if self.pre.tokenizer is None:
            raise ValueError(f"{pretrained}: the model was saved without its tokenizer; the harness needs text")
        self.pre.model.eval()  # scoring and sampling only: no dropout
        self.diffusion = self.pre.diffusion
        self.context = int(self.pre.config["context"])
        self.exact = not hasattr(self.diffusion, "graph")  # dd.Autoregressive: exact NLL, nothing drawn
        trained = (self.pre.config.get("diffusion") or {}).get("objective")
        self.objective = None if self.exact else (objective or trained or self.diffusion.default_objective)
        if not self.exact and self.objective not in self.diffusion.objectives:
            raise ValueError(f"model_args objective {self.objective!r} is unknown; choose one of "
                             f"{self.diffusion.objectives}")
        self._multiple = getattr(self.diffusion, "block_size", None) or 1

    # ------------------------------------------------------------------ bounds

    def bounds(self, rows: list[Row]) -> list[Bound]:
        """The bound (nats) and its standard error for each row, in batches of ``batch_size`` rows; rows with
        nothing to score are exactly 0."""
        out = [Bound(0.0, 0.0)] * len(rows)
        todo = [i for i, r in enumerate(rows) if r.scored_from < len(r.ids)]
        for k in range(0, len(todo), self.batch_size):
            idx = todo[k:k + self.batch_size]
            padded = pad_rows([rows[i] for i in idx], self._multiple, self._device)
            generator = torch.Generator(self._device).manual_seed(seed_for(self.seed, idx[0]))
            with torch.no_grad():
                part = batch_nll(self.pre.model, self.diffusion, padded.tokens, padded.mask, self.objective,
                                 num_draws=self.num_draws, generator=generator, loss_mask=padded.loss_mask)
            for b, i in enumerate(idx):
                out[i] = Bound(float(part.mean[b]), math.sqrt(float(part.variance[b])))
        return out

    def loglikelihood_bounds(self, requests) -> list[Bound]:
        """Per (context, continuation) request: the bound on -log p(continuation | context)."""
        rows = [pair_row(self.pre.tokenizer, *_args(req, i, "loglikelihood", 2), self.context, f"request {i}")
                for i, req in enumerate(requests)]
        return self.bounds(rows)

    def rolling_bounds(self, requests) -> list[Bound]:
        """Per (text,) request: the sum of the bounds of its windows (``requests.rolling_rows``), errors in
        quadrature (the windows' draws are independent)."""
        windows, owner = [], []
        for i, req in enumerate(requests):
            (text,) = _args(req, i, "loglikelihood_rolling", 1)
            rows = rolling_rows(encode(self.pre.tokenizer, text, f"request {i}"), self.context)
            windows += rows
            owner += [i] * len(rows)
        sums = [[0.0, 0.0] for _ in requests]
        for i, bound in zip(owner, self.bounds(windows), strict=True):
            sums[i][0] += bound.nll
            sums[i][1] += bound.stderr ** 2
        return [Bound(nll, math.sqrt(var)) for nll, var in sums]

    # ------------------------------------------------------------------ the LM interface

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(-bound, False) per request: a Monte Carlo estimate of a *lower bound* on log p(continuation |
        context) in nats (exact for the AR baseline); ``is_greedy`` is always False."""
        return [(-b.nll, False) for b in self.loglikelihood_bounds(requests)]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """-bound of each whole text: non-overlapping windows of the model's context, their bounds summed."""
        return [-b.nll for b in self.rolling_bounds(requests)]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Per (context, gen_kwargs) request: the context pinned as a clean prefix (a ``Condition``; the AR
        baseline continues it left to right), ``max_gen_toks`` tokens drawn by ``diffusion.sample``, decoded and
        cut at the first ``until`` string."""
        jobs = [(*_args(req, i, "generate_until", 2),) for i, req in enumerate(requests)]
        return generate(self, jobs)


def _args(request, index: int, kind: str, arity: int) -> tuple:
    """An ``Instance``'s (or a bare tuple's) arguments, checked: a request of another type, or arguments of the
    wrong shape, is a one-line ValueError."""
    request_type = getattr(request, "request_type", kind)
    if request_type != kind:
        raise ValueError(f"request {index}: a {request_type!r} request was handed to {kind}; "
                         "discdiff answers loglikelihood, loglikelihood_rolling and generate_until")
    args = request.args if hasattr(request, "args") else request
    args = args if isinstance(args, tuple) else (args,)
    text_args = args[:1] if kind == "generate_until" else args
    if len(args) != arity or not all(isinstance(a, str) for a in text_args):
        raise ValueError(f"request {index}: {kind} takes {SHAPES[kind]}, got {args!r:.200}")
    return args
