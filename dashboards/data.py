"""A lab's journal, status file, weight files and MLflow runs as pandas tables, for the dashboard and report.

One job: turn what a running (or finished) lab leaves on disk into tables and small dicts; no Streamlit and
no drawing here, so every number the dashboard shows can be computed and tested headless. The journal's tables
and every number derived from them (recent and criterion accuracy, trials to each graduation, knobs as drawn,
psychometric spans) come from :mod:`shaping.readout`, re-exported here under their old names; this module adds
the weight files, the server's ``status.json`` and the MLflow runs. Everything is read-only: the journal is read
with :class:`shaping.journal.JournalReader` (no lock, safe while the server writes; a torn last record is left
for the next poll), and an MLflow sqlite store is only opened if its file already exists (opening a missing one
would create it).

A lab directory holds ``journal/`` (segments, ``server.json`` while the server runs, ``status.json`` written
by the server; with ``[server] shards = K``, one such journal per shard in ``journal/shard-N``, read as one),
``weights/<agent>*.npz`` (PsychRNN weight files), ``lab.json`` (the lab file as the lab ran it, sweeps expanded:
each swept agent with its ``factors``) and, by default, ``mlflow.db``. A journal directory given on its own works
too (without ``lab.json``, no agent is swept).

Conventions (:mod:`shaping.readout`): trial counts are ``session_trials``, cumulative per agent and stale trials
included (the x axis everywhere, as in the MLflow metrics); accuracy is ``correct / all trials`` (no-response
trials count as not correct), either ``recent_accuracy`` (the server's window across stages) or
``criterion_accuracy`` (the policy's own window), each labelled by :func:`shaping.readout.accuracy_label`.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from shaping import figures, readout
from shaping.readout import (
    DEFAULT_WINDOW_TRIALS,
    MOVE_EVENTS,
    LabPaths,
    LabReader,
    LabTables,
    agent_conditions,
    agent_names,
    agent_progress,
    agent_summary,
    evidence_knob,
    evidence_sides,
    graduation_summary,
    graduations,
    lab_paths,
    psychometric_axes,
    psychometric_fit,
    psychometric_table,
    psychometric_xy,
    read_lab,
    reversals,
    stage_changes,
    stage_names,
)

__all__ = [
    "LabPaths", "lab_paths", "LabTables", "LabReader", "read_lab", "agent_names", "agent_conditions",
    "agent_summary", "agent_progress", "stage_names", "stage_changes", "reversals", "graduations",
    "graduation_summary", "evidence_knob", "evidence_sides", "psychometric_axes", "psychometric_xy",
    "psychometric_fit", "psychometric_table",
    "weight_files", "Connectivity", "load_connectivity", "connectivity_changes", "read_status",
    "status_table", "server_info", "tracking_uri_of", "parent_run_id_of", "run_ids_of", "load_runs",
    "metric_history", "LAB_CONFIG_FILE", "read_lab_config", "lab_factors", "Sweep", "sweep_of", "sweep_display",
    "agent_factors", "filter_agents",
    "MOVE_EVENTS", "DEFAULT_WINDOW_TRIALS",
]


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
    from shaping.weights import load_weights

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
    from shaping.weights import parse_snapshot_tag

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
    moves = readout.events_of(tables, agent, ["graduated", "regressed"])
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
        tau: ``(N_rec,)`` per-unit time constants, ms, when the file holds them (a ``train_tau`` network), else
            None; dt: the file's time step, ms (None for PsychRNN files).
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
    tau: np.ndarray | None = None
    dt: float | None = None

    @property
    def tau_steps(self) -> np.ndarray | None:
        """``tau / dt`` per unit (None without per-unit time constants or a known ``dt``)."""
        return None if self.tau is None or not self.dt else np.asarray(self.tau, dtype=float) / self.dt

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
    from shaping.weights import load_weights

    weights, meta = load_weights(path)
    if "W_rec" not in weights or np.ndim(weights["W_rec"]) != 2:
        raise ValueError(f"load_connectivity: {path} holds no (N_rec, N_rec) W_rec; keys: {sorted(weights)}")
    sign = figures.dale_sign_from_weights(weights)
    eff = figures.effective_weights(weights, sign)
    w = eff["W_rec"]
    labels = (meta or {}).get("region_labels")
    if labels is not None and len(labels) != len(w):
        labels = None
    order, groups = figures.unit_order(len(w), sign, labels)
    ev = np.linalg.eigvals(w) if w.size else np.empty(0, complex)
    tau = weights.get("tau")
    tau = np.asarray(tau, dtype=float) if tau is not None and np.shape(tau) == (len(w),) else None
    dt = ((meta or {}).get("config") or {}).get("dt")
    return Connectivity(w, sign, labels, order, groups, ev, float(np.max(np.abs(ev))) if ev.size else 0.0,
                        weights, meta, tau, None if dt is None else float(dt))


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
    """The server's ``status.json`` (``{"time", "sessions": [...]}``; a sharded journal's shards merged into one,
    :func:`shaping.readout.read_status`), or None when it is absent or half-written."""
    return readout.read_status(lab_paths(lab_dir).journal)


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


_STATUS_COLUMNS = ["agent", "curriculum", "stage", "stage_index", "trials", "batches", "in_flight",
                   readout.RECENT_ACCURACY, "trials_per_s", "connected", "age_s", "source"]


def status_table(status: Mapping[str, Any] | None, tables: LabTables | None = None, now: float | None = None,
                 rate_window_s: float = 30.0) -> pd.DataFrame:
    """Per agent: ``agent, curriculum, stage, stage_index, trials, batches, in_flight, recent_accuracy``
    (:mod:`shaping.readout`'s: the server's window across stages), ``trials_per_s, connected, age_s`` (seconds
    since the row's information), ``source``.

    From ``status.json`` when the server wrote one (``source = "server"``; its ``accuracy`` is the recent
    accuracy); otherwise derived from the journal (``source = "journal"``): trials/s over the last
    ``rate_window_s`` of journaled batches, ``connected`` when the agent's last HELLO is later than its last BYE,
    ``in_flight`` unknown.
    """
    now = time.time() if now is None else now
    if status is not None:
        rows = []
        for s in status.get("sessions", []):
            row = {c: s.get(c) for c in _STATUS_COLUMNS[:-2]}
            row[readout.RECENT_ACCURACY] = s.get(readout.RECENT_ACCURACY, s.get("accuracy"))  # the server's window
            at = s.get("time", status.get("time"))  # a merged (sharded) status dates each session by its shard
            row["age_s"] = now - float(at) if at is not None else np.nan
            row["source"] = "server"
            rows.append(row)
        return pd.DataFrame(rows, columns=_STATUS_COLUMNS)
    if tables is None or not len(tables.sessions) and tables.empty:
        return pd.DataFrame(columns=_STATUS_COLUMNS)
    rows = []
    for agent in agent_names(tables):
        sessions = tables.sessions[tables.sessions["agent"] == agent]
        sess = sessions.iloc[-1].to_dict() if len(sessions) else {}
        b = tables.batches[tables.batches["agent"] == agent]
        last_t = float(b["time"].iloc[-1]) if len(b) else (sess.get("time") or np.nan)
        recent = b[b["time"] >= last_t - rate_window_s] if len(b) else b
        span = float(recent["time"].iloc[-1] - recent["time"].iloc[0]) if len(recent) > 1 else 0.0
        rate = float(recent["n"].iloc[1:].sum()) / span if span > 0 else np.nan
        ends = tables.ends[tables.ends["agent"] == agent]
        connected = bool(len(sessions)) and (
            not len(ends) or float(ends["time"].iloc[-1]) < float(sess.get("time") or 0))
        if tables.closed is not None:
            connected = False
        rows.append({"agent": agent, "curriculum": sess.get("curriculum"),
                     "stage": b["stage"].iloc[-1] if len(b) else None,
                     "stage_index": int(b["stage_index"].iloc[-1]) if len(b) else None,
                     "trials": int(b["trials"].iloc[-1]) if len(b) else 0, "batches": len(b), "in_flight": None,
                     readout.RECENT_ACCURACY: readout.recent_accuracy(tables, agent),
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
    from mlflow import MlflowClient

    import shaping.tracking  # noqa: F401  (sets MLflow's environment before MLflow loads)

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


# ---------------------------------------------------------------------------------------------- sweeps
LAB_CONFIG_FILE = "lab.json"  # written by a lab into its directory (shaping.lab), sweeps expanded


def read_lab_config(lab_dir: str | os.PathLike) -> dict | None:
    """The ``lab.json`` a lab wrote into its directory, as plain data; None when there is none (a bare journal,
    a lab run by hand).

    Raises:
        shaping.errors.ConfigError: the file is there but is not valid JSON (the message names it).
    """
    from shaping.labfile import read_file

    path = lab_paths(lab_dir).root / LAB_CONFIG_FILE
    return read_file(path) if path.is_file() else None


def lab_factors(config: Mapping[str, Any] | None) -> dict[str, dict]:
    """agent -> ``{swept key: value}`` for the agents of a lab config (``lab.json``) expanded from a sweep, in file
    order; ``{}`` without a config or a sweep. Each agent table is read by :class:`shaping.labfile.AgentEntry`,
    the one parser of the schema (what :meth:`shaping.labfile.LabFile.factors` gives for a checked file).

    Raises:
        shaping.errors.ConfigError: an agent table that does not parse.
    """
    from shaping.labfile import AgentEntry

    out = {}
    for table in (config or {}).get("agents") or []:
        entry = AgentEntry.from_dict(table)
        if entry.factors:
            out[entry.name] = dict(entry.factors)
    return out


@dataclass
class Sweep:
    """A lab's sweep, read for the views: what ``skinnerbox lab`` prints and logs as ``sweep.csv``.

    Attributes:
        factors: agent -> ``{swept key: value}`` (:func:`lab_factors`).
        keys: the swept keys, in order of first appearance.
        summary: :func:`shaping.readout.summary_rows` over the lab's agents (``lab.json``'s, then any other the
            journal has), one column per factor.
        table: :func:`shaping.readout.sweep_summary`: ``factor, value, agents, reached, median, q1, q3`` (trials
            to criterion, ``session_trials``).
    """

    factors: dict
    keys: list
    summary: pd.DataFrame
    table: pd.DataFrame


def sweep_of(tables: LabTables, config: Mapping[str, Any] | None) -> Sweep | None:
    """The lab's sweep (None when no agent of ``config`` was swept).

    The summary is built as the lab's own (:func:`shaping.lab.summarize`): the agents in ``lab.json``'s order
    (those that have not connected yet count as not reached), their curricula and the curricula's specs from
    ``lab.json``; agents only the journal knows follow.
    """
    factors = lab_factors(config)
    if not factors:
        return None
    entries = list((config or {}).get("agents") or [])
    names = list(dict.fromkeys([str(a["name"]) for a in entries] + agent_names(tables)))
    curricula = {str(a["name"]): a.get("curriculum") for a in entries}
    specs = dict((config or {}).get("curricula") or {}) or None
    summary = readout.summary_rows(tables, names, curricula, specs, factors=factors)
    keys = list(dict.fromkeys(k for f in factors.values() for k in f))
    return Sweep(factors, keys, summary, readout.sweep_summary(summary, factors))


def sweep_display(sweep: Sweep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sweep's two tables ready to show: the sweep table with each value as text
    (:func:`shaping.figures.sweep_value_label`; a column may mix numbers, strings and tables), and the per-agent
    rows ``agent``, the factors (as text), ``trials, complete, trials_to_complete``."""
    table = sweep.table.copy()
    table["value"] = [figures.sweep_value_label(v) for v in table["value"]]
    cols = ["agent", *sweep.keys, "trials", "complete", "trials_to_complete"]
    agents = sweep.summary[sweep.summary["agent"].isin(list(sweep.factors))][cols].reset_index(drop=True)
    for key in sweep.keys:
        agents[key] = [None if v is None else figures.sweep_value_label(v) for v in agents[key]]
    return table, agents


def agent_factors(factors: Mapping[str, Mapping[str, Any]], agents: Sequence[str]) -> pd.DataFrame:
    """``agent`` and one column per swept key, each value as text (None: the agent did not sweep that key), for
    ``agents`` in order: what the views merge into their tables to group or colour by a factor."""
    keys = list(dict.fromkeys(k for f in factors.values() for k in f))
    rows = [{"agent": a, **{k: (figures.sweep_value_label(factors[a][k]) if k in (factors.get(a) or {}) else None)
                            for k in keys}} for a in agents]
    return pd.DataFrame(rows, columns=["agent", *keys])


def filter_agents(agents: Sequence[str], factors: Mapping[str, Mapping[str, Any]], key: str | None,
                  values: Sequence[str] | None) -> list[str]:
    """The agents whose factor ``key`` takes one of ``values`` (text, :func:`shaping.figures.sweep_value_label`),
    in order; every agent when ``key`` is None or ``values`` is empty."""
    if key is None or not values:
        return list(agents)
    wanted = set(values)
    return [a for a in agents if key in (factors.get(a) or {}) and figures.sweep_value_label(factors[a][key]) in wanted]
