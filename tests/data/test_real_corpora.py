"""Checks on the real corpora, run only where they were prepared (`discdiff prepare NAME`, or
`python -c "from discdiff.data import prepare; prepare('shakespeare')"`) under $DISCDIFF_DATA_DIR or ./data.
They never download: a corpus that is absent is skipped with the reason."""

import os
import warnings
from pathlib import Path

import pytest

from discdiff.data import Manifest, TokenLoader, TruncationWarning, available_corpora

DATA_DIR = Path(os.environ.get("DISCDIFF_DATA_DIR", "data"))

EXPECTED = {  # corpus: (vocab_size, train, validation, test records or documents); test is carved out of train
    "shakespeare": (85, 34, 4, 4),
    "proteins": (28, 18_223, 500, 467),
    "dna": (8, 45_000, 2_500, 2_500),
    "fashion-mnist": (16, 54_000, 10_000, 6_000),
    "python-docs": (8192, 398, 49, 50),
}


def prepared(name: str) -> Manifest:
    path = DATA_DIR / name / "manifest.json"
    if not path.is_file():
        pytest.skip(f"{name} is not prepared under {DATA_DIR}/ (run `discdiff prepare {name}`)")
    m = Manifest.load(path)
    if m.data.get("version", 0) < 3:
        pytest.skip(f"{name} under {DATA_DIR}/ was prepared before test splits (`discdiff prepare {name} --force`)")
    if m.data["options"] != available_corpora()[name].options:
        pytest.skip(f"{name} was prepared with non-default options {m.data['options']}")
    return m


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_prepared_corpus_matches_the_published_counts(name):
    m = prepared(name)
    m.verify(checksums=False)
    stats = m.data["stats"]
    count = "records" if m.layout == "records" else "documents"
    counts = tuple(stats[split][count] for split in ("train", "validation", "test"))
    assert (m.vocab_size, *counts) == EXPECTED[name]
    context = {"fashion-mnist": 784, "proteins": 1024, "dna": 512}.get(name, 256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # proteins: some are longer than 1024
        ds = m.dataset("validation", context=context, **({"long_records": "error"} if name == "dna" else {}))
    batch = next(iter(TokenLoader(ds, batch_size=4, shuffle=False)))
    assert batch.tokens.shape == (4, context) and int(batch.tokens.max()) < m.vocab_size
