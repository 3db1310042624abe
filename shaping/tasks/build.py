"""Trials built beside the agent (protocol 2): the tasks a session builds from, the key each goes by, and the
fingerprint both sides compare before an agent builds a single trial.

The server decides every batch (its id in the session's seeded stream, stage, knobs, correction repeats) and
scores it; an agent that builds its own trials must build exactly the batch the server will score. Both sides
therefore construct the same task classes from the same configs and compare a **fingerprint**: a digest of the
task configs, each task's ``spec()``, the source files of each task class and its bases, the versions that build
trials (:func:`versions`) and a small probe batch of each task. Any difference (another NumPy whose generator
draws otherwise, an edited task module) changes it, and the server refuses the agent's requests
(``BUILD_MISMATCH``) before a trial is scored.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import sys
from functools import lru_cache
from importlib import metadata
from typing import Any, Mapping

import numpy as np

__all__ = ["fingerprint", "make_task", "task_key", "versions"]


def versions() -> dict[str, str]:
    """What builds trials on this side: the ``skinnerbox`` and ``numpy`` versions (NumPy's generators define
    every random draw of a batch)."""
    try:
        own = metadata.version("skinnerbox")
    except metadata.PackageNotFoundError:
        own = "unknown"
    return {"skinnerbox": own, "numpy": np.__version__}


def make_task(config: Mapping[str, Any], seed: int) -> Any:
    """The task of ``config`` (``{"name": registered task, **constructor arguments}``) seeded with ``seed``."""
    from . import make

    kwargs = {k: v for k, v in config.items() if k != "name"}
    kwargs["seed"] = seed
    return make(config["name"], **kwargs)


def _canonical(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def task_key(config: Mapping[str, Any]) -> str:
    """The short name a task config goes by in WELCOME's ``tasks`` and BATCH's ``build`` (a digest of it)."""
    return hashlib.blake2b(_canonical(config).encode(), digest_size=6).hexdigest()


def _sources(cls: type) -> dict[str, str]:
    """Digest of the source file of every module defining ``cls`` or one of its bases."""
    out = {}
    for klass in cls.__mro__:
        module = sys.modules.get(klass.__module__)
        if klass is object or module is None or module.__name__ in out:
            continue
        try:
            path = inspect.getsourcefile(module)
            data = open(path, "rb").read() if path else b""
        except (OSError, TypeError):
            data = b""
        out[module.__name__] = hashlib.sha256(data).hexdigest()[:16]
    return out


def _probe(task: Any) -> str:
    """Digest of a 2-trial batch of ``task`` (batch 0 of its stream): inputs, targets, mask and params."""
    batch = task.generate(n=2, batch_id=0)
    h = hashlib.sha256()
    for a in (batch.x, batch.y, batch.mask):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr(batch.params.to_dict("list")).encode())
    return h.hexdigest()[:16]


def fingerprint(tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """The fingerprint of what builds the trials of ``tasks`` (key -> task config) on this side (see the module
    docstring).

    Raises:
        ValueError: a task cannot be built here (its name is not registered, its module cannot be imported,
            an argument is refused), with the reason.
    """
    return _fingerprint(_canonical(dict(tasks)))


@lru_cache(maxsize=64)
def _fingerprint(canonical: str) -> str:
    record: dict[str, Any] = {"versions": versions(), "tasks": {}}
    for key, config in sorted(json.loads(canonical).items()):
        try:
            task = make_task(config, 0)
        except (TypeError, ValueError, ImportError) as err:
            raise ValueError(f"task {config.get('name')!r} cannot be built here: {err}") from None
        spec = {k: v for k, v in task.spec().items() if k != "seed"}
        record["tasks"][key] = {"config": config, "spec": spec, "sources": _sources(type(task)),
                                "probe": _probe(task)}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:32]

