"""`prepare` never serves stale data, never lets two inputs collide, and is never torn: real processes race
for one directory, one is killed mid-build, a build fails half way."""

import dataclasses
import functools
import hashlib
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
from archives import make_deb
from test_corpora import idx

from discdiff.data import DataError, Manifest, prepare
from discdiff.data.corpora import CORPORA

FORK = multiprocessing.get_context("fork")


def _text(m: Manifest) -> str:
    """The train split's text, decoded (a one-line file: the whole file, then EOS)."""
    return m.tokenizer().decode(m.dataset("train", context=1).data.tokens.tolist())


def _leftovers(data_dir) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_editing_the_input_prepares_it_again(tmp_path):
    corpus = tmp_path / "corp.txt"
    corpus.write_text("abc abc\nabc\n")
    first = prepare(str(corpus), tmp_path / "data", verbose=False)
    corpus.write_text("xyz xyz\nxyz\n")  # same name, new content: the old tokens are stale
    second = prepare(str(corpus), tmp_path / "data", verbose=False)
    assert second.root == first.root
    assert "xyz" in _text(second) and "abc" not in _text(second)
    assert second.data["inputs"][0]["sha256"] == hashlib.sha256(b"xyz xyz\nxyz\n").hexdigest()
    third = prepare(str(corpus), tmp_path / "data", verbose=False)
    assert third.data["created"] == second.data["created"] and third.data["seconds"] == second.data["seconds"]


def test_a_file_added_to_a_directory_prepares_it_again(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("aaa\n")
    prepare("text", tmp_path / "data", path=folder, verbose=False)
    (folder / "b.txt").write_text("bbb\n")
    m = prepare("text", tmp_path / "data", path=folder, verbose=False)
    assert len(m.data["inputs"]) == 2 and "bbb" in _text(m)


def test_two_files_of_one_name_never_collide(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "corp.txt").write_text("from folder a\n")
    (tmp_path / "b" / "corp.txt").write_text("from folder b\n")
    a = prepare(str(tmp_path / "a" / "corp.txt"), tmp_path / "data", verbose=False)
    b = prepare(str(tmp_path / "b" / "corp.txt"), tmp_path / "data", verbose=False)
    assert a.root != b.root and a.root.name.startswith("user-corp-") and b.root.name.startswith("user-corp-")
    assert _text(Manifest.load(a.root)) == "from folder a<eos>" and _text(b) == "from folder b<eos>"


def test_directory_names_follow_the_documented_rule():
    from discdiff.data.store import corpus_dirname

    fm = CORPORA["fashion-mnist"].options
    assert corpus_dirname("fashion-mnist", fm, fm) == "fashion-mnist"
    assert corpus_dirname("fashion-mnist", {**fm, "size": 14}, fm) == "fashion-mnist-size14"
    assert corpus_dirname("fashion-mnist", {**fm, "size": 14, "levels": 8}, fm) == "fashion-mnist-levels8-size14"
    assert corpus_dirname("fashion-mnist", {**fm, "archive": "/x/y.deb"}, fm) == "fashion-mnist"
    sk = CORPORA["shakespeare"].options
    tokenizer_dir = "/runs/tok/dir"
    assert corpus_dirname("shakespeare", {**sk, "tokenizer": tokenizer_dir}, sk) == \
        "shakespeare-tokenizer" + hashlib.sha256(tokenizer_dir.encode()).hexdigest()[:8]


def _fashion_deb(tmp_path):
    rng = np.random.default_rng(0)
    root = "usr/share/datasets/fashion-mnist"
    files = {f"{root}/train-images-idx3-ubyte.gz": idx(rng.integers(0, 256, (4, 28, 28))),
             f"{root}/train-labels-idx1-ubyte.gz": idx(np.arange(4)),
             f"{root}/t10k-images-idx3-ubyte.gz": idx(rng.integers(0, 256, (2, 28, 28))),
             f"{root}/t10k-labels-idx1-ubyte.gz": idx(np.array([1, 2]))}
    return make_deb(tmp_path / "dataset-fashion-mnist_0_all.deb", files)


def test_each_fashion_mnist_size_keeps_its_own_directory(tmp_path):
    deb, data = _fashion_deb(tmp_path), tmp_path / "data"
    small = prepare("fashion-mnist", data, archive=deb, size=14, verbose=False)
    full = prepare("fashion-mnist", data, archive=deb, verbose=False)
    assert (small.root.name, full.root.name) == ("fashion-mnist-size14", "fashion-mnist")
    assert Manifest.load(small.root).dataset("train", context=196).data.lengths.tolist() == [196] * 4
    assert full.dataset("train", context=784).data.lengths.tolist() == [784] * 4
    fix = r"`discdiff prepare fashion-mnist --data-dir \S+ --opt archive=\S+ --opt size=14`"
    with pytest.raises(ValueError, match=r"28x28 images \(784 tokens each\), not 196; set the context to 784.*" + fix):
        full.dataset("train", context=196)
    assert full.dataset("train", context=784).data.tokens.dtype == np.uint8  # 16 levels fit in a byte


def test_fasta_alphabet_is_detected_or_refused(tmp_path, capsys):
    (tmp_path / "genes.fna").write_text(">g\nACGTTGCA\n")
    (tmp_path / "reads.fasta").write_text(">r1\nacgtn\n>r2\nGGCCA\n")
    (tmp_path / "prot.fasta").write_text(">p\nMKTAYIAK\n")
    (tmp_path / "mixed.fasta").write_text(">r\nACGT\n>p\nMKTAYIAK\n")
    (tmp_path / "rna.fasta").write_text(">r\nACGUUGCA\n")
    data = tmp_path / "data"
    for name, kind in (("genes.fna", "dna"), ("reads.fasta", "dna"), ("prot.fasta", "protein")):
        m = prepare(str(tmp_path / name), data, validation_every=0, verbose=False)
        assert m.tokenizer().kind == kind and m.data["source"]["alphabet"] == kind
    assert "FASTA alphabet dna (all 2 records hold only A C G T N)" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"mixed.fasta:3: 1 of 2 records hold only A C G T N.*--opt alphabet=dna"):
        prepare(str(tmp_path / "mixed.fasta"), data, verbose=False)
    with pytest.raises(DataError, match="look like RNA"):
        prepare(str(tmp_path / "rna.fasta"), data, verbose=False)
    forced = prepare(str(tmp_path / "reads.fasta"), data, alphabet="protein", validation_every=0, verbose=False)
    assert forced.tokenizer().kind == "protein" and "-alphabetprotein-" in forced.root.name


def test_a_failed_build_leaves_the_previous_preparation_whole(tmp_path):
    corpus, data = tmp_path / "corp.txt", tmp_path / "data"
    corpus.write_text("good text\n")
    good = prepare(str(corpus), data, verbose=False)
    corpus.write_bytes(b"bad \xff text\n")
    with pytest.raises(DataError, match="not UTF-8"):
        prepare(str(corpus), data, force=True, verbose=False)
    again = Manifest.load(good.root)
    again.verify()
    assert _text(again) == "good text<eos>" and _leftovers(data) == []


def _prepare_when_told(corpus, data, go, results):
    while not os.path.exists(go):
        time.sleep(0.002)
    m = prepare(str(corpus), data)
    results.put((str(m.root), m.data["created"], m.data["seconds"]))


def test_concurrent_prepares_build_once_and_agree(tmp_path, capfd):
    corpus, data, go = tmp_path / "big.txt", tmp_path / "data", tmp_path / "go"
    corpus.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(40_000)))
    results = FORK.Queue()
    procs = [FORK.Process(target=_prepare_when_told, args=(corpus, data, go, results)) for _ in range(4)]
    for p in procs:
        p.start()
    go.touch()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    answers = {results.get(timeout=5) for _ in procs}
    assert len(answers) == 1  # the same directory, built once (same creation time and build seconds)
    err = capfd.readouterr().err
    assert "another process is preparing it; waiting" in err
    assert err.count("text: preparing") == 1 and err.count("already prepared") == 3
    Manifest.load(next(iter(answers))[0]).verify()
    assert _leftovers(data) == []


def _build_then_die(corpus, data):
    original = CORPORA["text"].build

    @functools.wraps(original)  # keeps the options `prepare` reads from the signature
    def slow_build(*args, **options):
        built = original(*args, **options)
        os.kill(os.getpid(), signal.SIGKILL)  # dies mid-preparation, its lock still held until now
        return built

    CORPORA["text"] = dataclasses.replace(CORPORA["text"], build=slow_build)
    prepare(str(corpus), data, force=True, verbose=False)


def test_a_killed_prepare_leaves_the_old_directory_and_no_lock(tmp_path):
    corpus, data = tmp_path / "corp.txt", tmp_path / "data"
    corpus.write_text("first version\n")
    first = prepare(str(corpus), data, verbose=False)
    corpus.write_text("second version\n")
    killed = FORK.Process(target=_build_then_die, args=(corpus, data))
    killed.start()
    killed.join(timeout=60)
    assert killed.exitcode == -signal.SIGKILL
    Manifest.load(first.root).verify()  # still whole: the build went to a temporary directory
    assert _text(Manifest.load(first.root)) == "first version<eos>"
    assert _leftovers(data)  # the dead process's temporary directory ...
    second = prepare(str(corpus), data, verbose=False)  # ... is cleared by the next holder of the lock
    assert _text(second) == "second version<eos>" and _leftovers(data) == []


def test_a_small_file_holds_out_its_last_lines_and_is_readable_by_others(tmp_path):
    corpus = tmp_path / "story.txt"
    corpus.write_text("first line\nsecond line\nthird line\n")  # the final newline is not a fourth, empty line
    m = prepare(str(corpus), tmp_path / "data", verbose=False)
    tok = m.tokenizer()
    assert tok.decode(m.dataset("validation", context=1).data.tokens.tolist()) == "third line<eos>"
    assert tok.decode(m.dataset("test", context=1).data.tokens.tolist()) == "second line<eos>"  # before the tail
    assert _text(m) == "first line<eos>"
    umask = os.umask(0)
    os.umask(umask)
    assert m.root.stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir would make it, not a private temp dir


def test_a_directory_that_is_not_a_prepared_corpus_is_never_replaced(tmp_path):
    corpus, data = tmp_path / "corp.txt", tmp_path / "data"
    corpus.write_text("some text\n")
    target = data / corpus_dirname_of(corpus)
    target.mkdir(parents=True)
    (target / "notes.md").write_text("mine")
    with pytest.raises(ValueError, match="exists but is not a prepared corpus .*move it away"):
        prepare(str(corpus), data, verbose=False)
    assert (target / "notes.md").read_text() == "mine"


def corpus_dirname_of(path) -> str:
    return f"user-{path.stem}-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
