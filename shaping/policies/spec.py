"""Validation helpers for policy specs: every error names the spec field, the value and what was expected.

A spec field is written as a path, e.g. ``stages[2].graduate.accuracy``; errors read
``"stages[2].graduate.accuracy = 1.3 is outside [0, 1]"``.
"""
from __future__ import annotations

import copy
import json
import math
from typing import Any, Iterable, Mapping

import numpy as np


class SpecError(ValueError):
    """A policy spec is malformed; the message starts with the offending field's path."""


def mapping(path: str, value: Any, allowed: Iterable[str] | None = None,
            required: Iterable[str] = ()) -> dict:
    """``value`` as a dict, checking that its keys are among ``allowed`` and that ``required`` are present."""
    if not isinstance(value, Mapping):
        raise SpecError(f"{path} = {value!r} must be a table (dict)")
    out = dict(value)
    for key in out:
        if not isinstance(key, str):
            raise SpecError(f"{path}: key {key!r} must be a string")
    if allowed is not None:
        allowed = sorted(set(allowed))
        for key in out:
            if key not in allowed:
                raise SpecError(f"{join(path, key)}: unknown key; expected one of {', '.join(allowed)}")
    for key in required:
        if key not in out:
            raise SpecError(f"{join(path, key)} is required")
    return out


def join(path: str, key: str | int) -> str:
    """The path of a key (``a.b``) or of an index (``a[2]``) below ``path``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def number(path: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite number in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise SpecError(f"{path} = {value!r} must be a number")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(f"{path} = {value!r} must be finite")
    if not low <= value <= high:
        raise SpecError(f"{path} = {value:g} is outside [{low:g}, {high:g}]")
    return value


def fraction(path: str, value: Any) -> float:
    """A number in ``[0, 1]`` (an accuracy, a probability)."""
    return number(path, value, 0.0, 1.0)


def integer(path: str, value: Any, low: int = 1) -> int:
    """A whole number ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise SpecError(f"{path} = {value!r} must be a whole number >= {low}")
    if value < low:
        raise SpecError(f"{path} = {value} must be a whole number >= {low}")
    return int(value)


def optional(check, path: str, value: Any, *args: Any) -> Any:
    """``None`` stays ``None``; anything else goes through ``check(path, value, *args)``."""
    return None if value is None else check(path, value, *args)


def choice(path: str, value: Any, options: Iterable[str]) -> str:
    """One of ``options``."""
    options = tuple(options)
    if value not in options:
        raise SpecError(f"{path} = {value!r}; expected one of {', '.join(map(repr, options))}")
    return value


_SCALARS = frozenset((str, int, float, bool, type(None)))


def plain(obj: Any) -> Any:
    """``obj`` with NumPy scalars/arrays and tuples turned into plain Python data (JSON-able)."""
    # The server snapshots a policy after every batch: plain scalars are passed through without a call
    # per element (windows hold hundreds of them).
    t = type(obj)
    if t in _SCALARS:
        return obj
    if t is dict or isinstance(obj, Mapping):
        return {k if type(k) is str else str(k): v if type(v) in _SCALARS else plain(v) for k, v in obj.items()}
    if t is list or t is tuple or isinstance(obj, (list, tuple)):
        return [v if type(v) in _SCALARS else plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def jsonable(path: str, value: Any) -> Any:
    """A deep, plain copy of ``value``, refusing anything JSON cannot hold."""
    value = plain(copy.deepcopy(value))
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{path} = {value!r} is not plain data (JSON-able): {err}") from None
    return value
