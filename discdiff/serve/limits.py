"""What one request may cost and how a refused or stopped generation is said: the web demo's limits and errors
(free of web code, like engine.py)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits", "RequestError", "Stopped", "check_blocks"]


class RequestError(ValueError):
    """Invalid or refused request; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Stopped(Exception):
    """Raised by a ``check`` callback to end a generation early; the message says why."""


@dataclass
class Limits:
    """What one request may ask for, and how much the server does at once."""

    max_length: int = 1024  # tokens per sample (capped by the model's max_len)
    max_steps: int = 1024
    max_samples: int = 4  # rows per request
    max_concurrent: int = 1  # generations running at once (CPU: one uses every core already)
    max_queue: int = 8  # requests that may wait for a slot; beyond that: 429
    timeout_s: float = 120.0  # per request, from admission to the last step, waiting included

    def validate(self) -> Limits:
        for name in ("max_length", "max_steps", "max_samples", "max_concurrent"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if int(self.max_queue) != self.max_queue or self.max_queue < 0:
            raise ValueError(f"max_queue must be a non-negative integer, got {self.max_queue!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s!r}")
        return self


def check_blocks(extras: dict, steps: int, length: int) -> None:
    """The confidence sampler's limits that depend on the request's length and steps."""
    threshold, block_length = extras.get("threshold"), extras.get("block_length")
    if block_length is not None and not block_length <= length:
        raise RequestError(f"block_length must lie in [1, {length}] (the length), got {block_length}")
    blocks = -(-length // (block_length or length))
    if threshold is None and steps < blocks:
        raise RequestError(f"steps ({steps}) must be at least the number of blocks ({blocks})")
