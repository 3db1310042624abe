"""MLflow provenance, server side: the lab's parent run and each agent's curriculum.

Layout (one experiment per lab): :class:`LabRun` is the parent run of a lab session (the lab config as
``lab_config.json``, the git commit and package versions as tags); :meth:`LabRun.child` makes one child run
per agent (``mlflow.parentRunId``) and returns the plain ``run`` dict the server sends the agent in WELCOME,
so that the server (:class:`CurriculumTracker`) and the agent (:class:`agents.tracking.AgentTracker`) write to
the same run. What the curriculum tracker writes into an agent's run:

- params ``policy.*`` and ``task.*``: the curriculum and task specs flattened to dotted names (see
  :func:`flatten_params`), and both whole as ``curriculum/policy.json`` and ``curriculum/task.json``;
- metrics with the trial count as step: ``curriculum/accuracy`` (the batch), ``curriculum/accuracy_window``
  (the last ``window_trials`` trials of the current stage, the server's view), ``curriculum/policy_accuracy``
  (the policy's own accuracy, over its own window: what its graduation and regression criteria read; absent
  for policies that keep none), ``curriculum/p_no_response``,
  ``curriculum/stage_index``, ``curriculum/reversals`` (cumulative count of staircase reversal events) and
  ``knob/<name>`` for each knob (a list-valued knob logs the mean of its choices, a ``{"uniform": [lo, hi]}``
  knob the midpoint; non-numeric knobs are skipped);
- ``curriculum/events.json``: every event as a table (MLflow's ``log_table``, appended at each batch that
  has events), with ``step`` (the trial count of the batch) added to the event's own fields;
- at the end, ``curriculum/trials.parquet`` (the agent's whole trial log), ``curriculum/psychometric/
  <stage>.png`` per stage, ``curriculum/timeline.png`` and ``curriculum/curves.png``.

Nothing here may stop training. Store calls run on one background thread per tracker and metrics are
buffered and written with ``log_batch`` (every ``flush_interval_s`` seconds or ``flush_metrics`` values, and
at the end). The first store failure (unreachable server, unwritable file) logs a single warning and turns
tracking off for the process; :func:`sync` rebuilds the runs from the journal afterwards. Importing this
module sets, unless already set: ``MLFLOW_DISABLE_TELEMETRY=true``, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` and
``MLFLOW_HTTP_REQUEST_TIMEOUT=5`` (seconds), so that a dead server costs one short timeout, not minutes of
retries. sqlite stores tolerate several writing processes: MLflow sets a 20 s busy timeout, every call
here is retried on "database is locked", and :func:`ensure_experiment` takes a file lock so that processes
racing to create a new store run MLflow's schema migrations one at a time.

Never imports TensorFlow.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import queue
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

# Before MLflow is imported: no telemetry, and a dead tracking server costs one short timeout, no retries.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from .scoring import PsychometricAxes, psychometric_axes  # noqa: E402

logger = logging.getLogger(__name__)

MAX_PARAM_VALUE_CHARS = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
MAX_KEY_CHARS = 250  # MLflow's MAX_ENTITY_KEY_LENGTH
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
PACKAGES = ("skinnerbox", "numpy", "pandas", "pyzmq", "msgpack", "mlflow", "matplotlib", "pyarrow", "scipy",
            "tensorflow", "tensorflow-cpu")
# MLflow error codes that mean "this call was wrong", not "the store is gone": warn, keep tracking.
_USAGE_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE", "BAD_REQUEST"}


# ---------------------------------------------------------------------------------------------- stores
def default_tracking_uri(workdir: str | os.PathLike = ".") -> str:
    """``sqlite:///<absolute workdir>/mlflow.db``: the embedded store, no server to start."""
    return f"sqlite:///{(Path(workdir).resolve() / 'mlflow.db').as_posix()}"


def resolve_tracking_uri(tracking_uri: str | None = None, workdir: str | os.PathLike = ".") -> str:
    """``tracking_uri`` if given, else ``$MLFLOW_TRACKING_URI``, else :func:`default_tracking_uri`."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(workdir)


def default_artifact_root(tracking_uri: str) -> str | None:
    """``<folder of the sqlite file>/mlartifacts`` for an sqlite URI, None for other stores (a tracking
    server has its own artifact root)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return str(Path(tracking_uri[len("sqlite:///"):]).resolve().parent / "mlartifacts")


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """Exclusive lock on ``<db>.lock`` beside an sqlite store, so that processes racing to create a new
    store run MLflow's schema migrations one at a time (concurrent migrations corrupt the version table).
    A no-op for other stores and where ``fcntl`` is missing."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    db = Path(tracking_uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created if missing; safe when several processes race to create it
    (and the store itself).

    Args:
        tracking_uri: any MLflow tracking URI.
        name: experiment name (one per lab).
        artifact_location: where its artifacts go; default for sqlite stores
            ``<db folder>/mlartifacts/<name>`` (MLflow's own default is relative to the current directory).

    Raises:
        MlflowException or a connection error when the store cannot be reached.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"ensure_experiment: name must be a non-empty string, got {name!r}")
    if artifact_location is None and (root := default_artifact_root(tracking_uri)):
        artifact_location = Path(root, safe_name(name)).as_uri()
    with _store_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as err:  # created meanwhile by a process that does not take the lock
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return client.get_experiment_by_name(name).experiment_id


def _retry_locked(fn: Callable, *args: Any, attempts: int = 6, **kwargs: Any) -> Any:
    """Call ``fn``, retrying with jittered backoff while sqlite answers "database is locked"."""
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if attempt == attempts - 1 or "database is locked" not in str(err):
                raise
            time.sleep(0.1 * 2 ** attempt + random.random() * 0.1)


def _is_store_error(err: BaseException) -> bool:
    """True when ``err`` means the store is unusable (as opposed to one bad call)."""
    if isinstance(err, MlflowException):
        return err.error_code not in _USAGE_ERRORS
    if isinstance(err, (OSError, ConnectionError, TimeoutError)):  # requests' errors are OSErrors
        return True
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover - sqlalchemy ships with mlflow
        return False
    return isinstance(err, SQLAlchemyError)


class StoreGuard:
    """Runs store calls so that no tracking failure reaches training.

    The first store failure logs one warning and disables the guard (every later call is a no-op); any other
    failure (a bad param value, a figure that cannot be drawn) logs one warning per label and is skipped.
    """

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self.enabled = True
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def disable(self, reason: str) -> None:
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
        logger.warning("MLflow tracking to %s is off for the rest of this process (%s). Training and "
                       "journaling go on; `skinnerbox sync` can fill the store from the journal later.",
                       self.tracking_uri, reason)

    def run(self, label: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, or None when disabled or when it failed."""
        if not self.enabled:
            return None
        try:
            return _retry_locked(fn, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must never stop training
            if _is_store_error(err):
                self.disable(f"{label}: {type(err).__name__}: {str(err)[:300]}")
            elif label not in self._warned:
                self._warned.add(label)
                logger.warning("MLflow tracking: %s failed and was skipped (%s: %s)", label,
                               type(err).__name__, str(err)[:300])
            return None


_DRAIN = object()  # queue marker: everything before it has run


class BackgroundWriter:
    """Runs a tracker's store calls in order on one daemon thread, off the caller's thread.

    ``background=False`` runs them inline (used by :func:`sync`). Pending calls are drained at interpreter
    exit (up to 30 s).
    """

    def __init__(self, guard: StoreGuard, background: bool = True, name: str = "mlflow-writer"):
        self.guard = guard
        self.background = background
        self._name = name
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        if background:
            atexit.register(self.drain, 30.0)

    def submit(self, label: str, fn: Callable, *args: Any, **kwargs: Any) -> None:
        """Run ``fn(*args, **kwargs)`` under the guard, now (inline) or soon (background)."""
        if not self.guard.enabled:
            return
        if not self.background:
            self.guard.run(label, fn, *args, **kwargs)
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put((label, fn, args, kwargs))

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Wait until everything submitted so far has run; False on timeout."""
        if not self.background or self._thread is None or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._queue.put((_DRAIN, done.set, (), {}))
        return done.wait(timeout_s)

    def _loop(self) -> None:
        while True:
            label, fn, args, kwargs = self._queue.get()
            if label is _DRAIN:
                fn()
            else:
                self.guard.run(label, fn, *args, **kwargs)


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
        except Exception:  # noqa: BLE001 - fall back to the name
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


def log_params_batched(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """``params`` in as few ``log_batch`` calls as MLflow allows (100 params each)."""
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[i:i + MAX_PARAMS_PER_BATCH], synchronous=True)


def log_metrics_batched(client: MlflowClient, run_id: str, metrics: Sequence[Metric]) -> None:
    """``metrics`` in as few ``log_batch`` calls as MLflow allows (1000 values each)."""
    for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=list(metrics[i:i + MAX_METRICS_PER_BATCH]), synchronous=True)


def now_ms() -> int:
    """Wall-clock time in ms, MLflow's metric timestamp."""
    return int(time.time() * 1000)


def provenance_tags() -> dict[str, str]:
    """Git commit (and whether the tree was dirty) of the skinnerbox checkout, and package versions."""
    tags = {"versions.python": sys.version.split()[0]}
    for pkg in PACKAGES:
        try:
            tags[f"versions.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        tags.update({"mlflow.source.git.commit": commit, "skinnerbox.git_commit": commit,
                     "skinnerbox.git_dirty": str(bool(dirty)).lower()})
    except (OSError, subprocess.SubprocessError):
        tags["skinnerbox.git_commit"] = "unknown"
    return tags


# ---------------------------------------------------------------------------------------------- lab run
class LabRun:
    """The parent run of one lab session; hands out one child run per agent.

    Build it with :meth:`start` (new session) or :meth:`attach` (resume). When the store cannot be reached
    the object is disabled: :meth:`child` still answers, with ``run_id`` None, and nothing is logged.

    Attributes:
        tracking_uri, experiment_id, run_id: where the parent run lives (ids None when disabled).
        client: the ``MlflowClient`` on ``tracking_uri``.
        guard: the :class:`StoreGuard` shared with the :class:`CurriculumTracker` built on this run.
    """

    def __init__(self, tracking_uri: str, experiment_id: str | None, run_id: str | None,
                 guard: StoreGuard | None = None):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.guard = guard or StoreGuard(tracking_uri)
        if run_id is None:
            self.guard.enabled = False
        self._client: MlflowClient | None = None
        self._children: dict[str, dict] = {}

    @property
    def client(self) -> MlflowClient:
        """The ``MlflowClient`` on ``tracking_uri``, made on first use (for sqlite that opens the file, so
        it is only touched inside guarded calls)."""
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def enabled(self) -> bool:
        return self.guard.enabled and self.run_id is not None

    @classmethod
    def start(cls, tracking_uri: str | None, experiment: str, lab_config: Mapping[str, Any],
              run_name: str | None = None, tags: Mapping[str, str] | None = None) -> "LabRun":
        """Create the parent run of a lab session.

        Args:
            tracking_uri: any MLflow URI; None: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///<cwd>/mlflow.db``.
            experiment: the lab's experiment name (created if missing).
            lab_config: the lab config, logged whole as ``lab_config.json``.
            run_name: name of the parent run (default: MLflow's generated name).
            tags: extra tags (git commit and package versions are added).
        """
        uri = resolve_tracking_uri(tracking_uri)
        guard = StoreGuard(uri)

        def create() -> tuple[str, str]:
            eid = ensure_experiment(uri, experiment)
            client = MlflowClient(tracking_uri=uri)
            all_tags = {**provenance_tags(), "skinnerbox.role": "lab", **dict(tags or {})}
            run = client.create_run(eid, run_name=run_name, tags=all_tags)
            client.log_dict(run.info.run_id, plain(dict(lab_config)), "lab_config.json")
            return eid, run.info.run_id

        ids = guard.run("LabRun.start", create)
        eid, rid = ids if ids else (None, None)
        return cls(uri, eid, rid, guard)

    @classmethod
    def attach(cls, tracking_uri: str, run_id: str) -> "LabRun":
        """Reattach to an existing parent run (a resumed lab); its children are found by agent name."""
        guard = StoreGuard(tracking_uri)
        run = guard.run("LabRun.attach", lambda: MlflowClient(tracking_uri=tracking_uri).get_run(run_id))
        return cls(tracking_uri, run.info.experiment_id if run else None, run_id if run else None, guard)

    def child(self, agent: str) -> dict:
        """The child run of ``agent`` (created on first call, found again on resume).

        Returns:
            ``{"tracking_uri", "experiment_id", "run_id", "parent_run_id", "run_name"}``: plain JSON for
            WELCOME; ``run_id`` is None when tracking is off.
        """
        if agent in self._children:
            return dict(self._children[agent])
        run = {"tracking_uri": self.tracking_uri, "experiment_id": self.experiment_id, "run_id": None,
               "parent_run_id": self.run_id, "run_name": agent}
        if not self.enabled:
            return run

        def find_or_create() -> str:
            query = (f"tags.`mlflow.parentRunId` = '{self.run_id}' and "
                     f"tags.`skinnerbox.agent` = '{agent.replace(chr(39), '')}'")
            found = self.client.search_runs([self.experiment_id], query, max_results=1)
            if found:
                return found[0].info.run_id
            tags = {"mlflow.parentRunId": self.run_id, "skinnerbox.agent": agent, "skinnerbox.role": "agent"}
            return self.client.create_run(self.experiment_id, run_name=agent, tags=tags).info.run_id

        run["run_id"] = self.guard.run("LabRun.child", find_or_create)
        if run["run_id"] is not None:
            self._children[agent] = run
        return dict(run)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the parent run ended (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        if self.enabled:
            self.guard.run("LabRun.end", lambda: self.client.set_terminated(self.run_id, status))

    def __repr__(self) -> str:
        return f"LabRun(tracking_uri={self.tracking_uri!r}, run_id={self.run_id!r}, enabled={self.enabled})"


# ---------------------------------------------------------------------------------------------- curriculum
def knob_scalar(value: Any) -> float | None:
    """One number for a knob value: the number itself, the mean of a list of choices, the midpoint of
    ``{"uniform": [lo, hi]}``; None for anything else."""
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


def _as_int(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (stage indices come back as floats from parquet)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


def _evidence_knob(task_spec: Mapping[str, Any]) -> str | None:
    """The task's evidence knob (x axis of its psychometric curve), if it can be told."""
    if task_spec.get("evidence_knob"):
        return str(task_spec["evidence_knob"])
    try:
        from .tasks.registry import get
        name = getattr(get(str(task_spec.get("task") or task_spec.get("name"))), "evidence_knob", None)
        if name:
            return str(name)
    except (ValueError, ImportError):
        pass
    for name, knob in (task_spec.get("knobs") or {}).items():
        if isinstance(knob, Mapping) and knob.get("easier") == "higher":
            return str(name)
    return None


def _is_missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def _parquet_kind(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "number"
    return "str" if isinstance(value, str) else "other"


def _frame_for_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """The trial log as parquet can hold it: an object column whose values are all strings, all bools or
    all numbers (missing values aside) stays as it is; any other becomes JSON text. Missing values stay
    missing (a flag set on some batches only, e.g. ``stale``, is NaN elsewhere and must not become "nan")."""
    out = df.reset_index(drop=True).copy()
    for col in out.columns:
        if out[col].dtype != object:
            continue
        kinds = {_parquet_kind(v) for v in out[col] if not _is_missing(v)}
        if len(kinds) > 1 or kinds == {"other"}:
            out[col] = out[col].map(lambda v: None if _is_missing(v) else json.dumps(plain(v)))
    out.columns = [str(c) for c in out.columns]
    return out


def _events_frame(events: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Events as a table: nested values as JSON text; all-empty columns left out (MLflow's ``log_table``
    appends with ``pd.concat``, which fills them in)."""
    rows = [{k: (v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v))
             for k, v in plain(dict(ev)).items()} for ev in events]
    return pd.DataFrame(rows).dropna(axis=1, how="all")


@dataclass
class _Session:
    run: dict
    axes: PsychometricAxes | None  # what psychometric figures are drawn against (None: no evidence knob)
    window: deque
    sides: dict | None = None  # the task's evidence_side, from its spec (None: looked up by task name)
    stage_index: Any = None
    stage_names: dict = field(default_factory=dict)
    reversals: int = 0
    metrics: list = field(default_factory=list)
    events_pending: list = field(default_factory=list)
    events: list = field(default_factory=list)
    history: list = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)

    @property
    def run_id(self) -> str | None:
        return self.run.get("run_id")


class CurriculumTracker:
    """The server's MLflow hooks: one child run per agent, holding its curriculum.

    The server calls :meth:`on_session_start` when an agent says HELLO (and sends the returned ``run`` dict
    in WELCOME), :meth:`on_scored` after each batch is journaled, :meth:`on_override` after an experimenter's
    override and :meth:`on_session_end` when the agent leaves; the lab calls :meth:`close` before exiting.
    The hooks return quickly: store calls run on a background thread (see the module docstring for what is
    logged and the failure policy).

    Args:
        lab: the lab's parent run.
        window_trials: trials in the ``curriculum/accuracy_window`` metric (reset at each stage change).
        flush_interval_s: write buffered metrics at least this often (seconds)...
        flush_metrics: ...or as soon as this many values are buffered.
        background: run store calls on a background thread (False: inline, as :func:`sync` does).
    """

    def __init__(self, lab: LabRun, window_trials: int = 200, flush_interval_s: float = 10.0,
                 flush_metrics: int = 1000, background: bool = True):
        if not isinstance(window_trials, int) or window_trials < 1:
            raise ValueError(f"CurriculumTracker: window_trials must be a positive int, got {window_trials!r}")
        if not flush_interval_s > 0 or not flush_metrics >= 1:
            raise ValueError(f"CurriculumTracker: flush_interval_s ({flush_interval_s!r}) and flush_metrics "
                             f"({flush_metrics!r}) must be positive")
        self.lab = lab
        self.window_trials = window_trials
        self.flush_interval_s = float(flush_interval_s)
        self.flush_metrics = int(flush_metrics)
        self.writer = BackgroundWriter(lab.guard, background=background, name="mlflow-curriculum")
        self._sessions: dict[str, _Session] = {}

    @property
    def enabled(self) -> bool:
        return self.lab.enabled

    @property
    def client(self) -> MlflowClient:
        return self.lab.client

    # ------------------------------------------------------------------ hooks
    def on_session_start(self, agent: str, curriculum_spec: Mapping[str, Any],
                         task_spec: Mapping[str, Any]) -> dict:
        """Create (or find again) ``agent``'s child run and log its curriculum and task specs.

        Returns:
            the ``run`` dict for WELCOME (see :meth:`LabRun.child`).
        """
        run = self.lab.child(agent)
        sess = self._sessions.get(agent)
        if sess is None:
            knob = _evidence_knob(task_spec)
            axes = psychometric_axes(dict(task_spec or {}, evidence_knob=knob)) if knob else None
            sess = _Session(run=run, axes=axes, window=deque(maxlen=self.window_trials),
                            sides=task_spec.get("evidence_side") if task_spec else None)
            self._sessions[agent] = sess
        stages = (curriculum_spec or {}).get("stages")
        if isinstance(stages, list):
            sess.stage_names = {i: str(s.get("name", i)) for i, s in enumerate(stages)
                                if isinstance(s, Mapping)}
        if run["run_id"] is not None:
            policy, task = plain(dict(curriculum_spec or {})), plain(dict(task_spec or {}))
            params = {**flatten_params(policy, "policy"), **flatten_params(task, "task")}
            self.writer.submit("log curriculum params", self._write_specs, run["run_id"], params, policy, task)
        return run

    def on_scored(self, agent: str, scored: pd.DataFrame, events: Sequence[Mapping[str, Any]],
                  conditions: Mapping[str, Any], trials_so_far: int, policy_accuracy: float | None = None) -> None:
        """Record one scored batch (cheap: metrics are buffered).

        Args:
            agent: the agent's name.
            scored: the batch's scored trials (``outcome`` required; ``stage_index`` used if present).
            events: the policy's events for this batch (dicts with ``event``, ``trial``, ...).
            conditions: ``{"stage", "stage_index", "knobs"}`` the batch was drawn under.
            trials_so_far: trials scored for this agent including this batch: the metrics' step.
            policy_accuracy: the policy's own accuracy after this batch (None: it keeps none).
        """
        sess = self._sessions.get(agent)
        if sess is None or sess.run_id is None or not self.enabled:
            return
        step, ts = int(trials_so_far), now_ms()
        outcome = scored["outcome"].to_numpy() if "outcome" in scored.columns else np.array([])
        stage_index = conditions.get("stage_index")
        if "stage_index" in scored.columns and len(scored):
            stage_index = scored["stage_index"].iloc[-1]
        if stage_index != sess.stage_index:
            sess.window.clear()
            sess.stage_index = stage_index
        if conditions.get("stage") is not None and (i := _as_int(stage_index)) is not None:
            sess.stage_names.setdefault(i, str(conditions["stage"]))
        correct = outcome == "correct"
        sess.window.extend(correct.tolist())
        sess.reversals += sum(1 for ev in events if ev.get("event") == "reversal")
        values: dict[str, float] = {"curriculum/reversals": float(sess.reversals)}
        if len(outcome):
            values["curriculum/accuracy"] = float(correct.mean())
            values["curriculum/p_no_response"] = float(np.mean(outcome == "no_response"))
        if sess.window:
            values["curriculum/accuracy_window"] = float(np.mean(sess.window))
        if policy_accuracy is not None and math.isfinite(policy_accuracy):
            values["curriculum/policy_accuracy"] = float(policy_accuracy)
        if (s := knob_scalar(stage_index)) is not None:
            values["curriculum/stage_index"] = s
        for name, value in (conditions.get("knobs") or {}).items():
            if (v := knob_scalar(value)) is not None:
                values[f"knob/{safe_name(name)}"] = v
        sess.metrics.extend(Metric(k, v, ts, step) for k, v in values.items())
        sess.history.append({"trial": step, **values})
        if events:
            rows = [{"step": step, **dict(ev)} for ev in events]
            sess.events.extend(rows)
            sess.events_pending.extend(rows)
        if len(sess.metrics) >= self.flush_metrics or events or \
                time.monotonic() - sess.last_flush >= self.flush_interval_s:
            self._flush(sess)

    def on_override(self, agent: str, events: Sequence[Mapping[str, Any]], trials_so_far: int) -> None:
        """Record an experimenter's override (its ``override`` events) at the agent's trial count; the stage
        and knob metrics follow from the next scored batch."""
        sess = self._sessions.get(agent)
        if sess is None or sess.run_id is None or not self.enabled or not events:
            return
        rows = [{"step": int(trials_so_far), **dict(ev)} for ev in events]
        sess.events.extend(rows)
        sess.events_pending.extend(rows)
        self._flush(sess)

    def on_session_end(self, agent: str, trial_log: pd.DataFrame | Callable[[], pd.DataFrame] | None,
                       status: str = "FINISHED") -> None:
        """Flush ``agent``'s metrics, log its trial log and figures, and end its run.

        Args:
            agent: the agent's name.
            trial_log: every trial of the agent in order (one row per trial, the journal's table), or a function
                returning it, called on the writer thread (the server's hook reads the journal there).
            status: ``FINISHED``, ``FAILED`` or ``KILLED``.
        """
        sess = self._sessions.get(agent)
        if sess is None or sess.run_id is None or not self.enabled:
            return
        self._flush(sess)
        self.writer.submit("log trial log and figures", self._write_end, sess.run_id, trial_log,
                           list(sess.history), list(sess.events), sess.axes, dict(sess.stage_names), status,
                           sess.sides)

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Write every buffered value now and wait for the store; False on timeout."""
        for sess in self._sessions.values():
            if sess.run_id is not None:
                self._flush(sess)
        return self.writer.drain(timeout_s)

    close = flush

    # ------------------------------------------------------------------ writing (background thread)
    def _flush(self, sess: _Session) -> None:
        metrics, sess.metrics = sess.metrics, []
        events, sess.events_pending = sess.events_pending, []
        sess.last_flush = time.monotonic()
        run_id = sess.run_id
        if metrics:
            self.writer.submit("log curriculum metrics",
                               lambda: log_metrics_batched(self.client, run_id, metrics))
        if events:
            table = _events_frame(events)
            self.writer.submit("log curriculum events",
                               lambda: self.client.log_table(run_id, table, "curriculum/events.json"))

    def _write_specs(self, run_id: str, params: dict, policy: dict, task: dict) -> None:
        log_params_batched(self.client, run_id, params)
        self.client.log_dict(run_id, policy, "curriculum/policy.json")
        self.client.log_dict(run_id, task, "curriculum/task.json")

    def _write_end(self, run_id: str, trial_log: pd.DataFrame | Callable[[], pd.DataFrame] | None,
                   history_rows: list[dict], event_rows: list[dict], axes: PsychometricAxes | None,
                   stage_names: dict, status: str, sides: dict | None = None) -> None:
        from . import figures

        guard = self.lab.guard
        if callable(trial_log):
            trial_log = trial_log()
        history, events = pd.DataFrame(history_rows), pd.DataFrame(event_rows)
        if len(events) and "trial" not in events.columns:
            events["trial"] = events["step"]
        if trial_log is not None and len(trial_log):
            with tempfile.TemporaryDirectory(prefix="skinnerbox-") as tmp:
                path = Path(tmp, "trials.parquet")
                _frame_for_parquet(trial_log).to_parquet(path, index=False)
                self.client.log_artifact(run_id, str(path), "curriculum")
            key = "stage_index" if "stage_index" in trial_log.columns else \
                ("stage" if "stage" in trial_log.columns else None)
            if axes is not None:
                groups = trial_log.groupby(key, sort=True) if key else [(0, trial_log)]
                for stage, rows in groups:
                    index = _as_int(stage) if key == "stage_index" else None
                    name = stage_names.get(index, stage) if index is not None else stage
                    label = f"{index:02d}_{name}" if index is not None else str(name)
                    evidence = [c for c in axes.evidence if c in rows.columns] or list(axes.evidence[:1])
                    guard.run("psychometric figure", lambda: self.client.log_figure(
                        run_id, figures.psychometric_curve(rows, evidence, title=f"stage {name}", sides=sides,
                                                           by=axes.by, labels=axes.labels),
                        f"curriculum/psychometric/{safe_name(label)}.png"))
        if len(history):
            knobs = {c.split("/", 1)[1]: history[c].to_numpy() for c in history.columns
                     if c.startswith("knob/")}
            acc = history.get("curriculum/accuracy_window", pd.Series(np.nan, index=history.index))
            stage = history.get("curriculum/stage_index", pd.Series(0.0, index=history.index))
            policy_acc = history.get("curriculum/policy_accuracy")
            guard.run("curves figure", lambda: self.client.log_figure(
                run_id, figures.curriculum_curves(history["trial"], acc, knobs, stage.to_numpy(),
                                                  policy_accuracy=None if policy_acc is None else
                                                  policy_acc.to_numpy(dtype=float)),
                "curriculum/curves.png"))
            guard.run("timeline figure", lambda: self.client.log_figure(
                run_id, figures.stage_timeline(history["trial"], stage.ffill().fillna(0), events,
                                               stage_names or None), "curriculum/timeline.png"))
        self.client.set_terminated(run_id, status)


# ---------------------------------------------------------------------------------------------- sync
BATCH_KEYS = ("session", "batch")  # what identifies one scored batch of an agent in the journal
KNOB_PREFIX = "knob."  # knob settings in shaping.journal.load_batches()


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _conditions(rows: pd.DataFrame, batch: Mapping[str, Any] | None) -> dict:
    """The conditions a journaled batch was drawn under: stage from its trials, knob settings from its
    :func:`shaping.journal.load_batches` row (``knob.NAME`` columns)."""
    first = rows.iloc[0]
    knobs = {}
    if batch is not None:
        knobs = {k[len(KNOB_PREFIX):]: _decode(v) for k, v in batch.items()
                 if str(k).startswith(KNOB_PREFIX) and not (np.isscalar(v) and pd.isna(v))}
    return {"stage": first.get("stage"), "stage_index": first.get("stage_index"), "knobs": knobs}


def sync_frames(trial_log: pd.DataFrame, tracking_uri: str, experiment: str,
                events: pd.DataFrame | None = None, batches: pd.DataFrame | None = None,
                lab_config: Mapping[str, Any] | None = None,
                specs: Mapping[str, tuple[Mapping, Mapping]] | None = None, source: str | None = None) -> dict:
    """Rebuild a lab's runs from journal tables by replaying the server's hooks, so that the store ends up
    as it would have been had it been reachable during the lab.

    Args:
        trial_log: :func:`shaping.journal.load`: one row per trial, in order, with ``agent`` and the batch
            keys ``session, batch`` (without an ``agent`` column: one agent named ``"agent"``).
        tracking_uri, experiment: where to write.
        events: :func:`shaping.journal.load_events` (matched to batches by ``agent, session, batch``).
        batches: :func:`shaping.journal.load_batches` (knob settings per batch; without it no knob metrics).
        lab_config: logged on the parent run.
        specs: agent -> ``(curriculum_spec, task_spec)``, logged as params when given.
        source: identifies what was synced (a journal path); a second sync of the same source is skipped.

    Returns:
        ``{"parent_run_id", "runs": {agent: run dict}, "skipped": bool}``.
    """
    if source is not None:
        client = MlflowClient(tracking_uri=tracking_uri)
        eid = ensure_experiment(tracking_uri, experiment)
        done = client.search_runs([eid], f"tags.`skinnerbox.synced_from` = '{source}'", max_results=1)
        if done:
            return {"parent_run_id": done[0].info.run_id, "runs": {}, "skipped": True}
    lab = LabRun.start(tracking_uri, experiment, lab_config or {"synced_from": source},
                       tags={"skinnerbox.synced_from": source} if source else None)
    tracker = CurriculumTracker(lab, background=False, flush_interval_s=1e9)
    has_agent = "agent" in trial_log.columns
    keys = [k for k in BATCH_KEYS if k in trial_log.columns]
    batch_rows = _index_rows(batches, keys)
    event_rows = _index_rows(events, keys, many=True)
    runs = {}
    for agent in (trial_log["agent"].unique().tolist() if has_agent else ["agent"]):
        log = (trial_log[trial_log["agent"] == agent] if has_agent else trial_log).reset_index(drop=True)
        policy, task = (specs or {}).get(agent, ({}, {}))
        if not task and "task" in log.columns and len(log):
            task = {"task": str(log["task"].iloc[0])}
        runs[agent] = tracker.on_session_start(agent, policy, task)
        done = 0
        groups = log.groupby(keys, sort=False) if keys else [((), log)]
        seen = set()
        for key, rows in groups:
            key = (agent, *(key if isinstance(key, tuple) else (key,)))
            seen.add(key)
            done += len(rows)
            batch = batch_rows.get(key)
            tracker.on_scored(agent, rows, event_rows.get(key, []), _conditions(rows, batch), done,
                              policy_accuracy=batch.get("policy_accuracy") if batch else None)
        for key, evs in event_rows.items():  # an operator's override before the first scored batch
            if key[0] == agent and key not in seen:
                for ev in evs:
                    tracker.on_override(agent, [ev], int(ev.get("trial") or 0))
        tracker.on_session_end(agent, log)
    tracker.flush()
    lab.end()
    return {"parent_run_id": lab.run_id, "runs": runs, "skipped": False}


def _index_rows(frame: pd.DataFrame | None, keys: Sequence[str], many: bool = False) -> dict:
    """Rows of ``frame`` by ``(agent, *keys)``: one dict each, or lists of dicts with ``many``."""
    out: dict = {}
    if frame is None or not len(frame) or not set(keys) <= set(frame.columns):
        return out
    agents = frame["agent"] if "agent" in frame.columns else pd.Series("agent", index=frame.index)
    for agent, rec in zip(agents, frame.to_dict("records")):
        key = (agent, *(rec[k] for k in keys))
        if many:
            out.setdefault(key, []).append(rec)
        else:
            out[key] = rec
    return out


def sync(journal_dir: str | os.PathLike, tracking_uri: str | None = None, experiment: str = "skinnerbox",
         lab_config: Mapping[str, Any] | None = None) -> dict:
    """Push a finished lab's journal into MLflow (``skinnerbox sync``): nothing is lost when the store was
    down during the lab. Replays :func:`shaping.journal.load`, ``load_batches``, ``load_events`` and the
    policy and task specs of the last HELLO record of each agent through :func:`sync_frames`; syncing the
    same journal directory twice is a no-op (the parent run is tagged ``skinnerbox.synced_from``)."""
    from . import journal

    path = Path(journal_dir).resolve()
    specs: dict[str, tuple[Mapping, Mapping]] = {}
    for _, rec in journal.iter_records(path, kinds=[journal.HELLO]):
        policy = rec.get("spec") or rec.get("curriculum")
        task = rec.get("task")
        specs[rec["agent"]] = (policy if isinstance(policy, Mapping) else {},
                               task if isinstance(task, Mapping) else {})
    return sync_frames(journal.load(path), resolve_tracking_uri(tracking_uri), experiment,
                       events=journal.load_events(path), batches=journal.load_batches(path),
                       lab_config=lab_config, specs=specs, source=str(path))
