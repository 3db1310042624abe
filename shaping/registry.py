"""One registry of named classes, shared by tasks, policy kinds and the agents' model objects.

Keras' way (``keras/src/constraints/__init__.py``): a class is found by its ``ClassName`` and its
``snake_name``; :meth:`Registry.get` builds an object from None, a name, a ``{"class_name", "config"}`` dict or
an instance. As in Gymnasium's ``make``, an unknown name is an error that lists the known names and suggests the
closest ones. The standard library only: no NumPy, no TensorFlow, so every layer may import it.

Who keeps which registry: :mod:`shaping.tasks.registry` (tasks), :mod:`shaping.policies.base` (policy kinds),
and each of :mod:`agents.constraints`, ``initializers``, ``regularizers``, ``losses``, ``optimizers``.
"""
from __future__ import annotations

import contextlib
import difflib
import re
from typing import Any, Callable, Iterator, TypeVar

__all__ = ["Registry", "snake", "legacy_snake"]

C = TypeVar("C", bound=type)


def snake(name: str) -> str:
    """The snake_case form of a class name, an acronym kept as one word.

    ``PerceptualDiscrimination`` -> ``perceptual_discrimination``, ``GoNoGo`` -> ``go_no_go``,
    ``ContextDependentDM`` -> ``context_dependent_dm``, ``DMS`` -> ``dms``, ``RMSProp`` -> ``rms_prop``,
    ``L2FiringRate`` -> ``l2_firing_rate``.
    """
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def legacy_snake(name: str) -> str:
    """The snake_case form tasks and policy kinds were registered under before :func:`snake`: every capital
    starts a word (``ContextDependentDM`` -> ``context_dependent_d_m``). Kept as an alias, since lab files and
    journals written then use it."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _fold(key: str) -> str:
    """What two spellings of one name share: ``PerceptualDiscrimination`` and ``perceptual_discrimination``."""
    return key.lower().replace("_", "")


class Registry:
    """Classes of one kind (``what``: "task", "constraint", ...), found by name.

    A class registered without an explicit name is found by its ``ClassName`` (its primary name, listed by
    :meth:`names`) and its :func:`snake` name; ``aliases`` add more keys. A later registration under a key
    replaces the earlier one.

    Args:
        what: the kind, as error messages name it ("task", "policy kind", "constraint").
        base: every registered class must derive from it (``TypeError`` otherwise).
        error: the exception class an unknown name raises (a ``ValueError`` subclass, so callers catch one type).
        unknown: the message of that error, formatted with ``what``, ``name`` (the name asked for), ``known``
            (the primary names, comma-separated) and ``suggestion`` (`` (did you mean 'X'?)`` or empty).
    """

    def __init__(self, what: str, base: type = object, *, error: type[Exception] = ValueError,
                 unknown: str = "unknown {what} {name!r}{suggestion}; known {what}s: {known}"):
        self.what = what
        self.base = base
        self.error = error
        self.unknown = unknown
        self._classes: dict[str, type] = {}  # every key (primary names and aliases) -> class
        self._primary: dict[type, str] = {}  # class -> the name it is listed under

    # ------------------------------------------------------------------ registering
    def register(self, cls: C | None = None, *, name: str | None = None,
                 aliases: tuple[str, ...] | list[str] = ()) -> C | Callable[[C], C]:
        """Class decorator: ``@registry.register``, or ``@registry.register(name="pkg>Name")`` as Keras
        registers user classes (then only ``name`` and ``aliases`` are keys, not the class's own names).

        Raises:
            TypeError: ``cls`` does not derive from the registry's ``base``.
        """
        def add(c: C) -> C:
            if not (isinstance(c, type) and issubclass(c, self.base)):
                raise TypeError(f"cannot register {getattr(c, '__name__', c)!r} as a {self.what}: it must be a "
                                f"class deriving from {self.base.__name__}")
            keys = [name] if name else [c.__name__, snake(c.__name__)]
            for key in (*keys, *aliases):
                self._classes[key] = c
            self._primary[c] = keys[0]
            return c
        return add(cls) if cls is not None else add

    @contextlib.contextmanager
    def scope(self) -> Iterator["Registry"]:
        """``with registry.scope():`` registrations made inside are forgotten on leaving (tests, examples)."""
        classes, primary = dict(self._classes), dict(self._primary)
        try:
            yield self
        finally:  # in place: a module may hold the dict itself
            self._classes.clear()
            self._classes.update(classes)
            self._primary.clear()
            self._primary.update(primary)

    # ------------------------------------------------------------------ finding
    def names(self) -> list[str]:
        """The primary names (``ClassName``, or the name given at registration), sorted."""
        return sorted({self._primary.get(c, c.__name__) for c in self._classes.values()})

    def keys(self) -> list[str]:
        """Every key a class is found by (primary names and aliases), sorted."""
        return sorted(self._classes)

    def classes(self) -> list[type]:
        """The registered classes, each once, sorted by primary name."""
        return sorted(set(self._classes.values()), key=lambda c: self._primary.get(c, c.__name__))

    def __contains__(self, key: object) -> bool:
        try:
            return key in self._classes
        except TypeError:  # an unhashable "name"
            return False

    def suggest(self, name: Any, n: int = 3) -> list[str]:
        """Up to ``n`` known keys closest to ``name`` (case and underscores ignored), best first; each class
        once, spelt as ``name`` is (a snake_case key for a lower-case name, the primary name otherwise)."""
        if not isinstance(name, str) or not name:
            return []
        spellings: dict[str, list[str]] = {}
        for key in self._classes:
            spellings.setdefault(_fold(key), []).append(key)
        out: list[str] = []
        seen: set[type] = set()
        for folded in difflib.get_close_matches(_fold(name), list(spellings), n=2 * n, cutoff=0.6):
            keys = spellings[folded]
            cls = self._classes[keys[0]]
            if cls in seen:
                continue
            seen.add(cls)
            lower = [k for k in keys if k.islower()]
            out.append(lower[0] if name.islower() and lower else self._primary.get(cls, keys[0]))
        return out[:n]

    def lookup(self, name: Any) -> type:
        """The class registered as ``name``.

        Raises:
            the registry's ``error``: an unknown name; the message lists the known names and the closest ones.
        """
        if name in self:
            return self._classes[name]
        raise self.unknown_name(name)

    def unknown_name(self, name: Any, suggestions: list[str] | None = None) -> Exception:
        """The error for an unknown ``name``: the registry's ``error`` with its ``unknown`` message, suggesting
        ``suggestions`` (default: :meth:`suggest`)."""
        close = self.suggest(name) if suggestions is None else suggestions
        suggestion = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        return self.error(self.unknown.format(what=self.what, name=name, known=", ".join(self.names()),
                                              suggestion=suggestion))

    # ------------------------------------------------------------------ objects (Keras' get / serialize)
    def get(self, identifier: Any) -> Any:
        """An instance from ``None`` (returns None), a name (built without arguments),
        ``{"class_name": ..., "config": {...}}`` (built with ``from_config``) or an instance (returned as is).

        Raises:
            TypeError: anything else.
            the registry's ``error``: an unknown name, or a dict without ``class_name``.
        """
        if identifier is None:
            return None
        if isinstance(identifier, str):
            return self.lookup(identifier)()
        if isinstance(identifier, dict):
            if "class_name" not in identifier:
                raise self.error(f"a {self.what} config must be {{'class_name': ..., 'config': {{...}}}}, "
                                 f"got keys {sorted(identifier)}")
            return self.lookup(identifier["class_name"]).from_config(dict(identifier.get("config", {})))
        if isinstance(identifier, self.base):
            return identifier
        raise TypeError(f"cannot interpret {identifier!r} as a {self.what}: expected None, a name, a "
                        f"{{'class_name', 'config'}} dict or a {self.base.__name__} instance")

    def serialize(self, obj: Any) -> dict | None:
        """``{"class_name": primary name, "config": obj.get_config()}`` (None for None)."""
        if obj is None:
            return None
        return {"class_name": self._primary.get(type(obj), type(obj).__name__), "config": obj.get_config()}

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self.names())} classes)"
