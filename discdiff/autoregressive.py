"""``Autoregressive``: the left-to-right baseline as a peer of ``Diffusion`` (``loss``, ``nll``, ``sample``).

BOS convention: the sequence is shifted right by one with a BOS id in front, so position i sees
[BOS, x_0, ..., x_{i-1}] and its output predicts x_i. Then the exact likelihood is the chain rule

    log p(x) = sum_{i=0}^{L-1} log p(x_i | x_<i),     p(x_i = y | x_<i) = softmax(logits[i, :V])[y],

over all L tokens, the first one included, directly comparable with a diffusion model's NLL bound over the
same L tokens. BOS defaults to id ``vocab_size`` (the MASK slot of an absorbing vocabulary, never a data
token), so the causal network has num_states = vocab_size + 1 like its diffusion twin. Outputs at ids
>= vocab_size are dropped before the softmax, so no mass goes to impossible tokens.

A model is any callable ``model(inputs [B, L], None) -> [B, L, >= V]`` whose output at position i depends
only on inputs[:, :i + 1] (a causal ``discdiff.nn.DiffusionTransformer``, or a table); with padding it is
called as ``model(inputs, None, padding_mask=...)``.

    >>> import torch, discdiff as dd
    >>> ar = dd.Autoregressive(vocab_size=4)
    >>> model = lambda inputs, sigma_bar: torch.zeros(*inputs.shape, 5)     # uniform next token
    >>> ar.loss(model, torch.tensor([[0, 1, 2]]))                           # 3 log 4
    tensor([4.1589])
    >>> ar.sample(model, num_samples=2, length=3, generator=torch.Generator().manual_seed(0)).samples.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .categorical import sample_from_logits
from .diffusion import NLLEstimate
from .row_random import resolve_generator
from .sampling import SampleOutput

__all__ = ["Autoregressive"]

Model = Callable[..., Tensor]


class Autoregressive:
    """Exact next-token likelihood and left-to-right sampling over ``vocab_size`` data tokens.

    ``loss`` and ``nll`` take the same arguments as ``Diffusion``'s (``objective`` may only be None or
    "exact"; ``t``, ``generator`` and ``num_draws`` are accepted and have nothing to draw), so training and
    evaluation code can hold either object.
    """

    #: the only objective: the exact chain-rule NLL
    objectives = ("exact",)
    default_objective = "exact"

    def __init__(self, vocab_size: int, bos_id: int | None = None):
        if int(vocab_size) != vocab_size or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        self.vocab_size = int(vocab_size)
        self.bos_id = self.vocab_size if bos_id is None else int(bos_id)
        if self.bos_id < 0:
            raise ValueError(f"bos_id must be >= 0, got {bos_id}")

    def __repr__(self) -> str:
        return f"Autoregressive(vocab_size={self.vocab_size}, bos_id={self.bos_id})"

    @property
    def num_states(self) -> int:
        """Input ids the network must embed: the data tokens and BOS."""
        return max(self.vocab_size, self.bos_id + 1)

    def check_model(self, model) -> None:
        """Refuse a model whose config says it is not causal or cannot take BOS / predict V tokens."""
        cfg = getattr(model, "config", None)
        if cfg is None:
            return
        if not getattr(cfg, "causal", True):
            raise ValueError("Autoregressive needs a causal model (TransformerConfig(causal=True))")
        if self.bos_id >= getattr(cfg, "num_states", self.bos_id + 1):
            raise ValueError(f"bos_id={self.bos_id} is not an input id of the model (num_states={cfg.num_states})")
        if getattr(cfg, "out_size", self.vocab_size) < self.vocab_size:
            raise ValueError(f"model predicts {cfg.out_size} classes, fewer than vocab_size={self.vocab_size}")

    # ------------------------------------------------------------------ likelihood

    def logits(self, model: Model, x0: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """(B, L, V) float32 logits: position i predicts x_i from [BOS, x_<i]."""
        self.check_model(model)
        bos = torch.full_like(x0[:, :1], self.bos_id)
        inputs = torch.cat([bos, x0[:, :-1]], dim=1)  # (B, L): shifted right by one
        if padding_mask is None:
            out = model(inputs, None)
        else:  # the input at i is x_{i-1}: real exactly when target i-1 is (BOS is always real)
            in_pad = torch.cat([torch.ones_like(padding_mask[:, :1]), padding_mask[:, :-1]], dim=1)
            out = model(inputs, None, padding_mask=in_pad)
        if out.ndim != 3 or out.shape[:2] != x0.shape or out.shape[-1] < self.vocab_size:
            raise ValueError(f"model must return [B, L, >= {self.vocab_size}] for {tuple(x0.shape)}, "
                             f"got {tuple(out.shape)}")
        return out[..., : self.vocab_size].float()

    def log_probs(self, model: Model, x0: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """(B, L, V) float32: entry [b, i, y] = log p(x_i = y | x_<i)."""
        return F.log_softmax(self.logits(model, x0, padding_mask), dim=-1)

    def loss(self, model: Model, x0: Tensor, objective: str | None = None, *, t: Tensor | None = None,
             generator: torch.Generator | None = None, padding_mask: Tensor | None = None,
             loss_mask: Tensor | None = None, label: Tensor | None = None) -> Tensor:
        """Exact -log p(x0) per sequence, [B] nats. Padded targets (padding_mask False) add nothing and
        padded inputs are invisible to real positions; ``t`` and ``generator`` are unused (nothing is drawn).

        ``loss_mask`` [B, L] (inside padding_mask) sums only those targets: with the prompt first and the
        loss on the response, it is the exact conditional -log p(response | prompt) (the chain rule).
        """
        if objective not in (None, "exact"):
            raise ValueError(f"the autoregressive baseline has one objective, 'exact'; got {objective!r}")
        if label is not None:
            raise ValueError("the autoregressive baseline takes no class label")
        if loss_mask is not None and (loss_mask.dtype != torch.bool or loss_mask.shape != x0.shape):
            raise ValueError(f"loss_mask must be a BoolTensor of shape {tuple(x0.shape)}")
        self._check_tokens(x0, padding_mask)
        logits = self.logits(model, x0, padding_mask)  # (B, L, V)
        B, L, V = logits.shape
        token_nll = F.cross_entropy(logits.reshape(B * L, V), x0.reshape(-1).long(), reduction="none").view(B, L)
        if padding_mask is not None:
            token_nll = token_nll.masked_fill(~padding_mask, 0.0)
        if loss_mask is not None:
            token_nll = token_nll.masked_fill(~loss_mask, 0.0)
        return token_nll.sum(dim=1)

    def nll(self, model: Model, x0: Tensor, objective: str | None = None, *, num_draws: int = 1,
            generator: torch.Generator | None = None, padding_mask: Tensor | None = None,
            loss_mask: Tensor | None = None, label: Tensor | None = None) -> NLLEstimate:
        """``NLLEstimate(mean, stderr)`` with the exact NLL as mean (float64) and stderr = 0: no Monte Carlo."""
        with torch.no_grad():
            mean = self.loss(model, x0, objective, padding_mask=padding_mask, loss_mask=loss_mask, label=label).double()
        return NLLEstimate(mean, torch.zeros_like(mean))

    def _check_tokens(self, x0: Tensor, padding_mask: Tensor | None) -> None:
        if not isinstance(x0, Tensor) or x0.dim() != 2 or x0.is_floating_point() or x0.dtype == torch.bool:
            raise ValueError(f"x0 must be an integer tensor of shape (B, L), got {getattr(x0, 'shape', x0)!r}")
        if padding_mask is not None and (padding_mask.dtype != torch.bool or padding_mask.shape != x0.shape):
            raise ValueError(f"padding_mask must be a BoolTensor of shape {tuple(x0.shape)}")
        real = x0 if padding_mask is None else x0[padding_mask]
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= self.vocab_size):
            raise ValueError(f"x0 ids must lie in [0, {self.vocab_size}), got [{int(real.min())}, {int(real.max())}]")

    # ------------------------------------------------------------------ sampling

    def _prompt(self, prompt, num_rows: int, length: int, device) -> tuple[Tensor | None, Tensor | None]:
        """``prompt`` (None, a list of ids, or one list per row) as forced ids [B, L] and where they stand [B, L]."""
        if prompt is None:
            return None, None
        prompt = prompt.tolist() if isinstance(prompt, Tensor) else list(prompt)
        rows = [list(map(int, p)) for p in prompt] if prompt and isinstance(prompt[0], (list, tuple)) \
            else [list(map(int, prompt))] * num_rows
        if len(rows) != num_rows:
            raise ValueError(f"prompt: one list of ids per row, {num_rows} rows, got {len(rows)} lists")
        forced = torch.zeros(num_rows, length, dtype=torch.long)
        known = torch.zeros(num_rows, length, dtype=torch.bool)
        for r, ids in enumerate(rows):
            if len(ids) >= length:
                raise ValueError(f"a prompt of {len(ids)} tokens leaves nothing to generate in length {length}")
            if ids and not 0 <= min(ids) <= max(ids) < self.vocab_size:
                raise ValueError(f"prompt ids must lie in [0, {self.vocab_size}), got [{min(ids)}, {max(ids)}]")
            forced[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            known[r, : len(ids)] = True
        return forced.to(device), known.to(device)

    @torch.no_grad()
    def sample(self, model: Model, num_samples: int, length: int, *, generator: torch.Generator | None = None,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               device=None, kv_cache: bool | None = None, prompt=None, seeds=None) -> SampleOutput:
        """Draw ``num_samples`` sequences of ``length`` tokens left to right, each draw in float64.

        ``prompt``: the rows' beginnings, forced instead of drawn, so the rest follows p(x_{>=P} | prompt): one
        list of ids for every row, or one list per row (lengths may differ: a row's tokens and positions are its
        own, nothing is padded). Each prompt must be shorter than ``length``; the rows returned start with it.
        ``seeds``: one per row instead of ``generator``; row b then draws from its own generator, so its sample
        depends only on its own seed and prompt, not on the batch around it (``discdiff.row_random``).

        ``kv_cache``: None uses the model's exact KV cache when it has one (a causal ``DiffusionTransformer``:
        ``model.new_kv_cache()`` / ``model.causal_step``), True requires it, False recomputes: step i then runs
        the model on the i + 1 tokens so far. With the cache step i runs one token against the cached keys and
        values of the i before it; the logits are the same to float rounding, so are the samples.
        Beyond the model's context (``length`` >= ``config.max_len``) the window slides: token i is drawn given
        the max_len - 1 tokens before it (the cache keeps their keys and values; without it
        ``discdiff.nn.blocks.sliding_window_forward`` recomputes the same attention), which approximates
        p(x_i | x_<i) as that function says (deeper layers still carry older tokens).
        Returns ``SampleOutput(samples [B, L], nfe=length, nfe_per_row [B], trajectory=None)``.
        """
        for name, value in (("num_samples", num_samples), ("length", length)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.check_model(model)
        if device is None:
            params = getattr(model, "parameters", None)
            first = next(iter(params()), None) if params is not None else None
            device = first.device if first is not None else "cpu"
        out = torch.full((num_samples, length + 1), self.bos_id, dtype=torch.long, device=device)
        forced, known = self._prompt(prompt, num_samples, length, device)  # [B, L] ids, [B, L] bool
        generator = resolve_generator(generator, seeds, num_samples, device)
        has_cache = callable(getattr(model, "causal_step", None)) and getattr(model.config, "causal", False)
        if kv_cache and not has_cache:
            raise ValueError("kv_cache=True needs a causal model with a KV cache (new_kv_cache / causal_step)")
        cache = model.new_kv_cache() if has_cache and kv_cache is not False else None
        context = getattr(getattr(model, "config", None), "max_len", None)
        for i in range(length):
            if cache is not None:  # the token fed at step i is out[:, i]; the i before it are cached
                logits = model.causal_step(cache, out[:, i: i + 1])[:, -1, : self.vocab_size]
                cache.trim(context - 1)  # the sliding window: the next step's token sees the last max_len - 1
            elif context is not None and i + 1 > context:
                from .nn.blocks import sliding_window_forward  # here: discdiff.nn imports this module

                logits = sliding_window_forward(model, out[:, : i + 1])[:, -1, : self.vocab_size]
            else:
                logits = model(out[:, : i + 1], None)[:, -1, : self.vocab_size]  # (B, V): predicts x_i
            drawn = sample_from_logits(logits, generator, temperature, top_k, top_p)
            out[:, i + 1] = drawn if known is None else torch.where(known[:, i], forced[:, i], drawn)
        nfe_per_row = torch.full((num_samples,), length, dtype=torch.long)
        return SampleOutput(out[:, 1:], length, nfe_per_row)
