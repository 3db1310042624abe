"""What goes into MLflow, spelled out as plain data: param names and values, and the one-line descriptions a run
shows. NumPy only; no MLflow import, so views and agents use these without it.

- :func:`flatten_params` / :func:`unflatten_params`: a nested spec as readable dotted MLflow params and back;
  :func:`plain` turns anything into JSON-able data first, :func:`safe_name` cleans keys and artifact names.
- :func:`knob_scalar`: one number for a scalar-valued setting (the stage index); never for display of a knob
  drawn from a set or range, which is logged as drawn (:func:`shaping.readout.knob_metrics`).
- :func:`describe_curriculum`, :func:`describe_model`, :func:`describe_lab`: the runs' descriptions (MLflow's
  ``mlflow.note.content`` tag, :data:`NOTE_TAG`), e.g. ``"curriculum shaped (stages: easy → mixed → final); N_rec
  50, Dale 0.8, no autapses, 2 regions"`` for an agent run.
- :func:`describe_labels`: what a list of dropped writes was, counted by kind (for warnings).
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAX_PARAM_VALUE_CHARS = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
MAX_KEY_CHARS = 250  # MLflow's MAX_ENTITY_KEY_LENGTH
NOTE_TAG = "mlflow.note.content"  # a run's (or experiment's) description in the MLflow UI, markdown


# ---------------------------------------------------------------------------------------------- params
def safe_name(name: Any) -> str:
    """``name`` with every character MLflow refuses in keys and artifact names replaced by ``_``."""
    text = re.sub(r"[^\w.\- /]", "_", str(name)).strip("/ ") or "_"
    return re.sub(r"/+", "/", text).replace("..", "_.")


def plain(obj: Any, max_array: int = 1000) -> Any:
    """``obj`` as JSON-able data: NumPy scalars and small arrays to Python, ``get_config()`` objects to
    ``{"class_name", "config"}``, callables to their qualified name, anything else to ``repr``."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, np.ndarray):
        if obj.size <= max_array:
            return plain(obj.tolist())
        return f"<array shape={list(obj.shape)} dtype={obj.dtype}>"
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "get_config") and callable(obj.get_config):
        try:
            return {"class_name": type(obj).__name__, "config": plain(obj.get_config())}
        except Exception:
            pass
    if callable(obj):
        return ".".join(p for p in (getattr(obj, "__module__", ""), getattr(obj, "__qualname__", "")) if p) \
            or repr(obj)
    return repr(obj)


def _encode(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_PARAM_VALUE_CHARS:
        marker = f"...[truncated, {len(text)} chars]"
        text = text[: MAX_PARAM_VALUE_CHARS - len(marker)] + marker
    return text


def flatten_params(spec: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """A nested spec as MLflow params with readable dotted names.

    Dicts nest with ``.``; lists of plain values are one JSON value, lists holding dicts or lists nest by
    index (``policy.stages.0.knobs.coherence``); strings stay as they are, other values are JSON
    (``0.8``, ``true``, ``null``). Keys lose characters MLflow refuses (see :func:`safe_name`) and are cut at
    250 characters; values longer than MLflow's 6000 characters are truncated with a marker (the whole spec
    is also logged as a JSON artifact).

    Example: ``flatten_params({"stages": [{"name": "easy", "knobs": {"coherence": [0.5, 0.7]}}]}, "policy")``
    gives ``{"policy.stages.0.name": "easy", "policy.stages.0.knobs.coherence": "[0.5, 0.7]"}``.
    """
    out: dict[str, str] = {}

    def walk(obj: Any, key: str) -> None:
        if isinstance(obj, Mapping) and obj:
            for k, v in obj.items():
                walk(v, f"{key}.{k}")
        elif isinstance(obj, list) and any(isinstance(v, (Mapping, list)) for v in obj):
            for i, v in enumerate(obj):
                walk(v, f"{key}.{i}")
        else:
            out[safe_name(key)[:MAX_KEY_CHARS]] = _encode(obj)

    walk(plain(dict(spec)), prefix)
    if not spec:
        out.pop(prefix, None)
    return out


def unflatten_params(params: Mapping[str, str], prefix: str) -> dict[str, Any]:
    """Inverse of :func:`flatten_params` for the keys under ``prefix`` (JSON values decoded, index-keyed
    levels back to lists). Keys that themselves contained dots come back nested; truncated values stay
    truncated (read the JSON artifact for those)."""
    root: dict[str, Any] = {}
    head = prefix + "."
    for key, text in params.items():
        if not key.startswith(head):
            continue
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            value = text
        node = root
        parts = key[len(head):].split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        node = {k: lists(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node) and sorted(map(int, node)) == list(range(len(node))):
            return [node[str(i)] for i in range(len(node))]
        return node

    return lists(root)


def now_ms() -> int:
    """Wall-clock time in ms, MLflow's metric timestamp."""
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------- knobs
def knob_scalar(value: Any) -> float | None:
    """One number for a value: the number itself, the mean of a list of choices, the midpoint of
    ``{"uniform": [lo, hi]}``; None for anything else. Not for showing a knob (a mean hides what trials were
    drawn from): use :func:`shaping.readout.knob_drawn` / :func:`~shaping.readout.knob_metrics`."""
    if isinstance(value, Mapping):
        value = value.get("uniform")
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return None
    return float(arr.mean())


# ---------------------------------------------------------------------------------------------- descriptions
def describe_curriculum(spec: Mapping[str, Any] | None, name: str | None = None) -> str:
    """One line for a curriculum: ``"curriculum shaped (stages: easy → mixed → final)"``.

    Args:
        spec: the policy spec (``policy.get_config()`` or the lab file's ``[curricula.<name>]`` table); its
            ``kind`` and stage names (``stages``), staircase knob (``knob``) or task count (``tasks``) are shown.
        name: the curriculum's name in the lab file (None: not shown).
    """
    spec = dict(spec or {})
    kind = str(spec.get("kind") or "")
    stages = spec.get("stages")
    if isinstance(stages, list) and stages:
        names = [str(s.get("name", i)) if isinstance(s, Mapping) else str(i) for i, s in enumerate(stages)]
        detail = f"{kind or 'stages'}: {' → '.join(names)}"
    elif spec.get("knob"):
        detail = f"{kind or 'staircase'} on {spec['knob']}"
    elif isinstance(spec.get("tasks"), list):
        detail = f"{kind or 'curriculum'} of {len(spec['tasks'])} tasks"
    elif spec.get("stage") and kind:
        detail = f"{kind}: {spec['stage']}"
    else:
        detail = kind
    head = f"curriculum {name}" if name else "curriculum"
    return f"{head} ({detail})" if detail else head


def _count(regions: Any) -> int | None:
    """Regions in a region spec (``{"regions": {name: size}, ...}``, a ``{name: size}`` table or a list)."""
    if isinstance(regions, Mapping):
        inner = regions.get("regions")
        return len(inner) if isinstance(inner, (Mapping, list)) else len(regions)
    return len(regions) if isinstance(regions, (list, tuple)) else None


def describe_model(config: Mapping[str, Any] | None) -> str:
    """One line for a network's constraints: ``"N_rec 50, Dale 0.8, no autapses, 2 regions"``.

    Args:
        config: the model config (``model.config()``) or a lab file's agent table (its keys ``model``,
            ``N_rec``, ``dale_ratio``, ``autapses``, ``rec_density``, ``regions``, ``fixed`` are read; a nested
            ``model`` table and a ``constraints`` (or ``constraint``) section are read too). Only what departs
            from a free, fully connected network is named.
    """
    config = dict(config or {})
    for section in ("model", "constraints", "constraint"):
        if isinstance(config.get(section), Mapping):
            config = {**config, **config.pop(section)}
    parts = []
    kind = config.get("model")
    if isinstance(kind, str) and kind not in ("Basic", "basic", "rate"):
        parts.append(kind)
    if config.get("N_rec") is not None:
        parts.append(f"N_rec {config['N_rec']}")
    if config.get("dale_ratio") is not None:
        parts.append(f"Dale {config['dale_ratio']:g}" if isinstance(config["dale_ratio"], (int, float))
                     else f"Dale {config['dale_ratio']}")
    if config.get("autapses") is False:
        parts.append("no autapses")
    for key in ("input_density", "rec_density", "output_density"):
        value = config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 1:
            parts.append(f"{key.replace('_', ' ')} {value:g}")
    if config.get("regions") and (n := _count(config["regions"])):
        parts.append(f"{n} region" + ("s" if n != 1 else ""))
    if config.get("fixed"):
        parts.append("fixed synapses")
    if config.get("train_tau") is True:
        parts.append("trainable tau")
    return ", ".join(parts)


def describe_agent(curriculum: str | None, model: Mapping[str, Any] | None) -> str:
    """An agent run's description: its curriculum line (:func:`describe_curriculum`) and constraints
    (:func:`describe_model`), joined by ``"; "``."""
    return "; ".join(p for p in (curriculum, describe_model(model)) if p)


def describe_lab(config: Mapping[str, Any] | None) -> str:
    """A lab's description, markdown: a line for the lab (name and experiment), a blank line, then one line for
    each agent (its curriculum and constraints) and for each curriculum (:func:`describe_curriculum`).

    Args:
        config: the lab config (``[lab]``, ``[[agents]]``, ``[curricula]`` tables as plain data); missing
            tables are left out.
    """
    config = dict(config or {})
    lab = config.get("lab") if isinstance(config.get("lab"), Mapping) else {}
    agents = [a for a in config.get("agents") or [] if isinstance(a, Mapping)]
    curricula = config.get("curricula") if isinstance(config.get("curricula"), Mapping) else {}
    name = lab.get("name") or config.get("name")
    if not (name or agents or curricula):
        return ""
    head = f"Lab **{name}**" if name else "Lab"
    if lab.get("experiment") and lab.get("experiment") != name:
        head += f" (experiment {lab['experiment']})"
    lines = [f"{head}: {len(agents)} agent{'s' if len(agents) != 1 else ''}, "
             f"{len(curricula)} curricul{'a' if len(curricula) != 1 else 'um'}.", ""]
    for entry in agents:
        model = {k: v for k, v in entry.items() if k not in ("name", "curriculum")}
        line = describe_agent(f"curriculum {entry['curriculum']}" if entry.get("curriculum") else None, model)
        lines.append(f"- agent {entry.get('name', '?')}" + (f": {line}" if line else ""))
    for cname, spec in curricula.items():
        lines.append(f"- {describe_curriculum(spec if isinstance(spec, Mapping) else {}, cname)}")
    return "\n".join(lines).strip()


# ---------------------------------------------------------------------------------------------- warnings
def describe_labels(labels: Sequence[str], shown: int = 6) -> str:
    """Labels such as ``"connectivity figures (stage0_easy_trial384)"`` counted by kind (the text before
    `` (``), with the first ``shown`` details of each: ``"2 connectivity figures (stage0_easy_trial384,
    stage1_final_trial640)"``."""
    kinds: dict[str, list[str]] = {}
    for label in labels:
        kind, _, detail = label.partition(" (")
        kinds.setdefault(kind, []).append(detail.removesuffix(")"))
    parts = []
    for kind, details in kinds.items():
        named = [d for d in details if d]
        more = f", and {len(named) - shown} more" if len(named) > shown else ""
        parts.append(f"{len(details)} {kind}" + (f" ({', '.join(named[:shown])}{more})" if named else ""))
    return "; ".join(parts)
