"""Training-time validation: the estimator `discdiff eval` uses, on a fixed, seeded spread of windows."""

import json
import math

import numpy as np

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
