"""Two rules about calling a model, kept in one place: how it is called, and whether it depends on time.

A model is any callable ``model(x_t: Long[B, L], sigma_bar: [B]) -> [B, L, S]``. Losses, likelihoods and
samplers call it through ``call_model``, so every caller checks the output and treats padding the same way.
``is_time_free`` says whether a model has *declared* that its output ignores ``sigma_bar``: the one fact
that lets a sampler reuse a prediction across steps.

This module imports torch only, so every layer of discdiff may use it.

Example::

    >>> import torch
    >>> from discdiff.model_call import call_model, is_time_free
    >>> model = lambda x_t, sigma_bar: torch.zeros(*x_t.shape, 4)
    >>> call_model(model, torch.zeros(2, 3, dtype=torch.long), torch.ones(2), num_clean_states=3).shape
    torch.Size([2, 3, 4])
    >>> is_time_free(model) is None          # undeclared: nothing may be cached
    True
"""

from __future__ import annotations

import inspect
import weakref

import torch
from torch import Tensor

__all__ = ["accepts_label", "accepts_padding_mask", "call_model", "is_time_free", "num_classes", "unwrap_model"]

_ACCEPTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model object -> takes padding_mask=
_LABELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model object -> takes label=


def unwrap_model(model):
    """The network inside DDP / FSDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        inner = getattr(model, "module", None)
        if inner is None:
            inner = getattr(model, "_orig_mod", None)
        if inner is None or not callable(inner):
            return model
        model = inner
    return model


def _declared_time_free(obj) -> bool | None:
    for holder, name, free_when in ((obj, "time_free", True), (obj, "time_conditioning", False),
                                    (getattr(obj, "config", None), "time_conditioning", False)):
        value = getattr(holder, name, None) if holder is not None else None
        if isinstance(value, bool):
            return value == free_when
    return None


def is_time_free(model) -> bool | None:
    """Whether ``model`` declares that its output does not depend on ``sigma_bar``.

    True / False when the model (or the network inside a DDP / FSDP / compile wrapper) declares it: a
    ``time_free`` attribute, a ``time_conditioning`` attribute, or ``config.time_conditioning`` (discdiff's
    DiffusionTransformer). None when nothing is declared: callers must then assume the output depends on
    time (a sampler caches nothing). A wrapper of your own that hides the network's ``config`` should set
    ``time_free = is_time_free(inner)``.
    """
    outer = _declared_time_free(model)
    return outer if outer is not None else _declared_time_free(unwrap_model(model))


def _takes(model, name: str) -> bool:
    net = unwrap_model(model)
    target = net.forward if isinstance(net, torch.nn.Module) else net
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    return name in params


def _remembered(table: weakref.WeakKeyDictionary, model, name: str) -> bool:
    try:
        return table[model]
    except (KeyError, TypeError):  # TypeError: not weak-referenceable or not hashable; then not remembered
        pass
    found = _takes(model, name)
    try:
        table[model] = found
    except TypeError:
        pass
    return found


def accepts_padding_mask(model) -> bool:
    """Whether ``model`` (looked through DDP / FSDP / compile wrappers) has a ``padding_mask`` parameter;
    checked once per model object and remembered."""
    return _remembered(_ACCEPTS, model, "padding_mask")


def accepts_label(model) -> bool:
    """Whether ``model`` (looked through wrappers) has a ``label`` parameter (a class-conditional model)."""
    return _remembered(_LABELS, model, "label")


def num_classes(model) -> int | None:
    """The number of class labels a model declares (``num_classes`` or ``config.num_classes``), else None.
    Label ``num_classes`` is then the null label (the unconditional branch)."""
    for obj in (model, unwrap_model(model)):
        for holder in (obj, getattr(obj, "config", None)):
            value = getattr(holder, "num_classes", None) if holder is not None else None
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def call_model(model, x_t: Tensor, sigma_bar: Tensor, padding_mask: Tensor | None = None, *,
               num_clean_states: int, label: Tensor | None = None) -> Tensor:
    """``model(x_t [B, L], sigma_bar [B]) -> [B, L, S]``, checked, with one padding policy.

    When ``padding_mask`` (Bool [B, L], True on real tokens) has any False entry and the model takes a
    ``padding_mask`` parameter, the model gets it (real positions never attend to pads); otherwise the
    model is called plainly. An all-real batch never passes the mask, keeping the fast unmasked path.
    ``label`` (Long [B], class ids; ``num_classes`` is the null label) goes to a model with a ``label``
    parameter; passing one to a model without it is a ValueError (it would be silently ignored).
    Raises ValueError unless the output is [B, L, S] with S >= ``num_clean_states``.
    """
    kwargs = {}
    if padding_mask is not None and not bool(padding_mask.all()) and accepts_padding_mask(model):
        kwargs["padding_mask"] = padding_mask
    if label is not None:
        if not accepts_label(model):
            raise ValueError("a label was given but the model takes none (a class-conditional model has a "
                             "`label` parameter, e.g. DiffusionTransformer with model.num_classes set)")
        kwargs["label"] = label
    out = model(x_t, sigma_bar, **kwargs)
    if not isinstance(out, Tensor) or out.ndim != 3 or out.shape[:2] != x_t.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model must return [B, L, S] for x_t {tuple(x_t.shape)}, got {shape}")
    if out.shape[-1] < num_clean_states:
        raise ValueError(f"model returned {out.shape[-1]} values per position; at least {num_clean_states} "
                         "(one logit per clean token) are needed")
    return out
