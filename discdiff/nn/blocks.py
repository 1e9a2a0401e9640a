"""Block diffusion (BD3-LM) in the backbone: the attention masks, the one-pass training forward over
[x_t ; x_0], and an exact KV cache of finished blocks for sampling.

A sequence of L tokens is cut into blocks of b tokens (block k holds positions kb .. kb + b - 1; the last
block may be shorter at inference). Attention is bidirectional inside a block and causal across blocks.

Training, one pass over 2L tokens (the noised x_t, then the clean x_0, both at positions 0..L-1 for rotary):

    noised query of block k  sees  noised keys of block k  and  clean keys of blocks < k
    clean  query of block k  sees  clean keys of blocks <= k

so the noised half's output at block k is p_theta(x_0^k | x_t^k, x_0^{<k}), for every k at once, and only
the noised half goes through the output head. ``training_mask`` builds that (2L, 2L) boolean mask once per
(L, b, device); ``block_causal_mask`` is the L-token mask of inference without a cache.

KV cache: after a block is finished its clean tokens are run once, attending to the cache and to themselves
(exactly the clean half's view above), and their rotated keys and values are appended per layer. A noised
block then attends to the cache and to itself with no mask at all, so its logits equal those recomputed from
scratch over [clean blocks ; noised block] up to float rounding.

FlexAttention: on a GPU ``training_mask`` is the dense form of a mask_mod
``(q_half == 1 or kv_half == 1) and ...``; a ``torch.nn.attention.flex_attention.create_block_mask`` built from
it would plug in where ``block_forward`` passes ``attn_mask`` (it skips the all-masked tiles: about half of
the 2L x 2L scores).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

__all__ = ["BlockCacheMethods", "KVCache", "block_causal_mask", "block_forward", "causal_step", "extend_kv_cache",
           "sliding_block_mask", "sliding_window_forward", "training_mask"]


@functools.lru_cache(maxsize=16)
def training_mask(length: int, block_size: int, device: torch.device | None = None) -> Tensor:
    """Bool (2L, 2L), True where query q may attend to key j, over [x_t (0..L-1) ; x_0 (L..2L-1)].

    With h(q) the half (0 noised, 1 clean) and k(q) = (q mod L) // b the block:
        h(q) = 0:  (h(j) = 0 and k(j) = k(q))  or  (h(j) = 1 and k(j) < k(q))
        h(q) = 1:  h(j) = 1 and k(j) <= k(q)
    Cached per (length, block_size, device); callers must not modify it.
    """
    _check_sizes(length, block_size)
    block = torch.arange(length, device=device) // block_size
    bq, bk = block[:, None], block[None, :]  # (L, 1), (1, L)
    noised_to_noised = bq == bk
    noised_to_clean = bk < bq
    clean_to_clean = bk <= bq
    top = torch.cat([noised_to_noised, noised_to_clean], dim=1)  # (L, 2L)
    bottom = torch.cat([torch.zeros_like(clean_to_clean), clean_to_clean], dim=1)  # (L, 2L)
    return torch.cat([top, bottom], dim=0)  # (2L, 2L)


@functools.lru_cache(maxsize=16)
def block_causal_mask(length: int, block_size: int, device: torch.device | None = None) -> Tensor:
    """Bool (T, T): query i sees key j iff j // b <= i // b (bidirectional in a block, causal across blocks).

    T need not be a multiple of b (a last, shorter block). Cached; callers must not modify it.
    """
    _check_sizes(length, block_size, whole=False)
    block = torch.arange(length, device=device) // block_size
    return block[None, :] <= block[:, None]


@functools.lru_cache(maxsize=16)
def sliding_block_mask(length: int, block_size: int, window: int, device: torch.device | None = None) -> Tensor:
    """Bool (T, T): query i (block k = i // b) sees key j iff k - window // b <= j // b <= k.

    Block-causal attention whose view reaches back ``window`` tokens (a multiple of b) before the query's own
    block: the attention of generation beyond the context with a sliding KV cache (``window`` = max_len - b).
    For T <= window + b it is ``block_causal_mask``. Cached; callers must not modify it.
    """
    _check_sizes(length, block_size, whole=False)
    if window < 0 or window % block_size:
        raise ValueError(f"window must be a non-negative multiple of block_size={block_size}, got {window}")
    block = torch.arange(length, device=device) // block_size
    behind = block[:, None] - block[None, :]  # (T, T): how many blocks the key lies before the query
    return (behind >= 0) & (behind <= window // block_size)


def _check_sizes(length: int, block_size: int, whole: bool = True) -> None:
    if length < 1 or block_size < 1:
        raise ValueError(f"length and block_size must be >= 1, got {length} and {block_size}")
    if whole and length % block_size:
        raise ValueError(f"sequence length {length} is not a multiple of block_size={block_size}")


class _LayerCache:
    """One layer's cached keys / values (B, nh, P, hs); ``__call__`` prepends them to a block's own."""

    def __init__(self, keys: Tensor | None, values: Tensor | None, store: bool):
        self.keys, self.values, self.store = keys, values, store

    def __call__(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.keys is not None:
            k, v = torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)  # (B, nh, P + n, hs)
        if self.store:
            self.keys, self.values = k, v
        return k, v


class KVCache:
    """Rotated keys and values of the finished (clean) blocks of a batch, per layer: (B, nh, P, hs) each.

    Made by ``DiffusionTransformer.new_kv_cache()``, grown by ``extend_kv_cache`` one whole block at a time,
    read by ``model(x_block, sigma_bar, kv_cache=cache)``. ``length`` P is a multiple of ``block_size``.
    """

    def __init__(self, block_size: int, n_layers: int, layers: list[_LayerCache] | None = None, length: int = 0,
                 offset: int = 0):
        self.block_size, self.n_layers, self.length = block_size, n_layers, length
        self.offset = offset  # absolute position of the first cached token (> 0 once the window has slid)
        self.layers = layers if layers is not None else [_LayerCache(None, None, False) for _ in range(n_layers)]
        self.labels: Tensor | None = None  # (B,) the class labels the cached blocks were run under

    @property
    def position(self) -> int:
        """Absolute position of the next token: every token ever appended, dropped ones included."""
        return self.offset + self.length

    def trim(self, keep: int) -> None:
        """Keep the last ``keep`` tokens' keys and values (the sliding window); their positions stay."""
        if keep < self.length:
            self.layers = [_LayerCache(c.keys[:, :, -keep:] if keep else c.keys[:, :, :0],
                                       c.values[:, :, -keep:] if keep else c.values[:, :, :0], False)
                           for c in self.layers]
            self.offset, self.length = self.offset + self.length - keep, keep

    def select(self, rows: Tensor) -> KVCache:
        """The cache of a subset of the batch (a gather per layer); ``rows`` indexes the batch."""
        layers = [_LayerCache(c.keys[rows] if c.keys is not None else None,
                              c.values[rows] if c.values is not None else None, False) for c in self.layers]
        out = KVCache(self.block_size, self.n_layers, layers, self.length, self.offset)
        out.labels = None if self.labels is None else self.labels[rows.to(self.labels.device)]
        return out

    def check_model(self, config) -> None:
        """Raise ValueError unless this cache was made for a model shaped like ``config``'s: the same block size
        (a causal model's blocks are 1 token), layers, heads and head size."""
        if (1 if config.causal else config.block_size) != self.block_size:
            model = "the model is causal (blocks of 1 token)" if config.causal else \
                f"the model's block_size is {config.block_size}"
            raise ValueError(f"this KV cache holds blocks of {self.block_size} tokens but {model}: make the cache "
                             f"with this model's new_kv_cache()")
        if config.n_layers != self.n_layers:
            raise ValueError(f"this KV cache has {self.n_layers} layers, the model {config.n_layers}")
        keys, head_size = self.layers[0].keys, config.d_model // config.n_heads
        if keys is not None and (keys.shape[1], keys.shape[3]) != (config.n_heads, head_size):
            raise ValueError(f"this KV cache holds {keys.shape[1]} heads of size {keys.shape[3]}, the model "
                             f"{config.n_heads} of size {head_size}")

    def check(self, config, batch: int, new_tokens: int) -> None:
        """Raise ValueError unless this cache fits ``config``'s model and a batch of ``new_tokens`` tokens."""
        self.check_model(config)
        rows = self.layers[0].keys.shape[0] if self.layers[0].keys is not None else batch
        if rows != batch:
            raise ValueError(f"this KV cache holds {rows} rows, the input {batch}")
        if new_tokens > self.block_size:
            raise ValueError(f"a cached call takes at most one block ({self.block_size} tokens), got {new_tokens}")
        if self.length + new_tokens > config.max_len:
            raise ValueError(f"cache length {self.length} + {new_tokens} tokens exceeds max_len={config.max_len}")

    def _views(self, store: bool) -> list[_LayerCache]:
        return [_LayerCache(c.keys, c.values, store) for c in self.layers]


def _trunk(model, x_ids: Tensor, rope: Tensor, attn_mask: Tensor | None, kv: list | None = None,
           label_vec: Tensor | None = None) -> Tensor:
    """Embedding (plus a class-conditional model's label vector on every token) and every block of a time-free
    model: hidden states (B, T, C)."""
    x = model.tok_emb(x_ids)  # (B, T, C)
    if label_vec is not None:
        x = x + label_vec[:, None, :]  # (B, T, C): as in DiffusionTransformer.forward's time-free path
    for i, block in enumerate(model.blocks):
        x = block(x, rope, attn_mask, None, kv[i] if kv is not None else None)
    return x


def _rope(model, start: int, n: int) -> Tensor:
    """Rotary rows of positions start .. start + n - 1 (T, 1, hs/2, 2); beyond max_len from a longer table."""
    if start + n <= model.rope.shape[0]:
        return model.rope[start: start + n]
    cfg = model.config
    table = _long_rope(_round_up(start + n), cfg.d_model // cfg.n_heads, cfg.rope_base, model.rope.device)
    return table[start: start + n].to(model.rope.dtype)


def _round_up(n: int) -> int:
    return 1 << (n - 1).bit_length()  # a power of two: one table serves many calls


@functools.lru_cache(maxsize=4)
def _long_rope(length: int, head_dim: int, base: float, device) -> Tensor:
    from .layers import rotary_table

    return rotary_table(length, head_dim, base)[:, None].to(device)


def _label_vector(model, label: Tensor | None, batch: int) -> Tensor | None:
    """(B, C) the label embedding of a class-conditional model (None: the null label), else None; a label for a
    model without classes is refused."""
    emb = getattr(model, "label_emb", None)
    if emb is None:
        if label is not None:
            raise ValueError("this model takes no class label (model.num_classes is not set)")
        return None
    return emb(label, batch)


def _check_cache_label(cache: KVCache, label: Tensor | None) -> None:
    """A cached call must use the labels the cache was filled under (their keys and values carry them)."""
    if cache.length == 0 and cache.offset == 0:
        return
    if (cache.labels is None) != (label is None) or (label is not None and not torch.equal(
            cache.labels, label.to(cache.labels.device))):
        raise ValueError("this KV cache was filled under other class labels than this call's: pass the same "
                         "label= to extend_kv_cache and to every cached call")


def _head(model, x: Tensor) -> Tensor:
    return model.head(model.final_norm(x)).float()  # (B, T, S_out) float32


def _with_padding(mask: Tensor, keys_real: Tensor | None) -> Tensor:
    """mask (T, T) & real keys (B, T) | the diagonal: (B, 1, T, T), or mask itself without padding."""
    if keys_real is None:
        return mask
    eye = torch.eye(mask.shape[0], dtype=torch.bool, device=mask.device)
    return (mask & keys_real[:, None, None, :]) | eye  # a padding query still sees itself: no empty row


def block_forward(model, x_t: Tensor, padding_mask: Tensor | None = None, *, x0: Tensor | None = None,
                  kv_cache: KVCache | None = None, label: Tensor | None = None) -> Tensor:
    """The forward of a block model (``DiffusionTransformer`` with ``config.block_size``), inputs checked there.
    ``label`` (B,): a class-conditional model's labels (None: the null label), added to every token's embedding
    in both halves of training, in the cached clean blocks and in the noised block.

    - ``x0`` given (training): one pass over [x_t ; x0] with ``training_mask``; returns the noised half's
      logits (B, L, S_out). L must be a multiple of b.
    - ``kv_cache`` given (sampling): x_t is one block (B, n <= b) at positions P .. P + n - 1 after the cached
      P tokens; it sees the cache and itself. Returns (B, n, S_out). The cache is not changed.
    - neither: block-causal attention over x_t (B, T): block k sees blocks <= k as they are in x_t.
    """
    cfg = model.config
    b = cfg.block_size
    if b is None:
        raise ValueError("x0= and kv_cache= need a block model (model.block_size is unset: a full-sequence model)")
    if x0 is not None and kv_cache is not None:
        raise ValueError("pass x0= (training) or kv_cache= (sampling), not both")
    B, T = x_t.shape
    label_vec = _label_vector(model, label, B)  # (B, C) or None
    if kv_cache is not None:
        if padding_mask is not None:
            raise ValueError("a cached block call takes no padding_mask")
        kv_cache.check(cfg, B, T)
        _check_cache_label(kv_cache, label)
        rope = _rope(model, kv_cache.position, T)
        return _head(model, _trunk(model, x_t, rope, None, kv_cache._views(store=False), label_vec))
    if x0 is None:
        mask = _with_padding(block_causal_mask(T, b, x_t.device), padding_mask)
        return _head(model, _trunk(model, x_t, model.rope[:T], mask, label_vec=label_vec))
    if x0.shape != x_t.shape or x0.dtype != x_t.dtype:
        raise ValueError(f"x0 {x0.dtype} {tuple(x0.shape)} must match x_t {x_t.dtype} {tuple(x_t.shape)}")
    _check_sizes(T, b)
    real = torch.cat([padding_mask, padding_mask], dim=1) if padding_mask is not None else None  # (B, 2L)
    mask = _with_padding(training_mask(T, b, x_t.device), real)
    rope = torch.cat([model.rope[:T], model.rope[:T]])  # both halves at positions 0..L-1
    hidden = _trunk(model, torch.cat([x_t, x0], dim=1), rope, mask, label_vec=label_vec)  # (B, 2L, C)
    return _head(model, hidden[:, :T])  # the noised half only


def extend_kv_cache(model, cache: KVCache, clean: Tensor, label: Tensor | None = None) -> None:
    """Run one finished block's clean tokens (B, b) once (under the rows' class ``label``, a class-conditional
    model's; the same at every call) and append their keys / values to ``cache``."""
    cache.check_model(model.config)  # a cache of another model first: its block size explains a shape mismatch
    if clean.dim() != 2 or clean.shape[1] != cache.block_size:
        raise ValueError(f"extend the KV cache with one whole block (B, {cache.block_size}), got {tuple(clean.shape)}")
    cache.check(model.config, clean.shape[0], clean.shape[1])
    _check_cache_label(cache, label)
    label_vec = _label_vector(model, label, clean.shape[0])
    views = cache._views(store=True)
    _trunk(model, clean, _rope(model, cache.position, clean.shape[1]), None, views, label_vec)
    cache.layers, cache.length = views, cache.length + clean.shape[1]
    cache.labels = None if label is None else label.clone()
    cache.trim(model.config.max_len - cache.block_size)  # the sliding window: see sliding_window_forward


def sliding_window_forward(model, x: Tensor, label: Tensor | None = None) -> Tensor:
    """A block model's logits (B, T, S_out) over a sequence of any length T, without a cache: the reference of
    generation beyond the training context.

    Attention is ``sliding_block_mask(T, b, W)`` with W = max_len - b in every layer: block k sees itself and
    the W tokens before it, at their absolute rotary positions (beyond max_len from a longer table; rotary
    scores depend only on position differences, and these stay < max_len as in training). For T <= max_len
    this is the model's ordinary block-causal forward. A sliding KV cache (``extend_kv_cache`` keeps the last
    W tokens' keys and values) computes exactly this.

    What it approximates: a token's keys and values in layer l > 1 still carry, through the layers below,
    tokens that have left the window (the receptive field grows by W per layer), and the oldest key in the
    window is mid-text, where in training the first key of a context always was the start of a window. The
    model saw neither in training; p(x^k | x^{<k}) is replaced by the model's answer under this attention.
    A causal model (the AR baseline) is the case b = 1: token i sees tokens i - (max_len - 1) .. i, as its
    sliding cache (``causal_step`` after ``cache.trim(max_len - 1)``) does.
    """
    cfg = model.config
    if cfg.block_size is None and not cfg.causal:
        raise ValueError("sliding_window_forward needs a block model (model.block_size) or a causal one")
    b = 1 if cfg.causal else cfg.block_size  # a causal model: blocks of one token, window max_len - 1
    if x.dim() != 2 or x.dtype not in (torch.long, torch.int32):
        raise ValueError(f"x must be integer token ids (B, T), got {x.dtype} {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= cfg.num_states):
        raise ValueError(f"token ids must lie in [0, {cfg.num_states})")
    T = x.shape[1]
    mask = sliding_block_mask(T, b, cfg.max_len - b, x.device)
    return _head(model, _trunk(model, x, _rope(model, 0, T), mask, label_vec=_label_vector(model, label, x.shape[0])))


def causal_step(model, cache: KVCache, tokens: Tensor) -> Tensor:
    """A causal model's logits (B, n, S_out) for ``tokens`` (B, n) at positions P .. P + n - 1 after the P cached
    ones; their keys and values are appended to ``cache``. Token i sees the cache and tokens <= i, exactly as
    in the full causal forward over [cached tokens ; tokens] (the autoregressive baseline's KV cache). Tokens
    are rotated at their absolute positions (``cache.position``), so after ``cache.trim`` (a sliding window)
    this is ``sliding_window_forward``'s attention."""
    cfg = model.config
    if not cfg.causal:
        raise ValueError("causal_step needs a causal model (the autoregressive baseline)")
    if tokens.dim() != 2 or tokens.shape[1] < 1:
        raise ValueError(f"tokens must have shape (B, n >= 1), got {tuple(tokens.shape)}")
    B, n = tokens.shape
    cache.check_model(cfg)
    if cache.length + n > cfg.max_len:
        raise ValueError(f"cache length {cache.length} + {n} tokens exceeds max_len={cfg.max_len}")
    rows = cache.layers[0].keys.shape[0] if cache.layers[0].keys is not None else B
    if rows != B:
        raise ValueError(f"this KV cache holds {rows} rows, the input {B}")
    P = cache.length
    mask = torch.ones(n, P + n, dtype=torch.bool, device=tokens.device).tril(P)  # key j <= P + i
    views = cache._views(store=True)
    logits = _head(model, _trunk(model, tokens, _rope(model, cache.position, n), mask, views))
    cache.layers, cache.length = views, P + n
    return logits


class BlockCacheMethods:
    """The KV-cache methods of a block model (``DiffusionTransformer`` mixes them in)."""

    def new_kv_cache(self) -> KVCache:
        """An empty KV cache for this block model (or, for a causal model, one of one-token blocks)."""
        if self.config.causal:
            return KVCache(1, self.config.n_layers)
        if self.config.block_size is None:
            raise ValueError("a KV cache needs a block model (model.block_size); this one is full-sequence")
        return KVCache(self.config.block_size, self.config.n_layers)

    def causal_step(self, cache: KVCache, tokens: Tensor) -> Tensor:
        """Logits (B, n, S_out) of a causal model for ``tokens`` after the cached ones; appends them to ``cache``."""
        self._check_inputs(tokens, None, None)
        return causal_step(self, cache, tokens)

    def extend_kv_cache(self, cache: KVCache, clean: Tensor, label: Tensor | None = None) -> None:
        """Append one finished block's clean tokens (B, block_size) to ``cache`` (one forward of b tokens);
        ``label`` (B,): a class-conditional model's labels, the same for every block and cached call."""
        self._check_inputs(clean, None, None)
        extend_kv_cache(self, cache, clean, label)
