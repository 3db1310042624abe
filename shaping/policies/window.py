"""Sliding-window accuracy over the last N scored trials.

Accuracy is ``correct / (correct + error + no_response)`` by default. ``exclude_no_response`` drops
no-response trials (accuracy over responded trials, as most 2AFC rigs report it) and ``exclude_correction``
drops correction trials (the ``correction`` column of a scored batch). Excluded trials do not enter the
window at all, so the window always holds the last ``size`` *eligible* trials.

A window may also keep one trial parameter per trial (``condition``, e.g. ``"coherence"``) to give
accuracy per condition, as the IBL rig checks performance per contrast before a mouse moves on.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import spec as spec_rules

WINDOW_KEYS = ("size", "exclude_no_response", "exclude_correction")


def correction_flags(scored: pd.DataFrame) -> np.ndarray:
    """Boolean ``(n,)``: the correction trials of a scored batch (none without a ``correction`` column)."""
    if "correction" not in scored.columns:
        return np.zeros(len(scored), dtype=bool)
    col = scored["correction"]
    if col.dtype == bool:
        return col.to_numpy()
    return col.astype("boolean").fillna(False).to_numpy(dtype=bool)


def eligible(scored: pd.DataFrame, exclude_no_response: bool = False,
             exclude_correction: bool = False) -> np.ndarray:
    """Boolean ``(n,)``: which rows of a scored batch count towards accuracy."""
    keep = np.ones(len(scored), dtype=bool)
    if exclude_no_response:
        keep &= scored["outcome"].to_numpy() != "no_response"
    if exclude_correction:
        keep &= ~correction_flags(scored)
    return keep


def batch_accuracy(scored: pd.DataFrame, exclude_no_response: bool = False,
                   exclude_correction: bool = False) -> float | None:
    """Fraction correct of one scored batch (None when no trial counts)."""
    keep = eligible(scored, exclude_no_response, exclude_correction)
    if not keep.any():
        return None
    return float(np.mean(scored["outcome"].to_numpy()[keep] == "correct"))


class AccuracyWindow:
    """Accuracy over the last ``size`` eligible trials.

    Args:
        size: number of trials in the window.
        exclude_no_response: leave no-response trials out (default: they count as not correct).
        exclude_correction: leave correction trials out (default: they count).
        condition: a trial parameter kept per trial for :meth:`per_condition` (None: none kept).
    """

    def __init__(self, size: int = 200, exclude_no_response: bool = False, exclude_correction: bool = False,
                 condition: str | None = None):
        self.size = spec_rules.integer("window.size", size)
        self.exclude_no_response = bool(exclude_no_response)
        self.exclude_correction = bool(exclude_correction)
        self.condition = condition
        self._correct = np.zeros(0, dtype=bool)
        self._values = np.zeros(0, dtype=float)

    @classmethod
    def from_spec(cls, value: Any, path: str = "window", condition: str | None = None) -> "AccuracyWindow":
        """Build from a spec value: an int (the size) or ``{"size", "exclude_no_response", "exclude_correction"}``."""
        if isinstance(value, Mapping):
            m = spec_rules.mapping(path, value, WINDOW_KEYS)
            return cls(spec_rules.integer(spec_rules.join(path, "size"), m.get("size", 200)),
                       bool(m.get("exclude_no_response", False)), bool(m.get("exclude_correction", False)),
                       condition)
        return cls(spec_rules.integer(path, value), condition=condition)

    def get_config(self) -> dict:
        return {"size": self.size, "exclude_no_response": self.exclude_no_response,
                "exclude_correction": self.exclude_correction}

    def eligible(self, scored: pd.DataFrame) -> np.ndarray:
        return eligible(scored, self.exclude_no_response, self.exclude_correction)

    def push(self, scored: pd.DataFrame) -> None:
        """Add a scored batch (the oldest trials fall out)."""
        keep = self.eligible(scored)
        correct = scored["outcome"].to_numpy()[keep] == "correct"
        if self.condition is not None:
            if self.condition not in scored.columns:
                raise ValueError(f"scored trials have no column {self.condition!r} for per-condition accuracy; "
                                 f"columns are {', '.join(map(str, scored.columns))}")
            values = scored[self.condition].to_numpy(dtype=float)[keep]
        else:
            values = np.full(len(correct), np.nan)
        self._correct = np.concatenate([self._correct, correct])[-self.size:]
        self._values = np.concatenate([self._values, values])[-self.size:]

    def clear(self) -> None:
        self._correct = self._correct[:0]
        self._values = self._values[:0]

    @property
    def n(self) -> int:
        """Trials in the window now."""
        return int(self._correct.size)

    @property
    def full(self) -> bool:
        return self.n >= self.size

    @property
    def accuracy(self) -> float | None:
        """Fraction correct in the window (None while empty)."""
        return float(self._correct.mean()) if self.n else None

    def per_condition(self) -> dict[float, tuple[float, int]]:
        """``{condition value: (accuracy, trials)}`` over the window."""
        if self.condition is None or not self.n:
            return {}
        values, inverse = np.unique(self._values, return_inverse=True)
        counts = np.bincount(inverse, minlength=values.size)
        hits = np.bincount(inverse, weights=self._correct.astype(float), minlength=values.size)
        return {float(v): (float(h / c), int(c)) for v, h, c in zip(values, hits, counts)}

    def state(self) -> dict:
        missing = np.isnan(self._values)
        if missing.all():  # no condition kept
            values = [None] * self._values.size
        else:
            values = [None if m else v for v, m in zip(self._values.tolist(), missing.tolist())]
        return {"correct": self._correct.astype(int).tolist(), "values": values}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._correct = np.asarray(state["correct"], dtype=bool)
        self._values = np.asarray([np.nan if v is None else v for v in state["values"]], dtype=float)

    def __repr__(self) -> str:
        acc = "None" if self.accuracy is None else f"{self.accuracy:.3f}"
        return f"AccuracyWindow(size={self.size}, n={self.n}, accuracy={acc})"
