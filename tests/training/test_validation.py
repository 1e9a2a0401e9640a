"""Training-time validation: the estimator `discdiff eval` uses, on a fixed, seeded spread of windows."""

import json
import math

import numpy as np
import torch
from train_helpers import tiny_config

from discdiff.data.packing import TokenWriter
from discdiff.data.tokenizer import CharTokenizer, PixelTokenizer
from discdiff.evaluation import EvalData, diffusion_nll
from discdiff.evaluation.conditional import PairBatches, conditional_nll
from discdiff.evaluation.likelihood import real_tokens
from discdiff.training import Trainer


class _Recording:
    """A validation dataset that remembers which examples were read."""

    def __init__(self, dataset):
        self.dataset, self.seen = dataset, []

    def __len__(self):
        return len(self.dataset)

    def get(self, indices, epoch_seed, randomize=True):
        self.seen.append(np.array(indices))
        return self.dataset.get(indices, epoch_seed, randomize)


def test_validation_windows_are_spread_over_the_split_and_fixed(tiny):
    trainer = Trainer(tiny("batch_size=8", "eval_batches=4"))
    trainer.data.valid = recorder = _Recording(trainer.data.valid)
    first = trainer.evaluate()
    windows = np.concatenate(recorder.seen)
    quarters = np.histogram(windows, bins=4, range=(0, len(recorder)))[0]
    assert (quarters > 0).all(), quarters  # not the split's opening windows only
    assert len(set(windows.tolist())) == len(windows) == first.sequences == 8  # 4 forwards of 2 windows x 4 draws
    assert first.split_sample.population == len(recorder) == 64 and first.draws == 4
    assert math.isfinite(first.stderr_nats_per_token) and first.stderr_nats_per_token > 0
    lo, hi = first.ci_nats_per_token
    assert lo < first.nats_per_token < hi
    recorder.seen.clear()
    again = trainer.evaluate()  # the same windows and draws: the curve compares like with like
    assert np.array_equal(np.concatenate(recorder.seen), windows)
    assert again.nats_per_token == first.nats_per_token


def test_validation_logs_the_bound_with_its_standard_error(tiny, tmp_path):
    Trainer(tiny("steps=2", "batch_size=8")).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (val,) = [r for r in rows if "val_loss" in r]
    assert val["val_stderr"] > 0 and val["val_windows"] > 0
    assert val["val_bits_per_token"] == val["val_loss"] / math.log(2)


def test_ar_validation_is_exact_on_spread_windows(tiny):
    trainer = Trainer(tiny("batch_size=8", "eval_batches=2", "diffusion.kind=ar"))
    res = trainer.evaluate()
    assert res.exact and res.estimator == "exact_ar" and res.sequences == 16
    assert res.mc_stderr_nats_per_token == 0 and res.stderr_nats_per_token > 0
    assert res.split_sample.indices.max() >= 32  # reaches the second half of the 64 windows


# ------------------------------------------------------------------ conditional and record data (issue 12)

def _spy(trainer):
    """Record every call the validation makes into the model: (x_t, label, loss-free inputs)."""
    seen, model = [], trainer.model

    class Spy(torch.nn.Module):
        config = model.config

        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x_t, sigma_bar=None, padding_mask=None, label=None, **kw):
            seen.append((x_t.clone(), label))
            return self.inner(x_t, sigma_bar, padding_mask=padding_mask, label=label, **kw)

    trainer.model = Spy()
    return seen


def _pairs(tmp_path, n=40):
    """Prompt-response pairs over a character vocabulary (EOS = 0), responses of 1-3 tokens."""
    tok = CharTokenizer.from_texts(["abcdxyz"], specials=("eos",))
    tok.save(tmp_path / "tok")
    lengths = []
    for split in ("train", "validation"):
        with TokenWriter(tmp_path / split, tok.vocab_size, "pairs", tmp_path / "tok") as w:
            for i in range(n):
                prompt, response = tok.encode("ab" if i % 2 else "abc"), tok.encode("xyz"[: 1 + i % 3])
                w.add(np.asarray(prompt + response), prompt_length=len(prompt))
                lengths.append((len(prompt), len(response)))
    return tmp_path, lengths[n:]


def test_validation_on_pairs_scores_the_response_per_real_token_with_the_prompt_clean(tmp_path):
    """Fails on the old code, which noised the prompt, scored it, and counted every position as a token."""
    data, lengths = _pairs(tmp_path)
    trainer = Trainer(tiny_config(tmp_path / "run", f"data.train={data}/train.json",
                                  f"data.valid={data}/validation.json", "data.vocab_size=null", "data.context=8",
                                  "batch_size=8", "eval_batches=2"))
    seen = _spy(trainer)
    res = trainer.evaluate()
    drawn = res.split_sample.indices
    prompts = np.array([p for p, _ in lengths])[drawn]
    responses = np.array([r for _, r in lengths])[drawn]
    assert res.tokens == int((responses + 1).sum())  # each response and its one EOS, not the EOS padding
    assert res.padding_tokens == int((8 - prompts - responses - 1).sum())
    batch = trainer.data.valid.get(drawn, 0, randomize=False)
    assert len(seen) == 2 * 4  # 2 chunks of 2 windows x 4 draws
    for i, (x_t, _) in enumerate(seen):
        rows = slice(i // 4 * 2, i // 4 * 2 + 2)
        prompt = ~batch.loss_mask[rows]
        assert torch.equal(x_t[prompt], batch.tokens[rows][prompt])  # the prompt is never noised
    # what `discdiff eval` (conditional_nll) reports on chunk 0's pairs with chunk 0's seed: the same numbers
    trainer.model = trainer.model.inner
    first = trainer.data.valid.get(drawn[:2], 0, randomize=False)
    pairs = PairBatches([first])
    pairs.eos_id = trainer.data.valid.eos_id
    ref = conditional_nll(trainer.model, trainer.diffusion, pairs, num_draws=res.draws, seed=_eval_seed(trainer, 0))
    assert torch.equal(ref.per_sequence, res.per_sequence[:2]) and torch.equal(ref.lengths, res.lengths[:2])
    assert res.estimator == ref.estimator == "t_dce_conditional"
    trainer.close()


def _eval_seed(trainer, chunk):
    from discdiff.training.distributed import seed_for
    from discdiff.training.trainer import EVAL

    return seed_for(trainer.cfg.seed, EVAL, chunk)


def _labelled(tmp_path, n=48):
    """2x2 images of 4 grey levels, labels 0..2, train and validation."""
    tok = PixelTokenizer(4, 2, 2)
    tok.save(tmp_path / "tok")
    for split in ("train", "validation"):
        with TokenWriter(tmp_path / split, tok.vocab_size, "records", tmp_path / "tok",
                         label_names=["dark", "mid", "light"]) as w:
            for i in range(n):
                w.add(np.full(4, i % 3), i % 3)
    return tmp_path


def test_validation_of_a_class_conditional_model_conditions_on_the_labels(tmp_path):
    """Fails on the old code, which called the model without labels: -log p(x), not -log p(x | c)."""
    data = _labelled(tmp_path)
    trainer = Trainer(tiny_config(tmp_path / "run", f"data.train={data}/train.json",
                                  f"data.valid={data}/validation.json", "data.vocab_size=null", "data.context=4",
                                  "model.num_classes=3", "condition_dropout=0.2", "batch_size=8", "eval_batches=2"))
    seen = _spy(trainer)
    res = trainer.evaluate()
    labels = torch.from_numpy(trainer.data.valid.data.labels[res.split_sample.indices].astype(np.int64))
    got = [label for _, label in seen]
    assert len(got) == 2 * 4 and all(g is not None for g in got)  # 2 chunks of 2 windows x 4 draws
    for i, label in enumerate(got):  # each window's own class, never the null label
        assert torch.equal(label, labels[i // 4 * 2: i // 4 * 2 + 2])
    assert res.estimator == "t_dce_conditional"
    # `discdiff eval`'s estimator (evaluate -> diffusion_nll with the split's labels) on chunk 0, chunk 0's seed
    trainer.model = trainer.model.inner
    first = trainer.data.valid.get(res.split_sample.indices[:2], 0, randomize=False)
    data = EvalData([(first.tokens, first.mask)], labels=[first.labels])
    ref = diffusion_nll(trainer.model, trainer.diffusion, data, num_draws=res.draws, seed=_eval_seed(trainer, 0),
                        labels=True)
    assert torch.equal(ref.per_sequence, res.per_sequence[:2]) and ref.estimator == res.estimator
    plain = diffusion_nll(trainer.model, trainer.diffusion, data, num_draws=res.draws, seed=_eval_seed(trainer, 0))
    assert not torch.equal(plain.per_sequence, ref.per_sequence)  # the labels change the number
    trainer.close()


def test_validation_of_eos_records_counts_real_tokens(tmp_path):
    """Fails on the old code, which divided by every position (the EOS padding included)."""
    from discdiff.data import DNATokenizer

    tok_dir = DNATokenizer().save(tmp_path / "tok")
    rng = np.random.default_rng(0)
    bodies = {}
    for split in ("train", "validation"):
        bodies[split] = [rng.integers(3, 7, size=rng.integers(5, 20)) for _ in range(32)]
        with TokenWriter(tmp_path / "data" / split, 8, "records", tok_dir) as w:
            for body in bodies[split]:
                w.add(body)
    trainer = Trainer(tiny_config(tmp_path / "run", f"data.train={tmp_path}/data/train.json",
                                  f"data.valid={tmp_path}/data/validation.json", "data.vocab_size=null",
                                  "data.records=eos", "batch_size=8", "eval_batches=2"))
    res = trainer.evaluate()
    batch = trainer.data.valid.get(res.split_sample.indices, 0, randomize=False)
    layout = trainer.data.valid.record_layout()
    expected = real_tokens(batch.tokens, batch.mask, layout["eos_id"], layout["bos_id"])
    assert torch.equal(res.lengths, expected) and res.tokens < 32 * res.sequences
    trainer.close()
