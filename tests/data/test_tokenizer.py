import numpy as np
import pytest

from discdiff.data import (
    CharTokenizer,
    DNATokenizer,
    PixelTokenizer,
    ProteinTokenizer,
    load_tokenizer,
)


def test_char_roundtrip_and_exact_restore(tmp_path):
    tok = CharTokenizer.from_texts(["to be, or not to be\n", "that is the question"], specials=("eos",))
    assert tok.eos_id == 0 and tok.pad_id is None
    assert tok.vocab_size == 1 + len(set("to be, or not to be\nthat is the question"))
    ids = tok.encode("not to be")
    assert tok.decode(ids) == "not to be"
    assert tok.decode([tok.eos_id]) == "<eos>"
    back = load_tokenizer(tok.save(tmp_path / "tok"))
    assert type(back) is CharTokenizer and back.config() == tok.config()
    assert back.encode("question, be") == tok.encode("question, be")


def test_char_unknown_character_names_line_and_column():
    tok = CharTokenizer.from_texts(["abc\n"])
    with pytest.raises(ValueError, match=r"'z' \(line 2, column 3\)"):
        tok.encode("abc\nabz")
    with pytest.raises(ValueError, match="ids must lie"):
        tok.decode([99])


def test_protein_and_dna_alphabets_are_fixed():
    prot, dna = ProteinTokenizer(), DNATokenizer()
    assert (prot.pad_id, prot.bos_id, prot.eos_id, prot.vocab_size) == (0, 1, 2, 28)
    assert (dna.vocab_size, dna.encode("acgtn")) == (8, [3, 4, 5, 6, 7])
    assert prot.decode(prot.encode("mkBZXUO")) == "MKBZXUO"
    with pytest.raises(ValueError, match="'J'"):
        prot.encode("MKJ")
    with pytest.raises(ValueError, match="'U'"):
        dna.encode("ACGU")


def test_fixed_alphabet_restore_checks_alphabet(tmp_path):
    d = DNATokenizer().save(tmp_path / "dna")
    assert type(load_tokenizer(d)) is DNATokenizer
    cfg = (d / "discdiff_tokenizer.json").read_text().replace('"ACGTN"', '"ACGT"')
    (d / "discdiff_tokenizer.json").write_text(cfg.replace('"vocab_size": 8', '"vocab_size": 7'))
    with pytest.raises(ValueError, match="alphabet"):
        load_tokenizer(d)


def test_pixels_quantize_in_raster_order(tmp_path):
    tok = PixelTokenizer(levels=4, height=2, width=3)
    image = np.array([[0, 63, 64], [127, 128, 255]], dtype=np.uint8)
    ids = tok.encode(image)
    assert ids.tolist() == [0, 0, 1, 1, 2, 3]
    assert tok.decode(ids).tolist() == [[32, 32, 96], [96, 160, 224]]
    full = PixelTokenizer(256, 2, 3)
    assert np.array_equal(full.decode(full.encode(image)), image)
    batch = np.stack([image, image[::-1]])
    assert tok.encode(batch).shape == (2, 6)
    assert load_tokenizer(tok.save(tmp_path / "px")).config() == tok.config()
    with pytest.raises(ValueError, match="uint8"):
        tok.encode(image.astype(np.float32))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path)
    (tmp_path / "discdiff_tokenizer.json").write_text('{"kind": "nope", "format_version": 1}')
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        load_tokenizer(tmp_path)


def test_model_vocab_is_tokenizer_vocab_and_mask_is_appended():
    import discdiff as dd

    tok = ProteinTokenizer()
    graph = dd.Absorbing(vocab_size=tok.vocab_size)
    assert graph.num_states == tok.vocab_size + 1 and graph.mask_id == tok.vocab_size
