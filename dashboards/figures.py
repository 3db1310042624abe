"""The dashboard's own figures, beside those of :mod:`shaping.figures` (which it uses for everything else):
the graduation comparison across conditions, connectivity across snapshots, and the lab's accuracy curves.

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

from shaping import figures as SF

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
                 knobs: Sequence[str] | None = None) -> Figure:
    """Window accuracy and knob values of one agent against trials (:func:`shaping.figures.curriculum_curves`)
    with its staircase reversals marked on the knob they moved.

    Args:
        progress: :func:`dashboards.data.agent_progress` of the agent.
        reversals: :func:`dashboards.data.reversals` of the agent (``trial``, ``knob``, ``level``).
        knobs: knob columns to draw (names without ``knob.``); default: those that changed, else the first.
    """
    if not len(progress):
        return message_figure("no scored batches yet")
    cols = [c for c in progress.columns if str(c).startswith("knob.")]
    if knobs is None:
        varying = [c for c in cols if progress[c].nunique(dropna=True) > 1]
        chosen = varying or cols[:1]
    else:
        chosen = [f"knob.{k}" for k in knobs if f"knob.{k}" in cols]
    policy = progress["policy_accuracy"].to_numpy(dtype=float) if "policy_accuracy" in progress else None
    fig = SF.curriculum_curves(progress["trials"].to_numpy(), progress["window_accuracy"].to_numpy(),
                               {c[len("knob."):]: progress[c].to_numpy() for c in chosen},
                               progress["stage_index"].to_numpy(), policy_accuracy=policy)
    fig.axes[0].set_ylabel("window accuracy")
    if reversals is not None and len(reversals) and "knob" in reversals.columns:
        for ax, col in zip(fig.axes[1:], chosen):
            r = reversals[reversals["knob"] == col[len("knob."):]]
            if len(r):
                ax.scatter(r["trial"], r["level"], marker="o", s=22, facecolors="none", edgecolors="C3",
                           zorder=3, label="reversal")
                ax.legend(loc="upper right", fontsize="small")
    return fig


def graduation_comparison(grads: pd.DataFrame, by: str = "condition") -> Figure:
    """Trials to each milestone (graduation out of a stage, completion) per group, one point per agent
    (seed) and the group's mean ± SD.

    Args:
        grads: :func:`dashboards.data.graduations` (``milestone, order, trial`` and the ``by`` column).
        by: the grouping column (e.g. ``condition``, ``curriculum``).
    """
    if not len(grads):
        return message_figure("no graduations yet")
    milestones = grads.sort_values("order", kind="stable")["milestone"].drop_duplicates().tolist()
    groups = sorted(grads[by].astype(str).unique())
    fig = _figure(max(5.0, 1.4 * len(milestones) + 2.5), 3.8)
    ax = fig.add_subplot()
    width = 0.8 / max(len(groups), 1)
    rng = np.random.default_rng(0)  # fixed jitter: the same figure for the same data
    for gi, group in enumerate(groups):
        rows = grads[grads[by].astype(str) == group]
        label = group
        for mi, name in enumerate(milestones):
            t = rows.loc[rows["milestone"] == name, "trial"].to_numpy(dtype=float)
            if not len(t):
                continue
            x = mi - 0.4 + width * (gi + 0.5)
            ax.scatter(x + rng.uniform(-width / 5, width / 5, len(t)), t, s=16, color=f"C{gi}", alpha=0.7,
                       zorder=3, label=label)
            label = None
            sd = t.std(ddof=1) if len(t) > 1 else 0.0
            ax.errorbar(x, t.mean(), yerr=sd, fmt="_", ms=14, color=f"C{gi}", capsize=3, lw=1.5, zorder=2)
    ax.set_xticks(range(len(milestones)), milestones, rotation=20 if len(milestones) > 3 else 0)
    ax.set_ylabel("trials to milestone")
    ax.set_ylim(bottom=0)
    ax.legend(title=by, fontsize="small", loc="upper left")
    ax.set_title("trials to each graduation (points: agents; bars: mean ± SD over seeds)", fontsize="medium")
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


def lab_accuracy(progress: Mapping[str, pd.DataFrame]) -> Figure:
    """Window accuracy of every agent against its trials, stage changes as dots.

    Args:
        progress: agent -> :func:`dashboards.data.agent_progress`.
    """
    progress = {a: p for a, p in progress.items() if len(p)}
    if not progress:
        return message_figure("no scored batches yet")
    fig = _figure(7.0, 3.2)
    ax = fig.add_subplot()
    for i, (agent, p) in enumerate(progress.items()):
        ax.plot(p["trials"], p["window_accuracy"], color=f"C{i}", lw=1.2, label=agent)
        s = p["stage_index"].to_numpy()
        moved = np.flatnonzero(np.diff(s) != 0) + 1
        ax.scatter(p["trials"].to_numpy()[moved], p["window_accuracy"].to_numpy()[moved], color=f"C{i}", s=18,
                   zorder=3)
    ax.axhline(0.5, color="0.6", ls="--", lw=0.8)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("trials")
    ax.set_ylabel("window accuracy")
    ax.legend(fontsize="small", loc="lower right", ncol=2)
    ax.set_title("every agent (dots: stage changes)", fontsize="medium")
    return fig
