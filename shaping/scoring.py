"""Psychometrics of scored trials: which trials count, evidence signed towards a choice, choice proportions by
evidence level, and psychometric-function fits with guess and lapse rates.

Per-trial outcomes come from each task's own ``Task.score`` (they depend on the task's output layout) and
accuracy windows from :mod:`shaping.policies.window`; this module works on their scored tables (one row per
trial: ``outcome``, ``choice``, ``target`` and the trial parameters).

The fitted function is Wichmann & Hill's (2001, Percept. Psychophys. 63:1293) ::

    psi(x) = gamma + (1 - gamma - lapse) * F(x; mu, width)

with ``F`` a logistic ``1 / (1 + exp(-(x - mu) / width))`` (for P(choice = 1) against signed evidence: ``mu``
is the point of subjective equality, the bias; ``gamma`` and ``lapse`` the lapse rates towards each side) or
a Weibull ``1 - exp(-(x / mu) ** width)`` (for P(correct) against unsigned evidence, ``gamma`` the guess rate,
e.g. 0.5 for two alternatives; ``mu`` the threshold where F = 1 - 1/e). Fitted by maximum likelihood with
lapse rates bounded to [0, ``max_lapse``], as Wichmann & Hill recommend: a lapse-free fit to a network that
lapses underestimates its slope.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["responded", "signed_evidence", "psychometric_points", "fit_logistic", "PsychometricFit",
           "fit_psychometric", "fit_trials", "MIN_EVIDENCE_LEVELS", "evidence_levels", "no_fit_reason",
           "PsychometricAxes", "psychometric_axes", "split_trials"]

MIN_EVIDENCE_LEVELS = 3
"""Distinct evidence values a psychometric curve needs: through two, any sigmoid fits and says nothing of its
shape (a fixed coherence signed by side is two levels)."""


def responded(trials: pd.DataFrame) -> np.ndarray:
    """``(n,)`` bool: trials with a response to one of the task's options, i.e. not ``no_response`` (which
    also covers an opt-out such as :class:`~shaping.tasks.PostDecisionWager`'s sure choice)."""
    if "outcome" in trials.columns:
        return (trials["outcome"] != "no_response").to_numpy()
    return (trials["choice"] >= 0).to_numpy()


def signed_evidence(trials: pd.DataFrame, evidence: str, sides: Mapping[str, str] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Per responded trial with a finite ``evidence`` value: ``(x, y, ylabel)`` for a psychometric curve, or None
    when the table lacks ``evidence``, ``choice`` or ``target``.

    Two-alternative tasks (targets 0/1): ``x`` is the evidence signed towards option 1 (by the task's
    ``evidence_side`` parameter when it declares one, else by the correct choice) and ``y`` the choice of option
    1 (``"P(choice = 1)"``); otherwise ``x`` is the evidence and ``y`` correct (``"P(correct)"``). ``sides``:
    the task's ``evidence_side`` (its ``spec()`` carries it), for a table whose task this process cannot
    import; None: looked up from the ``task`` column.
    """
    if evidence not in trials.columns or not {"choice", "target"} <= set(trials.columns):
        return None
    t = trials[responded(trials)]
    ev = pd.to_numeric(t[evidence], errors="coerce").to_numpy(dtype=float)
    target = t["target"].to_numpy()
    choice = t["choice"].to_numpy()
    keep = np.isfinite(ev)
    if set(np.unique(trials["target"])) <= {0, 1}:
        side = _evidence_side(t, target, evidence, sides)
        return (ev * np.where(side == 1, 1.0, -1.0))[keep], (choice == 1).astype(float)[keep], "P(choice = 1)"
    return ev[keep], (choice == target).astype(float)[keep], "P(correct)"


def _evidence_side(trials: pd.DataFrame, target: np.ndarray, evidence: str,
                   sides: Mapping[str, str] | None = None) -> np.ndarray:
    """Per trial, the option (0/1) the ``evidence`` column supports: the parameter the task's ``evidence_side``
    maps it to, where the table names a task (``task`` column) that declares one, else the correct choice."""
    if sides is not None:
        column = sides.get(evidence)
        return trials[column].to_numpy() if column and column in trials.columns else target
    if "task" not in trials.columns or not len(trials):
        return target
    from .tasks.base import evidence_sides
    from .tasks.registry import get

    side = np.asarray(target).copy()
    names = trials["task"].astype(str).to_numpy()
    for name in pd.unique(names):
        try:
            column = evidence_sides(get(name)).get(evidence)
        except ValueError:  # a task this process cannot import: sign by the correct choice
            continue
        if column and column in trials.columns:
            rows = names == name
            side[rows] = trials[column].to_numpy()[rows]
    return side


def psychometric_points(trials: pd.DataFrame, evidence: str, max_levels: int = 12,
                        sides: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Choice proportions by evidence level (quantile bins when there are more than ``max_levels``), on the axes
    of :func:`signed_evidence`. No-response trials are left out.

    Returns:
        one row per level: ``evidence`` (mean in the level), ``p``, ``n``, ``sem`` (binomial).
    """
    xy = signed_evidence(trials, evidence, sides)
    if xy is None or len(xy[0]) == 0:
        return pd.DataFrame(columns=["evidence", "p", "n", "sem"])
    x, y, _ = xy
    levels = np.unique(x)
    if len(levels) > max_levels:
        edges = np.unique(np.quantile(x, np.linspace(0, 1, max_levels + 1)))
        key = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    else:
        key = np.searchsorted(levels, x)
    df = pd.DataFrame({"key": key, "x": x, "y": y}).groupby("key").agg(
        evidence=("x", "mean"), p=("y", "mean"), n=("y", "size"))
    df["sem"] = np.sqrt(df["p"] * (1 - df["p"]) / df["n"])
    return df.reset_index(drop=True)


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-4, n_iter: int = 100) -> tuple[float, float]:
    """Maximum-likelihood logistic fit ``P(y=1 | x) = 1 / (1 + exp(-(b0 + b1 x)))`` by Newton's method, without
    lapse rates (see :func:`fit_psychometric` for those).

    A small ridge penalty keeps the fit finite when the data are perfectly separable (a well-trained
    network at high evidence), where the unpenalised slope diverges.

    Args:
        x: ``(n,)`` evidence per trial. y: ``(n,)`` 0/1 per trial. ridge: L2 weight on (b0, b1).

    Returns:
        ``(b0, b1)``; the point of subjective equality is ``-b0 / b1``.
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or x.size == 0:
        raise ValueError(f"fit_logistic: x {x.shape} and y {y.shape} must be equal, non-empty (n,) arrays")
    X = np.column_stack([np.ones_like(x), x])
    b = np.zeros(2)
    for _ in range(n_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ b, -30, 30)))
        grad = X.T @ (y - p) - ridge * b
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        b += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(b[0]), float(b[1])


# ---------------------------------------------------------------------------------------------- fits
@dataclass(frozen=True)
class PsychometricFit:
    """A fitted ``psi(x) = gamma + (1 - gamma - lapse) * F(x; mu, width)`` (see the module docstring).

    Attributes:
        kind: ``"logistic"`` or ``"weibull"``.
        mu: logistic: the point of subjective equality (evidence units); Weibull: the threshold, F = 1 - 1/e.
        width: logistic: the scale (evidence units; the slope at mu is (1 - gamma - lapse) / (4 width));
            Weibull: the shape (beta).
        gamma: the lower asymptote (lapse towards 0, or the guess rate when fixed). lapse: 1 - upper asymptote.
        n: trials fitted. log_likelihood: at the fit.
    """

    kind: str
    mu: float
    width: float
    gamma: float
    lapse: float
    n: int
    log_likelihood: float

    def __call__(self, x: Any) -> np.ndarray:
        """``psi(x)``."""
        return self.gamma + (1 - self.gamma - self.lapse) * _core(self.kind, np.asarray(x, dtype=float),
                                                                  self.mu, self.width)

    def threshold(self, p: float) -> float:
        """The evidence at which ``psi`` reaches ``p`` (NaN when it never does), e.g. 0.75 correct for a
        two-alternative Weibull fit."""
        f = (p - self.gamma) / (1 - self.gamma - self.lapse)
        if not 0 < f < 1:
            return math.nan
        if self.kind == "logistic":
            return float(self.mu + self.width * math.log(f / (1 - f)))
        return float(self.mu * (-math.log1p(-f)) ** (1 / self.width))

    @property
    def slope(self) -> float:
        """``d psi / dx`` at the midpoint of F (logistic: at mu; Weibull: at F = 0.5)."""
        scale = 1 - self.gamma - self.lapse
        if self.kind == "logistic":
            return scale / (4 * self.width)
        x = self.mu * math.log(2) ** (1 / self.width)
        return scale * 0.5 * self.width / self.mu * (x / self.mu) ** (self.width - 1)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mu": self.mu, "width": self.width, "gamma": self.gamma, "lapse": self.lapse,
                "slope": self.slope, "n": self.n, "log_likelihood": self.log_likelihood}


def _core(kind: str, x: np.ndarray, mu: float, width: float) -> np.ndarray:
    if kind == "logistic":
        return 1.0 / (1.0 + np.exp(-np.clip((x - mu) / width, -60, 60)))
    return 1.0 - np.exp(-(np.maximum(x, 0.0) / mu) ** width)


def fit_psychometric(x: Any, y: Any, kind: str = "logistic", guess: float | None = None,
                     max_lapse: float = 0.25) -> PsychometricFit:
    """Maximum-likelihood fit of ``psi(x) = gamma + (1 - gamma - lapse) * F(x; mu, width)`` to 0/1 responses.

    Args:
        x: ``(n,)`` evidence per trial (signed towards option 1 for ``"logistic"`` on P(choice = 1); unsigned,
            >= 0, for ``"weibull"`` on P(correct)).
        y: ``(n,)`` 0/1 per trial (chose option 1, or correct).
        kind: ``"logistic"`` or ``"weibull"``.
        guess: fix ``gamma`` to this value (e.g. 0.5 for P(correct) with two alternatives; default for
            ``"weibull"``); None fits it as a lapse rate in [0, ``max_lapse``] (default for ``"logistic"``).
        max_lapse: upper bound of the fitted lapse rates.

    Returns:
        a :class:`PsychometricFit`.
    """
    from scipy.optimize import minimize

    if kind not in ("logistic", "weibull"):
        raise ValueError(f"fit_psychometric: kind = {kind!r}; expected 'logistic' or 'weibull'")
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or x.size < 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"fit_psychometric: x {x.shape} and y {y.shape} must be equal (n,) arrays of finite "
                         f"values, n >= 2")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("fit_psychometric: y must hold 0/1 responses")
    if not 0 <= max_lapse < 0.5:
        raise ValueError(f"fit_psychometric: max_lapse = {max_lapse!r} must be in [0, 0.5)")
    if kind == "weibull":
        if np.any(x < 0):
            raise ValueError("fit_psychometric: a Weibull fit needs unsigned evidence (x >= 0)")
        guess = 0.5 if guess is None else guess
    if guess is not None and not 0 <= guess < 1:
        raise ValueError(f"fit_psychometric: guess = {guess!r} must be in [0, 1)")
    spread = float(np.std(x)) or 1.0
    if kind == "logistic":
        starts = [(float(np.median(x)), spread / s) for s in (1.0, 4.0, 16.0)]
        bounds_core = [(float(x.min() - 2 * spread), float(x.max() + 2 * spread)), (spread * 1e-4, spread * 100)]
    else:
        positive = x[x > 0]
        mid = float(np.median(positive)) if positive.size else 1.0
        starts = [(mid / s, b) for s in (1.0, 3.0) for b in (1.0, 3.0)]
        bounds_core = [(mid * 1e-4, float(x.max()) * 100 or 1.0), (0.1, 20.0)]

    def unpack(theta: np.ndarray) -> tuple[float, float, float, float]:
        mu, width = theta[0], theta[1]
        gamma = guess if guess is not None else theta[2]
        lapse = theta[-1]
        return mu, width, gamma, lapse

    def nll(theta: np.ndarray) -> float:
        mu, width, gamma, lapse = unpack(theta)
        p = gamma + (1 - gamma - lapse) * _core(kind, x, mu, width)
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return -float(np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)))

    lapse_bounds = [(0.0, max_lapse)] * (1 if guess is not None else 2)
    best = None
    for start in starts:
        theta0 = np.array([*start, *([0.02] * len(lapse_bounds))])
        res = minimize(nll, theta0, method="L-BFGS-B", bounds=bounds_core + lapse_bounds)
        if best is None or res.fun < best.fun:
            best = res
    mu, width, gamma, lapse = unpack(best.x)
    return PsychometricFit(kind, float(mu), float(width), float(gamma), float(lapse), int(x.size), -float(best.fun))


def evidence_levels(x: Any) -> int:
    """Distinct finite evidence values in ``x`` (``(n,)``, as fitted: signed for P(choice = 1))."""
    x = np.asarray(x, dtype=float).ravel()
    return int(len(np.unique(x[np.isfinite(x)])))


def no_fit_reason(trials: pd.DataFrame, evidence: str, sides: Mapping[str, str] | None = None) -> str | None:
    """Why :func:`fit_trials` returns no fit for these trials (e.g. ``"2 evidence levels (a curve needs 3)"``), or
    None when it fits one."""
    xy = signed_evidence(trials, evidence, sides)
    if xy is None:
        return f"no '{evidence}', choice or target column"
    x, y, ylabel = xy
    levels = evidence_levels(x)
    if levels < MIN_EVIDENCE_LEVELS:
        return f"{levels} evidence level{'s' if levels != 1 else ''} (a curve needs {MIN_EVIDENCE_LEVELS})"
    if len(np.unique(y)) < 2:
        return "a single answer at every level"
    if not ylabel.startswith("P(choice") and np.any(x < 0):
        return "negative evidence on a P(correct) axis"
    return None


def fit_trials(trials: pd.DataFrame, evidence: str, max_lapse: float = 0.25,
               sides: Mapping[str, str] | None = None) -> PsychometricFit | None:
    """Fit the psychometric function of scored trials on the axes of :func:`signed_evidence`: a logistic with
    two lapse rates on P(choice = 1) for two-alternative tasks, else a Weibull on P(correct) with the guess rate
    1 / (number of targets). None when the trials cannot constrain a curve (fewer than
    :data:`MIN_EVIDENCE_LEVELS` evidence levels or a single answer; :func:`no_fit_reason` says which);
    ``sides`` as for :func:`signed_evidence`."""
    if no_fit_reason(trials, evidence, sides) is not None:
        return None
    x, y, ylabel = signed_evidence(trials, evidence, sides)
    if ylabel.startswith("P(choice"):
        return fit_psychometric(x, y, "logistic", max_lapse=max_lapse)
    n_targets = max(2, int(pd.Series(trials["target"]).nunique()))
    return fit_psychometric(x, y, "weibull", guess=1.0 / n_targets, max_lapse=max_lapse)


# ---------------------------------------------------------------------------------------------- a task's axes
@dataclass(frozen=True)
class PsychometricAxes:
    """What a task's psychometric curves are drawn against, from its class attributes or its ``spec()``.

    Attributes:
        evidence: the evidence columns, one panel each: the task's ``evidence_knob`` first, then the other
            columns its ``evidence_side`` names (ContextDependentDM: ``coherence_motion``, ``coherence_color``).
        sides: the task's ``evidence_side`` (see :func:`signed_evidence`).
        by: the trial parameter splitting each panel into one curve per value (None: one curve).
        labels: names of ``by``'s values, keyed by ``str(value)``.
    """

    evidence: tuple[str, ...]
    sides: Mapping[str, str]
    by: str | None = None
    labels: Mapping[str, str] | None = None

    def label(self, value: Any) -> str:
        """The legend name of one value of ``by`` (``"context 2"`` when the task names none)."""
        key = _value_key(value)
        return (self.labels or {}).get(key, f"{self.by} {key}")


def _value_key(value: Any) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value)


def psychometric_axes(task: Any) -> PsychometricAxes | None:
    """The :class:`PsychometricAxes` of a task class, a task, or a task's ``spec()`` dict (None when it declares
    no evidence knob). A spec journaled before it carried ``psychometric_by`` falls back on the registered task
    of that name."""
    if isinstance(task, Mapping):
        spec = dict(task)
        if "psychometric_by" not in spec:
            from .tasks.registry import get
            try:
                cls = get(str(spec.get("task") or spec.get("name")))
                spec.setdefault("evidence_knob", cls.evidence_knob)
                spec.update(psychometric_by=cls.psychometric_by,
                            psychometric_labels={str(k): v for k, v in dict(cls.psychometric_labels).items()})
            except (ValueError, ImportError):
                pass
        knob, sides = spec.get("evidence_knob"), dict(spec.get("evidence_side") or {})
        by, labels = spec.get("psychometric_by"), dict(spec.get("psychometric_labels") or {})
    else:
        from .tasks.base import evidence_sides
        cls = task if isinstance(task, type) else type(task)
        knob, sides = cls.evidence_knob, evidence_sides(cls)
        by, labels = cls.psychometric_by, {str(k): str(v) for k, v in dict(cls.psychometric_labels).items()}
    if not knob:
        return None
    evidence = (str(knob),) + tuple(str(c) for c in sides if c != knob)
    return PsychometricAxes(evidence, sides, str(by) if by else None, labels)


def split_trials(trials: pd.DataFrame, axes: PsychometricAxes | None) -> list[tuple[str | None, pd.DataFrame]]:
    """``[(label, rows), ...]``: the trials split by ``axes.by``'s values in sorted order, or ``[(None, trials)]``
    when there is no split (no axes, no ``by``, or a table without that column)."""
    if axes is None or axes.by is None or axes.by not in trials.columns or not len(trials):
        return [(None, trials)]
    return [(axes.label(value), rows) for value, rows in trials.groupby(axes.by, sort=True)]
