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
  has events), with ``step`` (the trial count of the batch, the event's ``session_trials``) added to the
  event's own fields;
- at the end, ``curriculum/trials.parquet`` (the agent's whole trial log), ``curriculum/psychometric/
  <stage>.png`` per stage, ``curriculum/timeline.png`` (events at their step) and ``curriculum/curves.png``,
  and the tag ``curriculum.outcome``: ``complete``, ``out_of_trials`` or ``stopped``.

A server restarted on its journal carries each run on from the journal (counters, window, figure history)
and writes the batches the dead one never did (see :meth:`CurriculumTracker.on_session_start`).

Nothing here may stop training. Store calls run on one background thread per tracker and metrics are
buffered and written with ``log_batch`` (every ``flush_interval_s`` seconds or ``flush_metrics`` values, at
each stage change, and at the end), events with them. The first store failure (unreachable server, unwritable
file) logs a single warning and turns tracking off for the process; :func:`sync` rebuilds the runs from the
journal afterwards. Importing this module sets, unless already set: ``MLFLOW_DISABLE_TELEMETRY=true``,
``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT=5`` (seconds), so that a dead server
costs one short timeout, not minutes of retries. sqlite stores tolerate several writing processes: MLflow
sets a 20 s busy timeout, every call here is retried on "database is locked", and :func:`ensure_experiment`
takes a file lock so that processes racing to create a new store run MLflow's schema migrations one at a
time.

Never imports TensorFlow.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
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


SYNC_HINT = "Training and journaling go on; `skinnerbox sync` can fill the store from the journal later."


class StoreGuard:
    """Runs store calls so that no tracking failure reaches training.

    The first store failure logs one warning and disables the guard (every later call is a no-op); any other
    failure (a bad param value, a figure that cannot be drawn) logs one warning per label and is skipped.
    """

    def __init__(self, tracking_uri: str, hint: str = SYNC_HINT):
        self.tracking_uri = tracking_uri
        self.hint = hint
        self.enabled = True
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def disable(self, reason: str) -> None:
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
        logger.warning("MLflow tracking to %s is off for the rest of this process (%s). %s", self.tracking_uri,
                       reason, self.hint)

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


class BackgroundWriter:
    """Runs a tracker's store calls on one daemon thread, off the caller's thread: :meth:`submit`'s in order,
    and :meth:`defer`'s (figures: slow, and redrawable from files) in order whenever no submitted call waits.

    ``background=False`` runs every call inline (used by :func:`sync`). Pending calls are drained at
    interpreter exit (up to 30 s) unless :meth:`abandon` gave up on them.

    Args:
        guard: runs each call (see :class:`StoreGuard`).
        background: use the thread.
        name: the thread's name.
        max_deferred: deferred calls kept waiting at most; beyond it the oldest is dropped (and listed in
            :attr:`dropped`), so a slow store cannot pile up figure work without bound.

    Attributes:
        dropped: labels of the calls dropped (:meth:`abandon`, ``max_deferred``), in order.
        running: the label of the call running now (None when idle).
    """

    def __init__(self, guard: StoreGuard, background: bool = True, name: str = "mlflow-writer",
                 max_deferred: int | None = None):
        self.guard = guard
        self.background = background
        self.max_deferred = max_deferred
        self.dropped: list[str] = []
        self.running: str | None = None
        self._name = name
        self._urgent: deque = deque()
        self._deferred: deque = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        if background:
            atexit.register(self._at_exit)

    def submit(self, label: str, fn: Callable, *args: Any, **kwargs: Any) -> None:
        """Run ``fn(*args, **kwargs)`` under the guard, now (inline) or soon (background), in order."""
        self._put(self._urgent, (label, fn, args, kwargs))

    def defer(self, label: str, fn: Callable, *args: Any, **kwargs: Any) -> None:
        """As :meth:`submit`, but only once no submitted call waits."""
        self._put(self._deferred, (label, fn, args, kwargs))

    def _put(self, queue_: deque, item: tuple) -> None:
        if not self.guard.enabled:
            return
        if self._closed:  # after abandon(): refused, and counted as dropped
            self.dropped.append(item[0])
            return
        if not self.background:
            self.guard.run(item[0], item[1], *item[2], **item[3])
            return
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            queue_.append(item)
            if queue_ is self._deferred and self.max_deferred is not None and len(queue_) > self.max_deferred:
                self.dropped.append(queue_.popleft()[0])
            self._cond.notify_all()

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Wait until every call, those submitted meanwhile included, has run (after :meth:`abandon`: the one
        running); False on timeout."""
        if not self.background or self._thread is None:
            return True
        with self._cond:
            return self._cond.wait_for(lambda: not (self._busy or self._urgent or self._deferred), timeout_s)

    @property
    def closed(self) -> bool:
        """True once :meth:`abandon` gave up: later calls are refused (and listed in :attr:`dropped`)."""
        return self._closed

    def _at_exit(self) -> None:
        if not self._closed:  # an abandoned writer's owner has waited already
            self.drain(30.0)

    def close(self, timeout_s: float) -> bool:
        """Drain for two thirds of ``timeout_s``, then :meth:`abandon` what is left and give the call running
        the last third (one left running as the interpreter exits can abort it: a C++ frame under a daemon
        thread). True when nothing was ever dropped."""
        if not self.drain(timeout_s * 2 / 3):
            self.abandon()
            self.drain(timeout_s / 3)
        return not self.dropped

    def abandon(self) -> list[str]:
        """Give up: calls not started are dropped (added to :attr:`dropped`, returned) and later ones refused;
        a call running now finishes on its own."""
        with self._cond:
            self._closed = True
            left = [item[0] for item in (*self._urgent, *self._deferred)]
            self._urgent.clear()
            self._deferred.clear()
            self.dropped.extend(left)
            self._cond.notify_all()
        return left

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._urgent or self._deferred)
                label, fn, args, kwargs = (self._urgent or self._deferred).popleft()
                self._busy, self.running = True, label
            self.guard.run(label, fn, *args, **kwargs)
            self.running = None


def describe_labels(labels: Sequence[str], shown: int = 6) -> str:
    """Labels such as ``"connectivity figures (stage0_easy_trial384)"`` counted by kind (the text before
    `` (``), with the first ``shown`` details of each: ``"2 connectivity figures (stage0_easy_trial384,
    stage1_final_trial640)"``."""
    kinds: dict[str, list[str]] = {}
    for label in labels:
        kind, _, detail = label.partition(" (")
        kinds.setdefault(kind, []).append(detail[:-1] if detail.endswith(")") else detail)
    parts = []
    for kind, details in kinds.items():
        named = [d for d in details if d]
        more = f", and {len(named) - shown} more" if len(named) > shown else ""
        parts.append(f"{len(details)} {kind}" + (f" ({', '.join(named[:shown])}{more})" if named else ""))
    return "; ".join(parts)


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


def _run_start(agent: str, run_id: str, batches: pd.DataFrame, sessions: pd.DataFrame, trials: int) -> int:
    """``agent``'s trials journaled before the first HELLO that gave it run ``run_id`` (``trials`` when none
    did yet: a run that starts now). Journal tables as :func:`shaping.journal.load_batches` and
    ``load_sessions``."""
    mine = sessions[sessions["agent"] == agent] if len(sessions) else sessions
    hellos = [t for t, run in zip(mine.get("time", []), mine.get("run", []))
              if isinstance(run, Mapping) and run.get("run_id") == run_id]
    if not hellos:
        return trials
    before = batches[(batches["agent"] == agent) & (batches["time"] < min(hellos))] if len(batches) else batches
    return int(before["n"].sum()) if len(before) else 0


def _event_key(row: Mapping[str, Any]) -> tuple:
    """What tells apart events logged at one step (an event table's row or an event, before or after the
    store's JSON round trip)."""
    return tuple("" if _is_missing(v := row.get(k)) else str(v)
                 for k in ("event", "rule", "note", "knob", "new", "to_stage"))


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
    outcome: str | None = None  # the policy's last word: "complete" or "out_of_trials" (None: not done)
    logged_upto: int = -1  # steps up to this one are in the store already (a resumed run): counted, not logged
    events_upto: int = -1  # the same for curriculum/events.json
    events_at_upto: Counter = field(default_factory=Counter)  # the store's events at that step (by _event_key)
    held: list | None = None  # hook calls held while the journal is replayed (a resumed session), in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def run_id(self) -> str | None:
        return self.run.get("run_id")


CURRICULUM_ENDS = ("complete", "out_of_trials")  # events that end a curriculum: the run's ``curriculum.outcome``
STAGE_EVENTS = ("graduated", "regressed", *CURRICULUM_ENDS)  # flushed at once (others wait)
# shaping.journal's load(agent), load_batches, load_events and load_sessions
JournalTables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]


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
    def on_session_start(self, agent: str, curriculum_spec: Mapping[str, Any], task_spec: Mapping[str, Any],
                         trials: int = 0, journal: Callable[[], JournalTables] | None = None) -> dict:
        """Create (or find again) ``agent``'s child run and log its curriculum and task specs.

        A session that has ``trials`` already when this process first sees it (a restarted server, a resumed
        lab) is replayed from ``journal`` on the writer thread: its reversal count, accuracy window, outcome and
        figure history go on from the journal, and the batches the run should hold (those since the first HELLO
        the journal records with this run) but lacks, after its last logged step, are logged: a server that died
        with writes queued lost them. Hook calls made meanwhile are held and run after the replay, in order.

        Args:
            trials: the session's scored trials now.
            journal: returns the journal's ``load(agent)``, ``load_batches``, ``load_events`` and
                ``load_sessions`` tables.

        Returns:
            the ``run`` dict for WELCOME (see :meth:`LabRun.child`).
        """
        run = self.lab.child(agent)
        sess = self._sessions.get(agent)
        resume = sess is None and trials > 0 and journal is not None and run["run_id"] is not None
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
        if resume:
            sess.held = []
            self.writer.submit("resume curriculum metrics from the journal", self._resume, agent, sess, journal,
                               int(trials), time.time())
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
        self._when_replayed(sess, self._record, sess, scored, events, conditions, int(trials_so_far),
                            policy_accuracy)

    def _record(self, sess: _Session, scored: pd.DataFrame, events: Sequence[Mapping[str, Any]],
                conditions: Mapping[str, Any], step: int, policy_accuracy: float | None) -> None:
        """:meth:`on_scored` for ``sess``: its counters, window and history; metrics and events buffered for
        the store unless ``step`` is in it already."""
        ts = now_ms()
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
        fresh = step > sess.logged_upto
        if fresh:
            sess.metrics.extend(Metric(k, v, ts, step) for k, v in values.items())
        sess.history.append({"trial": step, **values})
        self._record_events(sess, events, step)
        moved = any(ev.get("event") in STAGE_EVENTS for ev in events)  # others wait for the next flush
        if fresh and (len(sess.metrics) >= self.flush_metrics or moved or
                      time.monotonic() - sess.last_flush >= self.flush_interval_s):
            self._flush(sess)

    def _record_events(self, sess: _Session, events: Sequence[Mapping[str, Any]], step: int) -> None:
        """Keep ``events`` at ``step`` for the figures, queue them for ``curriculum/events.json`` unless the
        store has that step, and follow the curriculum's outcome (a stage override resumes a finished one)."""
        rows = [{"step": step, **dict(ev)} for ev in events]
        sess.events.extend(rows)
        for row in rows:  # at the store's last step, only what it lacks (several events can share a step)
            if step > sess.events_upto:
                sess.events_pending.append(row)
            elif step == sess.events_upto:
                key = _event_key(row)
                if sess.events_at_upto[key] > 0:
                    sess.events_at_upto[key] -= 1
                else:
                    sess.events_pending.append(row)
        for ev in events:
            if ev.get("event") in CURRICULUM_ENDS:
                sess.outcome = ev["event"]
            elif ev.get("event") == "override" and not _is_missing(ev.get("to_stage")):
                sess.outcome = None

    def on_override(self, agent: str, events: Sequence[Mapping[str, Any]], trials_so_far: int) -> None:
        """Record an experimenter's override (its ``override`` events) at the agent's trial count; the stage
        and knob metrics follow from the next scored batch."""
        sess = self._sessions.get(agent)
        if sess is None or sess.run_id is None or not self.enabled or not events:
            return
        self._when_replayed(sess, self._override, sess, events, int(trials_so_far))

    def _override(self, sess: _Session, events: Sequence[Mapping[str, Any]], step: int) -> None:
        self._record_events(sess, events, step)
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
        self._when_replayed(sess, self._end, sess, trial_log, status)

    def _end(self, sess: _Session, trial_log: Any, status: str) -> None:
        self._flush(sess)
        self.writer.submit("log trial log and figures", self._write_end, sess.run_id, trial_log,
                           list(sess.history), list(sess.events), sess.axes, dict(sess.stage_names), status,
                           sess.sides, sess.outcome or "stopped")

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Write every buffered value now and wait for the store; False on timeout."""
        self._flush_all()
        return self.writer.drain(timeout_s)

    def close(self, timeout_s: float = 60.0) -> bool:
        """Write every buffered value and wait for the store, at most ``timeout_s`` all told (a lab stops its
        server 30 s after asking); what is left then is dropped and logged, saying what. True when nothing
        was."""
        self._flush_all()
        if self.writer.close(timeout_s):
            return True
        logger.warning("MLflow: %d curriculum write(s) were not made (the store could not keep up; the wait at "
                       "the end was %.0f s at most): %s. The journal holds it all: `skinnerbox sync` rebuilds the "
                       "runs from it (as new runs).",
                       len(self.writer.dropped), timeout_s, describe_labels(self.writer.dropped))
        return False

    def _flush_all(self) -> None:
        for sess in self._sessions.values():
            if sess.run_id is not None:
                self._when_replayed(sess, self._flush, sess)

    # ------------------------------------------------------------------ resuming (background thread)
    def _when_replayed(self, sess: _Session, fn: Callable, *args: Any) -> None:
        """``fn(*args)`` now, or after ``sess``'s journal replay when one is under way (in order)."""
        with sess.lock:
            if sess.held is not None:
                sess.held.append((fn, args))
                return
        fn(*args)

    def _resume(self, agent: str, sess: _Session, journal: Callable[[], JournalTables], trials: int,
                started: float) -> None:
        """Replay ``agent``'s first ``trials`` journaled trials (those before its HELLO at ``started``) into
        ``sess``, back-filling the steps after the run's last logged one; then run the held hook calls."""
        try:
            log, batches, events, sessions = journal()
            begun = _run_start(agent, sess.run_id, batches, sessions, trials)  # the steps before: other runs'
            last = max((m.step for m in self.client.get_metric_history(sess.run_id, "curriculum/reversals")),
                       default=-1)
            # events.json is written after its batch's metrics: it may lag behind them
            sess.logged_upto = max(begun, int(last))
            last_step, at_last = self._last_events(sess.run_id)
            sess.events_upto = max(begun, last_step)
            sess.events_at_upto = at_last if last_step >= begun else Counter()
            if len(events) and "time" in events.columns:
                events = events[events["time"] < started]  # an override made since arrives as a hook call
            self._replay(agent, sess, log.iloc[:trials], batches, events)
            self._flush(sess)
        finally:
            self._release(sess)

    def _last_events(self, run_id: str) -> tuple[int, Counter]:
        """The last ``step`` in the run's ``curriculum/events.json`` (-1: none yet) and its events there, counted
        by :func:`_event_key`."""
        if not any(f.path == "curriculum/events.json" for f in self.client.list_artifacts(run_id, "curriculum")):
            return -1, Counter()
        with tempfile.TemporaryDirectory(prefix="skinnerbox-") as tmp:
            with open(self.client.download_artifacts(run_id, "curriculum/events.json", tmp)) as f:
                table = json.load(f)
        rows = [dict(zip(table["columns"], row)) for row in table["data"]]
        last = int(max((row["step"] for row in rows), default=-1))
        return last, Counter(_event_key(row) for row in rows if row["step"] == last)

    def _release(self, sess: _Session) -> None:
        """Run the hook calls held during the replay, until none is left, then stop holding them. Their writes
        are refused when :meth:`close` gave up meanwhile: then they are listed, as close() lists its own."""
        dropped_before = len(self.writer.dropped)
        while True:
            with sess.lock:
                calls = sess.held or []
                sess.held = [] if calls else None
            if not calls:
                break
            for fn, args in calls:
                self.lab.guard.run("curriculum hook after the journal replay", fn, *args)
        late = self.writer.dropped[dropped_before:]
        if self.writer.closed and late:
            logger.warning("MLflow: %d more curriculum write(s) of run %s were not made (the tracker was closed "
                           "while it replayed the journal; the run stays RUNNING): %s. The journal holds it all: "
                           "`skinnerbox sync` rebuilds the runs from it (as new runs).", len(late), sess.run_id,
                           describe_labels(late))

    def _replay(self, agent: str, sess: _Session, log: pd.DataFrame, batches: pd.DataFrame | None,
                events: pd.DataFrame | None) -> None:
        """Feed ``agent``'s journaled batches (``log``: its trials in order, with the batch keys ``session,
        batch``) to the hooks as the server did: their events from ``events`` (:func:`shaping.journal.
        load_events`), knob settings and policy accuracy from ``batches`` (``load_batches``)."""
        keys = [k for k in BATCH_KEYS if k in log.columns]
        batch_rows = _index_rows(batches, keys)
        event_rows = _index_rows(events, keys, many=True)
        done, seen = 0, set()
        for key, rows in (log.groupby(keys, sort=False) if keys else [((), log)]):
            key = (agent, *(key if isinstance(key, tuple) else (key,)))
            seen.add(key)
            done += len(rows)
            batch = batch_rows.get(key)
            self._record(sess, rows, event_rows.get(key, []), _conditions(rows, batch), done,
                         batch.get("policy_accuracy") if batch else None)
        for key, evs in event_rows.items():  # an operator's override before the first scored batch
            if key[0] == agent and key not in seen and key[-1] == -1:
                self._override(sess, evs, _as_int(evs[0].get("session_trials")) or 0)

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
                   stage_names: dict, status: str, sides: dict | None = None, outcome: str = "stopped") -> None:
        from . import figures

        guard = self.lab.guard
        if callable(trial_log):
            trial_log = trial_log()
        history, events = pd.DataFrame(history_rows), pd.DataFrame(event_rows)
        if len(events):  # on the figures' axis, the metrics' step: the policy's own count leaves stale trials out
            events = events.assign(trial=events["step"])
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
        self.client.set_tag(run_id, "curriculum.outcome", outcome)
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
    runs = {}
    for agent in (trial_log["agent"].unique().tolist() if has_agent else ["agent"]):
        log = (trial_log[trial_log["agent"] == agent] if has_agent else trial_log).reset_index(drop=True)
        policy, task = (specs or {}).get(agent, ({}, {}))
        if not task and "task" in log.columns and len(log):
            task = {"task": str(log["task"].iloc[0])}
        runs[agent] = tracker.on_session_start(agent, policy, task)
        sess = tracker._sessions[agent]
        if sess.run_id is not None:
            tracker._replay(agent, sess, log, batches, events)
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
