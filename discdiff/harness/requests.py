"""Requests as token rows: the text -> ids side of the lm-evaluation-harness adapter (no lm_eval import).

A *row* is one sequence the estimator scores: ``Row(ids, scored_from)``, positions ``>= scored_from`` scored
(the loss mask), the ones before clean context (never noised, always visible). So

    loglikelihood(context, continuation)  ->  Row(last `context` ids of context + continuation, len(context ids))
    loglikelihood_rolling(text)           ->  non-overlapping windows of `context` ids; the last window is
                                              filled out leftward with context so it holds `context` ids

``pad_rows`` stacks rows to tokens [B, L] with the attention mask (False on pads) and the loss mask [B, L].
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Row", "PaddedRows", "cut_at_stop", "encode", "pad_rows", "pair_row", "rolling_rows"]


class Row(NamedTuple):
    """One scored sequence: ``ids`` (at most the model's context), positions ``>= scored_from`` scored."""

    ids: list[int]
    scored_from: int


class PaddedRows(NamedTuple):
    """Rows stacked: ``tokens`` Long[B, L] (pads are id 0), ``mask`` Bool[B, L] True on real tokens,
    ``loss_mask`` Bool[B, L] True on scored tokens (inside ``mask``)."""

    tokens: Tensor
    mask: Tensor
    loss_mask: Tensor


def encode(tokenizer, text: str, where: str) -> list[int]:
    """``tokenizer.encode(text)``; a string it cannot encode (a character tokenizer and an unseen character)
    is a one-line ValueError that says which request and names the character (the tokenizer's own words)."""
    try:
        return list(tokenizer.encode(text))
    except (ValueError, KeyError) as e:
        raise ValueError(f"{where}: the model's tokenizer cannot encode this text: {e}") from None


def pair_row(tokenizer, context: str, continuation: str, max_len: int, where: str) -> Row:
    """(context, continuation) as one row: ids of ``context + continuation`` split where the context's own
    ids end (lm-eval's rule: trailing spaces of the context move to the continuation), then the last
    ``max_len`` ids kept. A continuation longer than ``max_len`` ids cannot be scored whole: ValueError."""
    spaces = len(context) - len(context.rstrip(" "))
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = encode(tokenizer, context + continuation, where)
    head = encode(tokenizer, context, where) if context else []
    if whole[:len(head)] != head:  # a merge across the boundary (BPE): encode the two parts apart
        whole = head + encode(tokenizer, continuation, where)
    n_cont = len(whole) - len(head)
    if n_cont > max_len:
        raise ValueError(f"{where}: the continuation is {n_cont} tokens, longer than the model's context "
                         f"{max_len}; it cannot be scored whole")
    kept = whole[-max_len:]
    return Row(kept, len(kept) - n_cont)


def rolling_rows(ids: list[int], max_len: int) -> list[Row]:
    """Non-overlapping windows of ``max_len`` ids covering ``ids`` once each; the last (short) one is filled
    out leftward with the tokens before it as clean context, as lm-eval's rolling windows are."""
    rows = []
    for start in range(0, len(ids), max_len):
        end = min(start + max_len, len(ids))
        left = max(0, end - max_len)
        rows.append(Row(ids[left:end], start - left))
    return rows


def pad_rows(rows: list[Row], multiple: int = 1, device=None) -> PaddedRows:
    """Rows right-padded (id 0, mask False) to the longest, rounded up to a multiple of ``multiple`` (a block
    model's block size)."""
    longest = max(max(len(r.ids) for r in rows), 1)
    length = -(-longest // multiple) * multiple
    tokens = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    loss_mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for b, row in enumerate(rows):
        n = len(row.ids)
        tokens[b, :n] = torch.tensor(row.ids, dtype=torch.long)
        mask[b, :n] = True
        loss_mask[b, row.scored_from:n] = True
    return PaddedRows(tokens.to(device), mask.to(device), loss_mask.to(device))


def cut_at_stop(text: str, until: list[str]) -> str:
    """``text`` up to the earliest occurrence of any stop string in ``until`` (all of it when none occurs)."""
    cuts = [i for i in (text.find(s) for s in until if s) if i >= 0]
    return text[:min(cuts)] if cuts else text
