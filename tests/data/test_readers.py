import gzip

import pytest

from discdiff.data import DataError, MissingFileError
from discdiff.data.readers import collect_files, is_fasta, read_documents, read_fasta, read_utf8

PROTEIN = "ACDEFGHIKLMNPQRSTVWYBZXUO"


def test_missing_and_empty_files_are_value_errors(tmp_path):
    with pytest.raises(MissingFileError, match="no such file") as info:
        read_utf8(tmp_path / "absent.txt")
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty.txt: file is empty"):
        read_utf8(tmp_path / "empty.txt")


def test_non_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("line one\nline two\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt:3: bytes are not UTF-8 \(byte 0xe9"):
        read_utf8(path)


def test_jsonl_documents_and_errors(tmp_path, fixtures):
    docs = read_documents(fixtures / "sample.jsonl")
    assert [d.text[:5] for d in docs] == ["The f", "A sec", "Third"]
    assert docs[2].where.endswith("sample.jsonl:4")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: .*string `text`"):
        read_documents(bad)
    bad.write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        read_documents(bad)


def test_fasta_records_gzip_case_and_stop(tmp_path, fixtures):
    records = read_fasta(fixtures / "sample_proteins.fasta", alphabet=PROTEIN, stop_char="*")
    assert len(records) == 4
    assert records[0].sequence.startswith("MKTAYIAK") and records[0].sequence.endswith("LEV")
    assert records[1].sequence == "MKVLAAGIVGLLSLSA"
    assert records[3].where.endswith("sample_proteins.fasta:9")
    packed = tmp_path / "x.fa.gz"
    packed.write_bytes(gzip.compress((fixtures / "sample_proteins.fasta").read_bytes()))
    assert is_fasta(packed)
    assert [r.sequence for r in read_fasta(packed, PROTEIN, "*")] == [r.sequence for r in records]


@pytest.mark.parametrize("content, message", [
    (">a\nACGT\n>b\nACJT\n", r"x.fa:4:3: character 'J'"),
    ("ACGT\n>a\nACGT\n", r"x.fa:1: sequence before the first '>'"),
    (">a\n>b\nACGT\n", r"x.fa:1: record 'a' has no sequence"),
    (">a\nAC*GT\n", r"x.fa:1: '\*' inside record"),
    ("just text\n", r"sequence before"),
])
def test_fasta_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "x.fa"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_fasta(path, alphabet="ACGTN", stop_char="*")


def test_collect_files(tmp_path):
    with pytest.raises(MissingFileError):
        collect_files(tmp_path / "nope", is_fasta)
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(DataError, match="no files of a known kind"):
        collect_files(tmp_path, is_fasta)
