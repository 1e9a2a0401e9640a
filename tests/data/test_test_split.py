"""The held-out test split (issue 15): carved out of what was train, so validation is exactly what it was;
the three splits are disjoint and together are the corpus; a corpus without one says why and what to run."""

import json
import math

import numpy as np
import pytest

from discdiff.data import prepare
from discdiff.data.build import every_nth, hold_out_test, split_documents
from discdiff.data.readers import Document
from discdiff.data.splits import open_split


def old_validation(items, every):
    """The validation rule before test splits existed, written out: item i when i % every == every - 1."""
    return [x for i, x in enumerate(items) if i % every == every - 1]


@pytest.mark.parametrize("every", [2, 3, 4, 5, 10, 20])
@pytest.mark.parametrize("n", [0, 1, 4, 9, 10, 37, 100])
def test_every_nth_keeps_validation_and_carves_test_from_train(every, n):
    items = list(range(n))
    splits = every_nth(items, every)
    assert splits["validation"] == old_validation(items, every)
    test = splits.get("test", [])
    assert test == [i for i in items if every >= 3 and i % every == every // 2 - 1]
    assert sorted(splits["train"] + splits["validation"] + test) == items  # disjoint, and the whole corpus
    assert set(splits) == ({"train", "validation", "test"} if test else {"train", "validation"})
    if every >= 3 and n >= every:
        assert splits["train"]  # a test split never takes the whole of train


def test_every_tenth_is_validation_and_the_fifth_of_ten_is_test():
    splits = every_nth(list(range(1, 43)), 10)  # 42 works, counted from 1
    assert splits["validation"] == [10, 20, 30, 40] and splits["test"] == [5, 15, 25, 35]
    assert every_nth(list(range(5)), 0) == {"train": [0, 1, 2, 3, 4]}
    with pytest.raises(ValueError, match="validation_every must be 0"):
        every_nth([1, 2], 1)


@pytest.mark.parametrize("every", [3, 10, 40])
def test_hold_out_test_splits_train_only(every):
    items = list(range(250))
    parts = hold_out_test(items, every)
    assert parts["test"] == items[every // 2 - 1::every]
    assert sorted(parts["train"] + parts["test"]) == items and not set(parts["train"]) & set(parts["test"])
    assert hold_out_test(items, 0) == {"train": items}
    with pytest.raises(ValueError, match="test_every must be 0 .* or >= 3"):
        hold_out_test(items, 2)


def test_few_documents_hold_out_line_tails_validation_unchanged():
    texts = ["".join(f"line {j} of doc {d}\n" for j in range(n)) for d, n in enumerate([1, 2, 3, 7, 25])]
    docs = [Document(t, f"doc{d}") for d, t in enumerate(texts)]
    splits = split_documents(docs, 10)
    by_doc = {k: {d.where.split(" ")[0]: d.text for d in v} for k, v in splits.items()}
    for d, text in enumerate(texts):
        lines = text.rstrip("\n").split("\n")
        k = math.ceil(len(lines) / 10) if len(lines) > 1 else 0  # the old rule, written out
        assert by_doc["validation"].get(f"doc{d}", "") == "\n".join(lines[len(lines) - k:] if k else [])
        test = by_doc["test"].get(f"doc{d}")
        expected_test = lines[len(lines) - 2 * k:len(lines) - k] if len(lines) > 2 * k else []
        assert (test.split("\n") if test else []) == expected_test  # the k lines just before the tail
        pieces = [by_doc["train"][f"doc{d}"], test, by_doc["validation"].get(f"doc{d}")]
        assert "\n".join(p for p in pieces if p) == text.rstrip("\n")  # nothing lost, nothing twice
    assert by_doc["test"] == {"doc2": "line 1 of doc 2", "doc3": "line 5 of doc 3",
                              "doc4": "line 19 of doc 4\nline 20 of doc 4\nline 21 of doc 4"}


def _corpus(tmp_path, n):
    text = tmp_path / f"docs{n}"
    text.mkdir()
    for i in range(n):
        (text / f"doc{i:02d}.txt").write_text(f"document {i} says {'ab' * (i + 1)}\n")
    return text


def _documents(manifest, split):
    """The documents of a prepared split, decoded (each one ends with EOS)."""
    tok = manifest.tokenizer()
    ids = open_split(str(manifest.root), split, context=1, random_offset=False).dataset.data.tokens
    return tok.decode(np.asarray(ids).tolist()).split("<eos>")[:-1]


def test_a_prepared_corpus_has_three_disjoint_splits_that_make_the_corpus(tmp_path, capsys):
    m = prepare(str(_corpus(tmp_path, 23)), tmp_path / "data", verbose=True)
    assert "no test split" not in capsys.readouterr().err
    docs = {s: _documents(m, s) for s in ("train", "validation", "test")}
    expected = [f"document {i} says {'ab' * (i + 1)}\n" for i in range(23)]  # a file's text, newline kept
    assert docs["validation"] == [expected[i] for i in (9, 19)] and docs["test"] == [expected[i] for i in (4, 14)]
    assert sorted(docs["train"] + docs["validation"] + docs["test"]) == sorted(expected)
    assert m.data["stats"]["test"]["sources"] == ["doc04.txt", "doc14.txt"]


def test_a_corpus_without_a_test_split_says_why_in_one_line(tmp_path, capsys):
    m = prepare(str(_corpus(tmp_path, 6)), tmp_path / "data", validation_every=2, verbose=True)
    assert set(m.splits) == {"train", "validation"}
    assert "no test split" in capsys.readouterr().err  # the notice at prepare time
    with pytest.raises(ValueError) as raised:
        open_split(str(m.root), "test", context=4)
    message = str(raised.value)
    assert "no 'test' split (has ['train', 'validation']): too few documents or records" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="no 'test' split"):
        m.dataset("test", context=4)


def test_an_older_preparation_without_test_names_the_fix_and_is_rebuilt(tmp_path, capsys):
    corpus = _corpus(tmp_path, 12)
    m = prepare(str(corpus), tmp_path / "data", verbose=False)
    data = json.loads(m.path.read_text())  # make it look like a version-2 preparation: no test split
    data["version"] = 2
    del data["splits"]["test"]
    m.path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as raised:
        open_split(str(m.root), "test", context=4)
    assert "prepared before discdiff held one out (manifest v2)" in str(raised.value)
    assert f"`discdiff prepare {corpus.resolve()} --data-dir {tmp_path / 'data'} --force`" in str(raised.value)
    again = prepare(str(corpus), tmp_path / "data", verbose=True)  # not reused: built again, with a test split
    assert "another version of discdiff (manifest v2)" in capsys.readouterr().err
    assert "test" in again.splits and again.data["version"] == 3
