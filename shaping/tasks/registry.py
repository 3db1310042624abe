"""The task registry: ``make(name, **kwargs)`` and ``catalog()``.

A name is a registered class name (``"PerceptualDiscrimination"``), its snake_case form
(``"perceptual_discrimination"``, an acronym kept as one word: ``"context_dependent_dm"``), the snake_case form
used before that (``"context_dependent_d_m"``, kept so that old lab files and journals load), or
``"module:Class"`` for a user's :class:`~shaping.tasks.base.Task` subclass in an importable module (on
``sys.path``; a lab puts the directory of its TOML file there, for itself and for the server and agent processes
it starts). The registry itself is a :class:`shaping.registry.Registry`, :data:`TASKS`.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

import pandas as pd

from ..registry import Registry, legacy_snake
from .base import Task

TASKS = Registry("task", Task, unknown="unknown task {name!r}{suggestion}; known tasks: {known}; a task of your own "
                 "is named 'module:Class' (the module importable, e.g. beside the lab's TOML file)")
_REGISTRY: dict[str, type] = TASKS._classes  # every key -> class (tests pop from it; kept for them)


def register(cls: type) -> type:
    """Class decorator: make ``cls`` available to :func:`make` by its class name and snake_case name (and the
    older snake_case form, where it differs)."""
    return TASKS.register(cls, aliases=(legacy_snake(cls.__name__),))


def get(name: str) -> type:
    """The task class called ``name``: registered, or ``"module:Class"`` imported from ``module``.

    Raises:
        ValueError: unknown name (the message lists the registered tasks, the closest names and the
            ``module:Class`` form), a module that cannot be imported, a missing class, or a class that is not a
            Task subclass.
    """
    if not isinstance(name, str):
        raise ValueError(f"task name must be a string, got {name!r}")
    if ":" in name:
        return _import_task(name)
    module, _, cls = name.rpartition(".")
    if module and cls and name not in TASKS:  # "mytasks.MyTask" for "mytasks:MyTask"
        raise TASKS.unknown_name(name, [f"{module}:{cls}"])
    return TASKS.lookup(name)


def _import_task(name: str) -> type:
    """The class ``Class`` of ``"module:Class"``, imported (``ValueError`` naming what went wrong)."""
    module_name, _, cls_name = name.partition(":")
    if not module_name or not cls_name or ":" in cls_name:
        raise ValueError(f"task {name!r}: expected 'module:Class', e.g. 'mytasks:MyTask'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"task {name!r}: cannot import module {module_name!r} ({err}); it must be on "
                         f"sys.path (a lab adds the directory of its TOML file)") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ValueError(f"task {name!r}: module {module_name!r} ({getattr(module, '__file__', '?')}) has no "
                         f"attribute {cls_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"task {name!r}: {cls_name} is {cls!r}, not a subclass of shaping.tasks.Task")
    return cls


def make(name: str, **kwargs: Any):
    """Build a task to serve, e.g. ``make("PerceptualDiscrimination", dt=10, T=2000, seed=0)`` or
    ``make("mytasks:MyTask", seed=0)``.

    Raises:
        ValueError: an unknown name (see :func:`get`), or a task that ``score`` cannot judge (one output
            channel and neither ``accuracy_function`` nor choice methods).
    """
    task = get(name)(**kwargs)
    task._check_scorable()
    return task


def _builds_without_arguments(cls: type) -> bool:
    """True when every constructor parameter of ``cls`` has a default."""
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return all(p.default is not p.empty or p.kind in variadic for p in inspect.signature(cls).parameters.values())


def catalog() -> pd.DataFrame:
    """One row per registered task: name, what it models, source paper, inputs/outputs and knobs.

    A registered class that cannot be built without arguments (a PsychRNN-style constructor) is left out.
    """
    rows = []
    for cls in sorted(TASKS.classes(), key=lambda c: c.__name__):
        if not _builds_without_arguments(cls):
            continue
        task = cls()
        meta = cls.metadata
        rows.append({
            "name": cls.__name__,
            "models": meta.get("description", ""),
            "paper": meta.get("paper_name", ""),
            "link": meta.get("paper_link", ""),
            "inputs": ", ".join(task.channel_names("in")),
            "outputs": ", ".join(task.channel_names("out")),
            "knobs": ", ".join(f"{k.name} ({k.easier} easier)" if k.easier else k.name for k in cls.knobs),
        })
    return pd.DataFrame(rows)
