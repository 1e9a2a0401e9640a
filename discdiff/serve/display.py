"""How the page draws a model's tokens: the modality of a tokenizer, each id's text, and starting examples."""

from __future__ import annotations

__all__ = ["EXAMPLES", "MODALITIES", "token_strings"]

# The modality decides how the page draws tokens; keyed by the tokenizer's `kind`.
MODALITIES = {"char": "text", "bpe": "text", "gpt2": "text", "protein": "protein", "dna": "dna", "pixels": "image"}

# Starting points offered on the page, per modality; only those the tokenizer can encode are shown.
EXAMPLES = {
    "text": [("infill", "To be, or {6} to be: that is the {8}.", None),
             ("infill", "to be or ___ to be", None),
             ("complete", "ROMEO:\n", 128),
             ("complete", "the ", 64),
             ("unconditional", "", 128)],
    "protein": [("infill", "MKTAYIAK{12}GLVEEL{8}W", None), ("complete", "M", 64), ("unconditional", "", 64)],
    "dna": [("infill", "ATG{30}TAA", None), ("complete", "TATAAA", 64), ("unconditional", "", 64)],
    "image": [("unconditional", "", None)],
    "ids": [("unconditional", "", 64)],
}


def token_strings(tokenizer, modality: str, vocab: int) -> list[str]:
    """How each of the ``vocab`` clean ids is drawn on the page: its text (a character, a BPE piece, a special
    token's name) or, for pixels, its grey level."""
    if modality == "image":
        import numpy as np

        every_id = np.repeat(np.arange(vocab)[:, None], tokenizer.height * tokenizer.width, axis=1)  # (V, H*W)
        return [str(g) for g in tokenizer.decode(every_id)[:, 0, 0].tolist()]  # each id's grey level
    if tokenizer is None:
        return [str(i) for i in range(vocab)]
    out = []
    for i in range(vocab):
        try:
            out.append(tokenizer.decode([i]))
        except ValueError:
            out.append(f"<{i}>")
    return out
