"""Prompt-response pairs: parsing plays, the JSONL format, and examples whose loss mask is not their
attention mask."""

import json

import numpy as np
import pytest

from discdiff.data import prepare
from discdiff.data.pairs import play_dialogue, read_pairs
from discdiff.data.readers import DataError

PLAY = """SCENE I. A street.

BANQUO.
What, can the devil speak true?

MACBETH.
[Aside.] The Thane of Cawdor lives: why do you dress me
In borrow'd robes?

[Exeunt.]

Lady Macbeth.
Out, damned spot!
"""


def test_a_play_gives_cue_to_next_speech_pairs():
    pairs = play_dialogue(PLAY, "macbeth")
    assert [(p.prompt, p.response) for p in pairs] == [
        ("BANQUO.\nWhat, can the devil speak true?\n\nMACBETH.\n",
         "The Thane of Cawdor lives: why do you dress me\nIn borrow'd robes?\n"),
        ("MACBETH.\nIn borrow'd robes?\n\nLady Macbeth.\n", "Out, damned spot!\n"),
    ]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prepared_pairs_pad_with_eos_and_score_only_the_response(tmp_path):
    src = _jsonl(tmp_path / "qa.jsonl", [{"prompt": "ab", "response": "c"}, {"prompt": "a", "response": "bcc"}])
    manifest = prepare(str(src), tmp_path / "data", verbose=False, validation_every=0)  # a path: resolves to pairs
    assert manifest.name == "pairs"
    tok = manifest.tokenizer()
    ds = manifest.dataset("train", context=6)
    batch = ds.get(np.arange(2), 0, randomize=False)
    eos = tok.eos_id
    assert batch.tokens[0].tolist() == tok.encode("abc") + [eos] * 3
    assert batch.mask.all()  # prompt, response and EOS padding are all real (attended to)
    assert batch.loss_mask.tolist() == [[False, False, True, True, True, True], [False, True, True, True, True, True]]


def test_text_jsonl_still_prepares_as_text(tmp_path):
    src = _jsonl(tmp_path / "docs.jsonl", [{"text": "hello"}, {"text": "world"}])
    assert prepare(str(src), tmp_path / "data", verbose=False, validation_every=0).name == "text"


def test_pairs_that_do_not_fit_are_left_out_with_a_warning(tmp_path):
    src = _jsonl(tmp_path / "qa.jsonl", [{"prompt": "ab", "response": "c"}, {"prompt": "abcabc", "response": "c"}])
    manifest = prepare(str(src), tmp_path / "data", verbose=False, validation_every=0)
    with pytest.warns(UserWarning, match="left out 1 of 2 pairs longer than context 5"):
        assert len(manifest.dataset("train", context=5)) == 1


@pytest.mark.parametrize("line, match", [
    ('{"prompt": "a"}', "string `prompt` and `response` fields"),
    ("not json", "not valid JSON"),
])
def test_bad_pair_lines_name_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "response": "b"}\n' + line + "\n")
    with pytest.raises(DataError, match=rf"bad.jsonl:2: .*{match}"):
        read_pairs(path)
