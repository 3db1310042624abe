"""A lab's journal, status file, weight files and MLflow runs as pandas tables, for the dashboard and report.

One job: turn what a running (or finished) lab leaves on disk into tables and small dicts; no Streamlit and
no drawing here, so every number the dashboard shows can be computed and tested headless. Everything is
read-only: the journal is read with :class:`shaping.journal.JournalReader` (no lock, safe while the server
writes; a torn last record is left for the next poll), and an MLflow sqlite store is only opened if its
file already exists (opening a missing one would create it).

A lab directory holds ``journal/`` (segments, ``server.json`` while the server runs, ``status.json`` written
by the server), ``weights/<agent>*.npz`` (PsychRNN weight files) and, by default, ``mlflow.db``. A journal
directory given on its own works too.

Conventions: ``trial`` counts are cumulative per agent (the x axis everywhere, as in the MLflow metrics),
events included: the functions below place an event at its ``session_trials`` (every trial the session scored,
stale ones too) and keep the policy's own count, which leaves stale trials out, as ``policy_trial``;
accuracy is ``correct / all trials`` (no-response trials count as not correct), over a trailing window of
the current stage's trials that restarts at each stage change, as the stage policies' windows do.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from shaping import figures as F
from shaping import journal as J
from shaping.scoring import PsychometricAxes, fit_trials, signed_evidence, split_trials
from shaping.scoring import psychometric_axes as psychometric_axes_of

__all__ = [
    "LabPaths", "lab_paths", "LabTables", "LabReader", "read_lab", "agent_names", "agent_conditions",
    "agent_summary", "agent_progress", "stage_names", "stage_changes", "reversals", "graduations",
    "graduation_summary", "evidence_knob", "evidence_sides", "psychometric_axes", "psychometric_xy",
    "psychometric_fit", "psychometric_table",
    "weight_files", "Connectivity", "load_connectivity", "connectivity_changes", "read_status",
    "status_table", "server_info", "tracking_uri_of", "parent_run_id_of", "run_ids_of", "load_runs",
    "metric_history",
    "MOVE_EVENTS", "DEFAULT_WINDOW_TRIALS",
]

MOVE_EVENTS = ("graduated", "regressed", "complete", "out_of_trials")  # curriculum moves on a stage timeline
DEFAULT_WINDOW_TRIALS = 200  # the stage policies' default window (docs/policies.md)
STATUS_FILE = "status.json"


# ---------------------------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class LabPaths:
    """Where a lab's files are. ``root``: the lab directory; ``journal``: its journal directory."""

    root: Path
    journal: Path
    weights: Path
    status: Path
    endpoint: Path


def lab_paths(lab_dir: str | os.PathLike) -> LabPaths:
    """The paths of a lab directory (``LAB/journal``), or of a bare journal directory given as ``lab_dir``."""
    root = Path(lab_dir).expanduser().resolve()
    journal = root / "journal"
    if not journal.is_dir() and any(root.glob(J.SEGMENT_GLOB)):
        journal, root = root, root.parent
    return LabPaths(root, journal, root / "weights", journal / STATUS_FILE, journal / "server.json")


# ---------------------------------------------------------------------------------------------- journal
_BATCH_COLUMNS = ["agent", "session", "batch", "epoch", "time", "task", "stage", "stage_index", "n",
                  "correct", "no_response", "accuracy", "policy_accuracy", "trials"]
_EVENT_COLUMNS = ["agent", "session", "batch", "time", "session_trials", "event", "trial"]
_SESSION_COLUMNS = ["agent", "session", "curriculum", "epoch", "resumed", "time", "seed", "info", "run",
                    "spec", "task", "task_spec"]
_END_COLUMNS = ["agent", "session", "time", "reason"]


@dataclass
class LabTables:
    """Everything journaled so far, as tables.

    Attributes:
        trials: one row per trial (:func:`shaping.journal.load`'s columns).
        batches: one row per scored batch: ``agent, session, batch, epoch, time, task, stage, stage_index,
            n, correct, no_response, accuracy, policy_accuracy`` (the policy's own accuracy after the batch,
            what its criteria read; None when it keeps none), ``trials`` (the agent's cumulative trial count at
            the end of the batch), then ``knob.NAME`` (the setting as journaled: number, list or
            ``{"uniform": [lo, hi]}``).
        events: one row per policy event: ``agent, session, batch, time, session_trials`` (the agent's
            cumulative trial count when it fired: the x axis), ``event, trial`` (the policy's own count, without
            stale trials), then its fields.
        sessions: one row per accepted HELLO: ``agent, session, curriculum, epoch, resumed, time, seed,
            info, run, spec`` (the curriculum spec) and ``task`` (the task config).
        ends: one row per BYE: ``agent, session, time, reason``.
        opened, closed: the server's last OPEN and CLOSE records (None if absent).
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


def _batch_row(rec: Mapping[str, Any]) -> dict:
    row = {k: rec[k] for k in ("agent", "session", "batch", "epoch", "time", "task", "stage", "stage_index",
                               "n")}
    outcome = rec["cols"].get("outcome")
    if outcome is not None and outcome[0] == "cat":
        codes = np.frombuffer(outcome[2], np.int8)
        row["correct"] = int(np.count_nonzero(codes == J.OUTCOMES.index("correct")))
        row["no_response"] = int(np.count_nonzero(codes == J.OUTCOMES.index("no_response")))
    else:
        row["correct"] = row["no_response"] = None
    row["accuracy"] = row["correct"] / rec["n"] if row["correct"] is not None and rec["n"] else None
    row["policy_accuracy"] = rec.get("policy_accuracy")
    for k, v in json.loads(rec["knobs"]).items():
        row[f"knob.{k}"] = v
    return row


class LabReader:
    """Incremental reader of a lab's journal: each :meth:`poll` decodes only the records written since the
    last one and returns the tables of everything so far. Thread-safe (one reader may serve every dashboard
    session of a lab).

    Args:
        lab_dir: a lab directory or a journal directory.
    """

    def __init__(self, lab_dir: str | os.PathLike):
        self.paths = lab_paths(lab_dir)
        self._reader: J.JournalReader | None = None
        self._lock = threading.Lock()
        self._batch_recs: list[dict] = []
        self._batch_rows: list[dict] = []
        self._event_rows: list[dict] = []
        self._trials: dict[str, int] = {}  # agent -> trials read so far (events of older journals)
        self._sessions: list[dict] = []
        self._ends: list[dict] = []
        self._opened: dict | None = None
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
            self._reader = J.JournalReader(self.paths.journal)
        try:
            records = self._reader.poll()
        except FileNotFoundError:  # the journal directory was removed under us
            return 0
        for kind, rec in records:
            if kind in (J.BATCH, J.OVERRIDE):
                if kind == J.BATCH:
                    self._batch_recs.append(rec)
                    self._batch_rows.append(_batch_row(rec))
                self._event_rows.extend(J.event_rows(kind, rec, self._trials))
            elif kind == J.HELLO:
                self._sessions.append({c: rec.get(c) for c in _SESSION_COLUMNS})
            elif kind == J.END:
                self._ends.append({c: rec.get(c) for c in _END_COLUMNS})
            elif kind == J.OPEN:
                self._opened, self._closed = rec, None
            elif kind == J.CLOSE:
                self._closed = rec
        self._records += len(records)
        return len(records)

    def _tables(self) -> LabTables:
        trials = J.trials_frame(self._batch_recs)
        batches = pd.DataFrame(self._batch_rows)
        if len(batches):
            batches["trials"] = batches.groupby("agent", sort=False)["n"].cumsum()
        else:
            batches = pd.DataFrame(columns=_BATCH_COLUMNS)
        events = pd.DataFrame(self._event_rows) if self._event_rows else pd.DataFrame(columns=_EVENT_COLUMNS)
        sessions = pd.DataFrame(self._sessions, columns=_SESSION_COLUMNS)
        ends = pd.DataFrame(self._ends, columns=_END_COLUMNS)
        return LabTables(trials, batches, events, sessions, ends, self._opened, self._closed, self._records)


def read_lab(lab_dir: str | os.PathLike) -> LabTables:
    """Every complete record of a lab's journal as :class:`LabTables` (one pass over the files)."""
    return LabReader(lab_dir).poll()


# ---------------------------------------------------------------------------------------------- agents
def agent_names(tables: LabTables) -> list[str]:
    """Agents in the order they first said HELLO (or were first journaled)."""
    names = list(tables.sessions["agent"]) + list(tables.batches["agent"])
    return list(dict.fromkeys(str(a) for a in names))


def _last_session(tables: LabTables, agent: str) -> dict:
    rows = tables.sessions[tables.sessions["agent"] == agent]
    return rows.iloc[-1].to_dict() if len(rows) else {}


def _window_size(spec: Any) -> int:
    """The accuracy window (trials) of a policy spec: ``window`` as an int or ``{"size": n}``, looked up in
    the wrapped policy of a ``bias`` spec; the stage policies' default when absent."""
    if not isinstance(spec, Mapping):
        return DEFAULT_WINDOW_TRIALS
    if spec.get("kind") == "bias" and isinstance(spec.get("policy"), Mapping):
        return _window_size(spec["policy"])
    w = spec.get("window")
    if isinstance(w, Mapping):
        w = w.get("size")
    if isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 1:
        return int(w)
    return DEFAULT_WINDOW_TRIALS


def _dale_label(ratio: Any) -> str:
    if ratio is None or (isinstance(ratio, float) and np.isnan(ratio)):
        return "free"
    return "Dale" if float(ratio) > 0 else "free"


def agent_conditions(tables: LabTables, runs: pd.DataFrame | None = None,
                     weights: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per agent: ``agent, curriculum, dale_ratio, dale ("Dale"/"free"), seed, condition``.

    ``dale_ratio`` and ``seed`` come from the model table the agent sent in HELLO (``info["model"]``), else
    from its MLflow run's ``constraint.dale_ratio`` / ``model.seed`` params (``runs`` from :func:`load_runs`),
    else from the ``config`` of its newest weight file (``weights`` from :func:`weight_files`).
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


def _json_value(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def stage_names(tables: LabTables, agent: str) -> dict[int, str]:
    """Stage index -> name for ``agent``: from its curriculum spec, then from what was journaled."""
    names: dict[int, str] = {}
    spec = _last_session(tables, agent).get("spec")
    stages = spec.get("stages") if isinstance(spec, Mapping) else None
    if isinstance(stages, list):
        names.update({i: str(s.get("name", i)) for i, s in enumerate(stages) if isinstance(s, Mapping)})
    b = tables.batches[tables.batches["agent"] == agent]
    for i, s in zip(b["stage_index"], b["stage"]):
        names.setdefault(int(i), str(s))
    return dict(sorted(names.items()))


def _agent_trials(tables: LabTables, agent: str) -> pd.DataFrame:
    t = tables.trials
    return t[t["agent"] == agent] if len(t) else t


def agent_progress(tables: LabTables, agent: str, window: int | None = None) -> pd.DataFrame:
    """One row per scored batch of ``agent``, in order.

    Columns: ``batch, time, trials`` (cumulative count at the batch's end), ``n, stage, stage_index,
    accuracy`` (the batch's), ``window_accuracy`` (the last ``window`` trials of the current stage; default
    the curriculum's window), ``policy_accuracy`` (the policy's own, what its criteria read; NaN where it
    keeps none), ``p_no_response``, then ``knob.NAME`` as one number per knob (the mean of a
    list of choices, the midpoint of a uniform range; see :func:`shaping.tracking.knob_scalar`).
    """
    from shaping.tracking import knob_scalar  # noqa: PLC0415  (imports mlflow: only when needed)

    b = tables.batches[tables.batches["agent"] == agent].reset_index(drop=True)
    cols = ["batch", "time", "trials", "n", "stage", "stage_index", "accuracy", "window_accuracy",
            "policy_accuracy", "p_no_response"]
    if not len(b):
        return pd.DataFrame(columns=cols)
    if window is None:
        window = _window_size(_last_session(tables, agent).get("spec"))
    t = _agent_trials(tables, agent)
    correct = (t["outcome"].to_numpy() == "correct").astype(float)
    stage = t["stage_index"].to_numpy()
    segment = np.concatenate([[0], np.cumsum(stage[1:] != stage[:-1])]) if len(stage) else stage
    win = pd.Series(correct).groupby(segment).transform(lambda s: s.rolling(window, min_periods=1).mean())
    ends = b["trials"].to_numpy(dtype=int) - 1
    out = b[["batch", "time", "trials", "n", "stage", "stage_index", "accuracy"]].copy()
    out["window_accuracy"] = win.to_numpy()[ends] if len(win) else np.nan
    out["policy_accuracy"] = pd.to_numeric(b["policy_accuracy"], errors="coerce") if "policy_accuracy" in b \
        else np.nan
    out["p_no_response"] = b["no_response"] / b["n"]
    for c in [c for c in b.columns if str(c).startswith("knob.")]:
        out[c] = [knob_scalar(v) for v in b[c]]
        out[c] = out[c].astype(float)
    return out


def _events_of(tables: LabTables, agent: str, kinds: Sequence[str]) -> pd.DataFrame:
    """``agent``'s events of these kinds, each at its cumulative trial count (``trial``; the policy's own count
    as ``policy_trial``; ``session_trials`` missing: the policy's count is all there is)."""
    e = tables.events
    if not len(e) or "event" not in e.columns:
        return e.iloc[0:0].assign(policy_trial=[])
    e = e[(e["agent"] == agent) & e["event"].isin(kinds)].reset_index(drop=True)
    cumulative = e["session_trials"] if "session_trials" in e.columns else pd.Series(np.nan, index=e.index)
    return e.assign(policy_trial=e["trial"], trial=cumulative.fillna(e["trial"]))


def stage_changes(tables: LabTables, agent: str) -> pd.DataFrame:
    """``agent``'s curriculum moves (``graduated``, ``regressed``, ``complete``, ``out_of_trials``) and stage
    overrides: ``event, trial`` (the agent's cumulative trial count: where the stage line of
    :func:`agent_progress` steps), ``policy_trial`` (the policy's count, without stale trials), ``from_stage,
    to_stage, stage, stage_index, accuracy, rule, note`` (an experimenter's note on an override)."""
    e = _events_of(tables, agent, [*MOVE_EVENTS, "override"])
    if "override" in set(e.get("event", [])) and "to_stage" in e.columns:
        e = e[(e["event"] != "override") | e["to_stage"].notna()]
    cols = ["event", "trial", "policy_trial", "from_stage", "to_stage", "stage", "stage_index", "accuracy", "rule",
            "note"]
    return e.reindex(columns=cols).reset_index(drop=True)


def reversals(tables: LabTables, agent: str) -> pd.DataFrame:
    """``agent``'s staircase reversals: ``trial`` (cumulative, as in :func:`stage_changes`), ``stage, level,
    reversals`` (count so far), ``threshold``."""
    e = _events_of(tables, agent, ["reversal"])
    return e.reindex(columns=["trial", "stage", "knob", "level", "reversals", "threshold"]).reset_index(drop=True)


def graduations(tables: LabTables, conditions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Trials each agent needed to reach each milestone, the first time.

    A milestone is a graduation out of a stage (``"graduated <stage>"``) or the curriculum's completion
    (``"complete"``, common to every curriculum: the comparison between shaped and unshaped agents).

    Returns:
        ``agent, condition, curriculum, milestone, order`` (stage index, completion last), ``trial``: the
        trials the network trained on until then (the agent's cumulative count, stale trials included; the
        policy's own count leaves them out).
    """
    conditions = agent_conditions(tables) if conditions is None else conditions
    cond = conditions.set_index("agent") if len(conditions) else None
    rows = []
    for agent in agent_names(tables):
        e = _events_of(tables, agent, ["graduated", "complete"])
        seen = set()
        for ev in e.to_dict("records"):
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
    """Spread over seeds: per milestone and group, ``n`` (agents that reached it), ``mean, sd, min,
    median, max`` trials (sd over agents, ddof 1; NaN with one agent)."""
    by = [by] if isinstance(by, str) else list(by)
    cols = ["milestone", *by, "n", "mean", "sd", "min", "median", "max"]
    if not len(grads):
        return pd.DataFrame(columns=cols)
    g = grads.groupby(["order", "milestone", *by], sort=True)["trial"]
    out = g.agg(n="size", mean="mean", sd="std", min="min", median="median", max="max").reset_index()
    return out.drop(columns="order")[cols]


def agent_summary(tables: LabTables, conditions: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per agent: ``agent, condition, curriculum, stage, stage_index, trials, batches,
    window_accuracy, graduations, regressions, reversals, complete, out_of_trials, last_time`` (unix s);
    ``complete``: the curriculum's criterion was met; ``out_of_trials``: its ``max_trials`` ran out first."""
    conditions = agent_conditions(tables) if conditions is None else conditions
    cond = conditions.set_index("agent") if len(conditions) else None
    rows = []
    for agent in agent_names(tables):
        p = agent_progress(tables, agent)
        ev = tables.events[tables.events["agent"] == agent] if len(tables.events) else tables.events
        kinds = ev["event"].value_counts() if len(ev) else pd.Series(dtype=int)
        c = cond.loc[agent] if cond is not None and agent in cond.index else {}
        last = p.iloc[-1] if len(p) else {}
        rows.append({
            "agent": agent, "condition": c.get("condition", "?"), "curriculum": c.get("curriculum", "?"),
            "stage": last.get("stage"), "stage_index": last.get("stage_index"),
            "trials": int(last["trials"]) if len(p) else 0, "batches": len(p),
            "window_accuracy": float(last["window_accuracy"]) if len(p) else None,
            "graduations": int(kinds.get("graduated", 0)), "regressions": int(kinds.get("regressed", 0)),
            "reversals": int(kinds.get("reversal", 0)), "complete": bool(kinds.get("complete", 0)),
            "out_of_trials": bool(kinds.get("out_of_trials", 0)), "last_time": float(last["time"]) if len(p) else None})
    return pd.DataFrame(rows, columns=["agent", "condition", "curriculum", "stage", "stage_index", "trials",
                                       "batches", "window_accuracy", "graduations", "regressions",
                                       "reversals", "complete", "out_of_trials", "last_time"])


# ---------------------------------------------------------------------------------------------- psychometrics
def _task_spec(tables: LabTables, agent: str | None) -> dict:
    """The task spec the server journaled at ``agent``'s last HELLO (``{}`` for journals that predate it)."""
    s = tables.sessions if agent is None else tables.sessions[tables.sessions["agent"] == agent]
    specs = [v for v in s.get("task_spec", pd.Series(dtype=object)) if isinstance(v, Mapping)]
    return dict(specs[-1]) if specs else {}


def evidence_sides(tables: LabTables, agent: str | None = None) -> dict | None:
    """The ``evidence_side`` of the task ``agent`` ran, from its journaled spec (None: unknown; the scoring
    functions then look the task up by name)."""
    sides = _task_spec(tables, agent).get("evidence_side")
    return dict(sides) if isinstance(sides, Mapping) else None


def evidence_knob(tables: LabTables, agent: str | None = None) -> str | None:
    """The evidence knob of the task ``agent`` ran (the psychometric x axis): from its journaled spec, else
    from the task registry."""
    from shaping.tasks import registry  # noqa: PLC0415

    t = tables.trials if agent is None else _agent_trials(tables, agent)
    if not len(t) or "task" not in t.columns:
        return None
    knob = _task_spec(tables, agent).get("evidence_knob")
    if knob and knob in t.columns:  # a "module:Class" task need not be importable here
        return str(knob)
    for name in pd.unique(t["task"]):
        try:
            knob = getattr(registry.get(str(name)), "evidence_knob", None)
        except ValueError:
            continue
        if knob and knob in t.columns:
            return str(knob)
    return None


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
    ``lapse_low`` and ``lapse_high`` (its lower and upper lapse rates; the lower one is the guess rate on
    P(correct)).

    Returns:
        ``{"n", "n_no_response", "b0", "b1", "pse", "slope", "lapse_low", "lapse_high"}``; the fit's entries are
        NaN when the data cannot constrain it (fewer than two evidence levels or a single answer).
    """
    x, y, _ = psychometric_xy(trials, evidence, sides)
    out = {"n": int(len(trials)), "n_no_response": int((~F.responded(trials)).sum()) if len(trials) else 0,
           "b0": np.nan, "b1": np.nan, "pse": np.nan, "slope": np.nan, "lapse_low": np.nan, "lapse_high": np.nan}
    if len(np.unique(x)) > 1 and len(np.unique(y)) > 1:
        b0, b1 = F.fit_logistic(x, y)
        out.update(b0=b0, b1=b1, slope=b1, pse=-b0 / b1 if b1 else np.nan)
        fit = fit_trials(trials, evidence, sides=sides)
        if fit is not None:
            out.update(lapse_low=fit.gamma, lapse_high=fit.lapse)
            if fit.kind == "logistic":
                out["pse"] = fit.mu
    return out


def psychometric_axes(tables: LabTables, agent: str) -> PsychometricAxes | None:
    """What ``agent``'s psychometric curves are drawn against (:class:`shaping.scoring.PsychometricAxes`): from
    its journaled task spec, with the evidence knob of :func:`evidence_knob` (None: the task has none)."""
    knob = evidence_knob(tables, agent)
    if knob is None:
        return None
    spec = _task_spec(tables, agent)
    if not spec:
        t = _agent_trials(tables, agent)
        spec = {"task": str(t["task"].iloc[-1])} if "task" in t.columns and len(t) else {}
    axes = psychometric_axes_of(dict(spec, evidence_knob=knob))
    columns = _agent_trials(tables, agent).columns
    return replace(axes, evidence=tuple(c for c in axes.evidence if c in columns))


def psychometric_table(tables: LabTables, agent: str, evidence: str | None = None) -> pd.DataFrame:
    """One row per stage ``agent`` ran, evidence column and curve: ``stage_index, stage, evidence, curve, n,
    n_no_response, accuracy, b0, b1, pse, slope, lapse_low, lapse_high`` (see :func:`psychometric_fit`).
    ``evidence``: one column (None: the task's, :func:`psychometric_axes`); ``curve``: the value of the task's
    ``psychometric_by`` (e.g. ``"motion context"``), ``"all"`` for a task that does not split its curves."""
    axes = psychometric_axes(tables, agent)
    columns = (evidence,) if evidence else (axes.evidence if axes else ())
    sides = evidence_sides(tables, agent)
    t = _agent_trials(tables, agent)
    cols = ["stage_index", "stage", "evidence", "curve", "n", "n_no_response", "accuracy", "b0", "b1", "pse",
            "slope", "lapse_low", "lapse_high"]
    if not columns or not len(t):
        return pd.DataFrame(columns=cols)
    rows = []
    for (index, stage), stage_rows in t.groupby(["stage_index", "stage"], sort=True):
        for column in columns:
            for curve, rows_ in split_trials(stage_rows, axes):
                fit = psychometric_fit(rows_, column, sides)
                rows.append({"stage_index": int(index), "stage": stage, "evidence": column,
                             "curve": "all" if curve is None else curve,
                             "accuracy": float((rows_["outcome"] == "correct").mean()), **fit})
    return pd.DataFrame(rows)[cols]


# ---------------------------------------------------------------------------------------------- weights
def _agent_of_file(stem: str, agents: Sequence[str]) -> tuple[str, str] | None:
    """``(agent, tag)`` for a weight file stem ``<agent>`` or ``<agent>_<tag>``; the longest known agent
    name wins (names may hold underscores)."""
    for agent in sorted(agents, key=len, reverse=True):
        if stem == agent:
            return agent, "final"
        if stem.startswith(agent + "_"):
            return agent, stem[len(agent) + 1:]
    return None


def weight_files(lab_dir: str | os.PathLike, agents: Sequence[str] | None = None,
                 tables: LabTables | None = None) -> pd.DataFrame:
    """The lab's weight files: ``weights/<agent>.npz`` (the final weights) and ``weights/<agent>_<tag>.npz``
    (snapshots an agent saves when its stage changes, tag ``stage<i>_<name>_trial<N>``: N is the agent's
    cumulative trial count then; older agents wrote ``stage<i>_<name>``, replaced at each visit), in the order
    they were written (file modification time).

    Args:
        lab_dir: the lab directory.
        agents: known agent names (default: the journal's); files of unknown agents are grouped by the
            stem before its first ``_``.
        tables: the journal tables, to date the snapshots whose tag does not: an older ``stage<i>_<name>``
            snapshot gets the trial count of the agent's last stage change out of stage ``i``, ``final`` the
            agent's last trial count.

    Returns:
        ``agent, tag, path, mtime, trial`` (NaN when unknown), ``meta`` (the file's ``skinnerbox`` JSON or
        None); files that cannot be read are left out.
    """
    from agents.weights import load_weights  # noqa: PLC0415  (NumPy-only module)

    paths = lab_paths(lab_dir)
    cols = ["agent", "tag", "path", "mtime", "trial", "meta"]
    if not paths.weights.is_dir():
        return pd.DataFrame(columns=cols)
    if agents is None:
        tables = tables if tables is not None else read_lab(lab_dir)
        agents = agent_names(tables)
    rows = []
    for p in sorted(paths.weights.glob("*.npz")):
        found = _agent_of_file(p.stem, agents) or (tuple(p.stem.split("_", 1)) + ("final",))[:2]
        try:
            _, meta = load_weights(p)
            mtime = p.stat().st_mtime
        except (OSError, ValueError, KeyError) as err:  # a file being written, or not a weights file
            del err
            continue
        rows.append({"agent": found[0], "tag": found[1], "path": p, "mtime": mtime, "trial": np.nan,
                     "meta": meta})
    df = pd.DataFrame(rows, columns=cols)
    if not len(df):
        return df
    df["final"] = df["tag"] == "final"
    df = df.sort_values(["agent", "final", "mtime", "tag"], kind="stable", ignore_index=True).drop(columns="final")
    df["trial"] = [_snapshot_trial(tables, r["agent"], r["tag"]) for r in df.to_dict("records")]
    return df


def _snapshot_trial(tables: LabTables | None, agent: str, tag: str) -> float:
    """The cumulative trial count a snapshot was taken at: from its tag (``stage<i>_<name>_trial<N>``), else
    (``final``, and the ``stage<i>_<name>`` tags of older agents) from the journal tables."""
    from agents.weights import parse_snapshot_tag  # noqa: PLC0415

    parsed = parse_snapshot_tag(tag)
    if parsed is not None and parsed[2] is not None:
        return float(parsed[2])
    if tables is None:
        return np.nan
    if tag == "final":
        b = tables.batches[tables.batches["agent"] == agent]
        return float(b["trials"].iloc[-1]) if len(b) else np.nan
    if parsed is None:
        return np.nan
    index = parsed[0]
    moves = _events_of(tables, agent, ["graduated", "regressed"])
    names = stage_names(tables, agent)
    if not len(moves):
        return np.nan
    left = moves[moves["from_stage"].astype(str) == names.get(index, f"\0{index}")]
    return float(left["trial"].iloc[-1]) if len(left) else np.nan


@dataclass
class Connectivity:
    """One weight file's recurrent connectivity, ready to draw.

    Attributes:
        W_rec: effective ``(N_rec, N_rec)`` weights ``[post, pre]`` (mask and Dale signs applied).
        dale_sign: ``(N_rec,)`` +1 E / -1 I, or None without Dale's principle.
        region_labels: ``(N_rec,)`` region per unit, or None.
        order: display order (region, then E before I); groups: ``(start, stop, label)`` spans of it.
        eigenvalues: of ``W_rec``; spectral_radius: their largest modulus.
        weights: every array of the file; meta: its ``skinnerbox`` JSON (None for PsychRNN files).
    """

    W_rec: np.ndarray
    dale_sign: np.ndarray | None
    region_labels: list | None
    order: np.ndarray
    groups: list
    eigenvalues: np.ndarray
    spectral_radius: float
    weights: dict = field(repr=False, default_factory=dict)
    meta: dict | None = None

    @property
    def N_rec(self) -> int:
        return int(self.W_rec.shape[0])

    @property
    def n_excitatory(self) -> int | None:
        return None if self.dale_sign is None else int(np.sum(self.dale_sign > 0))


def load_connectivity(path: str | os.PathLike) -> Connectivity:
    """Read a weights file (:func:`agents.weights.load_weights`) into a :class:`Connectivity`.

    Raises:
        ValueError: the file has no square ``W_rec``.
    """
    from agents.weights import load_weights  # noqa: PLC0415

    weights, meta = load_weights(path)
    if "W_rec" not in weights or np.ndim(weights["W_rec"]) != 2:
        raise ValueError(f"load_connectivity: {path} holds no (N_rec, N_rec) W_rec; keys: {sorted(weights)}")
    sign = F.dale_sign_from_weights(weights)
    eff = F.effective_weights(weights, sign)
    w = eff["W_rec"]
    labels = (meta or {}).get("region_labels")
    if labels is not None and len(labels) != len(w):
        labels = None
    order, groups = F.unit_order(len(w), sign, labels)
    ev = np.linalg.eigvals(w) if w.size else np.empty(0, complex)
    return Connectivity(w, sign, labels, order, groups, ev, float(np.max(np.abs(ev))) if ev.size else 0.0,
                        weights, meta)


def connectivity_changes(snapshots: Sequence[Connectivity], tags: Sequence[str],
                         trials: Sequence[float] | None = None) -> pd.DataFrame:
    """How connectivity changed from snapshot to snapshot (e.g. across graduations).

    Returns:
        one row per snapshot: ``tag, trial, N_rec, n_excitatory, spectral_radius, mean_abs_weight,
        ei_ratio`` (total excitatory over total inhibitory weight magnitude; NaN without inhibition),
        ``rel_change`` (``||W - W_prev||_F / ||W_prev||_F``; NaN for the first or a size change).
    """
    rows, prev = [], None
    trials = list(trials) if trials is not None else [np.nan] * len(snapshots)
    for c, tag, trial in zip(snapshots, tags, trials):
        w = c.W_rec
        neg = float(-w[w < 0].sum())
        change = np.nan
        if prev is not None and prev.shape == w.shape and np.linalg.norm(prev) > 0:
            change = float(np.linalg.norm(w - prev) / np.linalg.norm(prev))
        rows.append({"tag": tag, "trial": trial, "N_rec": c.N_rec, "n_excitatory": c.n_excitatory,
                     "spectral_radius": c.spectral_radius, "mean_abs_weight": float(np.mean(np.abs(w))),
                     "ei_ratio": float(w[w > 0].sum()) / neg if neg > 0 else np.nan, "rel_change": change})
        prev = w
    return pd.DataFrame(rows, columns=["tag", "trial", "N_rec", "n_excitatory", "spectral_radius",
                                       "mean_abs_weight", "ei_ratio", "rel_change"])


# ---------------------------------------------------------------------------------------------- status
def read_status(lab_dir: str | os.PathLike) -> dict | None:
    """The server's ``status.json`` (``{"time", "sessions": [...]}``), or None when it is absent or
    half-written."""
    path = lab_paths(lab_dir).status
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, Mapping) or not isinstance(data.get("sessions"), list):
        return None
    return dict(data)


def server_info(lab_dir: str | os.PathLike, tables: LabTables | None = None) -> dict:
    """``{"running", "endpoint", "pid", "started"}``: the server runs while its endpoint file exists
    (it removes the file when it stops). ``started`` falls back to the journal's last OPEN record."""
    paths = lab_paths(lab_dir)
    info = {"running": False, "endpoint": None, "pid": None, "started": None}
    try:
        data = json.loads(paths.endpoint.read_text())
        info.update(running=True, endpoint=data.get("endpoint"), pid=data.get("pid"), started=data.get("started"))
    except (OSError, ValueError):
        pass
    if info["started"] is None and tables is not None and tables.opened:
        info["started"] = tables.opened.get("time")
    return info


_STATUS_COLUMNS = ["agent", "curriculum", "stage", "stage_index", "trials", "batches", "in_flight", "accuracy",
                   "trials_per_s", "connected", "age_s", "source"]


def status_table(status: Mapping[str, Any] | None, tables: LabTables | None = None, now: float | None = None,
                 rate_window_s: float = 30.0) -> pd.DataFrame:
    """Per agent: ``agent, curriculum, stage, stage_index, trials, batches, in_flight, accuracy,
    trials_per_s, connected, age_s`` (seconds since the row's information), ``source``.

    From ``status.json`` when the server wrote one (``source = "server"``); otherwise derived from the
    journal (``source = "journal"``): trials/s over the last ``rate_window_s`` of journaled batches,
    ``connected`` when the agent's last HELLO is later than its last BYE, ``in_flight`` unknown.
    """
    now = time.time() if now is None else now
    if status is not None:
        rows = []
        for s in status.get("sessions", []):
            row = {c: s.get(c) for c in _STATUS_COLUMNS[:-2]}
            row["age_s"] = now - float(status["time"]) if status.get("time") is not None else np.nan
            row["source"] = "server"
            rows.append(row)
        return pd.DataFrame(rows, columns=_STATUS_COLUMNS)
    if tables is None or not len(tables.sessions) and tables.empty:
        return pd.DataFrame(columns=_STATUS_COLUMNS)
    rows = []
    for agent in agent_names(tables):
        sess = _last_session(tables, agent)
        b = tables.batches[tables.batches["agent"] == agent]
        p = agent_progress(tables, agent)
        last_t = float(b["time"].iloc[-1]) if len(b) else (sess.get("time") or np.nan)
        recent = b[b["time"] >= last_t - rate_window_s] if len(b) else b
        span = float(recent["time"].iloc[-1] - recent["time"].iloc[0]) if len(recent) > 1 else 0.0
        rate = float(recent["n"].iloc[1:].sum()) / span if span > 0 else np.nan
        ends = tables.ends[tables.ends["agent"] == agent]
        connected = bool(len(tables.sessions[tables.sessions["agent"] == agent])) and (
            not len(ends) or float(ends["time"].iloc[-1]) < float(sess.get("time") or 0))
        if tables.closed is not None:
            connected = False
        rows.append({"agent": agent, "curriculum": sess.get("curriculum"),
                     "stage": p["stage"].iloc[-1] if len(p) else None,
                     "stage_index": int(p["stage_index"].iloc[-1]) if len(p) else None,
                     "trials": int(p["trials"].iloc[-1]) if len(p) else 0, "batches": len(p), "in_flight": None,
                     "accuracy": float(p["window_accuracy"].iloc[-1]) if len(p) else None,
                     "trials_per_s": rate, "connected": connected, "age_s": now - last_t, "source": "journal"})
    return pd.DataFrame(rows, columns=_STATUS_COLUMNS)


# ---------------------------------------------------------------------------------------------- MLflow
def tracking_uri_of(tables: LabTables, default: str | None = None) -> str | None:
    """The tracking URI the lab's runs were written to (the ``run`` dicts the server journaled in HELLO),
    else ``default``."""
    for run in reversed(list(tables.sessions["run"])):
        if isinstance(run, Mapping) and run.get("tracking_uri"):
            return str(run["tracking_uri"])
    return default


def parent_run_id_of(tables: LabTables) -> str | None:
    """The lab's parent MLflow run id, from the journaled ``run`` dicts (None if tracking was off)."""
    for run in reversed(list(tables.sessions["run"])):
        if isinstance(run, Mapping) and run.get("parent_run_id"):
            return str(run["parent_run_id"])
    return None


def _store_exists(tracking_uri: str) -> bool:
    """False for an sqlite store whose file does not exist (opening it would create it)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).is_file()
    if tracking_uri.startswith("sqlite://"):
        return False  # in-memory
    return True


def _client(tracking_uri: str) -> Any:
    import shaping.tracking  # noqa: F401,PLC0415  (sets MLflow's environment before MLflow loads)
    from mlflow import MlflowClient  # noqa: PLC0415

    return MlflowClient(tracking_uri=tracking_uri)


_RUN_COLUMNS = ["agent", "run_id", "run_name", "status", "start_time", "end_time", "parent_run_id"]


def load_runs(tracking_uri: str | None, run_ids: Mapping[str, str] | None = None,
              parent_run_id: str | None = None) -> pd.DataFrame:
    """The lab's agent runs, read-only: one row per agent with ``agent, run_id, run_name, status,
    start_time, end_time`` (unix s), ``parent_run_id``, then ``param.<key>`` and ``metric.<key>`` (latest
    value) columns.

    Args:
        tracking_uri: the store (None, or an sqlite file that does not exist: an empty table).
        run_ids: agent -> run id (e.g. from the journal's ``run`` dicts); searched by parent otherwise.
        parent_run_id: the lab's parent run, whose children are listed when ``run_ids`` is not given.

    Raises:
        any MLflow or connection error of an unreachable store (the caller shows it).
    """
    if not tracking_uri or not _store_exists(tracking_uri) or (not run_ids and not parent_run_id):
        return pd.DataFrame(columns=_RUN_COLUMNS)
    client = _client(tracking_uri)
    runs = []
    if run_ids:
        for agent, rid in run_ids.items():
            runs.append((agent, client.get_run(rid)))
    else:
        parent = client.get_run(parent_run_id)
        found = client.search_runs([parent.info.experiment_id],
                                   f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=10000)
        runs = [(r.data.tags.get("skinnerbox.agent", r.info.run_name), r) for r in found]
    rows = []
    for agent, r in runs:
        row = {"agent": agent, "run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status,
               "start_time": r.info.start_time / 1000 if r.info.start_time else None,
               "end_time": r.info.end_time / 1000 if r.info.end_time else None,
               "parent_run_id": r.data.tags.get("mlflow.parentRunId")}
        row.update({f"param.{k}": v for k, v in sorted(r.data.params.items())})
        row.update({f"metric.{k}": v for k, v in sorted(r.data.metrics.items())})
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=list(dict.fromkeys(
        _RUN_COLUMNS + [c for row in rows for c in row]))) if rows else pd.DataFrame(columns=_RUN_COLUMNS)


def run_ids_of(tables: LabTables) -> dict[str, str]:
    """agent -> MLflow run id, from the journaled ``run`` dicts (agents without a run are left out)."""
    out = {}
    for agent, run in zip(tables.sessions["agent"], tables.sessions["run"]):
        if isinstance(run, Mapping) and run.get("run_id"):
            out[str(agent)] = str(run["run_id"])
    return out


def metric_history(tracking_uri: str, run_id: str, key: str) -> pd.DataFrame:
    """A metric's history, read-only: ``step, value, timestamp`` (ms), sorted by step."""
    if not _store_exists(tracking_uri):
        return pd.DataFrame(columns=["step", "value", "timestamp"])
    hist = _client(tracking_uri).get_metric_history(run_id, key)
    df = pd.DataFrame([{"step": m.step, "value": m.value, "timestamp": m.timestamp} for m in hist],
                      columns=["step", "value", "timestamp"])
    return df.sort_values(["step", "timestamp"], kind="stable", ignore_index=True)
