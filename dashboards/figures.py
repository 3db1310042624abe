"""The dashboard's own figures, beside those of :mod:`shaping.figures` (which it uses for everything else):
the graduation comparison across conditions, connectivity across snapshots, and the lab's accuracy curves.

Every number drawn comes from :mod:`shaping.readout` (through :mod:`dashboards.data`); each agent keeps its
colour (:func:`shaping.figures.agent_colours`) in every figure; the x axis is ``session_trials``.

Same rules as :mod:`shaping.figures`: plain tables in, a :class:`matplotlib.figure.Figure` on the Agg canvas
out, object API only (never ``pyplot``), so figures can be drawn from any thread of a Streamlit server.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shaping import figures, readout

__all__ = ["agent_curves", "graduation_comparison", "connectivity_across", "lab_accuracy", "message_figure"]


def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def message_figure(text: str, width_in: float = 5.0, height_in: float = 1.5) -> Figure:
    """A figure that only says ``text`` (what a view shows before there is data)."""
    fig = _figure(width_in, height_in)
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def agent_curves(progress: pd.DataFrame, reversals: pd.DataFrame | None = None,
                 knobs: Sequence[str] | None = None, window_trials: int | None = None, color: str = "k") -> Figure:
    """Recent and criterion accuracy and the knobs as drawn, for one agent against its trials
    (:func:`shaping.figures.curriculum_curves`), with its staircase reversals marked on the knob they moved.

    Args:
        progress: :func:`shaping.readout.agent_progress` of the agent (its batch rows).
        reversals: :func:`shaping.readout.reversals` of the agent (``trial``, ``knob``, ``level``).
        knobs: knobs to draw (names without ``knob.``); default: those that changed, else the first.
        window_trials: the server's recent-accuracy window (for the label).
        color: the agent's colour.
    """
    if not len(progress):
        return message_figure("no scored batches yet")
    names = readout.knob_names(progress)
    bands = {k: (progress[f"knob_min.{k}"].to_numpy(dtype=float), progress[f"knob_max.{k}"].to_numpy(dtype=float))
             for k in names}
    numeric = [k for k in names if np.isfinite(bands[k][0]).any()]
    if knobs is None:
        varying = [k for k in numeric if progress[f"knob.{k}"].nunique(dropna=True) > 1]
        chosen = varying or numeric[:1]
    else:
        chosen = [k for k in knobs if k in numeric]
    stage = progress["policy_stage_index"] if "policy_stage_index" in progress else progress["stage_index"]
    fig = figures.curriculum_curves(progress["trials"].to_numpy(),
                               progress[readout.RECENT_ACCURACY].to_numpy(dtype=float),
                               {k: bands[k] for k in chosen}, stage.to_numpy(),
                               policy_accuracy=progress[readout.CRITERION_ACCURACY].to_numpy(dtype=float),
                               window_trials=window_trials, color=color)
    if reversals is not None and len(reversals) and "knob" in reversals.columns:
        for ax, name in zip(fig.axes[1:], chosen):
            r = reversals[reversals["knob"] == name]
            if len(r):
                marker, shade = figures.EVENT_MARKERS["reversal"]
                ax.scatter(r["trial"], r["level"], marker=marker, s=22, facecolors="none", edgecolors=shade,
                           zorder=3, label="reversal")
                ax.legend(loc="upper right", fontsize="small")
    return fig


def graduation_comparison(grads: pd.DataFrame, by: str = "condition",
                          colours: Mapping[str, str] | None = None) -> Figure:
    """Trials to each milestone (graduation out of a stage, completion) per group: one point per agent (seed) in
    the agent's colour, and the group's mean ± SD in black.

    Args:
        grads: :func:`shaping.readout.graduations` (``agent, milestone, order, trial`` and the ``by`` column).
        by: the grouping column (e.g. ``condition``, ``curriculum``).
        colours: agent -> colour (default: :func:`shaping.figures.agent_colours` in the table's order).
    """
    if not len(grads):
        return message_figure("no graduations yet")
    colours = dict(colours or figures.agent_colours(grads["agent"].astype(str)))
    milestones = grads.sort_values("order", kind="stable")["milestone"].drop_duplicates().tolist()
    groups = sorted(grads[by].astype(str).unique())
    fig = _figure(max(5.0, 1.4 * len(milestones) * max(1, len(groups)) / 2 + 2.5), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(len(groups), 1)
    rng = np.random.default_rng(0)  # fixed jitter: the same figure for the same data
    labelled: set[str] = set()
    ticks, tick_labels = [], []
    for gi, group in enumerate(groups):
        rows = grads[grads[by].astype(str) == group]
        for mi, name in enumerate(milestones):
            sel = rows[rows["milestone"] == name]
            if not len(sel):
                continue
            x = mi - 0.4 + width * (gi + 0.5)
            t = sel["trial"].to_numpy(dtype=float)
            for agent, trial in zip(sel["agent"].astype(str), t):
                ax.scatter(x + rng.uniform(-width / 5, width / 5), trial, s=18, color=colours.get(agent, "0.5"),
                           alpha=0.85, zorder=3, label=None if agent in labelled else agent)
                labelled.add(agent)
            sd = t.std(ddof=1) if len(t) > 1 else 0.0
            ax.errorbar(x, t.mean(), yerr=sd, fmt="_", ms=14, color="k", capsize=3, lw=1.5, zorder=2)
            if len(groups) > 1:
                ticks.append(x)
                tick_labels.append(group)
    ax.set_xticks(range(len(milestones)), milestones)
    if ticks:  # the groups under each milestone
        sec = ax.secondary_xaxis("top")
        sec.set_xticks(ticks, tick_labels, rotation=30, fontsize="x-small", ha="left")
    ax.set_ylabel("trials to milestone (session_trials)")
    ax.set_ylim(bottom=0)
    ax.legend(title="agent", fontsize="small", loc="upper left")
    ax.set_title(f"trials to each graduation by {by} (points: agents; bars: mean ± SD over seeds)",
                 fontsize="medium", pad=40 if ticks else 6)
    return fig


def connectivity_across(snapshots: Sequence, tags: Sequence[str], trials: Sequence[float] | None = None
                        ) -> Figure:
    """How ``W_rec`` changed across snapshots: eigenvalues of each (colour = order, unit circle for
    reference) and the spectral radius per snapshot.

    Args:
        snapshots: :class:`dashboards.data.Connectivity` objects in order.
        tags: their labels (e.g. ``stage0_easy``, ``final``).
        trials: their trial counts (NaN when unknown), for the labels.
    """
    if not len(snapshots):
        return message_figure("no weight files yet")
    fig = _figure(9.0, 4.0)
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
    theta = np.linspace(0, 2 * np.pi, 361)
    ax.plot(np.cos(theta), np.sin(theta), color="0.6", lw=0.8)
    colours = colormaps["viridis"](np.linspace(0, 0.9, len(snapshots)))
    trials = list(trials) if trials is not None else [np.nan] * len(snapshots)
    labels = [f"{t}" + (f" (trial {int(n)})" if n == n else "") for t, n in zip(tags, trials)]
    for c, colour, label in zip(snapshots, colours, labels):
        ax.scatter(c.eigenvalues.real, c.eigenvalues.imag, s=9, color=colour, label=label, alpha=0.8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.legend(fontsize="x-small", loc="upper right")
    ax.set_title("W_rec eigenvalues by snapshot", fontsize="medium")
    radius = [c.spectral_radius for c in snapshots]
    ax2.plot(range(len(snapshots)), radius, "o-", color="k")
    ax2.axhline(1.0, color="0.6", ls="--", lw=0.8)
    ax2.set_xticks(range(len(snapshots)), list(tags), rotation=30, ha="right", fontsize="small")
    ax2.set_ylabel("spectral radius")
    ax2.set_title("spectral radius across graduations", fontsize="medium")
    return fig


def lab_accuracy(progress: Mapping[str, pd.DataFrame], colours: Mapping[str, str] | None = None,
                 window_trials: int | None = None) -> Figure:
    """Recent accuracy of every agent against its trials, in the agent's colour; its stage changes as dots.

    Args:
        progress: agent -> :func:`shaping.readout.agent_progress`.
        colours: agent -> colour (default: :func:`shaping.figures.agent_colours` in ``progress``'s order).
        window_trials: the server's recent-accuracy window (for the label).
    """
    colours = dict(colours or figures.agent_colours(list(progress)))
    progress = {a: p for a, p in progress.items() if len(p)}
    if not progress:
        return message_figure("no scored batches yet")
    fig = _figure(7.0, 3.2)
    ax = fig.add_subplot()
    for agent, p in progress.items():
        acc = p[readout.RECENT_ACCURACY].to_numpy(dtype=float)
        ax.plot(p["trials"], acc, color=colours.get(agent, "0.5"), lw=1.2, label=agent)
        s = (p["policy_stage_index"] if "policy_stage_index" in p else p["stage_index"]).to_numpy()
        moved = np.flatnonzero(np.diff(s) != 0)  # the batch whose end the stage changed at
        ax.scatter(p["trials"].to_numpy()[moved], acc[moved], color=colours.get(agent, "0.5"), s=18, zorder=3)
    ax.axhline(0.5, color="0.6", ls="--", lw=0.8)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("trials (session_trials)")
    ax.set_ylabel(readout.accuracy_label(readout.RECENT_ACCURACY, window_trials))
    ax.legend(fontsize="small", loc="lower right", ncol=2)
    ax.set_title("every agent (dots: stage changes)", fontsize="medium")
    return fig
