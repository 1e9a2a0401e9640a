"""The words-real fraction: whitespace-separated words of generated text found in a corpus, on exact inputs."""

import math

import pytest

from discdiff.data.tokenizer import CharTokenizer
from discdiff.evaluation.words import WordsReal, corpus_words, decode_text, split_words, words_real

CORPUS = corpus_words("To be, or not to be: that is\nthe question.")


def test_the_corpus_words_are_its_whitespace_separated_words():
    assert CORPUS == {"To", "be,", "or", "not", "to", "be:", "that", "is", "the", "question."}


def test_words_cut_by_the_window_edges_are_not_counted():
    assert split_words("be, or not to b") == ["or", "not", "to"]       # "be," touches the start, "b" the end
    assert split_words(" be, or not ") == ["be,", "or", "not"]          # whitespace at both edges: all whole
    assert split_words("be, or not", cut_edges=False) == ["be,", "or", "not"]
    assert split_words("question") == [] and split_words("   ") == []


def test_the_fraction_counts_exact_matches_over_all_texts():
    # "nat" and "Be," are not corpus words (case and spelling count); edge fragments are left out
    got = words_real(["xx or nat to Be, that yy", "\nthe question. is\n"], CORPUS)
    assert got == WordsReal(real=6, words=8)
    assert got.fraction == 0.75 and str(got) == "0.75 of words are real (6 of 8)"


def test_real_text_scores_one_and_no_words_is_nan():
    assert words_real([" To be, or not to be: "], CORPUS).fraction == 1.0
    assert math.isnan(words_real(["abc"], CORPUS).fraction)
    assert str(words_real([" " * 20], CORPUS)) == "no whole words to count (0 of 0)"  # not "nan of words ..."


def test_one_string_instead_of_a_list_is_refused():
    with pytest.raises(ValueError, match="not one string"):
        words_real("to be", CORPUS)


def test_an_end_of_sequence_token_separates_words():
    tok = CharTokenizer.from_texts(["to be"], specials=("eos",))
    ids = tok.encode("to") + [tok.eos_id] + tok.encode("be")
    assert tok.decode(ids) == "to<eos>be"
    assert decode_text(tok, ids) == "to\nbe"
    assert words_real([decode_text(tok, [tok.eos_id, *tok.encode("to"), tok.eos_id])], {"to"}) == WordsReal(1, 1)
