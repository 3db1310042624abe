"""The journal as tables, and every number derived from it, computed once.

One job: turn what a lab's server journaled into the tables and numbers every view shows (the lab summary, the
MLflow curriculum tracker, the dashboards, the report, ``bench/``), so that the same agent at the same trial
reads the same everywhere. NumPy and pandas only: no MLflow, no plotting, no Streamlit.

The numbers and their one definition each:

- **recent accuracy** (``recent_accuracy``): the fraction correct over the agent's last ``window_trials`` trials,
  across stages and sessions, stale trials included: exactly the server's ``window_accuracy`` (SCORE and
  ``status.json``), with the server's ``window_trials`` (journaled in each OPEN record; 200 by default).
  :class:`RecentWindow` is that window; :func:`recent_accuracies` computes it after every batch.
- **criterion accuracy** (``criterion_accuracy``): the policy's own accuracy as journaled after each batch
  (``policy_accuracy``), over the policy's own window: what its graduation and regression criteria read. It
  restarts at each stage; None where the policy keeps none.
- **the trial axis** (``session_trials``): every trial the agent was scored on (and trained on), stale ones
  included, counted across sessions. Trials to each graduation and to criterion are on it; the policy's own
  count (``policy_trials``), which leaves stale trials out, is kept beside it where events are listed.
- **trials to criterion by sweep factor** (:func:`sweep_summary`): for each swept key and value, how many agents
  had it, how many reached criterion, and the median and quartiles of their trials to criterion (those that
  reached it only).
- **a knob as drawn** (:func:`knob_drawn`): a fixed value, a set of choices (min and max) or a uniform range
  (a band), never a mean.
- **psychometric spans** (:func:`psychometric_spans`): fits over a stated span of trials (the span ending at
  each graduation, the last N trials of a stage), never pooled over a learning phase; no fit through fewer
  than :data:`shaping.scoring.MIN_EVIDENCE_LEVELS` evidence levels.

Labels: :func:`accuracy_label` is the one text a user reads for each accuracy.
"""
from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from . import journal
from .errors import MissingFile
from .procs import ENDPOINT_FILE, STATUS_FILE
from .scoring import (
    MIN_EVIDENCE_LEVELS,
    PsychometricAxes,
    evidence_levels,
    fit_logistic,
    fit_trials,
    no_fit_reason,
    responded,
    signed_evidence,
    split_trials,
)
from .scoring import psychometric_axes as psychometric_axes_of
from .tasks.base import OUTCOMES

__all__ = [
    # labels and constants
    "DEFAULT_WINDOW_TRIALS", "RECENT_ACCURACY", "CRITERION_ACCURACY", "TRIAL_AXIS", "POLICY_TRIALS",
    "MOVE_EVENTS", "accuracy_label", "labelled", "trial_axis_caption",
    # tables
    "LabPaths", "lab_paths", "require_journal", "read_status", "LabTables", "LabReader", "read_lab", "BATCH_COLUMNS",
    "EVENT_COLUMNS", "SESSION_COLUMNS", "END_COLUMNS",
    # accuracy
    "RecentWindow", "recent_accuracies", "window_trials_of", "recent_accuracy", "criterion_accuracy",
    # knobs
    "KnobDrawn", "knob_drawn", "knob_metrics", "knob_names",
    # agents, events, rows
    "agent_names", "agent_conditions", "stage_names", "agent_trials", "agent_progress", "policy_stages",
    "events_of",
    "stage_changes", "reversals", "for_display", "graduations", "graduation_summary", "trials_to", "agent_summary",
    "criterion_window", "is_shaped", "summary_rows", "verdict", "sweep_summary", "SWEEP_COLUMNS",
    # psychometrics
    "evidence_knob", "task_evidence_knob", "evidence_sides", "psychometric_axes", "psychometric_xy",
    "psychometric_fit", "MIN_EVIDENCE_LEVELS", "Span", "psychometric_spans", "span_trials", "agent_spans",
    "psychometric_table",
]

DEFAULT_WINDOW_TRIALS = 200  # the server's window when its OPEN record names none (ServerConfig.window_trials)
RECENT_ACCURACY = "recent_accuracy"
CRITERION_ACCURACY = "criterion_accuracy"
TRIAL_AXIS = "session_trials"  # every trial the agent was scored on, stale ones included: the x axis everywhere
POLICY_TRIALS = "policy_trials"  # the policy's own count, without stale trials
CURRICULUM_ENDS = ("complete", "out_of_trials")  # events that end a curriculum (an MLflow run's curriculum.outcome)
MOVE_EVENTS = ("graduated", "regressed", *CURRICULUM_ENDS)  # curriculum moves on a stage timeline
_CORRECT = OUTCOMES.index("correct")
_NO_RESPONSE = OUTCOMES.index("no_response")


# ---------------------------------------------------------------------------------------------- labels
def accuracy_label(name: str, window_trials: int | None = None) -> str:
    """What a user reads for each accuracy, everywhere (tables, figure axes, captions, metrics).

    Args:
        name: :data:`RECENT_ACCURACY` or :data:`CRITERION_ACCURACY`.
        window_trials: the server's window (recent accuracy); default :data:`DEFAULT_WINDOW_TRIALS`.

    Returns:
        e.g. ``"recent accuracy (last 200 trials)"`` or ``"criterion accuracy (policy window)"``.
    """
    if name == RECENT_ACCURACY:
        return f"recent accuracy (last {int(window_trials or DEFAULT_WINDOW_TRIALS)} trials)"
    if name == CRITERION_ACCURACY:
        return "criterion accuracy (policy window)"
    raise ValueError(f"accuracy_label: name = {name!r}; expected {RECENT_ACCURACY!r} or {CRITERION_ACCURACY!r}")


def labelled(table: pd.DataFrame, window_trials: int | None = None) -> pd.DataFrame:
    """``table`` with its ``recent_accuracy`` and ``criterion_accuracy`` columns renamed to their
    :func:`accuracy_label` (what a table shown to a user calls them)."""
    names = {RECENT_ACCURACY: accuracy_label(RECENT_ACCURACY, window_trials),
             CRITERION_ACCURACY: accuracy_label(CRITERION_ACCURACY)}
    return table.rename(columns={k: v for k, v in names.items() if k in table.columns})


def trial_axis_caption() -> str:
    """The one sentence that says which trial count a table or axis uses."""
    return (f"Trials are `{TRIAL_AXIS}`: every trial the agent was scored and trained on, stale ones included; "
            f"`{POLICY_TRIALS}` is the policy's own count, which leaves stale trials out.")


# ---------------------------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class LabPaths:
    """Where a lab's files are. ``root``: the lab directory; ``journal``: its journal directory."""

    root: Path
    journal: Path
    weights: Path
    status: Path
    endpoint: Path


def _has_segments(path: Path) -> bool:
    """True when ``path`` is a journal directory holding segment files (its own, or its shards')."""
    return path.is_dir() and any(any(d.glob(journal.SEGMENT_GLOB)) for d in journal.journal_dirs(path))


def lab_paths(lab_dir: str | os.PathLike) -> LabPaths:
    """The paths of a lab directory (``LAB/journal``), or of a bare journal directory (sharded or not) given as
    ``lab_dir``. ``status`` and ``endpoint`` are the journal directory's own files (a sharded journal's are its
    front's; :func:`read_status` merges the shards' status files)."""
    root = Path(lab_dir).expanduser().resolve()
    journal_dir = root / "journal"
    if not journal_dir.is_dir() and _has_segments(root):
        journal_dir, root = root, root.parent
    return LabPaths(root, journal_dir, root / "weights", journal_dir / STATUS_FILE, journal_dir / ENDPOINT_FILE)


def require_journal(lab_dir: str | os.PathLike) -> LabPaths:
    """:func:`lab_paths`, checked: :class:`~shaping.errors.MissingFile` when ``lab_dir`` holds no journal (no
    ``journal/`` folder with segment files, its own or its shards', and none itself), e.g. a mistyped path
    given to ``skinnerbox report`` or ``sync``."""
    paths = lab_paths(lab_dir)
    if not _has_segments(paths.journal):
        raise MissingFile(f"{Path(lab_dir)} is not a lab directory: no journal at {paths.journal} (expected "
                          f"{journal.SEGMENT_GLOB} files, written by a lab or `skinnerbox server`)")
    return paths


# ---------------------------------------------------------------------------------------------- status
def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or half-written by a server that does not replace it atomically
        return None
    return dict(data) if isinstance(data, Mapping) else None


def read_status(journal_dir: str | os.PathLike) -> dict | None:
    """The server's status (its :data:`~shaping.procs.STATUS_FILE`) in ``journal_dir``: ``{"time", "endpoint",
    "pid", "stats": {"trials", "batches", "messages", "errors"}, "sessions": [{"agent", "stage", "trials",
    "accuracy", ...}, ...]}``, or None when there is none yet (or it is unreadable).

    For a sharded journal, the shards' status files merged into one of the same shape: ``sessions``
    concatenated in shard order (each session given its shard's ``time``), ``stats`` summed, ``time`` the oldest
    shard's (the merged status is as old as its oldest part), ``endpoint`` and ``pid`` the front's (from the
    journal directory's :data:`~shaping.procs.ENDPOINT_FILE`; the first shard's when it has none), and
    ``shards``: one ``{"shard", "time", "endpoint", "pid"}`` per shard status read. Shards that have written no
    status yet are left out (None when none has).
    """
    path = Path(journal_dir)
    shards = journal.shard_dirs(path)
    if not shards:
        status = _read_json(path / STATUS_FILE)
        return status if status is not None and isinstance(status.get("sessions"), list) else None
    parts = [(d, st) for d in shards
             if (st := _read_json(d / STATUS_FILE)) is not None and isinstance(st.get("sessions"), list)]
    if not parts:
        return None
    times = [float(st["time"]) for _, st in parts if isinstance(st.get("time"), (int, float))]
    stats: dict[str, float] = {}
    sessions = []
    for _, st in parts:
        for key, value in (st.get("stats") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                stats[key] = stats.get(key, 0) + value
        sessions.extend({"time": st.get("time"), **s} for s in st["sessions"] if isinstance(s, Mapping))
    front = _read_json(path / ENDPOINT_FILE) or {}
    return {"time": min(times) if times else None,
            "endpoint": front.get("endpoint", parts[0][1].get("endpoint")),
            "pid": front.get("pid", parts[0][1].get("pid")), "stats": stats, "sessions": sessions,
            "shards": [{"shard": journal.shard_index(d), "time": st.get("time"), "endpoint": st.get("endpoint"),
                        "pid": st.get("pid")} for d, st in parts]}


# ---------------------------------------------------------------------------------------------- the window
class RecentWindow:
    """The server's recent-accuracy window: the last ``window_trials`` outcomes of one agent, across stages and
    sessions (``shaping.server`` ``Session.record`` / ``window_accuracy``).

    Args:
        window_trials: trials in the window (>= 1).
    """

    def __init__(self, window_trials: int = DEFAULT_WINDOW_TRIALS):
        self._window: deque[bool] = deque(maxlen=_check_window(window_trials))
        self._sum = 0

    @property
    def window_trials(self) -> int:
        return int(self._window.maxlen)

    def resize(self, window_trials: int) -> None:
        """A server restarted with another ``window_trials``: it keeps the newest outcomes that fit."""
        if _check_window(window_trials) != self.window_trials:
            self._window = deque(self._window, maxlen=window_trials)
            self._sum = int(sum(self._window))

    def add(self, correct: Iterable[bool]) -> float | None:
        """Add one batch's outcomes (True = correct, in trial order); returns :attr:`accuracy` after it."""
        values = correct if isinstance(correct, np.ndarray) else np.fromiter(correct, dtype=bool)
        # only the newest window_trials can stay: a 4096-trial batch adds 200, not 4096 Python objects
        self._window.extend(np.asarray(values, dtype=bool)[-self.window_trials:].tolist())  # the oldest fall out
        self._sum = int(sum(self._window))
        return self.accuracy

    @property
    def accuracy(self) -> float | None:
        """Fraction correct in the window; None before the first trial."""
        return self._sum / len(self._window) if self._window else None

    def __len__(self) -> int:
        return len(self._window)

    def __iter__(self) -> Iterator[int]:
        """The outcomes in the window, oldest first, as 1 (correct) or 0: what a journaled session state holds."""
        return (int(c) for c in self._window)


def _check_window(window_trials: Any) -> int:
    if isinstance(window_trials, bool) or not isinstance(window_trials, (int, np.integer)) or window_trials < 1:
        raise ValueError(f"window_trials must be a positive int, got {window_trials!r}")
    return int(window_trials)


def window_trials_of(opened: Mapping[str, Any] | None) -> int:
    """The server's ``window_trials`` from its OPEN record (``{"config": {...}}``) or its config dict;
    :data:`DEFAULT_WINDOW_TRIALS` when it names none."""
    if not isinstance(opened, Mapping):
        return DEFAULT_WINDOW_TRIALS
    cfg = opened.get("config", opened)
    w = cfg.get("window_trials") if isinstance(cfg, Mapping) else None
    if isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1:
        return int(w)
    return DEFAULT_WINDOW_TRIALS


def recent_accuracies(correct: Sequence[bool] | np.ndarray, batch_sizes: Sequence[int] | np.ndarray,
                      window_trials: int = DEFAULT_WINDOW_TRIALS) -> np.ndarray:
    """Recent accuracy after each batch of one agent, from its outcomes in trial order.

    Args:
        correct: ``(n_trials,)`` True where the trial was correct, in the order scored.
        batch_sizes: ``(n_batches,)`` trials per batch, summing to ``n_trials``.
        window_trials: the server's window.

    Returns:
        ``(n_batches,)`` float: the fraction correct over the last ``window_trials`` trials at the end of each
        batch (NaN after an empty first batch).
    """
    c = np.concatenate([[0], np.cumsum(np.asarray(correct, dtype=np.int64))])
    ends = np.cumsum(np.asarray(batch_sizes, dtype=np.int64))
    if len(ends) and ends[-1] != len(c) - 1:
        raise ValueError(f"recent_accuracies: batch sizes sum to {ends[-1]}, but {len(c) - 1} outcomes were given")
    w = _check_window(window_trials)
    starts = np.maximum(ends - w, 0)
    n = ends - starts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (c[ends] - c[starts]) / np.maximum(n, 1), np.nan)


# ---------------------------------------------------------------------------------------------- tables
BATCH_COLUMNS = ["agent", "session", "batch", "epoch", "time", "task", "stage", "stage_index", "n", "correct",
                 "no_response", "accuracy", "policy_accuracy", "window_trials", RECENT_ACCURACY, "trials"]
EVENT_COLUMNS = ["agent", "session", "batch", "time", TRIAL_AXIS, "event", "trial"]
SESSION_COLUMNS = ["agent", "session", "curriculum", "epoch", "resumed", "time", "seed", "info", "run", "spec",
                   "task", "task_spec"]
END_COLUMNS = ["agent", "session", "time", "reason"]


@dataclass
class LabTables:
    """Everything journaled so far, as tables.

    Attributes:
        trials: one row per trial (:func:`shaping.journal.load`'s columns).
        batches: one row per scored batch: ``agent, session, batch, epoch, time, task, stage, stage_index, n,
            correct, no_response, accuracy`` (the batch's), ``policy_accuracy`` (the criterion accuracy after the
            batch; None when the policy keeps none), ``window_trials`` (the server's window then),
            ``recent_accuracy`` (after the batch), ``trials`` (the agent's ``session_trials`` at the end of the
            batch), then ``knob.NAME`` (the setting as journaled: number, list or ``{"uniform": [lo, hi]}``).
        events: one row per policy event: ``agent, session, batch, time, session_trials`` (the agent's count
            when it fired: the x axis), ``event, trial`` (the policy's own count, without stale trials), then
            its fields.
        sessions: one row per accepted HELLO: ``agent, session, curriculum, epoch, resumed, time, seed, info,
            run, spec`` (the curriculum spec), ``task`` (the task config) and ``task_spec``.
        ends: one row per BYE: ``agent, session, time, reason``.
        opened, closed: the server's last OPEN and CLOSE records (None if absent); with shards, the last OPEN
            of any shard and the last CLOSE once every shard has closed.
        records: complete records read.
    """

    trials: pd.DataFrame
    batches: pd.DataFrame
    events: pd.DataFrame
    sessions: pd.DataFrame
    ends: pd.DataFrame
    opened: dict | None = None
    closed: dict | None = None
    records: int = 0

    @property
    def empty(self) -> bool:
        """True before the first scored batch."""
        return len(self.batches) == 0

    @property
    def window_trials(self) -> int:
        """The server's recent-accuracy window now (its last OPEN record; 200 when it names none)."""
        return window_trials_of(self.opened)


def _batch_row(rec: Mapping[str, Any]) -> dict:
    """A BATCH record as a row of :attr:`LabTables.batches` (without the derived columns)."""
    row = {k: rec[k] for k in ("agent", "session", "batch", "epoch", "time", "task", "stage", "stage_index", "n")}
    codes = _outcome_codes(rec)
    if codes is not None:
        row["correct"] = int(np.count_nonzero(codes == _CORRECT))
        row["no_response"] = int(np.count_nonzero(codes == _NO_RESPONSE))
    else:
        row["correct"] = row["no_response"] = None
    row["accuracy"] = row["correct"] / rec["n"] if row["correct"] is not None and rec["n"] else None
    row["policy_accuracy"] = rec.get("policy_accuracy")
    for k, v in json.loads(rec["knobs"]).items():
        row[f"knob.{k}"] = v
    return row


def _outcome_codes(rec: Mapping[str, Any]) -> np.ndarray | None:
    """The batch's outcome codes (indices into its own categories, mapped onto :data:`OUTCOMES`)."""
    outcome = rec["cols"].get("outcome")
    if outcome is None or outcome[0] != "cat":
        return None
    codes = np.frombuffer(outcome[2], np.int8)
    cats = list(outcome[1])
    if cats == list(OUTCOMES):
        return codes
    remap = np.array([OUTCOMES.index(c) if c in OUTCOMES else -1 for c in cats] + [-1], dtype=np.int8)
    return remap[codes]


class LabReader:
    """Incremental reader of a lab's journal: each :meth:`poll` decodes only the records written since the last
    one and returns the tables of everything so far. Thread-safe (one reader may serve every dashboard session of
    a lab). Recent accuracy is followed as the server follows it: one :class:`RecentWindow` per agent, resized
    when an OPEN record of its server names another ``window_trials``. A sharded journal reads as one
    (:class:`shaping.journal.JournalReader`); ``opened`` is the last OPEN of any shard, ``closed`` the last CLOSE
    once every shard has closed.

    Args:
        lab_dir: a lab directory or a journal directory (sharded or not).
    """

    def __init__(self, lab_dir: str | os.PathLike):
        self.paths = lab_paths(lab_dir)
        self._reader: journal.JournalReader | None = None
        self._lock = threading.Lock()
        self._batch_recs: list[dict] = []
        self._batch_rows: list[dict] = []
        self._event_rows: list[dict] = []
        self._trials: dict[str, int] = {}  # agent -> trials read so far (events of older journals)
        self._windows: dict[str, RecentWindow] = {}
        self._agent_source: dict[str, Path] = {}  # agent -> the journal directory (shard) holding its session
        self._window_trials: dict[Path, int] = {}  # journal directory -> its server's window (last OPEN)
        self._sessions: list[dict] = []
        self._ends: list[dict] = []
        self._opened: dict | None = None
        self._open_shards: dict[Path, dict] = {}  # journal directory -> its server's last OPEN record
        self._closed_shards: dict[Path, dict] = {}  # journal directory -> its CLOSE after that OPEN
        self._closed: dict | None = None
        self._records = 0
        self._cache: LabTables | None = None

    def poll(self) -> LabTables:
        """The tables of every complete record journaled so far (empty tables before the journal exists)."""
        with self._lock:
            new = self._read()
            if new or self._cache is None:
                self._cache = self._tables()
            return self._cache

    def _read(self) -> int:
        if self._reader is None:
            if not self.paths.journal.is_dir():
                return 0
            self._reader = journal.JournalReader(self.paths.journal)
        try:
            records = list(self._reader.sourced_records())
        except FileNotFoundError:  # the journal directory was removed under us
            return 0
        for source, kind, rec in records:
            if kind in (journal.BATCH, journal.OVERRIDE):
                if kind == journal.BATCH:
                    self._batch_recs.append(rec)
                    self._batch_rows.append(self._window_row(source, rec))
                self._event_rows.extend(journal.event_rows(kind, rec, self._trials))
            elif kind == journal.HELLO:
                self._sessions.append({c: rec.get(c) for c in SESSION_COLUMNS})
            elif kind == journal.END:
                self._ends.append({c: rec.get(c) for c in END_COLUMNS})
            elif kind == journal.OPEN:
                self._opened = rec
                self._open_shards[source] = rec
                self._closed_shards.pop(source, None)
                window_trials = self._window_trials[source] = window_trials_of(rec)
                for agent, w in self._windows.items():  # a restarted server keeps what fits of each saved window
                    if self._agent_source.get(agent) == source:
                        w.resize(window_trials)
            elif kind == journal.CLOSE:
                self._closed_shards[source] = rec
        # closed: the last CLOSE, once every server (each shard's) that opened has closed
        closes = [self._closed_shards.get(src) for src in self._open_shards] or list(self._closed_shards.values())
        self._closed = max(closes, key=lambda r: r.get("time") or 0.0) if closes and all(closes) else None
        self._records += len(records)
        return len(records)

    def _window_row(self, source: Path, rec: Mapping[str, Any]) -> dict:
        row = _batch_row(rec)
        agent = rec["agent"]
        self._agent_source[agent] = source
        window = self._windows.setdefault(
            agent, RecentWindow(self._window_trials.get(source, DEFAULT_WINDOW_TRIALS)))
        codes = _outcome_codes(rec)
        row["window_trials"] = window.window_trials
        row[RECENT_ACCURACY] = window.add(codes == _CORRECT) if codes is not None else window.accuracy
        return row

    def _tables(self) -> LabTables:
        trials = journal.trials_frame(self._batch_recs)
        batches = pd.DataFrame(self._batch_rows)
        if len(batches):
            batches["trials"] = batches.groupby("agent", sort=False)["n"].cumsum()
        else:
            batches = pd.DataFrame(columns=BATCH_COLUMNS)
        events = pd.DataFrame(self._event_rows) if self._event_rows else pd.DataFrame(columns=EVENT_COLUMNS)
        sessions = pd.DataFrame(self._sessions, columns=SESSION_COLUMNS)
        ends = pd.DataFrame(self._ends, columns=END_COLUMNS)
        return LabTables(trials, batches, events, sessions, ends, self._opened, self._closed, self._records)


def read_lab(lab_dir: str | os.PathLike) -> LabTables:
    """Every complete record of a lab's journal as :class:`LabTables` (one pass over the files)."""
    return LabReader(lab_dir).poll()


# ---------------------------------------------------------------------------------------------- accuracy
def _agent_batches(tables: LabTables, agent: str) -> pd.DataFrame:
    b = tables.batches
    return b[b["agent"] == agent] if len(b) else b


def recent_accuracy(tables: LabTables, agent: str) -> float | None:
    """``agent``'s recent accuracy now (after its last journaled batch); None before its first trial."""
    b = _agent_batches(tables, agent)
    if not len(b):
        return None
    v = b[RECENT_ACCURACY].iloc[-1]
    return None if v is None or pd.isna(v) else float(v)


def criterion_accuracy(tables: LabTables, agent: str) -> float | None:
    """``agent``'s criterion accuracy now (the policy's own, after its last batch); None when it keeps none."""
    b = _agent_batches(tables, agent)
    if not len(b) or "policy_accuracy" not in b.columns:
        return None
    v = pd.to_numeric(b["policy_accuracy"], errors="coerce").iloc[-1]
    return None if pd.isna(v) else float(v)


# ---------------------------------------------------------------------------------------------- knobs
@dataclass(frozen=True)
class KnobDrawn:
    """A knob's setting as trials are drawn from it.

    Attributes:
        kind: ``"fixed"`` (one value; a staircase's current level is one), ``"choices"`` (each trial draws one
            of ``choices``), ``"uniform"`` (each trial draws from ``[low, high]``) or ``"other"`` (not numeric).
        low, high: the smallest and largest value a trial can get (equal when fixed; None for ``"other"``).
        choices: the set, sorted (``"choices"`` only).
        value: the setting as journaled.
    """

    kind: str
    low: float | None
    high: float | None
    choices: tuple[float, ...] | None = None
    value: Any = None

    @property
    def fixed(self) -> bool:
        return self.kind == "fixed"

    def text(self, digits: int = 3) -> str:
        """``"0.7"``, ``"{0.1, 0.3, 0.5}"`` or ``"0.1..0.7"`` (a uniform range)."""
        def num(v: float) -> str:
            return f"{v:.{digits}g}"

        if self.kind == "fixed":
            return num(self.low)
        if self.kind == "choices":
            return "{" + ", ".join(num(v) for v in self.choices) + "}"
        if self.kind == "uniform":
            return f"{num(self.low)}..{num(self.high)}"
        return str(self.value)


def _number(v: Any) -> float | None:
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def knob_drawn(value: Any) -> KnobDrawn:
    """What a journaled knob setting draws: a number is fixed; a list is a set of choices; ``{"uniform": [lo,
    hi]}`` a range; anything else (a string, a mapping of another kind) is ``"other"``."""
    if isinstance(value, str):
        try:  # journaled settings of older tables may come back as JSON text
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, (int, float, list, dict)):
            value = parsed
    if isinstance(value, Mapping):
        rng = value.get("uniform")
        if isinstance(rng, (list, tuple)) and len(rng) == 2:
            lo, hi = _number(rng[0]), _number(rng[1])
            if lo is not None and hi is not None:
                lo, hi = min(lo, hi), max(lo, hi)
                return KnobDrawn("fixed" if lo == hi else "uniform", lo, hi, None, value)
        return KnobDrawn("other", None, None, None, value)
    if isinstance(value, (list, tuple, np.ndarray)):
        nums = [_number(v) for v in value]
        if nums and all(n is not None for n in nums):
            choices = tuple(sorted(set(nums)))
            if len(choices) == 1:
                return KnobDrawn("fixed", choices[0], choices[0], None, value)
            return KnobDrawn("choices", choices[0], choices[-1], choices, value)
        return KnobDrawn("other", None, None, None, value)
    n = _number(value)
    if n is not None:
        return KnobDrawn("fixed", n, n, None, value)
    return KnobDrawn("other", None, None, None, value)


def knob_metrics(name: str, value: Any) -> dict[str, float]:
    """The metrics of one knob setting: ``{"knob/NAME": v}`` when fixed, ``{"knob/NAME/min": lo,
    "knob/NAME/max": hi}`` for a set of choices or a range, ``{}`` when not numeric. ``name`` is used as given
    (make it a valid metric name first)."""
    d = knob_drawn(value)
    if d.kind == "fixed":
        return {f"knob/{name}": float(d.low)}
    if d.kind in ("choices", "uniform"):
        return {f"knob/{name}/min": float(d.low), f"knob/{name}/max": float(d.high)}
    return {}


def knob_names(progress: pd.DataFrame) -> list[str]:
    """The knobs of an :func:`agent_progress` table, in column order."""
    return [c[len("knob."):] for c in progress.columns if str(c).startswith("knob.")]


# ---------------------------------------------------------------------------------------------- agents
def agent_names(tables: LabTables) -> list[str]:
    """Agents in the order they first said HELLO (or were first journaled): the order of every table and of
    the per-agent colours."""
    names = list(tables.sessions["agent"]) + list(tables.batches["agent"])
    return list(dict.fromkeys(str(a) for a in names))


def _last_session(tables: LabTables, agent: str) -> dict:
    rows = tables.sessions[tables.sessions["agent"] == agent]
    return rows.iloc[-1].to_dict() if len(rows) else {}


def criterion_window(spec: Any) -> int:
    """The trials a policy's criteria read (its accuracy ``window``, an int or ``{"size": n}``; looked up in the
    wrapped policy of a ``bias`` spec); :data:`DEFAULT_WINDOW_TRIALS` when the spec names none."""
    if not isinstance(spec, Mapping):
        return DEFAULT_WINDOW_TRIALS
    if spec.get("kind") == "bias" and isinstance(spec.get("policy"), Mapping):
        return criterion_window(spec["policy"])
    w = spec.get("window")
    if isinstance(w, Mapping):
        w = w.get("size")
    if isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 1:
        return int(w)
    return DEFAULT_WINDOW_TRIALS


def is_shaped(spec: Any) -> bool | None:
    """True for a curriculum that shapes (more than one stage or task), False for a control (a ``fixed`` policy
    or a single stage: the final task from the first trial), None when the spec cannot tell (a staircase, an
    unknown kind)."""
    if not isinstance(spec, Mapping):
        return None
    if spec.get("kind") == "bias" and isinstance(spec.get("policy"), Mapping):
        return is_shaped(spec["policy"])
    if spec.get("kind") == "fixed":
        return False
    if spec.get("kind") == "ladder":
        from .policies.ladder import ladder_levels  # policies import tasks: only when a ladder is read

        try:
            return len(ladder_levels("levels", spec.get("levels"))) > 1
        except ValueError:
            return None
    stages = spec.get("stages", spec.get("tasks"))
    if isinstance(stages, list) and stages:
        return len(stages) > 1
    return None


def _dale_label(ratio: Any) -> str:
    if ratio is None or (isinstance(ratio, float) and np.isnan(ratio)):
        return "free"
    return "Dale" if float(ratio) > 0 else "free"


def _json_value(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def agent_conditions(tables: LabTables, runs: pd.DataFrame | None = None,
                     weights: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per agent: ``agent, curriculum, dale_ratio, dale ("Dale"/"free"), seed, condition``.

    ``dale_ratio`` and ``seed`` come from the model table the agent sent in HELLO (``info["model"]``), else
    from its MLflow run's ``param.constraint.dale_ratio`` / ``param.model.seed`` (``runs``: one row per agent),
    else from the ``config`` of its newest weight file (``weights``: ``agent, meta`` rows).
    ``condition`` = ``"<curriculum> · <Dale|free>"``; agents sharing a condition are seeds of it.
    """
    rows = []
    run_params = {} if runs is None or not len(runs) else {r["agent"]: r for r in runs.to_dict("records")}
    for agent in agent_names(tables):
        sess = _last_session(tables, agent)
        model = (sess.get("info") or {}).get("model") if isinstance(sess.get("info"), Mapping) else None
        model = model if isinstance(model, Mapping) else {}
        # a model table without dale_ratio has the models' default, no Dale, unless Dale can come from elsewhere
        # (per-region ratios, a weights file, an initializer's arrays): then the run's params or files tell
        elsewhere = any(k in model for k in ("regions", "constraints", "load_weights_path", "initializer",
                                             "Dale_rec"))
        ratio, seed = model.get("dale_ratio"), model.get("seed")
        known = "dale_ratio" in model or (bool(model) and not elsewhere)
        run = run_params.get(agent, {})
        if not known and run.get("param.constraint.dale_ratio") is not None:
            ratio, known = _json_value(run["param.constraint.dale_ratio"]), True
        if seed is None and run.get("param.model.seed") is not None:
            seed = _json_value(run["param.model.seed"])
        if (not known or seed is None) and weights is not None and len(weights):
            w = weights[weights["agent"] == agent]
            if len(w):
                cfg = (w.iloc[-1]["meta"] or {}).get("config", {})
                if not known and "dale_ratio" in cfg:
                    ratio, known = cfg["dale_ratio"], True
                seed = cfg.get("seed", seed) if seed is None else seed
        curriculum = sess.get("curriculum") or "?"
        dale = _dale_label(ratio) if known else "?"
        rows.append({"agent": agent, "curriculum": curriculum, "dale_ratio": ratio, "dale": dale, "seed": seed,
                     "condition": f"{curriculum} · {dale}"})
    return pd.DataFrame(rows, columns=["agent", "curriculum", "dale_ratio", "dale", "seed", "condition"])


def stage_names(tables: LabTables, agent: str) -> dict[int, str]:
    """Stage index -> name for ``agent``: from its curriculum spec, then from what was journaled."""
    names: dict[int, str] = {}
    spec = _last_session(tables, agent).get("spec")
    stages = spec.get("stages") if isinstance(spec, Mapping) else None
    if isinstance(stages, list):
        names.update({i: str(s.get("name", i)) for i, s in enumerate(stages) if isinstance(s, Mapping)})
    b = _agent_batches(tables, agent)
    for i, s in zip(b["stage_index"], b["stage"]):
        names.setdefault(int(i), str(s))
    return dict(sorted(names.items()))


def agent_trials(tables: LabTables, agent: str) -> pd.DataFrame:
    """``agent``'s trials in the order scored, with ``session_trials`` (1, 2, ...: the count at each trial)."""
    t = tables.trials
    t = t[t["agent"] == agent] if len(t) else t
    return t.assign(**{TRIAL_AXIS: np.arange(1, len(t) + 1)})


def policy_stages(trials: np.ndarray, stage_index: np.ndarray, events: pd.DataFrame | None) -> np.ndarray:
    """The stage the policy was in while each batch was scored: the ``stage_index`` of its last event (a move
    carries the stage it moved to) at or before the end of the previous batch; before any event, the first
    batch's drawn stage. A batch drawn before a move and scored after it (stale) was drawn in the old stage but
    scored under the new one: this is where a stage line steps, under its graduation marker.

    Args:
        trials: ``(n,)`` ``session_trials`` at the end of each batch, increasing.
        stage_index: ``(n,)`` the stage each batch was drawn in.
        events: the agent's events in order, with ``session_trials`` and ``stage_index`` (None: none).

    Returns:
        ``(n,)`` float stage indices.
    """
    ends = np.asarray(trials, dtype=float)
    drawn = np.asarray(stage_index, dtype=float)
    out = np.full(len(ends), drawn[0] if len(drawn) else 0.0, dtype=float)
    if events is None or not len(events) or not {"stage_index", TRIAL_AXIS} <= set(events.columns):
        return out
    stage = pd.to_numeric(events["stage_index"], errors="coerce").to_numpy(dtype=float)
    at = pd.to_numeric(events[TRIAL_AXIS], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(stage) & np.isfinite(at)
    at, stage = at[keep], stage[keep]
    if not len(at):
        return out
    before = np.r_[0.0, ends[:-1]]  # the count when each batch began
    k = np.searchsorted(at, before, side="right") - 1  # the last event at or before it (events are in order)
    out[k >= 0] = stage[k[k >= 0]]
    return out


def agent_progress(tables: LabTables, agent: str) -> pd.DataFrame:
    """Batch rows: one row per scored batch of ``agent``, in order.

    Columns: ``batch, time, trials`` (``session_trials`` at the batch's end: the x axis), ``n, stage,
    stage_index`` (the stage the batch was drawn in), ``policy_stage_index`` (the stage the policy was in when
    it was scored: where the stage line steps, under the graduation markers), ``accuracy`` (the batch's),
    ``recent_accuracy``, ``criterion_accuracy`` (NaN where the policy keeps none), ``p_no_response``, then per
    knob ``knob.NAME`` (the setting as drawn, as text), ``knob_min.NAME`` and ``knob_max.NAME`` (the smallest
    and largest value a trial could get; NaN when not numeric).
    """
    b = _agent_batches(tables, agent).reset_index(drop=True)
    cols = ["batch", "time", "trials", "n", "stage", "stage_index", "policy_stage_index", "accuracy",
            RECENT_ACCURACY, CRITERION_ACCURACY, "p_no_response"]
    if not len(b):
        return pd.DataFrame(columns=cols)
    out = b[["batch", "time", "trials", "n", "stage", "stage_index", "accuracy"]].copy()
    out["policy_stage_index"] = policy_stages(b["trials"].to_numpy(), b["stage_index"].to_numpy(),
                                              events_of(tables, agent))
    out[RECENT_ACCURACY] = pd.to_numeric(b[RECENT_ACCURACY], errors="coerce").astype(float)
    out[CRITERION_ACCURACY] = pd.to_numeric(b["policy_accuracy"], errors="coerce").astype(float) \
        if "policy_accuracy" in b else np.nan
    out["p_no_response"] = pd.to_numeric(b["no_response"], errors="coerce") / b["n"]
    out = out[cols]
    for c in [c for c in b.columns if str(c).startswith("knob.")]:
        name = c[len("knob."):]
        drawn = [knob_drawn(v) for v in b[c]]
        out[c] = [d.text() if d.kind != "other" or not _missing(d.value) else None for d in drawn]
        out[f"knob_min.{name}"] = np.array([np.nan if d.low is None else d.low for d in drawn], dtype=float)
        out[f"knob_max.{name}"] = np.array([np.nan if d.high is None else d.high for d in drawn], dtype=float)
    return out


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


# ---------------------------------------------------------------------------------------------- events
def events_of(tables: LabTables, agent: str, kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """``agent``'s events (of these kinds; all when None), each at its ``session_trials``, also as ``trial`` (the
    x axis), with the policy's own count as ``policy_trial`` (journals that predate ``session_trials``: the
    policy's count is all there is)."""
    e = tables.events
    if not len(e) or "event" not in e.columns:
        return e.iloc[0:0].assign(policy_trial=[])
    keep = e["agent"] == agent
    if kinds is not None:
        keep &= e["event"].isin(kinds)
    e = e[keep].reset_index(drop=True)
    cumulative = e[TRIAL_AXIS] if TRIAL_AXIS in e.columns else pd.Series(np.nan, index=e.index)
    cumulative = cumulative.fillna(e["trial"]) if "trial" in e.columns else cumulative
    return e.assign(**{"policy_trial": e.get("trial", np.nan), TRIAL_AXIS: cumulative, "trial": cumulative})


def stage_changes(tables: LabTables, agent: str) -> pd.DataFrame:
    """``agent``'s curriculum moves (``graduated``, ``regressed``, ``complete``, ``out_of_trials``) and stage
    overrides: ``event, trial`` (``session_trials``: where the stage line of :func:`agent_progress` steps),
    ``policy_trial`` (the policy's count, without stale trials), ``from_stage, to_stage, stage, stage_index,
    accuracy`` (the criterion accuracy that moved it), ``rule, note`` (an experimenter's note on an override).
    :func:`for_display` names the two counts for a reader."""
    e = events_of(tables, agent, [*MOVE_EVENTS, "override"])
    if "override" in set(e.get("event", [])) and "to_stage" in e.columns:
        e = e[(e["event"] != "override") | e["to_stage"].notna()]
    cols = ["event", "trial", "policy_trial", "from_stage", "to_stage", "stage", "stage_index", "accuracy", "rule",
            "note"]
    return e.reindex(columns=cols).reset_index(drop=True)


def reversals(tables: LabTables, agent: str) -> pd.DataFrame:
    """``agent``'s staircase reversals: ``trial`` (``session_trials``), ``stage, knob, level, reversals`` (count
    so far), ``threshold``."""
    e = events_of(tables, agent, ["reversal"])
    return e.reindex(columns=["trial", "stage", "knob", "level", "reversals", "threshold"]).reset_index(drop=True)


def for_display(table: pd.DataFrame) -> pd.DataFrame:
    """An event or milestone table with its counts named for a reader: ``trial`` -> ``session_trials``,
    ``policy_trial`` -> ``policy_trials``, ``accuracy`` -> ``criterion_accuracy`` (a policy event's accuracy is
    the one its criteria read)."""
    names = {"trial": TRIAL_AXIS, "policy_trial": POLICY_TRIALS}
    if "event" in table.columns:
        names["accuracy"] = CRITERION_ACCURACY
    return table.rename(columns={k: v for k, v in names.items() if k in table.columns})


def graduations(tables: LabTables, conditions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Trials each agent needed to reach each milestone, the first time.

    A milestone is a graduation out of a stage (``"graduated <stage>"``) or the curriculum's completion
    (``"complete"``, common to every curriculum: the comparison between shaped and unshaped agents).

    Returns:
        ``agent, condition, curriculum, milestone, order`` (stage index, completion last), ``trial``: the
        agent's ``session_trials`` then (every trial it trained on; the policy's own count leaves stale ones out).
    """
    conditions = agent_conditions(tables) if conditions is None else conditions
    cond = conditions.set_index("agent") if len(conditions) else None
    rows = []
    for agent in agent_names(tables):
        seen = set()
        for ev in events_of(tables, agent, ["graduated", "complete"]).to_dict("records"):
            if ev["event"] == "complete":
                name, order = "complete", 10**6
            else:
                name = f"graduated {ev.get('from_stage')}"
                order = int(ev["stage_index"]) - 1 if pd.notna(ev.get("stage_index")) else 0
            if name in seen:
                continue
            seen.add(name)
            c = cond.loc[agent] if cond is not None and agent in cond.index else {}
            rows.append({"agent": agent, "condition": c.get("condition", "?"), "curriculum":
                         c.get("curriculum", "?"), "milestone": name, "order": order, "trial": int(ev["trial"])})
    cols = ["agent", "condition", "curriculum", "milestone", "order", "trial"]
    return pd.DataFrame(rows, columns=cols).sort_values(["order", "condition", "agent"], kind="stable",
                                                        ignore_index=True)


def graduation_summary(grads: pd.DataFrame, by: str | Sequence[str] = "condition") -> pd.DataFrame:
    """Spread over seeds: per milestone and group, ``n`` (agents that reached it), ``mean, sd, min, median,
    max`` trials (``session_trials``; sd over agents, ddof 1; NaN with one agent)."""
    by = [by] if isinstance(by, str) else list(by)
    cols = ["milestone", *by, "n", "mean", "sd", "min", "median", "max"]
    if not len(grads):
        return pd.DataFrame(columns=cols)
    g = grads.groupby(["order", "milestone", *by], sort=True)["trial"]
    out = g.agg(n="size", mean="mean", sd="std", min="min", median="median", max="max").reset_index()
    return out.drop(columns="order")[cols]


def trials_to(tables: LabTables, agent: str) -> dict:
    """``agent``'s trials to each milestone, on the ``session_trials`` axis.

    Returns:
        ``{"graduations": [n, ...]`` (each graduation in order, repeats after a regression included),
        ``"complete": n | None`` (the first completion: trials to criterion), ``"out_of_trials": n | None``
        (when ``max_trials`` ran out first)``}``.
    """
    e = events_of(tables, agent, ["graduated", "complete", "out_of_trials"])
    first = {k: int(e[e["event"] == k]["trial"].iloc[0]) if len(e) and (e["event"] == k).any() else None
             for k in ("complete", "out_of_trials")}
    grads = e[e["event"] == "graduated"]["trial"].astype(int).tolist() if len(e) else []
    return {"graduations": grads, **first}


def agent_summary(tables: LabTables, conditions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Session rows: one row per agent, ``agent, condition, curriculum, stage, stage_index, trials`` (its
    ``session_trials``), ``batches, recent_accuracy, criterion_accuracy, graduations, regressions, reversals,
    complete, out_of_trials, last_time`` (unix s); ``complete``: the curriculum's criterion was met;
    ``out_of_trials``: its ``max_trials`` ran out first."""
    conditions = agent_conditions(tables) if conditions is None else conditions
    cond = conditions.set_index("agent") if len(conditions) else None
    cols = ["agent", "condition", "curriculum", "stage", "stage_index", "trials", "batches", RECENT_ACCURACY,
            CRITERION_ACCURACY, "graduations", "regressions", "reversals", "complete", "out_of_trials", "last_time"]
    rows = []
    for agent in agent_names(tables):
        b = _agent_batches(tables, agent)
        ev = tables.events[tables.events["agent"] == agent] if len(tables.events) else tables.events
        kinds = ev["event"].value_counts() if len(ev) else pd.Series(dtype=int)
        c = cond.loc[agent] if cond is not None and agent in cond.index else {}
        last = b.iloc[-1] if len(b) else {}
        rows.append({
            "agent": agent, "condition": c.get("condition", "?"), "curriculum": c.get("curriculum", "?"),
            "stage": last.get("stage"), "stage_index": last.get("stage_index"),
            "trials": int(last["trials"]) if len(b) else 0, "batches": len(b),
            RECENT_ACCURACY: recent_accuracy(tables, agent), CRITERION_ACCURACY: criterion_accuracy(tables, agent),
            "graduations": int(kinds.get("graduated", 0)), "regressions": int(kinds.get("regressed", 0)),
            "reversals": int(kinds.get("reversal", 0)), "complete": bool(kinds.get("complete", 0)),
            "out_of_trials": bool(kinds.get("out_of_trials", 0)),
            "last_time": float(last["time"]) if len(b) else None})
    return pd.DataFrame(rows, columns=cols)


def summary_rows(tables: LabTables, agents: Sequence[str] | None = None,
                 curricula: Mapping[str, str | None] | None = None,
                 specs: Mapping[str, Any] | None = None,
                 factors: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """The lab summary: one row per agent.

    Args:
        tables: the lab's journal tables.
        agents: the agents, in order (default: the journal's, :func:`agent_names`).
        curricula: agent -> curriculum name (default: the one of its last HELLO).
        specs: curriculum name -> policy spec, to tell shaped curricula from controls (default: the specs the
            server journaled at HELLO).
        factors: agent -> ``{swept key: value}`` of the agents expanded from a sweep
            (:meth:`shaping.labfile.LabFile.factors`); each key becomes a column after ``shaped`` (None for an
            agent without it). A factor named like a column already there (``curriculum``) is that column.

    Returns:
        ``agent, curriculum, shaped`` (:func:`is_shaped`), the factor columns, ``trials`` (``session_trials``),
        ``graduations, trials_to_graduations`` (``session_trials`` at each, comma separated), ``final_stage,
        recent_accuracy, criterion_accuracy, complete, out_of_trials, trials_to_complete`` (trials to criterion;
        None when not reached). ``attrs["window_trials"]`` is the recent-accuracy window and ``attrs["verdict"]``
        the line of :func:`verdict` (None without a shaped/control pair).
    """
    names = list(agents) if agents is not None else agent_names(tables)
    rows = []
    for name in names:
        sess = _last_session(tables, name)
        curriculum = (curricula or {}).get(name) or sess.get("curriculum")
        spec = specs[curriculum] if specs and curriculum in specs else sess.get("spec")
        b = _agent_batches(tables, name)
        to = trials_to(tables, name)
        rows.append({
            "agent": name, "curriculum": curriculum, "shaped": is_shaped(spec),
            "trials": int(b["trials"].iloc[-1]) if len(b) else 0,
            "graduations": len(to["graduations"]),
            "trials_to_graduations": ", ".join(str(v) for v in to["graduations"]),
            "final_stage": b["stage"].iloc[-1] if len(b) else None,
            RECENT_ACCURACY: _nan(recent_accuracy(tables, name)),
            CRITERION_ACCURACY: _nan(criterion_accuracy(tables, name)),
            "complete": to["complete"] is not None, "out_of_trials": to["out_of_trials"] is not None,
            "trials_to_complete": to["complete"]})
    cols = ["agent", "curriculum", "shaped", "trials", "graduations", "trials_to_graduations", "final_stage",
            RECENT_ACCURACY, CRITERION_ACCURACY, "complete", "out_of_trials", "trials_to_complete"]
    out = pd.DataFrame(rows, columns=cols)
    out["trials_to_complete"] = out["trials_to_complete"].astype("Int64")  # a count, or <NA> when never met
    for i, key in enumerate(k for k in _factor_keys(factors) if k not in cols):
        out.insert(3 + i, key, pd.Series([(factors.get(n) or {}).get(key) for n in names], dtype=object))
    out.attrs["window_trials"] = tables.window_trials
    out.attrs["verdict"] = verdict(out)
    return out


def _nan(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _factor_keys(factors: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """Every swept key of ``factors`` (agent -> ``{key: value}``), in order of first appearance."""
    return list(dict.fromkeys(k for f in (factors or {}).values() for k in (f or {})))


def _value_key(value: Any) -> tuple[str, str]:
    """A swept value as a hashable key that tells ``1``, ``1.0`` and ``True`` apart and takes tables and lists."""
    return type(value).__name__, json.dumps(value, sort_keys=True, default=str)


SWEEP_COLUMNS = ["factor", "value", "agents", "reached", "median", "q1", "q3"]


def sweep_summary(summary: pd.DataFrame, factors: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Trials to criterion grouped by sweep factor: one row per (factor, value).

    Each factor is looked at on its own, over every agent that swept it (the marginal: ``seed = 3`` pools the
    agents of every curriculum and constraint with that seed).

    Args:
        summary: the per-agent summary, :func:`summary_rows` (its ``agent, complete, trials_to_complete``).
        factors: agent -> ``{swept key: value}`` (:meth:`shaping.labfile.LabFile.factors`); agents missing
            from ``summary`` are left out, and agents of ``summary`` without factors are in no group.

    Returns:
        :data:`SWEEP_COLUMNS`: ``factor, value``; ``agents`` (how many had that value), ``reached`` (how many
        of them reached criterion), ``median, q1, q3``: the median and quartiles (linear interpolation) of
        trials to criterion (``session_trials``) over those that reached it, NaN when none did. Rows in the
        order the factors and their values first appear.
    """
    rows: dict[tuple, dict] = {}
    done: dict[tuple, list[float]] = {}
    by_agent = summary.set_index("agent") if len(summary) else None
    for agent, values in factors.items():
        if by_agent is None or agent not in by_agent.index:
            continue
        r = by_agent.loc[agent]
        trials = r["trials_to_complete"]
        reached = bool(r["complete"]) and not pd.isna(trials)
        for key, value in (values or {}).items():
            group = (key, _value_key(value))
            rows.setdefault(group, {"factor": key, "value": value, "agents": 0})["agents"] += 1
            done.setdefault(group, [])
            if reached:
                done[group].append(float(trials))
    order = {k: i for i, k in enumerate(dict.fromkeys(g[0] for g in rows))}
    out = []
    for group in sorted(rows, key=lambda g: order[g[0]]):  # stable: values keep their first-seen order
        t = np.asarray(done[group], dtype=float)
        q1, median, q3 = np.percentile(t, [25, 50, 75]) if len(t) else (np.nan,) * 3
        out.append({**rows[group], "reached": len(t), "median": float(median), "q1": float(q1), "q3": float(q3)})
    table = pd.DataFrame(out, columns=SWEEP_COLUMNS)
    table["value"] = table["value"].astype(object)
    return table.astype({"agents": int, "reached": int, "median": float, "q1": float, "q3": float})


def verdict(summary: pd.DataFrame) -> str | None:
    """One line comparing the shaped agents with their unshaped controls, from summary rows (``agent, shaped,
    trials, complete, out_of_trials, trials_to_complete``); None without at least one of each.

    E.g. ``"shaping: shaped reached criterion after 7,488 trials; control had not after 60,000 (stopped out of
    trials)"``; when both reached it, the control's trials over the shaped agents' median are added. More than
    three agents on a side (a sweep) are counted instead of named: ``"20 of 20 shaped agents reached criterion
    (median 1,840 trials)"``.
    """
    need = {"agent", "shaped", "trials", "complete", "trials_to_complete"}
    if not len(summary) or not need <= set(summary.columns):
        return None
    shaped = summary[summary["shaped"].map(lambda v: v is True or v is np.True_)]
    control = summary[summary["shaped"].map(lambda v: v is False or v is np.False_)]
    if not len(shaped) or not len(control):
        return None

    def say(rows: pd.DataFrame) -> str:
        if len(rows) > 3:  # a sweep: counts and the median, not a name per agent
            done = rows[rows["complete"].astype(bool)]["trials_to_complete"].dropna().astype(float)
            kind = "shaped" if rows is shaped else "control"
            line = f"{len(done)} of {len(rows)} {kind} agents reached criterion"
            return line + (f" (median {int(done.median()):,} trials)" if len(done) else "")
        parts = []
        for r in rows.to_dict("records"):
            if r["complete"] and pd.notna(r["trials_to_complete"]):
                parts.append(f"{r['agent']} reached criterion after {int(r['trials_to_complete']):,} trials")
            else:
                why = "stopped out of trials" if r.get("out_of_trials") else "stopped before it"
                parts.append(f"{r['agent']} had not after {int(r['trials']):,} ({why})")
        return ", ".join(parts)

    line = f"shaping: {say(shaped)}; {say(control)}"
    done_s = shaped[shaped["complete"].astype(bool)]["trials_to_complete"].dropna().astype(float)
    done_c = control[control["complete"].astype(bool)]["trials_to_complete"].dropna().astype(float)
    if len(done_s) and len(done_c):
        line += f" (control / shaped: {done_c.median() / done_s.median():.1f}x the trials)"
    return line


# ---------------------------------------------------------------------------------------------- psychometrics
def _task_spec(tables: LabTables, agent: str | None) -> dict:
    """The task spec the server journaled at ``agent``'s last HELLO (``{}`` for journals that predate it)."""
    s = tables.sessions if agent is None else tables.sessions[tables.sessions["agent"] == agent]
    specs = [v for v in s.get("task_spec", pd.Series(dtype=object)) if isinstance(v, Mapping)]
    return dict(specs[-1]) if specs else {}


def task_evidence_knob(task_spec: Mapping[str, Any] | None, task_names: Iterable[str] = (),
                       columns: Iterable[str] | None = None) -> str | None:
    """The evidence knob of a task (the x axis of its psychometric curve): the spec's ``evidence_knob``, else
    the registered task's (by the spec's ``task``/``name``, then by each of ``task_names``), else the knob the
    spec declares easier when higher.

    Args:
        task_spec: a task's ``spec()`` (or ``{}``).
        task_names: further registered names to look up (e.g. a journal's ``task`` column).
        columns: when given, only a knob that is one of these (a trial table's columns) is returned.
    """
    from .tasks import registry

    spec = dict(task_spec or {})
    allowed = None if columns is None else set(columns)

    def ok(knob: Any) -> bool:
        return bool(knob) and (allowed is None or knob in allowed)

    if ok(spec.get("evidence_knob")):  # a "module:Class" task need not be importable here
        return str(spec["evidence_knob"])
    names = [n for n in (spec.get("task"), spec.get("name")) if n] + [str(n) for n in task_names]
    for name in dict.fromkeys(str(n) for n in names):
        try:
            knob = getattr(registry.get(name), "evidence_knob", None)
        except (ValueError, ImportError):
            continue
        if ok(knob):
            return str(knob)
    for name, knob in (spec.get("knobs") or {}).items():
        if isinstance(knob, Mapping) and knob.get("easier") == "higher" and ok(name):
            return str(name)
    return None


def evidence_knob(tables: LabTables, agent: str | None = None) -> str | None:
    """The evidence knob of the task ``agent`` ran (:func:`task_evidence_knob` on its journaled spec and the
    task names of its trials, among its trials' columns); None without trials."""
    t = tables.trials if agent is None else agent_trials(tables, agent)
    if not len(t) or "task" not in t.columns:
        return None
    return task_evidence_knob(_task_spec(tables, agent), pd.unique(t["task"]), t.columns)


def evidence_sides(tables: LabTables, agent: str | None = None) -> dict | None:
    """The ``evidence_side`` of the task ``agent`` ran, from its journaled spec (None: unknown; the scoring
    functions then look the task up by name)."""
    sides = _task_spec(tables, agent).get("evidence_side")
    return dict(sides) if isinstance(sides, Mapping) else None


def psychometric_axes(tables: LabTables, agent: str) -> PsychometricAxes | None:
    """What ``agent``'s psychometric curves are drawn against (:class:`shaping.scoring.PsychometricAxes`): from
    its journaled task spec, with the evidence knob of :func:`evidence_knob` (None: the task has none)."""
    knob = evidence_knob(tables, agent)
    if knob is None:
        return None
    spec = _task_spec(tables, agent)
    t = agent_trials(tables, agent)
    if not spec:
        spec = {"task": str(t["task"].iloc[-1])} if "task" in t.columns and len(t) else {}
    axes = psychometric_axes_of(dict(spec, evidence_knob=knob))
    return replace(axes, evidence=tuple(c for c in axes.evidence if c in t.columns))


def psychometric_xy(trials: pd.DataFrame, evidence: str, sides: Mapping[str, str] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, str]:
    """Per scorable trial (a choice was made): ``(x, y, ylabel)`` for a psychometric fit
    (:func:`shaping.scoring.signed_evidence`; empty arrays when the trials lack the evidence)."""
    xy = signed_evidence(trials, evidence, sides) if len(trials) else None
    return xy if xy is not None else (np.empty(0), np.empty(0), "P(correct)")


def psychometric_fit(trials: pd.DataFrame, evidence: str, sides: Mapping[str, str] | None = None) -> dict:
    """Psychometric fit of one set of trials: the logistic regression ``b0 + b1 x`` on :func:`psychometric_xy`
    (:func:`shaping.scoring.fit_logistic`; ``slope`` = b1 per evidence unit) and the lapse-aware fit of the
    figures (:func:`shaping.scoring.fit_trials`): ``pse`` (its mu on P(choice = 1); -b0 / b1 otherwise),
    ``lapse_low`` and ``lapse_high`` (its lower and upper lapse rates).

    Returns:
        ``{"n", "n_no_response", "levels"`` (distinct evidence values fitted), ``"b0", "b1", "pse", "slope",
        "lapse_low", "lapse_high", "note"}``: the fit's entries are NaN, and ``note`` says why, when the data
        cannot constrain a curve (fewer than :data:`shaping.scoring.MIN_EVIDENCE_LEVELS` evidence levels, or a
        single answer); ``note`` is ``""`` otherwise.
    """
    x, y, _ = psychometric_xy(trials, evidence, sides)
    levels = evidence_levels(x)
    out = {"n": int(len(trials)), "n_no_response": int((~responded(trials)).sum()) if len(trials) else 0,
           "levels": levels, "b0": np.nan, "b1": np.nan, "pse": np.nan, "slope": np.nan, "lapse_low": np.nan,
           "lapse_high": np.nan, "note": ""}
    reason = no_fit_reason(trials, evidence, sides) if len(trials) else "no trials"
    if reason is not None:
        out["note"] = f"no fit: {reason}"
        return out
    b0, b1 = fit_logistic(x, y)
    out.update(b0=b0, b1=b1, slope=b1, pse=-b0 / b1 if b1 else np.nan)
    fit = fit_trials(trials, evidence, sides=sides)
    if fit is not None:
        out.update(lapse_low=fit.gamma, lapse_high=fit.lapse)
        if fit.kind == "logistic":
            out["pse"] = fit.mu
    return out


@dataclass(frozen=True)
class Span:
    """A stated span of one agent's trials for a psychometric fit.

    Attributes:
        kind: ``"graduated"`` / ``"complete"`` (the trials ending at that event) or ``"recent"`` (the last trials
            of a stage the agent has not graduated from since).
        stage, stage_index: the stage whose trials are fitted.
        start, stop: ``session_trials`` of the span's first and last trial (inclusive).
        n_trials: the span's length as asked (the criterion window); it holds fewer when the stage had fewer.
        label: the span in words, for every figure title and table row that shows the fit.
    """

    kind: str
    stage: str
    stage_index: int
    start: int
    stop: int
    n_trials: int
    label: str


def psychometric_spans(trials: pd.DataFrame, events: pd.DataFrame, n_trials: int) -> list[Span]:
    """The spans a psychometric curve of one agent is fitted over: the last ``n_trials`` trials of a stage before
    each graduation out of it (and before completion), and the last ``n_trials`` of each stage the agent has
    been in since it last graduated from it (the control's only stage; a stage it regressed out of). Never a
    whole learning phase pooled.

    Args:
        trials: the agent's trials in order, with ``stage, stage_index`` and ``session_trials``
            (:func:`agent_trials`); a ``stale`` column, when present, tells trials drawn after the policy left.
        events: the agent's events with ``event, session_trials, from_stage, stage``
            (:func:`events_of`).
        n_trials: trials per span (e.g. the criterion window, :func:`criterion_window`).

    Returns:
        the spans, ordered by their last trial.
    """
    n_trials = _check_window(n_trials)
    if not len(trials):
        return []
    idx = trials[TRIAL_AXIS].to_numpy(dtype=np.int64)
    stage = trials["stage"].astype(str).to_numpy()
    stage_index = trials["stage_index"].to_numpy(dtype=np.int64)
    stale = trials["stale"].to_numpy(dtype=bool) if "stale" in trials.columns else np.zeros(len(trials), bool)
    spans: list[Span] = []
    left: dict[str, int] = {}  # stage -> session_trials of its last graduation / completion
    ev = events[events["event"].isin(["graduated", "complete"])] if len(events) and "event" in events else events
    for e in ev.to_dict("records") if len(ev) else []:
        at = int(e[TRIAL_AXIS])
        name = str(e.get("from_stage") if e["event"] == "graduated" else e.get("stage"))
        rows = np.flatnonzero((stage == name) & (idx <= at))[-n_trials:]
        if not len(rows):
            continue
        left[name] = max(left.get(name, 0), at)
        verb = f"graduating from {name}" if e["event"] == "graduated" else f"completing in {name}"
        spans.append(Span(e["event"], name, int(stage_index[rows[-1]]), int(idx[rows[0]]), int(idx[rows[-1]]),
                          n_trials, f"{name}: {len(rows):,} trials before {verb} (trials {idx[rows[0]]:,}-"
                          f"{idx[rows[-1]]:,})"))
    for name in dict.fromkeys(stage):
        fresh = (stage == name) & ~stale & (idx > left.get(name, 0))
        if not fresh.any():
            continue
        rows = np.flatnonzero((stage == name) & (idx > left.get(name, 0)))[-n_trials:]
        spans.append(Span("recent", name, int(stage_index[rows[-1]]), int(idx[rows[0]]), int(idx[rows[-1]]),
                          n_trials, f"{name}: its last {len(rows):,} trials (trials {idx[rows[0]]:,}-"
                          f"{idx[rows[-1]]:,})"))
    return sorted(spans, key=lambda s: (s.stop, s.start))


def span_trials(trials: pd.DataFrame, span: Span) -> pd.DataFrame:
    """The trials of ``span`` (``trials`` as given to :func:`psychometric_spans`)."""
    at = trials[TRIAL_AXIS]
    return trials[(at >= span.start) & (at <= span.stop) & (trials["stage"].astype(str) == span.stage)]


def agent_spans(tables: LabTables, agent: str, n_trials: int | None = None) -> list[Span]:
    """:func:`psychometric_spans` of ``agent``, ``n_trials`` defaulting to its curriculum's criterion window."""
    n = n_trials or criterion_window(_last_session(tables, agent).get("spec"))
    return psychometric_spans(agent_trials(tables, agent), events_of(tables, agent), n)


def psychometric_table(tables: LabTables, agent: str, evidence: str | None = None,
                       n_trials: int | None = None) -> pd.DataFrame:
    """One row per span (:func:`agent_spans`), evidence column and curve: ``span`` (in words), ``span_start,
    span_stop`` (``session_trials``), ``stage_index, stage, evidence, curve, n, n_no_response, levels,
    accuracy, b0, b1, pse, slope, lapse_low, lapse_high, note`` (see :func:`psychometric_fit`).
    ``evidence``: one column (None: the task's, :func:`psychometric_axes`); ``curve``: the value of the task's
    ``psychometric_by`` (e.g. ``"motion context"``), ``"all"`` for a task that does not split its curves."""
    axes = psychometric_axes(tables, agent)
    columns = (evidence,) if evidence else (axes.evidence if axes else ())
    sides = evidence_sides(tables, agent)
    cols = ["span", "span_start", "span_stop", "stage_index", "stage", "evidence", "curve", "n", "n_no_response",
            "levels", "accuracy", "b0", "b1", "pse", "slope", "lapse_low", "lapse_high", "note"]
    t = agent_trials(tables, agent)
    if not columns or not len(t):
        return pd.DataFrame(columns=cols)
    rows = []
    for span in agent_spans(tables, agent, n_trials):
        sel = span_trials(t, span)
        for column in columns:
            for curve, rows_ in split_trials(sel, axes):
                fit = psychometric_fit(rows_, column, sides)
                rows.append({"span": span.label, "span_start": span.start, "span_stop": span.stop,
                             "stage_index": span.stage_index, "stage": span.stage, "evidence": column,
                             "curve": "all" if curve is None else curve,
                             "accuracy": float((rows_["outcome"] == "correct").mean()) if len(rows_) else np.nan,
                             **fit})
    return pd.DataFrame(rows, columns=cols)
