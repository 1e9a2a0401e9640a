import pytest

pytest.importorskip("tokenizers")

from discdiff.data import ByteBPETokenizer, GPT2Tokenizer, load_tokenizer  # noqa: E402

CORPUS = ["the cat sat on the mat. " * 20, "def f(x):\n    return x * 2\n" * 10, "naïve café — 日本語"]


def test_byte_bpe_roundtrips_anything_and_restores_exactly(tmp_path):
    tok = ByteBPETokenizer.train(CORPUS, vocab_size=300, specials=("pad", "eos"))
    assert 258 < tok.vocab_size <= 300 and tok.special_tokens == {"pad": 0, "eos": 1}
    text = "the mat — unseen ünïcödé 🙂 and a literal <|eos|>\r\n\t"
    ids = tok.encode(text)
    assert tok.eos_id not in ids  # specials never come from input text
    assert tok.decode(ids) == text
    assert len(tok.encode("the cat sat on the mat.")) < len("the cat sat on the mat.")
    back = load_tokenizer(tok.save(tmp_path / "bpe"))
    assert type(back) is ByteBPETokenizer
    assert back.encode(text) == ids and back.special_tokens == tok.special_tokens
    assert back.decode([1]) == "<|eos|>"


def test_gpt2_from_hand_made_files(fixtures, tmp_path):
    d = fixtures / "gpt2_tiny"
    tok = GPT2Tokenizer.from_files(d / "encoder.json", d / "vocab.bpe")
    assert tok.vocab_size == 263 and tok.eos_id == 262
    assert tok.encode("hello the") == [261, 259]
    assert tok.decode(tok.encode("hello there, héllo!")) == "hello there, héllo!"
    back = load_tokenizer(tok.save(tmp_path / "gpt2"))
    assert type(back) is GPT2Tokenizer and back.encode("hello the") == [261, 259]
    assert (tmp_path / "gpt2" / "vocab.bpe").read_bytes() == (d / "vocab.bpe").read_bytes()


def test_gpt2_rejects_a_vocabulary_without_all_bytes(tmp_path):
    (tmp_path / "encoder.json").write_text('{"a": 0, "b": 1}')
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\na b\n")
    with pytest.raises(ValueError, match="byte symbols"):
        GPT2Tokenizer.from_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
