"""Figures shared by the MLflow trackers, the dashboards and the report.

Every function takes plain NumPy/pandas data and returns a :class:`matplotlib.figure.Figure` drawn on the
Agg canvas. Figures are built with the object API (never ``pyplot``), so nothing here touches matplotlib's
global state or the user's interactive backend, and figures can be drawn from a background thread.

Connectivity conventions are PsychRNN's (Song et al. 2016; Ehrlich et al. 2021): ``W_rec`` is
``(N_rec, N_rec)`` indexed ``[post, pre]``, ``W_in`` is ``(N_rec, N_in)``, ``W_out`` is ``(N_out, N_rec)``,
and a Dale sign belongs to the presynaptic unit, i.e. to a *column* of ``W_rec``. Units are shown grouped by
region (in order of first appearance), and within a region excitatory units before inhibitory ones.
"""
from __future__ import annotations

import io
import json
import textwrap
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm, to_hex
from matplotlib.figure import Figure

from .readout import CRITERION_ACCURACY, RECENT_ACCURACY, accuracy_label
from .scoring import (
    PsychometricAxes,
    fit_logistic,
    fit_trials,
    no_fit_reason,
    psychometric_points,
    responded,
    signed_evidence,
    split_trials,
)

__all__ = [
    "effective_weights", "dale_sign_from_weights", "unit_order", "w_rec_heatmap", "w_rec_image",
    "eigenspectrum", "tau_histogram", "w_in_map", "w_out_map", "fit_logistic", "psychometric_points",
    "psychometric_curve", "stage_timeline", "curriculum_curves", "to_png", "responded", "agent_colours",
    "EVENT_MARKERS", "sweep_value_label", "sweep_trials",
]

_CMAP = "RdBu_r"  # red excitatory (positive), blue inhibitory (negative)


def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def agent_colours(agents: Sequence[str]) -> dict[str, str]:
    """One colour per agent, the same in every figure of the dashboard and the report: agents in the order given
    (:func:`shaping.readout.agent_names`: first HELLO first) take ``tab10``'s colours in turn (``tab20``'s beyond
    ten).

    Returns:
        agent -> ``"#rrggbb"``.
    """
    names = list(dict.fromkeys(str(a) for a in agents))
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {a: to_hex(cmap(i % cmap.N)) for i, a in enumerate(names)}


# curriculum events on a timeline: black and grey shapes, so that they never take an agent's colour
EVENT_MARKERS = {"graduated": ("^", "k"), "regressed": ("v", "k"), "complete": ("*", "k"),
                 "out_of_trials": ("X", "k"), "override": ("s", "0.45"), "reversal": ("o", "0.45")}


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure encoded as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- weights
def dale_sign_from_weights(weights: Mapping[str, Any]) -> np.ndarray | None:
    """Per-unit Dale sign (+1 E, -1 I) stored in a PsychRNN weight dict, or None without Dale."""
    ratio = weights.get("dale_ratio")
    if ratio is not None and np.ndim(ratio) == 0:
        ratio = np.asarray(ratio).item()  # PsychRNN stores it as a 0-d object array
    if ratio is None or "Dale_rec" not in weights:
        return None
    return np.sign(np.diag(np.asarray(weights["Dale_rec"], dtype=float)))


def effective_weights(weights: Mapping[str, Any], dale_sign: Sequence[float] | None = None
                      ) -> dict[str, np.ndarray]:
    """The weights the network actually uses, as PsychRNN's ``get_effective_W_*`` define them.

    ``W_rec ⊙ rec_connectivity``, then with Dale's principle ``|W_rec| @ diag(sign)``; ``W_in`` masked and,
    with Dale, made non-negative; ``W_out`` masked and, with Dale, ``|W_out| @ diag(sign > 0)`` (inhibitory
    units do not project out). The map is idempotent, so a weight file that already holds effective weights
    (PsychRNN's ``save`` writes them) comes back unchanged.

    Args:
        weights: a PsychRNN-style dict with ``W_in``, ``W_rec``, ``W_out`` and optionally
            ``input_connectivity``, ``rec_connectivity``, ``output_connectivity``, ``Dale_rec``,
            ``dale_ratio``.
        dale_sign: ``(N_rec,)`` +1/-1 per unit; default: read from ``Dale_rec`` when ``dale_ratio`` is set.

    Returns:
        ``{"W_in", "W_rec", "W_out"}`` as float arrays (absent keys are left out).
    """
    sign = dale_sign_from_weights(weights) if dale_sign is None else np.asarray(dale_sign, dtype=float)
    out: dict[str, np.ndarray] = {}
    for key, mask_key in (("W_in", "input_connectivity"), ("W_rec", "rec_connectivity"),
                          ("W_out", "output_connectivity")):
        if key not in weights:
            continue
        w = np.asarray(weights[key], dtype=float)
        if mask_key in weights:
            w = w * np.asarray(weights[mask_key], dtype=float)
        if sign is not None:
            w = np.abs(w)
            if key == "W_rec":
                w = w * sign[None, :]
            elif key == "W_out":
                w = w * (sign > 0)[None, :]
        out[key] = w
    return out


def unit_order(N_rec: int, dale_sign: Sequence[float] | None = None,
               region_labels: Sequence[Any] | None = None) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """Display order of recurrent units: by region (first appearance), E before I within a region.

    Args:
        N_rec: number of recurrent units.
        dale_sign: ``(N_rec,)`` +1 (E) / -1 (I) or None.
        region_labels: ``(N_rec,)`` region name per unit or None.

    Returns:
        ``(order, groups)``: ``order`` indexes units in display order; ``groups`` lists
        ``(start, stop, label)`` spans of that order (one per region × E/I), for separators and ticks.
    """
    region = np.asarray(region_labels if region_labels is not None else [""] * N_rec, dtype=object)
    sign = np.asarray(dale_sign if dale_sign is not None else np.ones(N_rec), dtype=float)
    if region.shape != (N_rec,) or sign.shape != (N_rec,):
        raise ValueError(f"unit_order: region_labels {region.shape} and dale_sign {sign.shape} must both "
                         f"be (N_rec,) = ({N_rec},)")
    names = list(dict.fromkeys(region.tolist()))
    region_rank = np.array([names.index(r) for r in region])
    order = np.lexsort((np.arange(N_rec), sign < 0, region_rank))  # last key is the primary one
    groups: list[tuple[int, int, str]] = []
    start = 0
    for i in range(1, N_rec + 1):
        if i == N_rec or (region_rank[order[i]], sign[order[i]] < 0) != (region_rank[order[start]],
                                                                      sign[order[start]] < 0):
            u = order[start]
            ei = "" if dale_sign is None else ("E" if sign[u] > 0 else "I")
            label = ":".join(s for s in (str(region[u]), ei) if s)
            groups.append((start, i, label))
            start = i
    return order, groups


def _separators(ax: Any, groups: list[tuple[int, int, str]], axis: str) -> None:
    if not groups or (len(groups) == 1 and not groups[0][2]):
        return
    centres = [(a + b - 1) / 2 for a, b, _ in groups]
    labels = [g[2] for g in groups]
    for a, _, _ in groups[1:]:
        (ax.axvline if axis == "x" else ax.axhline)(a - 0.5, color="k", lw=0.6)
    if axis == "x":
        ax.set_xticks(centres, labels, rotation=90 if len(groups) > 4 else 0)
    else:
        ax.set_yticks(centres, labels)


def _sym_norm(w: np.ndarray) -> TwoSlopeNorm:
    vmax = float(np.max(np.abs(w))) if w.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    return TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)


def w_rec_heatmap(W_rec: np.ndarray, dale_sign: Sequence[float] | None = None,
                  region_labels: Sequence[Any] | None = None, title: str | None = None) -> Figure:
    """Heatmap of ``W_rec[post, pre]``, units ordered by region then E before I, zero in white.

    Args:
        W_rec: ``(N_rec, N_rec)`` weights (pass the effective ones, see :func:`effective_weights`).
        dale_sign: ``(N_rec,)`` +1/-1 per unit, or None.
        region_labels: ``(N_rec,)`` region per unit, or None.
        title: figure title.
    """
    W_rec = _square(W_rec, "W_rec")
    order, groups = unit_order(len(W_rec), dale_sign, region_labels)
    w = W_rec[np.ix_(order, order)]
    fig = _figure(6.0, 5.0)
    ax = fig.add_subplot()
    im = ax.imshow(w, cmap=_CMAP, norm=_sym_norm(w), interpolation="nearest")
    ax.set_xlabel("presynaptic unit (from)")
    ax.set_ylabel("postsynaptic unit (to)")
    _separators(ax, groups, "x")
    _separators(ax, groups, "y")
    fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
    ax.set_title(title or f"W_rec ({len(w)} units)")
    return fig


def w_rec_image(W_rec: np.ndarray, dale_sign: Sequence[float] | None = None,
                region_labels: Sequence[Any] | None = None, min_px: int = 256) -> np.ndarray:
    """``W_rec`` rendered straight to an RGB ``uint8`` image (no axes), in :func:`w_rec_heatmap`'s order
    and colours, each weight a square block so the image is at least ``min_px`` pixels wide. Cheap enough
    to log at every step (MLflow's step-keyed ``log_image``)."""
    W_rec = _square(W_rec, "W_rec")
    order, _ = unit_order(len(W_rec), dale_sign, region_labels)
    w = W_rec[np.ix_(order, order)]
    rgba = colormaps[_CMAP](_sym_norm(w)(w), bytes=True)
    block = max(1, int(np.ceil(min_px / max(len(w), 1))))
    return np.repeat(np.repeat(rgba[..., :3], block, axis=0), block, axis=1)


def eigenspectrum(W_rec: np.ndarray, title: str | None = None, color: str = "C3") -> Figure:
    """Eigenvalues of ``W_rec`` in the complex plane, with the unit circle and the spectral radius; ``color``: the
    points' (the agent's, :func:`agent_colours`, in the dashboard and the report)."""
    W_rec = _square(W_rec, "W_rec")
    ev = np.linalg.eigvals(W_rec)
    radius = float(np.max(np.abs(ev))) if ev.size else 0.0
    fig = _figure(4.5, 4.5)
    ax = fig.add_subplot()
    theta = np.linspace(0, 2 * np.pi, 361)
    ax.plot(np.cos(theta), np.sin(theta), color="0.5", lw=0.8, label="unit circle")
    ax.scatter(ev.real, ev.imag, s=10, color=color, zorder=3, label="eigenvalues")
    ax.axhline(0, color="0.85", lw=0.5)
    ax.axvline(0, color="0.85", lw=0.5)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title(title or f"W_rec eigenvalues (spectral radius {radius:.3g})")
    return fig


def tau_histogram(tau_steps: Sequence[float], title: str | None = None, color: str = "C0") -> Figure:
    """Per-unit time constants in steps (``tau / dt``, ``(N_rec,)``) as a histogram, with the floor of trainable
    time constants (1 step: ``tau = dt``) and the median marked; the x axis is logarithmic when they span more
    than a factor of 20. ``color``: the bars' (the agent's, :func:`agent_colours`)."""
    tau = np.asarray(tau_steps, dtype=float).ravel()
    tau = tau[np.isfinite(tau)]
    fig = _figure(4.5, 3.0)
    ax = fig.add_subplot()
    if tau.size:
        lo, hi = float(tau.min()), float(tau.max())
        log = lo > 0 and hi / lo > 20
        start = min(lo, 1.0)  # a linear axis shows the 1-step floor
        edges = np.geomspace(lo, hi, 31) if log else np.linspace(start, max(hi, start + 1e-3), 31)
        ax.hist(tau, bins=edges, color=color)
        if log:
            ax.set_xscale("log")
        ax.axvline(float(np.median(tau)), color="k", lw=1, ls="--", label=f"median {np.median(tau):.3g}")
        ax.axvline(1.0, color="0.5", lw=1, label="1 step (tau = dt)")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlabel("tau (steps, tau / dt)")
    ax.set_ylabel("units")
    ax.set_title(title or f"Time constants ({tau.size} units)")
    return fig


def w_in_map(W_in: np.ndarray, dale_sign: Sequence[float] | None = None,
             region_labels: Sequence[Any] | None = None, input_names: Sequence[str] | None = None,
             title: str | None = None) -> Figure:
    """Input weights ``W_in (N_rec, N_in)``: one column per input, rows in :func:`unit_order`."""
    W_in = np.asarray(W_in, dtype=float)
    if W_in.ndim != 2:
        raise ValueError(f"w_in_map: W_in must be (N_rec, N_in), got shape {W_in.shape}")
    order, groups = unit_order(W_in.shape[0], dale_sign, region_labels)
    w = W_in[order]
    fig = _figure(2.0 + 0.4 * w.shape[1], 5.0)
    ax = fig.add_subplot()
    im = ax.imshow(w, cmap=_CMAP, norm=_sym_norm(w), aspect="auto", interpolation="nearest")
    names = list(input_names) if input_names is not None else [f"in{i}" for i in range(w.shape[1])]
    ax.set_xticks(range(w.shape[1]), names, rotation=90)
    ax.set_ylabel("recurrent unit")
    _separators(ax, groups, "y")
    fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
    ax.set_title(title or "W_in")
    return fig


def w_out_map(W_out: np.ndarray, dale_sign: Sequence[float] | None = None,
              region_labels: Sequence[Any] | None = None, output_names: Sequence[str] | None = None,
              title: str | None = None) -> Figure:
    """Output weights ``W_out (N_out, N_rec)``: one row per output, columns in :func:`unit_order`."""
    W_out = np.asarray(W_out, dtype=float)
    if W_out.ndim != 2:
        raise ValueError(f"w_out_map: W_out must be (N_out, N_rec), got shape {W_out.shape}")
    order, groups = unit_order(W_out.shape[1], dale_sign, region_labels)
    w = W_out[:, order]
    fig = _figure(6.0, 1.6 + 0.3 * w.shape[0])
    ax = fig.add_subplot()
    im = ax.imshow(w, cmap=_CMAP, norm=_sym_norm(w), aspect="auto", interpolation="nearest")
    names = list(output_names) if output_names is not None else [f"out{i}" for i in range(w.shape[0])]
    ax.set_yticks(range(w.shape[0]), names)
    ax.set_xlabel("recurrent unit")
    _separators(ax, groups, "x")
    fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
    ax.set_title(title or "W_out")
    return fig


def _square(w: np.ndarray, name: str) -> np.ndarray:
    w = np.asarray(w, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"{name} must be a square (N_rec, N_rec) matrix, got shape {w.shape}")
    return w


# ---------------------------------------------------------------------------------------------- behaviour
def psychometric_curve(trials: pd.DataFrame, evidence: str | Sequence[str], title: str | None = None,
                       sides: Mapping[str, str] | None = None, by: str | None = None,
                       labels: Mapping[str, str] | None = None, color: str = "C0") -> Figure:
    """Psychometric curves of one span of trials: choice proportions by evidence and the fitted psychometric function
    (:func:`shaping.scoring.fit_trials`: lapse rates included), one panel per evidence column and, with ``by``,
    one curve per value of that trial parameter (Mante et al. 2013, Fig. 2: motion and colour evidence, split
    by context).

    Args:
        trials: scored trials with ``choice``, ``target`` and the ``evidence`` column(s) (e.g.
            ``coherence``); no-response trials (``choice < 0``) are counted in the title, not in the fit.
        evidence: name of the evidence column, or several (a panel each).
        title: figure title: the span of trials fitted (:attr:`shaping.readout.Span.label`), so that a curve
            never reads as more than it is. No curve is fitted through fewer than
            :data:`shaping.scoring.MIN_EVIDENCE_LEVELS` evidence levels: the panel says why instead.
        sides: the task's ``evidence_side`` (see :func:`shaping.scoring.signed_evidence`).
        by: trial parameter splitting the trials into curves (None, or a column the table lacks: one curve).
        labels: legend names of ``by``'s values, keyed by ``str(value)``
            (:class:`shaping.scoring.PsychometricAxes`).
        color: the fitted curve's colour when there is one curve (the agent's, :func:`agent_colours`).
    """
    columns = [evidence] if isinstance(evidence, str) else list(evidence)
    groups = split_trials(trials, PsychometricAxes(tuple(columns), sides or {}, by, labels))
    fig = _figure(4.5 * len(columns), 3.6 + 0.25 * (len(groups) - 1))
    n_all = len(trials)
    n_resp = int(responded(trials).sum()) if n_all and {"choice", "target"} <= set(trials.columns) else 0
    heading = "\n".join(textwrap.wrap(title or "psychometric curve", 44 * len(columns))) + f"\n(n={n_all}" + (
        f", {n_all - n_resp} no response)" if n_resp < n_all else ")")
    for i, column in enumerate(columns):
        ax = fig.add_subplot(1, len(columns), i + 1)
        ylabel = None
        notes: list[str] = []
        for j, (name, rows) in enumerate(groups):
            xy = signed_evidence(rows, column, sides)
            if xy is None or len(xy[0]) == 0:
                continue
            x, _, ylabel = xy
            colour = "k" if name is None else f"C{j}"
            pts = psychometric_points(rows, column, sides=sides)
            ax.errorbar(pts["evidence"], pts["p"], yerr=pts["sem"], fmt="o", color=colour, ms=4, capsize=2)
            fit = fit_trials(rows, column, sides=sides)
            if fit is None:
                reason = no_fit_reason(rows, column, sides)
                if reason:
                    notes.append(f"{name + ': ' if name else ''}no fit, {reason}")
                continue
            grid = np.linspace(x.min(), x.max(), 200)
            if fit.kind == "logistic":
                label = f"PSE {fit.mu:.3g}, width {fit.width:.3g}, lapses {fit.gamma:.2f}/{fit.lapse:.2f}"
            else:
                label = f"75 % at {fit.threshold(0.75):.3g}, lapse {fit.lapse:.2f}"
            prefix = (name + ": ") if name is not None else ("logistic fit: " if fit.kind == "logistic"
                                                             else "Weibull fit: ")
            ax.plot(grid, fit(grid), color=color if name is None else colour, label=prefix + label)
        if ylabel is None:
            ax.text(0.5, 0.5, f"no scorable trials with '{column}'", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        if notes:
            ax.text(0.02, 0.98, "\n".join(notes), ha="left", va="top", fontsize="small", color="0.3",
                    transform=ax.transAxes)
        if ax.get_legend_handles_labels()[0]:
            one = len(groups) == 1
            ax.legend(loc="lower right" if one else "best", fontsize="small" if one else "x-small")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(f"signed {column}" if ylabel.startswith("P(choice") else column)
        ax.set_ylabel(ylabel)
    if len(columns) > 1:
        fig.suptitle(heading, fontsize="medium")
    else:
        fig.axes[0].set_title(heading, fontsize="medium")
    return fig


def stage_timeline(trial: np.ndarray, stage_index: np.ndarray, events: pd.DataFrame | None = None,
                   stage_names: Mapping[int, str] | Sequence[str] | None = None, color: str = "k") -> Figure:
    """Stage index against trial count, with curriculum events as labelled markers on the same axis.

    Args:
        trial: ``(n,)`` increasing trial counts (x axis: ``session_trials``), e.g. the count at the end of each
            batch.
        stage_index: ``(n,)`` stage of the trials up to each count (drawn as a step ending there). Pass the stage
            the policy was in (:func:`shaping.readout.agent_progress`'s ``policy_stage_index``): the line then
            steps exactly at each move's marker.
        events: optional table with ``event`` and ``trial`` columns (graduated, regressed, reversal, ...), the
            trial on the same count; each marker sits on the line, at the stage it was in before the event.
        stage_names: names of the stage indices for the y ticks.
        color: the line's colour (the agent's, :func:`agent_colours`).
    """
    trial = np.asarray(trial, dtype=float)
    stage_index = np.asarray(stage_index, dtype=float)
    fig = _figure(7.0, 3.0)
    ax = fig.add_subplot()
    ax.step(trial, stage_index, where="pre", color=color, lw=1.4)
    if events is not None and len(events) and {"event", "trial"} <= set(events.columns):
        for i, (kind, rows) in enumerate(events.groupby("event", sort=True)):
            t = pd.to_numeric(rows["trial"], errors="coerce").to_numpy(dtype=float)
            at = np.clip(np.searchsorted(trial, t, side="left"), 0, max(len(trial) - 1, 0))
            y = stage_index[at] if len(trial) else np.zeros_like(t)
            marker, shade = EVENT_MARKERS.get(str(kind), ("D", "0.6"))
            hollow = kind == "reversal"
            ax.scatter(t, y, s=26, marker=marker, facecolors="none" if hollow else shade, edgecolors=shade,
                       zorder=3, label=str(kind))
        ax.legend(loc="upper left", fontsize="small", ncol=3)
    if stage_names is not None:
        names = dict(stage_names) if isinstance(stage_names, Mapping) else dict(enumerate(stage_names))
        ax.set_yticks(list(names), [str(v) for v in names.values()])
    ax.set_xlabel("trials (session_trials)")
    ax.set_ylabel("stage")
    ax.set_title("curriculum timeline")
    return fig


def curriculum_curves(trial: np.ndarray, accuracy: np.ndarray, knobs: Mapping[str, Any] | None = None,
                      stage_index: np.ndarray | None = None, chance: float | None = 0.5,
                      policy_accuracy: np.ndarray | None = None, *, window_trials: int | None = None,
                      color: str = "k") -> Figure:
    """Accuracy and knob values against trial count, one panel each, sharing the x axis.

    Args:
        trial: ``(n,)`` increasing trial counts (``session_trials``), e.g. the count at the end of each batch.
        accuracy: ``(n,)`` the recent accuracy (the server's window, across stages) after each count.
        knobs: knob name -> the values of the trials up to each count (drawn as steps ending there): ``(n,)``
            values, or a ``(low, high)`` pair of ``(n,)`` arrays, the smallest and largest value a trial could be
            drawn with (:func:`shaping.readout.knob_drawn`): a set of choices or a range is drawn as the band
            between them, never as its mean.
        stage_index: optional ``(n,)``; stage changes are drawn as dotted vertical lines.
        chance: chance level drawn on the accuracy panel (None: no line).
        policy_accuracy: optional ``(n,)``: the criterion accuracy (the policy's own, what its graduation
            criterion reads; NaN where it keeps none), drawn over ``accuracy`` in colour, with a legend.
        window_trials: the recent-accuracy window, for its label (:func:`shaping.readout.accuracy_label`).
        color: the recent accuracy's colour (the agent's, :func:`agent_colours`).
    """
    knobs = dict(knobs or {})
    trial = np.asarray(trial, dtype=float)
    fig = _figure(7.0, 2.0 + 1.4 * len(knobs))
    axes = fig.subplots(1 + len(knobs), 1, sharex=True, squeeze=False)[:, 0]
    axes[0].plot(trial, np.asarray(accuracy, dtype=float), color=color, lw=1.2,
                 label=accuracy_label(RECENT_ACCURACY, window_trials))
    if policy_accuracy is not None and np.isfinite(np.asarray(policy_accuracy, dtype=float)).any():
        axes[0].plot(trial, np.asarray(policy_accuracy, dtype=float), color="0.45", lw=1.0, ls="-",
                     label=accuracy_label(CRITERION_ACCURACY))
        axes[0].legend(loc="lower right", fontsize="small")
    if chance is not None:
        axes[0].axhline(chance, color="0.6", ls="--", lw=0.8)
    axes[0].set_ylim(-0.03, 1.03)
    axes[0].set_ylabel("accuracy")
    for ax, (name, values) in zip(axes[1:], knobs.items()):
        if isinstance(values, tuple) and len(values) == 2:
            low, high = (np.asarray(v, dtype=float) for v in values)
        else:
            low = high = np.asarray(values, dtype=float)
        ax.step(trial, low, where="pre", lw=1.2, color=color)
        if np.any(high != low):
            ax.step(trial, high, where="pre", lw=1.2, color=color)
            ax.fill_between(trial, low, high, step="pre", color=color, alpha=0.25, lw=0,
                            label="drawn from (min..max)")
            ax.legend(loc="upper right", fontsize="x-small")
        ax.set_ylabel(name)
    if stage_index is not None and len(trial) > 1:
        s = np.asarray(stage_index)
        for t in trial[:-1][np.diff(s) != 0]:  # the last count of the old stage, where the step is drawn
            for ax in axes:
                ax.axvline(t, color="0.5", ls=":", lw=0.8)
    axes[-1].set_xlabel("trials (session_trials)")
    return fig


# ---------------------------------------------------------------------------------------------- sweeps
def sweep_value_label(value: Any) -> str:
    """A swept value as text, for tick labels, tables and selectors: a string as is, a bool lowercase, an int as
    is, a float shortest (``repr``), a table or list as compact JSON (keys sorted)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _value_id(value: Any) -> tuple[str, str]:
    """Tells ``1``, ``1.0``, ``"1"`` and ``True`` apart (as :func:`shaping.readout.sweep_summary` groups them)."""
    kind = "bool" if isinstance(value, (bool, np.bool_)) else "int" if isinstance(value, (int, np.integer)) else \
        "float" if isinstance(value, (float, np.floating)) else type(value).__name__
    return kind, sweep_value_label(value)


def sweep_trials(summary: pd.DataFrame, factors: Mapping[str, Mapping[str, Any]], sweep: pd.DataFrame,
                 colours: Mapping[str, str] | None = None) -> Figure:
    """Trials to criterion per agent, grouped by each sweep factor: one panel per factor, one column per value.

    Each agent that reached criterion is a filled point at its trials to criterion (``session_trials``), in its
    colour; the group's median (black bar) and quartiles (whiskers) are read from ``sweep``, never recomputed. The
    agents that did not reach it (yet) are open markers in a band above the axis' data, labelled with their count,
    so a value whose agents mostly failed cannot pass for a fast one. Under each value: reached / agents. Each
    agent's marker carries ``gid`` ``"reached:<agent>"`` or ``"not-reached:<agent>"`` (an SVG's element ids).

    Args:
        summary: :func:`shaping.readout.summary_rows` (``agent, complete, trials_to_complete``).
        factors: agent -> ``{swept key: value}`` (:meth:`shaping.labfile.LabFile.factors`).
        sweep: :func:`shaping.readout.sweep_summary` of ``summary`` and ``factors`` (its rows give the panels,
            the values in order, and the median and quartiles).
        colours: agent -> colour (default: :func:`agent_colours` in ``summary``'s order).
    """
    keys = list(dict.fromkeys(sweep["factor"])) if len(sweep) else []
    if not keys or not len(summary):
        fig = _figure(5.0, 1.5)
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no swept agents", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    colours = dict(colours or agent_colours(summary["agent"].astype(str)))
    rows = summary.set_index("agent")
    reached = {a: bool(r["complete"]) and pd.notna(r["trials_to_complete"]) for a, r in rows.iterrows()}
    done = [float(rows.loc[a, "trials_to_complete"]) for a in rows.index if reached[a] and a in factors]
    top = max(done) if done else 1.0
    band = top * 1.18  # the "not reached" band, above every point
    widths = [max(1, int((sweep["factor"] == k).sum())) for k in keys]
    fig = _figure(min(2.0 + 1.1 * sum(widths) + 0.6 * len(keys), 16.0), 4.0)
    axes = fig.subplots(1, len(keys), sharey=True, squeeze=False, gridspec_kw={"width_ratios": widths})[0]
    rng = np.random.default_rng(0)  # fixed jitter: the same figure for the same data
    for ax, key in zip(axes, keys):
        table = sweep[sweep["factor"] == key].reset_index(drop=True)
        ids = [_value_id(v) for v in table["value"]]
        labels = []
        for i, r in table.iterrows():
            members = [a for a, f in factors.items() if a in rows.index and key in (f or {})
                       and _value_id(f[key]) == ids[i]]
            hit = [a for a in members if reached[a]]
            missed = [a for a in members if not reached[a]]
            jitter = rng.uniform(-0.18, 0.18, len(members))
            for a, dx in zip(hit, jitter):
                ax.scatter(i + dx, float(rows.loc[a, "trials_to_complete"]), s=20, color=colours.get(a, "0.5"),
                           alpha=0.9, zorder=3, gid=f"reached:{a}")
            for a, dx in zip(missed, jitter[len(hit):]):
                ax.scatter(i + dx, band, s=24, facecolors="none", edgecolors=colours.get(a, "0.5"), lw=1.2, zorder=3,
                           gid=f"not-reached:{a}")
            if missed:
                ax.annotate(f"{len(missed)} not reached", (i, band), xytext=(0, 8), textcoords="offset points",
                            ha="center", va="bottom", fontsize="x-small")
            if np.isfinite(r["median"]):
                ax.errorbar(i + 0.3, r["median"], yerr=[[r["median"] - r["q1"]], [r["q3"] - r["median"]]], fmt="_",
                            ms=14, color="k", capsize=3, lw=1.5, zorder=4)
            labels.append(f"{sweep_value_label(r['value'])}\n{int(r['reached'])}/{int(r['agents'])}")
        ax.axhline(top * 1.09, color="0.7", ls=":", lw=0.8)
        ax.set_xticks(range(len(table)), labels, fontsize="small")
        ax.set_xlim(-0.6, len(table) - 0.4)
        ax.set_title(key, fontsize="medium")
        ax.set_xlabel("value  (reached / agents)", fontsize="small")
    axes[0].set_ylim(0, band * 1.12)
    axes[0].set_ylabel("trials to criterion (session_trials)")
    ticks = [t for t in axes[0].get_yticks() if 0 <= t <= top * 1.05]
    axes[0].set_yticks([*ticks, band], [*(f"{t:,.0f}" for t in ticks), "not\nreached"])
    fig.suptitle("trials to criterion by sweep factor (points: agents; bar: median, whiskers: quartiles)",
                 fontsize="medium")
    return fig
