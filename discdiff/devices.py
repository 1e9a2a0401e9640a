"""Which torch device a name means on this machine, checked before any tensor moves.

    resolve_device("auto")     # cuda if torch sees a GPU, else cpu
    resolve_device("cuda:1")   # ValueError naming what this machine has, instead of a deep CUDA assert

A leaf module (imports torch only): the command line, the web demo and a user's script share it.
"""

from __future__ import annotations

import torch

__all__ = ["DEVICE_NAMES", "resolve_device"]

DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch.device that ``name`` means, or a ValueError saying why this machine cannot run on it.

    'auto' is cuda when torch sees a GPU and cpu otherwise; 'cuda:N' must name an existing GPU;
    'mps' must be available. Other device types (meta, xla, ...) are refused: discdiff does not run on them.
    """
    text = str(name).strip()
    if text.lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text.lower())
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {text!r}; use {DEVICE_NAMES}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "torch sees no GPU"
            raise ValueError(f"device {text!r}: {why}; use cpu (or auto)")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {text!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {text!r}: MPS (Apple GPU) is not available here; use cpu (or auto)")
        return device
    raise ValueError(f"device {text!r}: discdiff runs on cpu, cuda or mps; use {DEVICE_NAMES}")
