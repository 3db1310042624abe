"""A small Keras-style registry: classes by ``ClassName`` and ``snake_name``, ``get`` and ``serialize``.

Each of :mod:`agents.constraints`, :mod:`agents.initializers`, :mod:`agents.regularizers`,
:mod:`agents.losses` and :mod:`agents.optimizers` keeps one :class:`Registry` of its classes. An object
travels as plain data: ``{"class_name": "Dale", "config": {...}}`` where ``config`` is exactly the
constructor's arguments (``get_config()``), and comes back with ``registry.get(that_dict)``.
"""
from __future__ import annotations

import json
import re
from typing import Any


def snake(name: str) -> str:
    """``GaussianSpectralRadius`` -> ``gaussian_spectral_radius``; an acronym stays one word (``SGD`` ->
    ``sgd``, ``L2FiringRate`` -> ``l2_firing_rate``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


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


class Registry:
    """Classes of one kind (``what``: "constraint", "initializer", ...), found by name.

    Args:
        what: the kind, used in error messages.
        base: the base class every registered class derives from.
    """

    def __init__(self, what: str, base: type):
        self.what = what
        self.base = base
        self._classes: dict[str, type] = {}

    def register(self, cls: type | None = None, *, name: str | None = None):
        """Class decorator: ``@registry.register`` or ``@registry.register(name="pkg>Name")``."""
        def add(c: type) -> type:
            if not issubclass(c, self.base):
                raise TypeError(f"cannot register {c.__name__} as a {self.what}: it must derive from "
                                f"{self.base.__name__}")
            keys = [name] if name else [c.__name__, snake(c.__name__)]
            for key in keys:
                self._classes[key] = c
            return c
        return add(cls) if cls is not None else add

    def names(self) -> list[str]:
        """The registered class names."""
        return sorted({c.__name__ for c in self._classes.values()})

    def lookup(self, name: str) -> type:
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(f"unknown {self.what} {name!r}; known {self.what}s: "
                             f"{', '.join(self.names())}") from None

    def get(self, identifier: Any):
        """An instance from ``None`` (returns None), a name, ``{"class_name", "config"}`` or an instance."""
        if identifier is None or isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, str):
            return self.lookup(identifier)()
        if isinstance(identifier, dict):
            if "class_name" not in identifier:
                raise ValueError(f"a {self.what} config must be {{'class_name': ..., 'config': {{...}}}}, "
                                 f"got keys {sorted(identifier)}")
            return self.lookup(identifier["class_name"]).from_config(dict(identifier.get("config", {})))
        raise TypeError(f"cannot interpret {identifier!r} as a {self.what}: expected None, a name, a "
                        f"{{'class_name', 'config'}} dict or a {self.base.__name__} instance")

    def serialize(self, obj: Any) -> dict | None:
        """``{"class_name", "config"}`` for ``obj`` (None for None)."""
        if obj is None:
            return None
        return {"class_name": type(obj).__name__, "config": obj.get_config()}


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
