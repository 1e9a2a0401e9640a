"""Checking a YAML value against a config field's type annotation (used by ``discdiff.training.config``)."""

from __future__ import annotations

import math
import types
import typing

__all__ = ["coerce"]


def coerce(value, hint, key: str):
    """Check (and minimally convert) a YAML value against a field's type annotation."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(hint)):
            raise ValueError(f"{key} must be a list of {len(typing.get_args(hint))} values, got {value!r}")
        return tuple(coerce(v, a, key) for v, a in zip(value, typing.get_args(hint), strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):
                raise ValueError(f"{key} must be a finite number, got {value!r}")
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ValueError(f"{key} must be {getattr(hint, '__name__', hint)}, got {value!r}")
