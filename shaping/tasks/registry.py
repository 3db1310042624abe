"""The task registry: ``make(name, **kwargs)`` and ``catalog()``."""
from __future__ import annotations

import re
from typing import Any

import pandas as pd

_REGISTRY: dict[str, type] = {}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def register(cls: type) -> type:
    """Class decorator: make ``cls`` available to :func:`make` by its class name and snake_case name."""
    _REGISTRY[cls.__name__] = cls
    _REGISTRY[_snake(cls.__name__)] = cls
    return cls


def get(name: str) -> type:
    """The task class registered as ``name`` (``ValueError`` listing the known names otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted({c.__name__ for c in _REGISTRY.values()}))
        raise ValueError(f"unknown task {name!r}; known tasks: {known}") from None


def make(name: str, **kwargs: Any):
    """Build a registered task, e.g. ``make("PerceptualDiscrimination", dt=10, T=2000, seed=0)``."""
    return get(name)(**kwargs)


def catalog() -> pd.DataFrame:
    """One row per built-in task: name, what it models, source paper, inputs/outputs and knobs."""
    rows = []
    for cls in sorted({c for c in _REGISTRY.values()}, key=lambda c: c.__name__):
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
