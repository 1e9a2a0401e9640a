import numpy as np
import pytest

from discdiff.data import TokenFile, TokenWriter


def test_roundtrip_records_labels_and_dtype(tmp_path):
    with TokenWriter(tmp_path / "train", vocab_size=300, layout="records", tokenizer_dir=tmp_path / "tok") as w:
        w.add([1, 2, 3], label=4)
        w.add(np.array([299]), label=7)
    data = TokenFile.open(tmp_path / "train.json")
    assert data.tokens.dtype == np.uint16 and data.num_records == 2
    assert data.record(0).tolist() == [1, 2, 3] and data.record(1).tolist() == [299]
    assert data.labels.tolist() == [4, 7] and data.layout == "records"
    assert data.tokenizer_dir == (tmp_path / "tok").resolve()


def test_large_vocab_uses_uint32(tmp_path):
    with TokenWriter(tmp_path / "s", vocab_size=70_000, layout="stream", tokenizer_dir=tmp_path) as w:
        w.add([69_999, 0])
    assert TokenFile.open(tmp_path / "s").tokens.dtype == np.uint32


def test_rejects_bad_ids_and_truncated_files(tmp_path):
    w = TokenWriter(tmp_path / "s", vocab_size=10, layout="stream", tokenizer_dir=tmp_path)
    with pytest.raises(ValueError, match="ids must lie"):
        w.add([3, 10])
    w.add([1, 2, 3])
    w.close()
    (tmp_path / "s.bin").write_bytes((tmp_path / "s.bin").read_bytes()[:-2])
    with pytest.raises(ValueError, match="truncated"):
        TokenFile.open(tmp_path / "s.json")


def test_small_vocabularies_pack_into_bytes_and_old_uint16_files_still_open(tmp_path):
    with TokenWriter(tmp_path / "new", vocab_size=256, layout="stream", tokenizer_dir=tmp_path) as w:
        w.add([0, 255, 7])
    new = TokenFile.open(tmp_path / "new")
    assert new.tokens.dtype == np.uint8 and (tmp_path / "new.bin").stat().st_size == 3
    assert new.tokens.tolist() == [0, 255, 7]
    with TokenWriter(tmp_path / "old", vocab_size=257, layout="stream", tokenizer_dir=tmp_path) as w:
        w.add([0, 255, 7])  # 257 ids: two bytes each, as every file under 65,537 ids was before
    header = (tmp_path / "old.json").read_text().replace('"vocab_size": 257', '"vocab_size": 16')
    (tmp_path / "old.json").write_text(header)
    old = TokenFile.open(tmp_path / "old")
    assert old.tokens.dtype == np.uint16 and old.vocab_size == 16 and old.tokens.tolist() == [0, 255, 7]
