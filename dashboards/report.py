"""The static lab report: the dashboard's figures and tables in one self-contained HTML file.

For a paper's supplement or a lab meeting: every figure is a PNG drawn with matplotlib (:mod:`shaping.figures`,
:mod:`dashboards.figures`) and embedded as base64, so the file opens anywhere, offline. ``skinnerbox report
LAB_DIR`` calls :func:`write_report`; with ``log_to_mlflow=True`` the file is also logged to the lab's parent
MLflow run (the one the journal names) under ``report/``. That is the only write this package ever makes to
a store, and only when asked; the journal is never written.

A lab whose ``lab.json`` holds swept agents gets a Sweep section: trials to criterion grouped by each factor
(:func:`shaping.readout.sweep_summary`, the table ``skinnerbox lab`` prints) and per agent
(:func:`shaping.figures.sweep_trials`).

Each figure is ``<figure id="fig-NAME" data-figure="NAME">`` and each table ``<table id="table-NAME">``, so a
reader (or a test) can find them by name; :attr:`Report.figures` lists the names. Every number comes from
:mod:`shaping.readout` (the same as the dashboard's, the lab summary's and MLflow's), each accuracy labelled by
:func:`shaping.readout.accuracy_label`, each agent in its colour; a wide table scrolls inside its own box, so
the page stays as wide as the window.
"""
from __future__ import annotations

import base64
import html
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from dashboards import data as lab_data
from dashboards import figures as dashboard_figures
from shaping import figures, readout
from shaping.errors import ConfigError

__all__ = ["Report", "build_report", "render_html", "write_report", "log_report"]

log = logging.getLogger(__name__)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.5em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; max-width: 640px; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f4f4f4; } .meta { color: #666; font-size: 0.9em; }
"""


@dataclass
class _Item:
    kind: str  # "figure", "table" or "text"
    name: str
    caption: str = ""
    png: bytes = b""
    table: pd.DataFrame | None = None


@dataclass
class Report:
    """A report before it is written: sections of figures (PNG bytes), tables and text.

    Attributes:
        title: the page title. lab: the lab directory. created: unix time (s).
        sections: ``[(heading, [items])]`` in order.
    """

    title: str
    lab: Path
    created: float
    sections: list[tuple[str, list[_Item]]] = field(default_factory=list)

    @property
    def figures(self) -> list[str]:
        """Names of every figure, in order."""
        return [it.name for _, items in self.sections for it in items if it.kind == "figure"]

    @property
    def tables(self) -> list[str]:
        """Names of every table, in order."""
        return [it.name for _, items in self.sections for it in items if it.kind == "table"]


def _figure(name: str, make: Callable, caption: str = "", dpi: int = 100) -> _Item:
    try:
        png = figures.to_png(make(), dpi=dpi)
    except Exception as err:
        log.warning("report: figure %s failed (%s: %s)", name, type(err).__name__, err)
        png = figures.to_png(dashboard_figures.message_figure(f"{name}: {type(err).__name__}: {err}"), dpi=dpi)
    return _Item("figure", name, caption, png=png)


def _table(name: str, frame: pd.DataFrame, caption: str = "") -> _Item:
    return _Item("table", name, caption, table=frame)


def build_report(lab_dir: str | os.PathLike, tracking_uri: str | None = None) -> Report:
    """Read a lab (journal, status, weight files, MLflow runs) and draw every figure of the report.

    Args:
        lab_dir: the lab directory (or its journal directory).
        tracking_uri: MLflow store for the runs table (default: the one the journal names; an unreachable
            store leaves the table out with a note).
    """
    lab = readout.require_journal(lab_dir)
    tables = lab_data.read_lab(lab.root)
    report = Report(f"skinnerbox lab report: {lab.root.name}", lab.root, time.time())
    agents = lab_data.agent_names(tables)
    colours = figures.agent_colours(agents)
    window = tables.window_trials
    recent = readout.accuracy_label(readout.RECENT_ACCURACY, window)
    weights = lab_data.weight_files(lab.root, agents, tables)
    conditions = lab_data.agent_conditions(tables, weights=weights)
    summary = lab_data.agent_summary(tables, conditions)

    overview: list[_Item] = []
    if tables.empty:
        overview.append(_Item("text", "empty", "The journal holds no scored batch yet."))
    overview.append(_table("agents", readout.labelled(summary.drop(columns=["last_time"]), window),
                           "One row per agent (trials: session_trials)."))
    line = readout.verdict(readout.summary_rows(tables))
    if line:
        overview.append(_Item("text", "verdict", line))
    progress = {a: lab_data.agent_progress(tables, a) for a in agents}
    overview.append(_figure("lab-accuracy", lambda: dashboard_figures.lab_accuracy(progress, colours, window),
                            f"{recent[0].upper()}{recent[1:]} of every agent against its trials (session_trials); "
                            "dots mark stage changes."))
    status = lab_data.status_table(lab_data.read_status(lab.root), tables)
    if len(status):
        overview.append(_table("status", readout.labelled(status, window),
                               "Server status (status.json, else derived from the journal)."))
    report.sections.append(("Overview", overview))
    sweep_items = _sweep_section(tables, lab.root, colours)
    if sweep_items:
        report.sections.append(("Sweep", sweep_items))

    grads = lab_data.graduations(tables, conditions)
    report.sections.append(("Comparison across conditions", [
        _figure("compare", lambda: dashboard_figures.graduation_comparison(grads, "condition", colours),
                "Trials (session_trials) to each graduation per condition (curriculum · Dale/free); points are "
                "agents (seeds) in their colours, bars mean ± SD."),
        _table("graduation-summary", lab_data.graduation_summary(grads, "condition"),
               "Spread over seeds (session_trials)."),
        _table("graduations", readout.for_display(grads.drop(columns=["order"])),
               "Trials to each milestone, per agent (session_trials)."),
    ]))

    for agent in agents:
        items: list[_Item] = []
        p = progress[agent]
        moves = lab_data.stage_changes(tables, agent)
        revs = lab_data.reversals(tables, agent)
        colour = colours[agent]
        if len(p):
            marks = pd.concat([moves[["event", "trial"]], revs.assign(event="reversal")[["event", "trial"]]],
                              ignore_index=True)
            names = lab_data.stage_names(tables, agent)
            items.append(_figure(f"{agent}-timeline", lambda p=p, marks=marks, names=names, c=colour:
                                 figures.stage_timeline(p["trials"].to_numpy(), p["policy_stage_index"].to_numpy(),
                                                        marks, names, color=c),
                                 "The policy's stage against trials (session_trials); graduations, regressions, "
                                 "completion and staircase reversals marked where they happened."))
            items.append(_figure(f"{agent}-curves", lambda p=p, revs=revs, c=colour: dashboard_figures.agent_curves(
                p, revs, window_trials=window, color=c),
                f"{recent[0].upper()}{recent[1:]} and {readout.accuracy_label(readout.CRITERION_ACCURACY)}; "
                "knobs as drawn (a band: the range or set trials were drawn from; reversals circled)."))
        if len(moves):
            items.append(_table(f"{agent}-stage-changes",
                                readout.for_display(moves.drop(columns=["stage", "stage_index"])),
                                "Curriculum moves (session_trials: the agent's count; policy_trials: the policy's, "
                                "without stale trials)."))
        axes = lab_data.psychometric_axes(tables, agent)
        fits = lab_data.psychometric_table(tables, agent)
        trials = readout.agent_trials(tables, agent)
        sides = lab_data.evidence_sides(tables, agent)
        if len(fits):
            for i, span in enumerate(readout.agent_spans(tables, agent)):
                rows = readout.span_trials(trials, span)
                items.append(_figure(f"{agent}-psychometric-{i}",
                                     lambda rows=rows, span=span: figures.psychometric_curve(
                    rows, axes.evidence, title=span.label, sides=sides, by=axes.by, labels=axes.labels,
                    color=colour),
                    f"Psychometric curves over {span.label}" + (f", one per {axes.by}." if axes.by else "."), dpi=80))
            items.append(_table(f"{agent}-psychometric-fits", fits,
                                f"Psychometric fits against {', '.join(axes.evidence)}, one row per stated span "
                                f"(no curve through fewer than {readout.MIN_EVIDENCE_LEVELS} evidence levels)."))
        files = weights[weights["agent"] == agent].reset_index(drop=True)
        if len(files):
            snaps, tags = [], []
            for path, tag in zip(files["path"], files["tag"]):
                try:
                    snaps.append(lab_data.load_connectivity(path))
                    tags.append(tag)
                except (OSError, ValueError) as err:
                    log.warning("report: cannot read %s (%s)", path, err)
            trials_at = files.set_index("tag")["trial"].reindex(tags).tolist()
            for c, tag, n in zip(snaps, tags, trials_at):
                title = f"W_rec, {tag}" + (f", trial {int(n)}" if n == n else "")
                items.append(_figure(f"{agent}-wrec-{tag}", lambda c=c, title=title: figures.w_rec_heatmap(
                    c.W_rec, c.dale_sign, c.region_labels, title=title), "Effective W_rec [post, pre], units by "
                    "region, E before I.", dpi=70))
                if c.tau_steps is not None:
                    items.append(_figure(f"{agent}-tau-{tag}", lambda c=c, n=n, tag=tag, col=colour:
                                         figures.tau_histogram(c.tau_steps, color=col, title=f"Time constants, {tag}"
                                                               + (f", trial {int(n)}" if n == n else "")),
                                         f"Trained time constants in steps (tau / dt, dt = {c.dt:g} ms).", dpi=70))
            if snaps:
                items.append(_figure(f"{agent}-eigenspectrum", lambda c=snaps[-1], col=colour: figures.eigenspectrum(
                    c.W_rec, color=col),
                                     f"Eigenvalues of the latest W_rec ({tags[-1]}).", dpi=80))
                items.append(_figure(f"{agent}-connectivity-across", lambda s=snaps, t=tags, n=trials_at:
                                     dashboard_figures.connectivity_across(s, t, n), "W_rec across snapshots.", dpi=80))
                items.append(_table(f"{agent}-connectivity-changes",
                                    lab_data.connectivity_changes(snaps, tags, trials_at),
                                    "Connectivity per snapshot; rel_change = ||W - W_prev||_F / ||W_prev||_F."))
        report.sections.append((f"Agent {agent}", items))

    uri = tracking_uri or lab_data.tracking_uri_of(tables)
    runs_items: list[_Item] = []
    try:
        runs = (lab_data.load_runs(uri, lab_data.run_ids_of(tables) or None, lab_data.parent_run_id_of(tables))
                if uri else None)
    except Exception as err:
        runs = None
        runs_items.append(_Item("text", "mlflow-error", f"MLflow store {uri} could not be read: "
                                                        f"{type(err).__name__}: {str(err)[:300]}"))
    if runs is not None and len(runs):
        keep = ["agent", "run_id", "status", *[c for c in runs.columns if c.startswith("param.constraint.")],
                *[c for c in runs.columns if c.startswith("metric.curriculum/")]]
        runs_items.append(_table("mlflow-runs", runs[keep], f"Agent runs in {uri}."))
    if runs_items:
        report.sections.append(("MLflow runs", runs_items))
    return report


def _sweep_section(tables: lab_data.LabTables, root: Path, colours: dict[str, str]) -> list[_Item]:
    """The Sweep section's items (empty for a lab without swept agents): trials to criterion by factor."""
    try:
        sweep = lab_data.sweep_of(tables, lab_data.read_lab_config(root))
    except ConfigError as err:
        return [_Item("text", "sweep-error", f"{lab_data.LAB_CONFIG_FILE} could not be read: {err}")]
    if sweep is None:
        return []
    table, agents = lab_data.sweep_display(sweep)
    colours = {**figures.agent_colours(sweep.summary["agent"]), **colours}  # agents not in the journal yet
    return [
        _Item("text", "sweep", f"{len(sweep.factors)} agents expanded from sweeps over "
                               f"{', '.join(sweep.keys)}; each factor on its own, over every agent that swept it. "
                               "Trials to criterion are session_trials at the curriculum's completion."),
        _table("sweep", table, "Trials to criterion by sweep factor: agents with the value, how many reached "
                               "criterion, and the median and quartiles over those that did (session_trials)."),
        _figure("sweep", lambda: figures.sweep_trials(sweep.summary, sweep.factors, sweep.table, colours),
                "Trials to criterion (session_trials) per agent, one panel per factor: filled points reached "
                "criterion, open ones at the top did not; black bar: median, whiskers: quartiles; under each "
                "value, reached / agents."),
        _table("sweep-agents", agents, "Swept agents: their factors and trials to criterion (session_trials)."),
    ]


def _html_table(name: str, frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if not np.isfinite(v) else f"{v:.4g}"
        return str(v)

    table = frame.to_html(index=False, table_id=f"table-{name}", border=0, na_rep="",
                          formatters={c: cell for c in frame.columns}, escape=True)
    return f"<div class='table-wrap'>{table}</div>"  # a wide table scrolls in its box, not the page


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(report.title)}</h1>",
             f"<p class='meta'>Lab {html.escape(str(report.lab))}; written "
             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(report.created))}. Trial counts are cumulative "
             "per agent (session_trials: every trial scored, stale ones included); accuracy is correct / all "
             "trials, either the recent accuracy (the server's window of the last trials, across stages) or the "
             "criterion accuracy (the policy's own window, what its graduation criteria read).</p>"]
    for heading, items in report.sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for it in items:
            name = html.escape(it.name, quote=True)
            if it.kind == "figure":
                data = base64.b64encode(it.png).decode("ascii")
                parts.append(f"<figure id='fig-{name}' data-figure='{name}'><img alt='{name}' "
                             f"src='data:image/png;base64,{data}'><figcaption>{html.escape(it.caption)}"
                             "</figcaption></figure>")
            elif it.kind == "table":
                parts.append(f"<h3>{html.escape(it.caption)}</h3>" if it.caption else "")
                parts.append(_html_table(it.name, it.table))
            else:
                parts.append(f"<p id='text-{name}'>{html.escape(it.caption)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(lab_dir: str | os.PathLike, out_html: str | os.PathLike | None = None,
                 tracking_uri: str | None = None, log_to_mlflow: bool = False) -> Path:
    """Write the lab's report as one self-contained HTML file.

    Args:
        lab_dir: the lab directory (or its journal directory).
        out_html: where to write it (default ``LAB_DIR/report.html``); parent folders are created.
        tracking_uri: MLflow store (default: the one the journal names).
        log_to_mlflow: also log the file to the lab's parent run under ``report/`` (skipped, with a warning,
            when the journal names no parent run or the store cannot be reached).

    Returns:
        the path written.
    """
    report = build_report(lab_dir, tracking_uri)
    out = Path(out_html) if out_html is not None else report.lab / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(render_html(report), encoding="utf-8")
    os.replace(tmp, out)
    if log_to_mlflow:
        tables = lab_data.read_lab(lab_dir)
        uri, parent = tracking_uri or lab_data.tracking_uri_of(tables), lab_data.parent_run_id_of(tables)
        if not uri or not parent:
            log.warning("report: the journal names no parent MLflow run; %s was not logged", out)
        else:
            try:
                log_report(out, uri, parent)
            except Exception as err:
                log.warning("report: could not log %s to run %s in %s (%s: %s)", out, parent, uri,
                            type(err).__name__, err)
    return out


def log_report(path: str | os.PathLike, tracking_uri: str, run_id: str, artifact_path: str = "report") -> None:
    """Log a written report to an MLflow run (the lab's parent run) as ``<artifact_path>/<file name>``."""
    from mlflow import MlflowClient

    import shaping.tracking  # noqa: F401  (sets MLflow's environment before MLflow loads)

    MlflowClient(tracking_uri=tracking_uri).log_artifact(run_id, str(path), artifact_path)
