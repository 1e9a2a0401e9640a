import pytest

from discdiff.data import CharTokenizer, ProteinTokenizer
from discdiff.data.template import Blanks, Literal, TemplateError, parse_template, template_ids

TOK = CharTokenizer.from_texts(["To be, or not to be: {that} is the question_\\"])


def test_parse_merges_blank_runs_and_keeps_columns():
    assert parse_template("ab{2}c_", 100) == [Literal("ab", 1), Blanks(2), Literal("c", 6), Blanks(1)]
    assert parse_template("a__{3}_b", 100) == [Literal("a", 1), Blanks(6), Literal("b", 8)]
    assert parse_template("", 100) == []


def test_underscores_and_counts_are_the_same_blanks():
    counted = template_ids("To be, or {3} to be", TOK, None, 64)
    underscored = template_ids("To be, or ___ to be", TOK, None, 64)
    assert counted == underscored
    assert counted[:10] == TOK.encode("To be, or ") and counted[10:13] == [None] * 3
    assert counted[13:] == TOK.encode(" to be")


def test_escapes_are_literal():
    ids = template_ids(r"\_\{that\}\\ _", TOK, None, 64)
    assert ids == TOK.encode("_{that}\\ ") + [None]


def test_length_appends_blanks_for_completion_and_empty_template_is_unconditional():
    assert template_ids("To", TOK, 5, 64) == TOK.encode("To") + [None] * 3
    assert template_ids("", TOK, 4, 64) == [None] * 4
    assert template_ids("", None, 4, 64) == [None] * 4  # a checkpoint without tokenizer: blanks only


def test_protein_template_folds_case():
    tok = ProteinTokenizer()
    assert template_ids("mk_", tok, None, 10) == tok.encode("MK") + [None]


@pytest.mark.parametrize("template, length, message", [
    ("a{b", None, "column 2: '{' starts a blank count"),
    ("ab{}", None, "column 3: '{' starts a blank count"),
    ("a{0}", None, "allowed 1 to 64"),
    ("a{99999999999}", None, "allowed 1 to 64"),
    ("a\\n_", None, "column 2: '\\' escapes only"),
    ("a_\\", None, "column 3: '\\' escapes only"),
    ("To be, or not", None, "no blanks"),
    ("", None, "nothing to generate"),
    ("To be_", 3, "6 tokens long, more than the length 3"),
    ("_" * 65, None, "longer than the maximum length of 64"),
    ("To bé_", None, "character 'é' at column 5 is not in this model's char vocabulary"),
])
def test_bad_templates_say_where_and_why(template, length, message):
    with pytest.raises(TemplateError, match=None) as err:
        template_ids(template, TOK, length, 64)
    assert message in str(err.value)


def test_no_tokenizer_rejects_text():
    with pytest.raises(TemplateError, match="no tokenizer"):
        template_ids("ab_", None, None, 8)
