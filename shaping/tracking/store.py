"""Store plumbing: the experiment, guarded and batched store calls, and the background writer.

Nothing here may stop training. :class:`StoreGuard` runs each store call: the first store failure (unreachable
server, unwritable file) logs a single warning and turns tracking off for the process (:func:`shaping.tracking.
sync` rebuilds the runs from the journal afterwards); any other failure (one bad call) logs one warning per kind
and is skipped. :class:`BackgroundWriter` runs a tracker's store calls on one daemon thread, in order, with slow
redrawable work (figures) deferred behind everything else. Params and metrics are written with ``log_batch``
(:func:`log_params_batched`, :func:`log_metrics_batched`), as few calls as MLflow's limits allow.

sqlite stores tolerate several writing processes: MLflow sets a 20 s busy timeout, every guarded call is retried
on "database is locked", and :func:`ensure_experiment` takes a file lock (:func:`store_lock`) so that processes
racing to create a new store run MLflow's schema migrations one at a time.

:func:`ensure_experiment` marks the lab's experiment as model training (the tag :data:`EXPERIMENT_KIND_TAG` =
:data:`EXPERIMENT_KIND`), so that MLflow 3's UI opens it on its runs, not on the (empty) GenAI traces page.

MLflow is imported here; :mod:`shaping.tracking` has set MLflow's environment before (see
:mod:`shaping.tracking.uris`).
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import random
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException

from .names import safe_name
from .uris import default_artifact_root, sqlite_path

logger = logging.getLogger(__package__)

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
PACKAGES = ("skinnerbox", "numpy", "pandas", "pyzmq", "msgpack", "mlflow", "matplotlib", "pyarrow", "scipy",
            "tensorflow", "tensorflow-cpu")
# MLflow error codes that mean "this call was wrong", not "the store is gone": warn, keep tracking.
_USAGE_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE", "BAD_REQUEST"}

#: The experiment tag MLflow 3's UI reads to choose an experiment's landing page, and our value for it
#: (model training: the runs table). MLflow's other values: ``genai_development`` (traces), and
#: ``*_inferred`` / ``no_inferred_type`` when the UI guessed; a kind a user chose explicitly is kept.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def _kind_was_chosen(kind: str | None) -> bool:
    """True when an experiment's kind was set on purpose (by a user or by us), not guessed by the UI."""
    return bool(kind) and not (kind.endswith("_inferred") or kind == "no_inferred_type")


# ---------------------------------------------------------------------------------------------- experiment
@contextlib.contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Exclusive lock on ``<db>.lock`` beside an sqlite store, so that processes racing to create a new
    store run MLflow's schema migrations one at a time (concurrent migrations corrupt the version table).
    A no-op for other stores and where ``fcntl`` is missing."""
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``, created if missing, and marked as model training (see the module
    docstring) if it is not marked yet; safe when several processes race to create it (and the store itself).

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
    with store_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                return client.create_experiment(name, artifact_location=artifact_location,
                                                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except MlflowException as err:  # created meanwhile by a process that does not take the lock
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = client.get_experiment_by_name(name)
        if not _kind_was_chosen(exp.tags.get(EXPERIMENT_KIND_TAG)):  # made before we set it, or by another tool
            try:
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            except MlflowException as err:  # e.g. no permission on a shared server: the UI's landing page only
                logger.info("could not mark experiment %r as model training: %s", name, err)
        return exp.experiment_id


# ---------------------------------------------------------------------------------------------- guarded calls
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
        """Turn tracking off for good, with one warning naming ``reason``."""
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
        except Exception as err:
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

    ``background=False`` runs every call inline (used by :func:`shaping.tracking.sync`). Pending calls are
    drained at interpreter exit (up to 30 s) unless :meth:`abandon` gave up on them.

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


# ---------------------------------------------------------------------------------------------- batched writes
def log_params_batched(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """``params`` in as few ``log_batch`` calls as MLflow allows (100 params each)."""
    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[i:i + MAX_PARAMS_PER_BATCH], synchronous=True)


def log_metrics_batched(client: MlflowClient, run_id: str, metrics: Sequence[Metric]) -> None:
    """``metrics`` in as few ``log_batch`` calls as MLflow allows (1000 values each)."""
    for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=list(metrics[i:i + MAX_METRICS_PER_BATCH]), synchronous=True)


def provenance_tags() -> dict[str, str]:
    """Git commit (and whether the tree was dirty) of the skinnerbox checkout, and package versions."""
    tags = {"versions.python": sys.version.split()[0]}
    for pkg in PACKAGES:
        try:
            tags[f"versions.{pkg}"] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    root = Path(__file__).resolve().parents[2]  # shaping/tracking/store.py -> the checkout
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
