"""Difficulty knobs: the trial parameters a curriculum may move.

A knob is declared by a task (name, unit, allowed range, which direction is easier, default) and set by a
policy. A knob *value* is one of

- a number: every trial of the batch uses it (what a staircase sets);
- a list of numbers: each trial draws one of them uniformly (what a stage sets, e.g. the IBL contrast set);
- ``{"uniform": [low, high]}``: each trial draws uniformly from the interval.

Every number in a value must lie inside the knob's range; anything else is a ``ValueError`` that names the
task, the knob and the range.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping, Sequence, Union

import numpy as np

KnobValue = Union[float, int, Sequence[float], Mapping[str, Sequence[float]]]


@dataclass(frozen=True)
class Knob:
    """One difficulty knob of a task.

    Args:
        name: trial-parameter name, e.g. ``"coherence"``.
        low, high: the allowed range (inclusive), in ``unit``.
        default: the value used when no policy sets one (a number, a list of choices or a uniform range).
        easier: ``"higher"`` if larger values make the task easier (coherence), ``"lower"`` otherwise
            (stimulus noise, delay duration, catch-trial fraction), None for a knob that is not a difficulty
            (e.g. ``p_choice1``, the side probability that bias correction moves).
        unit: ``"ms"``, ``"fraction"``, ``"count"``, ...
        integer: values are whole numbers (e.g. number of distractors).
        doc: one line a neuroscientist would write about it.
    """

    name: str
    low: float
    high: float
    default: Any
    easier: Literal["higher", "lower"] | None
    unit: str = ""
    integer: bool = False
    doc: str = ""

    def __post_init__(self) -> None:
        if self.easier not in ("higher", "lower", None):
            raise ValueError(f"knob {self.name!r}: easier must be 'higher', 'lower' or None, got {self.easier!r}")
        if not self.low <= self.high:
            raise ValueError(f"knob {self.name!r}: low={self.low} must be <= high={self.high}")

    # ------------------------------------------------------------------ validation
    def _numbers(self, value: Any) -> list[float]:
        if isinstance(value, Mapping):
            if set(value) != {"uniform"} or not isinstance(value["uniform"], (list, tuple)) \
                    or len(value["uniform"]) != 2:
                raise TypeError("a dict value must be {'uniform': [low, high]}")
            lo, hi = (float(v) for v in value["uniform"])
            if not lo <= hi:
                raise TypeError("the uniform range's low must be <= its high")
            return [lo, hi]
        if isinstance(value, (list, tuple, np.ndarray)):
            if len(value) == 0:
                raise TypeError("a list of choices must not be empty")
            return [float(v) for v in value]
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return [float(value)]
        raise TypeError(f"expected a number, a list of numbers or {{'uniform': [low, high]}}, got {value!r}")

    def contains(self, value: Any) -> bool:
        """True when ``value`` is a well-formed knob value inside the range."""
        try:
            nums = self._numbers(value)
        except TypeError:
            return False
        return all(np.isfinite(v) and self.low <= v <= self.high for v in nums)

    def validate(self, value: Any, task: str = "task") -> Any:
        """Return ``value`` normalised to plain Python data, or raise ``ValueError`` naming task, knob, range."""
        try:
            nums = self._numbers(value)
        except TypeError as err:
            raise ValueError(f"{task}: knob {self.name!r} got {value!r}: {err}") from None
        for v in nums:
            if not (np.isfinite(v) and self.low <= v <= self.high):
                raise ValueError(
                    f"{task}: knob {self.name!r} = {v:g} is outside its range "
                    f"[{self.low:g}, {self.high:g}] {self.unit}".rstrip()
                )
            if self.integer and v != round(v):
                raise ValueError(f"{task}: knob {self.name!r} = {v:g} must be a whole number")
        if isinstance(value, Mapping):
            return {"uniform": nums}
        if isinstance(value, (list, tuple, np.ndarray)):
            return nums
        return nums[0]

    def sample(self, value: Any, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` per-trial values under a (validated) knob value."""
        if isinstance(value, Mapping):
            lo, hi = value["uniform"]
            if self.integer:  # every whole number in [lo, hi] equally likely (rounding halves the ends)
                out = rng.integers(int(lo), int(hi) + 1, size=n).astype(float)
            else:
                out = rng.uniform(lo, hi, size=n)
        elif isinstance(value, (list, tuple, np.ndarray)):
            out = np.asarray(value, dtype=float)[rng.integers(0, len(value), size=n)]
        else:
            out = np.full(n, float(value))
        return out

    def easier_of(self, a: float, b: float) -> float:
        """The easier of two scalar values."""
        if self.easier is None:
            raise ValueError(f"knob {self.name!r} is not a difficulty knob (easier=None)")
        return max(a, b) if self.easier == "higher" else min(a, b)

    def to_dict(self) -> dict:
        return asdict(self)
