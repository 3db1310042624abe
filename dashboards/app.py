"""The live lab dashboard (Streamlit): watch a lab's agents learn, while it runs and afterwards.

    streamlit run dashboards/app.py -- --lab LAB_DIR [--tracking-uri URI] [--refresh-s 5]

(``LAB_DIR`` may also come from ``$SKINNERBOX_LAB``.) Views: server status, one agent's curriculum (stage
timeline, recent and criterion accuracy, knobs as drawn, reversals), a comparison of trials to each graduation
across conditions and seeds, psychometric curves over stated spans (the trials before each graduation, a stage's
last trials) with their fits, connectivity (``W_rec`` by region and E/I, eigenvalues, their change across
graduations, and the per-unit time constants of a ``train_tau`` network) and the agents' MLflow runs. A lab whose
``lab.json`` holds swept agents also gets a Sweep view (trials to criterion by factor: the table ``skinnerbox lab``
prints, and every agent's point), a filter that narrows the agent views to one factor's values, and the factors
among the Compare view's groupings.

Read-only: the journal is polled incrementally (:class:`shaping.readout.LabReader`), weight files and the
MLflow store are only read. Every number comes from :mod:`shaping.readout` (through :mod:`dashboards.data`),
labelled by :func:`shaping.readout.accuracy_label`; every figure from :mod:`shaping.figures` or
:mod:`dashboards.figures`, each agent in its own colour. The page refreshes itself every ``--refresh-s`` seconds
(0: never).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # `streamlit run dashboards/app.py` puts dashboards/, not the repo, on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import streamlit as st

from dashboards import data as lab_data
from dashboards import figures as dashboard_figures
from shaping import figures, readout
from shaping.errors import ConfigError

TABS = ("Status", "Agent", "Compare", "Psychometrics", "Connectivity", "MLflow")
SWEEP_TAB = "Sweep"  # after Compare, only for a lab with swept agents
GROUPINGS = ("condition", "curriculum", "dale")
ALL_AGENTS = "(every agent)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The app's own arguments (after ``--`` on the ``streamlit run`` line); unknown ones are ignored."""
    p = argparse.ArgumentParser(prog="dashboards/app.py", add_help=False)
    p.add_argument("--lab", default=os.environ.get("SKINNERBOX_LAB", ""), help="lab directory")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", ""),
                   help="MLflow tracking URI (default: the one the lab's journal names)")
    p.add_argument("--refresh-s", type=float, default=5.0, help="seconds between refreshes (0: never)")
    return p.parse_known_args(sys.argv[1:] if argv is None else argv)[0]


# ---------------------------------------------------------------------------------------------- caching
@st.cache_resource(show_spinner=False)
def lab_reader(root: str) -> lab_data.LabReader:
    """One incremental journal reader per lab directory, shared by every session of this server."""
    return lab_data.LabReader(root)


@st.cache_data(show_spinner=False, max_entries=512)
def render(kind: str, root: str, version: tuple, _make: Callable) -> bytes:
    """PNG of a figure, redrawn only when its data (``version``) changes."""
    return figures.to_png(_make(), dpi=90)


@st.cache_data(show_spinner=False, ttl=15)
def cached_runs(tracking_uri: str, run_ids: tuple, parent_run_id: str | None) -> pd.DataFrame:
    return lab_data.load_runs(tracking_uri, dict(run_ids) or None, parent_run_id)


@st.cache_resource(show_spinner=False, max_entries=64)
def cached_connectivity(path: str, mtime: float) -> lab_data.Connectivity:
    """A weight file's connectivity, read again only when the file changes (shared, never modified)."""
    return lab_data.load_connectivity(path)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_sweep(root: str, records: int, config_mtime: float, _tables: lab_data.LabTables,
                 _config: dict) -> lab_data.Sweep | None:
    """The lab's sweep, recomputed only when the journal (``records``) or ``lab.json`` (its mtime) changes."""
    return lab_data.sweep_of(_tables, _config)


def image(kind: str, root: str, version: tuple, make: Callable, caption: str | None = None) -> None:
    st.image(render(kind, root, version, make), caption=caption, width="stretch")


def fmt(value: object, digits: int = 3) -> str:
    """A metric's text: numbers rounded, missing values as an em dash."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


# ---------------------------------------------------------------------------------------------- views
def view_status(root: str, tables: lab_data.LabTables, lab: lab_data.LabPaths,
                shown: list[str] | None = None) -> None:
    info = lab_data.server_info(lab.root, tables)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) if info["started"] else "—"
    if info["running"]:
        st.success(f"Task server running at {info['endpoint']} (pid {info['pid']}, started {started})")
    else:
        st.info(f"Task server not running (last started {started}).")
    status = lab_data.read_status(lab.root)
    table = lab_data.status_table(status, tables)
    if status is None:
        st.caption("No status.json from the server: figures derived from the journal (in-flight unknown).")
    elif not info["running"] and status.get("time"):
        st.caption(f"The server has stopped: status as of its last write, "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(status['time']))}.")
    window = tables.window_trials
    if len(table):
        c1, c2, c3 = st.columns(3)
        c1.metric("Connected agents", int(table["connected"].fillna(False).astype(bool).sum()))
        in_flight = pd.to_numeric(table["in_flight"], errors="coerce")
        c2.metric("Batches in flight", fmt(int(in_flight.sum())) if in_flight.notna().any() else "—")
        rate = pd.to_numeric(table["trials_per_s"], errors="coerce")
        c3.metric("Trials/s", fmt(float(rate.sum()), 1) if rate.notna().any() else "—")
        st.dataframe(readout.labelled(table, window), hide_index=True)
    else:
        st.write("No agent has connected yet.")
    agents = lab_data.agent_names(tables)
    progress = [lab_data.agent_progress(tables, a).assign(agent=a) for a in (agents if shown is None else shown)]
    label = readout.accuracy_label(readout.RECENT_ACCURACY, window)
    long = pd.concat([p[["agent", "trials", readout.RECENT_ACCURACY]] for p in progress if len(p)], ignore_index=True) \
        if any(len(p) for p in progress) else pd.DataFrame(columns=["agent", "trials", readout.RECENT_ACCURACY])
    if len(long):
        import altair as alt

        colours = figures.agent_colours(agents)
        st.subheader(f"{label[0].upper()}{label[1:]}, every agent")
        chart = alt.Chart(long).mark_line().encode(
            x=alt.X("trials:Q", title="trials (session_trials)"),
            y=alt.Y(f"{readout.RECENT_ACCURACY}:Q", title=label, scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("agent:N", scale=alt.Scale(domain=list(colours), range=list(colours.values()))))
        st.altair_chart(chart, width="stretch")


def view_agent(root: str, tables: lab_data.LabTables, agent: str) -> None:
    progress = lab_data.agent_progress(tables, agent)
    moves = lab_data.stage_changes(tables, agent)
    revs = lab_data.reversals(tables, agent)
    window = tables.window_trials
    last = progress.iloc[-1] if len(progress) else None
    c = st.columns(7)
    c[0].metric("Stage", "—" if last is None else f"{last['stage']} ({int(last['stage_index'])})")
    c[1].metric("Trials", 0 if last is None else int(last["trials"]))
    c[2].metric(readout.accuracy_label(readout.RECENT_ACCURACY, window), fmt(readout.recent_accuracy(tables, agent)))
    c[3].metric(readout.accuracy_label(readout.CRITERION_ACCURACY), fmt(readout.criterion_accuracy(tables, agent)))
    c[4].metric("Graduations", int((moves["event"] == "graduated").sum()))
    c[5].metric("Regressions", int((moves["event"] == "regressed").sum()))
    c[6].metric("Reversals", len(revs))
    if last is None:
        st.info(f"{agent} has no scored batch yet.")
        return
    version = (agent, tables.records)
    names = lab_data.stage_names(tables, agent)
    colour = figures.agent_colours(lab_data.agent_names(tables))[agent]
    marks = pd.concat([moves[["event", "trial"]], revs.assign(event="reversal")[["event", "trial"]]],
                      ignore_index=True)
    image("timeline", root, version, lambda: figures.stage_timeline(
        progress["trials"].to_numpy(), progress["policy_stage_index"].to_numpy(), marks, names, color=colour),
        caption="The policy's stage against trials (session_trials); graduations, regressions, completion and "
                "reversals marked where they happened")
    image("curves", root, version,
          lambda: dashboard_figures.agent_curves(progress, revs, window_trials=window, color=colour),
          caption=f"{readout.accuracy_label(readout.RECENT_ACCURACY, window)} and "
                  f"{readout.accuracy_label(readout.CRITERION_ACCURACY)};"
                  " knobs as drawn (a band: the range or set trials were drawn from); dotted lines: stage changes")
    st.caption(readout.trial_axis_caption())
    left, right = st.columns(2)
    left.markdown("**Stage changes**")
    left.dataframe(readout.for_display(moves[["event", "trial", "policy_trial", "from_stage", "to_stage", "accuracy"]]),
                   hide_index=True)
    right.markdown("**Staircase reversals**")
    right.dataframe(readout.for_display(revs), hide_index=True)


def view_compare(root: str, tables: lab_data.LabTables, conditions: pd.DataFrame,
                 factors: dict | None = None, shown: list[str] | None = None) -> None:
    factors = factors or {}
    keys = [k for k in dict.fromkeys(k for f in factors.values() for k in f) if k not in GROUPINGS]
    by = st.selectbox("Group agents by", (*GROUPINGS, *keys), key="group_by",
                      help="a sweep factor groups the agents that swept it" if keys else None)
    grads = lab_data.graduations(tables, conditions)
    grads = grads.merge(conditions[["agent", "dale"]], on="agent", how="left")
    if keys:
        grads = grads.merge(lab_data.agent_factors(factors, grads["agent"].unique())[["agent", *keys]],
                            on="agent", how="left")
        if by in keys:
            grads = grads[grads[by].notna()]
    if shown is not None:
        grads = grads[grads["agent"].isin(shown)]
    colours = figures.agent_colours(lab_data.agent_names(tables))
    image("compare", root, (tables.records, by, tuple(shown or ())),
          lambda: dashboard_figures.graduation_comparison(grads, by, colours),
          caption="Trials (session_trials) to each graduation; agents sharing a group are seeds of one condition")
    st.markdown("**Spread over seeds** (session_trials)")
    st.dataframe(lab_data.graduation_summary(grads, by), hide_index=True)
    st.markdown("**Per agent** (session_trials)")
    if len(grads):
        st.dataframe(grads.pivot_table(index=["agent", by], columns="milestone", values="trial", sort=False)
                     .reset_index(), hide_index=True)


def view_sweep(root: str, tables: lab_data.LabTables, sweep: lab_data.Sweep) -> None:
    st.caption(f"{len(sweep.factors)} agents expanded from sweeps over {', '.join(sweep.keys)} (lab.json). Each "
               "factor on its own, over every agent that swept it; trials to criterion are session_trials at the "
               "curriculum's completion, the median and quartiles over the agents that reached it.")
    table, agents = lab_data.sweep_display(sweep)
    c = st.columns(3)
    reached = sweep.summary[sweep.summary["agent"].isin(list(sweep.factors))]["complete"].astype(bool)
    c[0].metric("Swept agents", len(sweep.factors))
    c[1].metric("Reached criterion", int(reached.sum()))
    c[2].metric("Factors", len(sweep.keys))
    st.markdown("**Trials to criterion by sweep factor** (session_trials)")
    st.dataframe(table, hide_index=True)
    colours = {**figures.agent_colours(sweep.summary["agent"]), **figures.agent_colours(lab_data.agent_names(tables))}
    image("sweep", root, (tables.records, tuple(sweep.factors)),
          lambda: figures.sweep_trials(sweep.summary, sweep.factors, sweep.table, colours),
          caption="Per agent, one panel per factor: filled points reached criterion, open ones at the top did not; "
                  "black bar: median, whiskers: quartiles; under each value, reached / agents")
    st.markdown("**Swept agents**")
    st.dataframe(agents, hide_index=True)


def view_psychometrics(root: str, tables: lab_data.LabTables, agent: str) -> None:
    axes = lab_data.psychometric_axes(tables, agent)
    fits = lab_data.psychometric_table(tables, agent)
    if axes is None or not len(fits):
        st.info(f"No psychometric data for {agent} (its task declares no evidence knob, or no trials yet).")
        return
    st.caption(f"Against the task's evidence ({', '.join(axes.evidence)}), signed towards choice 1"
               + (f", one curve per {axes.by}" if axes.by else "") + "; fitted by maximum likelihood with lapse "
               "rates over a stated span: the trials before each graduation, or a stage's last trials (its "
               f"criterion window), never a whole learning phase. No curve through fewer than "
               f"{readout.MIN_EVIDENCE_LEVELS} evidence levels; no-response trials are left out of the fit.")
    trials = readout.agent_trials(tables, agent)
    spans = readout.agent_spans(tables, agent)
    sides = lab_data.evidence_sides(tables, agent)
    colour = figures.agent_colours(lab_data.agent_names(tables))[agent]
    cols = st.columns(min(3 if len(axes.evidence) == 1 else 1, len(spans)))
    for i, span in enumerate(spans):
        rows = readout.span_trials(trials, span)
        with cols[i % len(cols)]:
            image(f"psy{i}", root, (agent, tables.records, span.label), lambda rows=rows, span=span:
                  figures.psychometric_curve(rows, axes.evidence, title=span.label, sides=sides, by=axes.by,
                                        labels=axes.labels, color=colour))
    st.dataframe(fits, hide_index=True)


def view_connectivity(root: str, tables: lab_data.LabTables, agent: str, lab: lab_data.LabPaths) -> None:
    files = lab_data.weight_files(lab.root, lab_data.agent_names(tables), tables)
    files = files[files["agent"] == agent].reset_index(drop=True)
    if not len(files):
        st.info(f"No weight files for {agent} in {lab.weights} yet (agents save them at each stage change "
                "and at the end).")
        return
    snaps = [cached_connectivity(str(p), m) for p, m in zip(files["path"], files["mtime"])]
    colour = figures.agent_colours(lab_data.agent_names(tables))[agent]
    tags = files["tag"].tolist()
    tag = st.select_slider("Snapshot", tags, value=tags[-1], key=f"snapshot-{agent}") if len(tags) > 1 \
        else tags[0]
    i = tags.index(tag)
    c = snaps[i]
    version = (str(files["path"][i]), float(files["mtime"][i]))
    trial = files["trial"][i]
    suffix = f", trial {int(trial)}" if trial == trial else ""
    left, right = st.columns([1.2, 1])
    with left:
        image("wrec", root, version, lambda: figures.w_rec_heatmap(c.W_rec, c.dale_sign, c.region_labels,
                                                              title=f"W_rec, {tag}{suffix}"),
              caption="Effective W_rec [post, pre]: units by region, E before I")
    with right:
        image("eig", root, version, lambda: figures.eigenspectrum(c.W_rec, color=colour),
              caption=f"Eigenvalues (spectral radius {c.spectral_radius:.3f})")
    if c.tau_steps is not None:
        image("tau", root, version, lambda: figures.tau_histogram(c.tau_steps, title=f"Time constants, {tag}{suffix}",
                                                               color=colour),
              caption=f"Trained time constants in steps (tau / dt, dt = {c.dt:g} ms); at least 1 step")
    changes = lab_data.connectivity_changes(snaps, tags, files["trial"].tolist())
    image("across", root, tuple(zip(files["path"].astype(str), files["mtime"])),
          lambda: dashboard_figures.connectivity_across(snaps, tags, files["trial"].tolist()))
    st.dataframe(changes, hide_index=True)


def view_mlflow(tables: lab_data.LabTables, tracking_uri: str) -> None:
    uri = tracking_uri or lab_data.tracking_uri_of(tables)
    if not uri:
        st.info("The journal names no MLflow run (tracking was off); give --tracking-uri to look elsewhere.")
        return
    try:
        runs = cached_runs(uri, tuple(sorted(lab_data.run_ids_of(tables).items())), lab_data.parent_run_id_of(tables))
    except Exception as err:
        st.warning(f"MLflow store {uri} cannot be read: {type(err).__name__}: {str(err)[:300]}")
        return
    st.caption(f"Store: {uri} (open it with `make ui`). Parent run: {lab_data.parent_run_id_of(tables) or '—'}")
    if not len(runs):
        st.info("No agent runs in the store yet.")
        return
    metrics = [c for c in runs.columns if c.startswith("metric.")]
    keep = ["agent", "run_id", "status", *[c for c in runs.columns if c.startswith("param.constraint.")],
            *metrics]
    st.dataframe(runs[keep], hide_index=True)


# ---------------------------------------------------------------------------------------------- page
def body(lab_dir: str, tracking_uri: str) -> None:
    """Everything below the sidebar (re-run on its own every refresh)."""
    if not lab_dir:
        st.info("Give a lab directory in the sidebar (or start the app with `-- --lab LAB_DIR`).")
        return
    lab = lab_data.lab_paths(lab_dir)
    root = str(lab.root)
    st.title(f"Lab {lab.root.name}")
    if not lab.journal.is_dir():
        st.info(f"No journal at {lab.journal} yet: waiting for the lab to start.")
        return
    tables = lab_reader(root).poll()
    agents = lab_data.agent_names(tables)
    conditions = lab_data.agent_conditions(tables)
    c = st.columns(4)
    c[0].metric("Agents", len(agents))
    c[1].metric("Trials, all agents", int(tables.batches["n"].sum()) if len(tables.batches) else 0)
    c[2].metric("Batches, all agents", len(tables.batches))
    c[3].metric("Graduations, all agents",
                int((tables.events["event"] == "graduated").sum()) if len(tables.events) else 0)
    st.caption(f"Journal {lab.journal}: {tables.records} records, read {time.strftime('%H:%M:%S')}")
    if not agents:
        st.info("The journal is open but no agent has connected yet.")
        return
    sweep, shown = sweep_and_filter(root, tables, lab, agents)
    if not shown:
        st.info("No agent that has connected matches the filter.")
        return
    agent = st.selectbox("Agent", shown, key="agent")
    labels = list(TABS)
    if sweep is not None:
        labels.insert(labels.index("Compare") + 1, SWEEP_TAB)
    tabs = dict(zip(labels, st.tabs(labels)))
    filtered = None if shown == agents else shown
    with tabs["Status"]:
        view_status(root, tables, lab, filtered)
    with tabs["Agent"]:
        view_agent(root, tables, agent)
    with tabs["Compare"]:
        view_compare(root, tables, conditions, sweep.factors if sweep else None, filtered)
    if sweep is not None:
        with tabs[SWEEP_TAB]:
            view_sweep(root, tables, sweep)
    with tabs["Psychometrics"]:
        view_psychometrics(root, tables, agent)
    with tabs["Connectivity"]:
        view_connectivity(root, tables, agent, lab)
    with tabs["MLflow"]:
        view_mlflow(tables, tracking_uri)


def sweep_and_filter(root: str, tables: lab_data.LabTables, lab: lab_data.LabPaths,
                     agents: list[str]) -> tuple[lab_data.Sweep | None, list[str]]:
    """The lab's sweep (None without one) and the agents the views show: all of them, or those whose chosen sweep
    factor takes one of the chosen values."""
    path = lab.root / lab_data.LAB_CONFIG_FILE
    try:
        config = lab_data.read_lab_config(lab.root)
        sweep = cached_sweep(root, tables.records, path.stat().st_mtime, tables, config) if config else None
    except (ConfigError, OSError) as err:
        st.warning(f"{path} could not be read, so the sweep is not shown: {err}")
        return None, agents
    if sweep is None:
        return None, agents
    left, right = st.columns([1, 2])
    key = left.selectbox("Filter agents by sweep factor", [ALL_AGENTS, *sweep.keys], key="sweep_factor")
    if key == ALL_AGENTS:
        return sweep, agents
    values = list(dict.fromkeys(figures.sweep_value_label(f[key]) for f in sweep.factors.values() if key in f))
    chosen = right.multiselect(f"{key} is one of", values, default=values, key=f"sweep_values-{key}")
    return sweep, lab_data.filter_agents(agents, sweep.factors, key, chosen)


def main() -> None:
    args = parse_args()
    st.set_page_config(page_title="skinnerbox lab", layout="wide")
    for key, default in (("lab_dir", args.lab), ("tracking_uri", args.tracking_uri),
                         ("refresh_s", float(args.refresh_s))):
        st.session_state.setdefault(key, default)
    with st.sidebar:
        st.header("skinnerbox")
        lab_dir = st.text_input("Lab directory", key="lab_dir")
        tracking_uri = st.text_input("MLflow tracking URI", key="tracking_uri",
                                     help="empty: the one the lab's journal names")
        refresh_s = st.number_input("Refresh every (s)", min_value=0.0, step=1.0, key="refresh_s",
                                    help="0: no automatic refresh")
    if refresh_s > 0:
        st.fragment(run_every=refresh_s)(body)(lab_dir, tracking_uri)
    else:
        body(lab_dir, tracking_uri)


if __name__ == "__main__":  # `streamlit run` (and AppTest) run the script as __main__; importing it draws nothing
    main()
