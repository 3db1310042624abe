"""The agents' model objects: a :class:`Serializable` base and the shared Keras-style :class:`Registry`.

Each of :mod:`agents.constraints`, :mod:`agents.initializers`, :mod:`agents.regularizers`,
:mod:`agents.losses` and :mod:`agents.optimizers` keeps one :class:`Registry` of its classes (the one class of
:mod:`shaping.registry`, which tasks and policy kinds use too). An object travels as plain data:
``{"class_name": "Dale", "config": {...}}`` where ``config`` is exactly the constructor's arguments
(``get_config()``), and comes back with ``registry.get(that_dict)``.
"""
from __future__ import annotations

import json
from typing import Any

from shaping.registry import Registry, snake

__all__ = ["Registry", "Serializable", "snake", "callable_path", "callable_ref", "import_callable",
           "NOT_IMPORTABLE"]


class Serializable:
    """Base of every registered object: a config is exactly the constructor's arguments."""

    def get_config(self) -> dict:
        """The constructor arguments, JSON-able."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Serializable":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and json.dumps(self.get_config(), sort_keys=True) == json.dumps(
            other.get_config(), sort_keys=True)  # type: ignore[attr-defined]

    __hash__ = object.__hash__


# What a config holds for a function that cannot be imported back (a lambda, a local function): a record of
# what it was, which import_callable refuses with a message naming the parameter to pass again.
NOT_IMPORTABLE = "not-importable:"


def callable_path(fn: Any) -> str:
    """``"module:qualname"`` of an importable function (how a custom callable is stored in a config).

    Raises:
        ValueError: ``fn`` is a lambda, a local function or an object that importing its name does not give back.
    """
    ref = callable_ref(fn)
    if ref.startswith(NOT_IMPORTABLE):
        raise ValueError(f"{fn!r} is not an importable module-level function, so it cannot be stored in a "
                         "config; define it at module level")
    return ref


def callable_ref(fn: Any) -> str:
    """``"module:qualname"`` of an importable function, else ``"not-importable:module:qualname"``.

    The second form records what the function was, so that a model holding a lambda can still be saved;
    :func:`import_callable` refuses it with a message that says which parameter to pass again.
    """
    module = getattr(fn, "__module__", None) or "?"
    qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    path = f"{module}:{qual}"
    if "<" in qual:
        return NOT_IMPORTABLE + path
    try:
        found = import_callable(path)
    except ValueError:
        return NOT_IMPORTABLE + path
    return path if found is fn else NOT_IMPORTABLE + path


def import_callable(path: str, param: str = "fn") -> Any:
    """The function named by ``"module:qualname"``.

    Args:
        path: what :func:`callable_ref` wrote.
        param: the parameter that held the function, named in errors (``"transfer_function"``, ...).

    Raises:
        ValueError: ``path`` records a function that cannot be imported, or importing it fails.
    """
    import importlib

    if isinstance(path, str) and path.startswith(NOT_IMPORTABLE):
        raise ValueError(f"{param} was {path[len(NOT_IMPORTABLE):]!r}, a lambda or local function, which a "
                         f"config or weights file records by name only; pass the function again: "
                         f"params[{param!r}] = <the function>")
    if not isinstance(path, str) or ":" not in path:
        raise ValueError(f"{param}: expected 'module:function', got {path!r}")
    module, qual = path.split(":", 1)
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{param}: cannot import {path!r} ({err}); pass the function again: "
                         f"params[{param!r}] = <the function>") from None
    return obj
