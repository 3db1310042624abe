"""The server's curriculum hooks: what :class:`CurriculumTracker` writes into each agent's child run.

The server calls the hooks (:meth:`CurriculumTracker.on_session_start` at HELLO, ``on_scored`` after each batch
is journaled, ``on_override``, ``on_session_end``); the tracker writes into the agent's child run
(:meth:`shaping.tracking.LabRun.child`):

- params ``policy.*`` and ``task.*``: the curriculum and task specs flattened to dotted names (see
  :func:`shaping.tracking.names.flatten_params`), and both whole as ``curriculum/policy.json`` and
  ``curriculum/task.json``;
- metrics with the trial count (``session_trials``) as step: ``curriculum/accuracy`` (the batch),
  ``curriculum/accuracy_window`` (the recent accuracy of :mod:`shaping.readout`: the last ``window_trials``
  trials across stages and sessions, the server's ``window_accuracy`` and every view's "recent accuracy (last N
  trials)"), ``curriculum/policy_accuracy`` (the criterion accuracy: the policy's own, over its own window,
  what its graduation and regression criteria read; absent for policies that keep none),
  ``curriculum/p_no_response``, ``curriculum/stage_index``, ``curriculum/reversals`` (cumulative count of
  staircase reversal events) and each knob as drawn (:func:`shaping.readout.knob_metrics`): ``knob/<name>`` for
  a fixed value (a staircase's current level), ``knob/<name>/min`` and ``knob/<name>/max`` for a set of choices
  or a ``{"uniform": [lo, hi]}`` range, never a mean; non-numeric knobs are skipped;
- ``curriculum/events.json``: every event as a table (MLflow's ``log_table``, appended at each batch that
  has events), with ``step`` (the trial count of the batch, the event's ``session_trials``) added to the
  event's own fields;
- at the end, ``curriculum/trials.parquet`` (the agent's whole trial log), ``curriculum/psychometric/
  <stage>.png`` per stage (fitted over the stage's last stated span, :func:`shaping.readout.psychometric_spans`:
  the trials before its last graduation, or its last criterion window; the span is the figure's title),
  ``curriculum/timeline.png`` (the policy's stage, stepping under each event's marker) and
  ``curriculum/curves.png`` (knobs as drawn, as bands), and the tag ``curriculum.outcome``: ``complete``,
  ``out_of_trials`` or ``stopped``.

The ``run`` dict the hooks return for WELCOME carries, besides :meth:`~shaping.tracking.LabRun.child`'s keys,
``description``: the curriculum in one line (:func:`shaping.tracking.names.describe_curriculum`), which the
agent completes with its constraints into the run's description (:class:`agents.tracking.AgentTracker`).

A server restarted on its journal carries each run on from the journal (counters, window, figure history)
and writes the batches the dead one never did (see :meth:`CurriculumTracker.on_session_start`).

The hooks return quickly: store calls run on one background thread per tracker
(:class:`shaping.tracking.store.BackgroundWriter`) and metrics are buffered and written with ``log_batch``
(every ``flush_interval_s`` seconds or ``flush_metrics`` values, at each stage change, and at the end), events
with them. The failure policy is :class:`shaping.tracking.store.StoreGuard`'s: no tracking failure reaches the
server.
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric

from ..readout import (
    CURRICULUM_ENDS,
    MOVE_EVENTS,
    TRIAL_AXIS,
    RecentWindow,
    criterion_window,
    knob_metrics,
    policy_stages,
    psychometric_spans,
    span_trials,
    task_evidence_knob,
)
from ..scoring import PsychometricAxes, psychometric_axes
from .labrun import LabRun
from .names import describe_curriculum, describe_labels, flatten_params, knob_scalar, now_ms, plain, safe_name
from .store import BackgroundWriter, log_metrics_batched, log_params_batched

logger = logging.getLogger(__package__)

BATCH_KEYS = ("session", "batch")  # what identifies one scored batch of an agent in the journal
KNOB_PREFIX = "knob."  # knob settings in shaping.journal.load_batches()


# ---------------------------------------------------------------------------------------------- helpers
def _as_int(value: Any) -> int | None:
    """``value`` as an int when it is a whole number (stage indices come back as floats from parquet)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


def _evidence_knob(task_spec: Mapping[str, Any]) -> str | None:
    """The task's evidence knob (x axis of its psychometric curve), if it can be told
    (:func:`shaping.readout.task_evidence_knob`)."""
    return task_evidence_knob(task_spec)


def _on_trial_axis(events: pd.DataFrame) -> pd.DataFrame:
    """Logged events with their ``step`` as ``session_trials`` (what :mod:`shaping.readout` places them by)."""
    return events.drop(columns=[TRIAL_AXIS], errors="ignore").rename(columns={"step": TRIAL_AXIS})


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
    window: RecentWindow  # the recent-accuracy window, across stages (shaping.readout)
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
    span_trials: int = 200  # trials per psychometric span: the curriculum's criterion window

    @property
    def run_id(self) -> str | None:
        return self.run.get("run_id")


STAGE_EVENTS = MOVE_EVENTS  # flushed at once (others wait)
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
        window_trials: trials in the ``curriculum/accuracy_window`` metric: the server's ``window_trials``, across
            stages (the recent accuracy of :mod:`shaping.readout`).
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
                         trials: int = 0, journal: Callable[[], JournalTables] | None = None,
                         curriculum_name: str | None = None) -> dict:
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
            curriculum_name: the curriculum's name in the lab file, shown in the run's description.

        Returns:
            the ``run`` dict for WELCOME: :meth:`LabRun.child`'s, and ``description``, the curriculum in one line
            (:func:`~shaping.tracking.names.describe_curriculum`).
        """
        run = self.lab.child(agent)
        sess = self._sessions.get(agent)
        resume = sess is None and trials > 0 and journal is not None and run["run_id"] is not None
        if sess is None:
            knob = _evidence_knob(task_spec)
            axes = psychometric_axes(dict(task_spec or {}, evidence_knob=knob)) if knob else None
            sess = _Session(run=run, axes=axes, window=RecentWindow(self.window_trials),
                            sides=task_spec.get("evidence_side") if task_spec else None,
                            span_trials=criterion_window(curriculum_spec))
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
        return {**run, "description": describe_curriculum(curriculum_spec, curriculum_name)}

    def replay_journal(self, agent: str, trial_log: pd.DataFrame, batches: pd.DataFrame | None = None,
                       events: pd.DataFrame | None = None) -> None:
        """Feed ``agent``'s journaled batches to the hooks as the server fed them (what :func:`shaping.tracking.
        sync` does, after :meth:`on_session_start`): metrics, events and figure history, as if live.

        Args:
            agent: the agent's name.
            trial_log: its trials in order (``shaping.journal.load``), with the batch keys ``session, batch``.
            batches: ``shaping.journal.load_batches`` (knob settings and policy accuracy per batch).
            events: ``shaping.journal.load_events``.
        """
        sess = self._sessions.get(agent)
        if sess is None or sess.run_id is None or not self.enabled:
            return
        self._when_replayed(sess, self._replay, agent, sess, trial_log, batches, events)

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
        sess.stage_index = stage_index
        if conditions.get("stage") is not None and (i := _as_int(stage_index)) is not None:
            sess.stage_names.setdefault(i, str(conditions["stage"]))
        correct = outcome == "correct"
        recent = sess.window.add(correct)  # readout's recent accuracy: not reset at a stage change
        sess.reversals += sum(1 for ev in events if ev.get("event") == "reversal")
        values: dict[str, float] = {"curriculum/reversals": float(sess.reversals)}
        if len(outcome):
            values["curriculum/accuracy"] = float(correct.mean())
            values["curriculum/p_no_response"] = float(np.mean(outcome == "no_response"))
        if recent is not None:
            values["curriculum/accuracy_window"] = float(recent)
        if policy_accuracy is not None and math.isfinite(policy_accuracy):
            values["curriculum/policy_accuracy"] = float(policy_accuracy)
        if (s := knob_scalar(stage_index)) is not None:
            values["curriculum/stage_index"] = s
        for name, value in (conditions.get("knobs") or {}).items():
            values.update(knob_metrics(safe_name(name), value))  # as drawn: a value, or min and max
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
                           sess.sides, sess.outcome or "stopped", sess.span_trials)

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
    def _write_psychometrics(self, run_id: str, trial_log: pd.DataFrame, events: pd.DataFrame,
                             axes: PsychometricAxes, stage_names: dict, sides: dict | None, n_trials: int) -> None:
        """One psychometric figure per stage, ``curriculum/psychometric/<index>_<stage>.png``, fitted over the
        stage's last stated span (:func:`shaping.readout.psychometric_spans`), never over all its trials."""
        from .. import figures

        trials = trial_log.reset_index(drop=True).assign(**{TRIAL_AXIS: np.arange(1, len(trial_log) + 1)})
        if "stage" not in trials.columns:
            trials["stage"] = "all"
        if "stage_index" not in trials.columns:
            trials["stage_index"] = 0
        moves = _on_trial_axis(events) if len(events) else pd.DataFrame(columns=["event", TRIAL_AXIS])
        last = {}
        for span in psychometric_spans(trials, moves, n_trials):  # in order: the last one of a stage wins
            last[span.stage_index] = span
        for index, span in sorted(last.items()):
            rows = span_trials(trials, span)
            name = stage_names.get(index, span.stage)
            label = f"{index:02d}_{name}"
            evidence = [c for c in axes.evidence if c in rows.columns] or list(axes.evidence[:1])
            self.lab.guard.run("psychometric figure", lambda rows=rows, span=span, evidence=evidence, label=label:
                               self.client.log_figure(run_id, figures.psychometric_curve(
                                   rows, evidence, title=span.label, sides=sides, by=axes.by, labels=axes.labels),
                                   f"curriculum/psychometric/{safe_name(label)}.png"))

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
                   stage_names: dict, status: str, sides: dict | None = None, outcome: str = "stopped",
                   n_trials: int = 200) -> None:
        from .. import figures

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
            if axes is not None:
                self._write_psychometrics(run_id, trial_log, events, axes, stage_names, sides, n_trials)
        if len(history):
            names = list(dict.fromkeys(c.split("/")[1] for c in history.columns if c.startswith("knob/")))
            knobs = {}
            for name in names:  # a fixed value where one was logged, else the band the trials were drawn from
                fixed = history.get(f"knob/{name}", pd.Series(np.nan, index=history.index)).astype(float)
                low = fixed.fillna(history.get(f"knob/{name}/min", pd.Series(np.nan, index=history.index)))
                high = fixed.fillna(history.get(f"knob/{name}/max", pd.Series(np.nan, index=history.index)))
                knobs[name] = (low.to_numpy(dtype=float), high.to_numpy(dtype=float))
            acc = history.get("curriculum/accuracy_window", pd.Series(np.nan, index=history.index))
            stage = history.get("curriculum/stage_index", pd.Series(0.0, index=history.index)).ffill().fillna(0)
            moves = _on_trial_axis(events) if len(events) else None
            policy_stage = policy_stages(history["trial"].to_numpy(), stage.to_numpy(), moves)
            policy_acc = history.get("curriculum/policy_accuracy")
            guard.run("curves figure", lambda: self.client.log_figure(
                run_id, figures.curriculum_curves(history["trial"], acc, knobs, policy_stage,
                                                  policy_accuracy=None if policy_acc is None else
                                                  policy_acc.to_numpy(dtype=float),
                                                  window_trials=self.window_trials),
                "curriculum/curves.png"))
            guard.run("timeline figure", lambda: self.client.log_figure(
                run_id, figures.stage_timeline(history["trial"], policy_stage, events, stage_names or None),
                "curriculum/timeline.png"))
        self.client.set_tag(run_id, "curriculum.outcome", outcome)
        self.client.set_terminated(run_id, status)


# ---------------------------------------------------------------------------------------------- journal rows
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

