"""A transformers masked LM as a discdiff denoiser on the absorbing graph (Hugging Face in).

A masked language model (BERT, RoBERTa, DistilBERT, ModernBERT, ...) gives logits of the clean token at every
position of an input in which some tokens are its mask token: exactly a time-free masked-diffusion denoiser,
p_theta(x0^i = y | x_t) at the masked positions (the MDLM / DiffusionBERT / RADD observation). discdiff's
absorbing graph numbers MASK *last* (id V of V + 1 states); a tokenizer puts its mask token anywhere in its
N ids (BERT: 103 of 30522). ``TokenMap`` is the exact bijection between the two numberings:

    discdiff id d < m      <->  HF id d
    discdiff id d >= m     <->  HF id d + 1      (d < N - 1: the N - 1 clean tokens, in HF order)
    discdiff MASK = N - 1  <->  HF mask id m

so ``Absorbing(vocab_size=N - 1)`` has MASK = N - 1 and the wrapped network sees its own ids. Per position the
wrapper returns, over discdiff's N states,

    out[..., d] = logits_HF[..., hf(d)]    for clean d (large negative for suppressed tokens),
    out[..., N - 1] = large negative       (MASK is never a clean token; "denoiser" ignores that column),

so ``log_softmax(out[..., :N-1])`` is the model's distribution over clean tokens with its mask token's logit
removed and renormalised: the absorbing maths need p_theta(x0 = MASK) = 0. Special tokens that data cannot
contain (PAD, CLS, SEP, ids past the tokenizer's end) are suppressed by default: the bound stays a valid bound
(any distribution over clean tokens gives one), it only gets tighter, and samples hold no [PAD] / [CLS].
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from discdiff.categorical import NEG_INF
from discdiff.model_call import is_time_free

__all__ = ["MaskedLMDenoiser", "TokenMap"]


class TokenMap:
    """The bijection between a transformers vocabulary of ``hf_size`` ids with mask token ``mask_id`` and
    discdiff's absorbing numbering (clean tokens 0..N-2 in HF order, MASK = N - 1).

    ``to_hf`` LongTensor [N]: discdiff id -> HF id; ``to_discdiff`` LongTensor [N]: its inverse.
    """

    def __init__(self, hf_size: int, mask_id: int):
        if not isinstance(mask_id, int) or not 0 <= mask_id < hf_size:
            raise ValueError(f"mask token id {mask_id!r} is outside the model's {hf_size} input ids")
        ids = torch.arange(hf_size)
        self.hf_size, self.mask_id = hf_size, mask_id
        self.to_hf = torch.cat([ids[:mask_id], ids[mask_id + 1:], ids[mask_id:mask_id + 1]])  # (N,)
        self.to_discdiff = torch.empty_like(self.to_hf).scatter_(0, self.to_hf, ids)  # (N,)

    @property
    def vocab_size(self) -> int:
        """discdiff's clean vocabulary V = N - 1 (every HF id but the mask token)."""
        return self.hf_size - 1

    def encode(self, hf_ids) -> list[int]:
        return self.to_discdiff[torch.as_tensor(list(hf_ids), dtype=torch.long)].tolist()

    def decode(self, discdiff_ids) -> list[int]:
        return self.to_hf[torch.as_tensor(list(discdiff_ids), dtype=torch.long)].tolist()


def _forward_params(module: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return set()


class MaskedLMDenoiser(nn.Module):
    """``model(x_t [B, L], sigma_bar [B]) -> [B, L, N]`` clean-token logits from a transformers masked LM.

    Args:
        hf_model: a transformers model whose output (or its ``.logits``) is [B, L, W] token logits, W >= the
            ids the map covers (a narrower head leaves the missing ids suppressed).
        token_map: the ``TokenMap`` of its vocabulary and mask token.
        suppressed_hf_ids: HF ids never predicted (their logit set to ``NEG_INF``; finite, as DESIGN asks).
        shift_logits: the network is an AR-adapted diffusion LM (Dream) whose logits at position i - 1 predict
            token i: ``logits[:, i] := logits[:, i - 1]`` for i >= 1 (position 0 keeps its own; Dream's code
            requires that position, its BOS, to be unmasked).

    Time-free (``time_free = True``) unless the network takes ``sigma_bar`` itself (a discdiff model exported
    to transformers), in which case it gets it and the network's own declaration holds. ``padding_mask``
    becomes the HF ``attention_mask``.
    """

    def __init__(self, hf_model: nn.Module, token_map: TokenMap, suppressed_hf_ids=(), shift_logits: bool = False):
        super().__init__()
        self.hf_model = hf_model
        self.token_map = token_map
        self.shift_logits = bool(shift_logits)
        params = _forward_params(hf_model)
        self._passes_sigma = "sigma_bar" in params
        self.time_free = bool(is_time_free(hf_model)) if self._passes_sigma else True
        self.register_buffer("to_hf", token_map.to_hf.clone(), persistent=False)
        suppressed = torch.zeros(token_map.hf_size, dtype=torch.bool)
        ids = [i for i in suppressed_hf_ids if i != token_map.mask_id]
        if any(not 0 <= i < token_map.hf_size for i in ids):
            raise ValueError(f"suppressed ids must lie in [0, {token_map.hf_size}), got {sorted(ids)}")
        suppressed[ids] = True
        # (N - 1,) in discdiff's clean order: True where the clean token is never predicted
        self.register_buffer("suppressed", suppressed[token_map.to_hf[:-1]], persistent=False)
        if bool(self.suppressed.all()):
            raise ValueError("every token is suppressed: nothing left to predict")

    def forward(self, x_t: Tensor, sigma_bar: Tensor | None = None, padding_mask: Tensor | None = None) -> Tensor:
        if x_t.dtype not in (torch.long, torch.int32) or x_t.dim() != 2:
            raise ValueError(f"x_t must be an integer (B, L) tensor, got {x_t.dtype} {tuple(x_t.shape)}")
        if x_t.numel() and (int(x_t.min()) < 0 or int(x_t.max()) >= self.token_map.hf_size):
            raise ValueError(f"token ids must lie in [0, {self.token_map.hf_size}), got "
                             f"[{int(x_t.min())}, {int(x_t.max())}]")
        kwargs = {}
        if padding_mask is not None:
            kwargs["attention_mask"] = padding_mask.long()
        if self._passes_sigma:
            kwargs["sigma_bar"] = sigma_bar
        out = self.hf_model(input_ids=self.to_hf[x_t], **kwargs)
        logits = (out if isinstance(out, Tensor) else out.logits).float()  # (B, L, W)
        if self.shift_logits:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)  # (B, L, W): row i from position i - 1
        width = self.token_map.hf_size
        if logits.shape[-1] < width:  # a head narrower than the input vocabulary: the rest is never predicted
            logits = F.pad(logits, (0, width - logits.shape[-1]), value=NEG_INF)
        clean = logits.index_select(-1, self.to_hf[:-1])  # (B, L, N - 1) in discdiff's order
        clean = clean.masked_fill(self.suppressed, NEG_INF)
        return F.pad(clean, (0, 1), value=NEG_INF)  # (B, L, N): MASK is never a clean token
