"""Resuming a server on its journal: each journaled session rebuilt from the config as its HELLO built it, and a
config that would resume a session under another curriculum or task refused (:class:`ConfigChanged`), naming
each differing key."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from .. import journal
from ..errors import ConfigChanged
from ..labfile import ServerConfig
from .sessions import Session, _plain_knobs

__all__ = ["ConfigChanged", "check_resume", "resume_session"]


def resume_session(config: ServerConfig, hello: Mapping[str, Any]) -> tuple[Session | None, str | None]:
    """A journaled session rebuilt from ``config`` as its HELLO built it (the curriculum it names, the task,
    the journaled seed), and what differs: None, or a line naming the agent and each differing key of the
    normalised curriculum spec and of the task config, ``old -> new``."""
    agent, name = hello["agent"], hello["curriculum"]
    if name not in config.curricula:
        return None, (f"agent {agent!r}: curriculum {name!r} is not in the config (curricula: "
                      f"{', '.join(config.curricula)})")
    s = Session(agent, hello["session"], name, dict(config.curricula[name]), config.task, hello["seed"],
                config.window_trials)
    old = _plain_knobs({"curriculum": hello["spec"], "task": hello["task"]})
    new = _plain_knobs({"curriculum": s.spec, "task": s.task_config})
    diffs = [f"{key}: {_short(a)} -> {_short(b)}" for key, a, b in _differences(old, new)]
    return s, (f"agent {agent!r} (curriculum {name!r}): " + "; ".join(diffs)) if diffs else None


def check_resume(config: ServerConfig) -> None:
    """Raise :class:`ConfigChanged` when ``config`` would resume a session of its journal under another
    curriculum or task, as :meth:`TaskServer.start` would (reads only the journal's HELLO records). A new agent
    or curriculum is no change; a session whose curriculum left the config (with its agent, say) is kept as
    journaled."""
    if not Path(config.journal).is_dir():
        return
    hellos = {rec["agent"]: rec for _, rec in journal.iter_records(config.journal, kinds=[journal.HELLO])}
    changes = [r[1] for hello in hellos.values() if (r := resume_session(config, hello))[0] is not None and r[1]]
    if changes:
        raise ConfigChanged(config.journal, changes)


_ABSENT = object()


def _differences(old: Any, new: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, old, new)`` for every leaf where two plain-data trees differ (lists by index)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(dict.fromkeys([*old, *new]))
        pairs = [(str(k), old.get(k, _ABSENT), new.get(k, _ABSENT)) for k in keys]
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        pairs = [(str(i), a, b) for i, (a, b) in enumerate(zip(old, new))]
    else:
        return [] if old == new else [(key, old, new)]
    return [d for k, a, b in pairs for d in _differences(a, b, f"{key}.{k}" if key else k)]


def _short(value: Any, limit: int = 80) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


