"""Adaptive up/down staircases on one knob: transformed (Levitt 1971) and weighted (Kaernbach 1991).

- **Transformed up/down** (Levitt 1971, J Acoust Soc Am 49:467, https://doi.org/10.1121/1.1912375): the
  level is made harder after ``down`` consecutive correct trials and easier after ``up`` consecutive errors.
  It converges on the level where a step down is as likely as a step up: ``p**down = 0.5`` for 1-up/n-down
  (1-up/2-down -> 70.7 % correct, 1-up/3-down -> 79.4 %) and ``(1 - p)**up = 0.5`` for n-up/1-down.
- **Weighted up/down** (Kaernbach 1991, Percept Psychophys 49:227, https://doi.org/10.3758/BF03214307):
  a step ``step_down`` harder after each correct trial and ``step_up = step_down * target / (1 - target)``
  easier after each error; it converges on any ``target`` proportion correct.

Batches. An agent answers a whole batch at one level, so the staircase moves once per batch: the up/down
rule runs over the batch's trials in order (run counters carry over between batches) and the steps it calls
for are summed and applied at the end of the batch. A *reversal* is a batch whose net move goes the other way
from the previous non-zero move; the reversal's level is the level the batch ran at (the turning point).
With one trial per batch this is exactly the classic procedure, and for any batch size the fixed point is
unchanged, because trials within a batch are independent at the batch's level and the expected move is zero
exactly where the proportion correct equals the target. Larger batches move further per batch: scale
``step`` down (about ``1/sqrt(N_batch)``) or let ``shrink`` reduce it at each reversal.

Steps live on a ``linear`` scale (knob units) or a ``log`` scale (log10 units: ``step = 0.1`` multiplies the
level by 1.26). "Down"/"harder" follows the knob's ``easier`` direction, so the same spec works for
coherence (higher is easier) and stimulus noise (lower is easier). The threshold estimate is the mean
(on the staircase's scale) of the levels at the last ``estimate_reversals`` reversals.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from shaping.tasks.knobs import Knob

from . import spec as spec_rules
from .spec import SpecError

STAIRCASE_KEYS = ("start", "method", "up", "down", "target", "step", "scale", "shrink", "min_step", "bounds",
                  "max_reversals", "estimate_reversals")


class Staircase:
    """One adaptive staircase on one knob (see the module docstring for the procedures and their sources).

    Args:
        knob: the task's :class:`~shaping.tasks.knobs.Knob` it moves.
        start: first level, in knob units (default: the knob's default if it is a number, else its easiest
            bound).
        method: ``"transformed"`` (Levitt) or ``"weighted"`` (Kaernbach).
        up, down: transformed rule: easier after ``up`` consecutive errors, harder after ``down``
            consecutive correct; one of them must be 1.
        target: weighted rule: the proportion correct it converges on, in (0, 1).
        step: harder step (knob units on a linear scale, log10 units on a log scale); default range/20
            (linear) or 0.1 (log). The transformed rule's easier step is the same; the weighted rule's is
            ``step * target / (1 - target)``.
        scale: ``"linear"`` or ``"log"``.
        shrink: factor applied to the steps at each reversal (1: constant steps, as in Levitt 1971).
        min_step: the harder step never shrinks below it (default ``step / 8``).
        bounds: ``[low, high]`` in knob units (default: the knob's range; a log scale needs ``low > 0``).
        max_reversals: the staircase is done after this many reversals (None: never).
        estimate_reversals: reversals averaged for the threshold estimate.
        path: where the staircase sits in the policy spec (for error messages).
    """

    def __init__(self, knob: Knob, start: float | None = None, method: str = "transformed",
                 up: int | None = None, down: int | None = None, target: float | None = None,
                 step: float | None = None, scale: str = "linear",
                 shrink: float = 1.0, min_step: float | None = None, bounds: list | None = None,
                 max_reversals: int | None = None, estimate_reversals: int = 6, path: str = "staircase"):
        j = lambda key: spec_rules.join(path, key)  # noqa: E731
        if knob.easier not in ("higher", "lower"):
            raise SpecError(f"{path}: knob {knob.name!r} has no easier direction (easier = {knob.easier!r}), so "
                            f"a staircase cannot tell harder from easier; staircase a difficulty knob")
        self.knob = knob
        self.path = path
        self.method = spec_rules.choice(j("method"), method, ("transformed", "weighted"))
        self.scale = spec_rules.choice(j("scale"), scale, ("linear", "log"))
        if self.method == "weighted" and (up is not None or down is not None):
            raise SpecError(f"{j('up')}/{j('down')} = {up!r}/{down!r}: the weighted rule has no runs; its steps "
                            f"follow from target (drop up and down, or use method = 'transformed')")
        self.up = spec_rules.integer(j("up"), 1 if up is None else up)
        self.down = spec_rules.integer(j("down"), 2 if down is None else down)
        if self.method == "transformed":
            if self.up != 1 and self.down != 1:
                raise SpecError(f"{j('up')} = {self.up}, {j('down')} = {self.down}: a transformed rule needs "
                                f"up = 1 or down = 1 (Levitt 1971's rules with a known target)")
            if target is not None:
                raise SpecError(f"{j('target')} = {target!r}: a transformed rule's target follows from up/down; "
                                f"use method = 'weighted' for an arbitrary target")
            self.target_p = 0.5 ** (1 / self.down) if self.up == 1 else 1 - 0.5 ** (1 / self.up)
        else:
            if target is None:
                raise SpecError(f"{j('target')} is required with method = 'weighted'")
            self.target_p = spec_rules.number(j("target"), target, 0.0, 1.0)
            if not 0.0 < self.target_p < 1.0:
                raise SpecError(f"{j('target')} = {target!r} must lie strictly between 0 and 1")
        lo, hi = (knob.low, knob.high) if bounds is None else self._bounds(j("bounds"), bounds)
        if lo < knob.low or hi > knob.high:
            raise SpecError(f"{j('bounds')} = [{lo:g}, {hi:g}] leaves knob {knob.name!r}'s range "
                            f"[{knob.low:g}, {knob.high:g}]")
        if self.scale == "log" and lo <= 0:
            raise SpecError(f"{j('bounds')}: a log-scale staircase needs a positive lower bound; knob "
                            f"{knob.name!r} starts at {lo:g}; give bounds = [low > 0, high]")
        self.bounds = [float(lo), float(hi)]
        if start is None:
            start = knob.default if isinstance(knob.default, (int, float)) and not isinstance(knob.default, bool) \
                else knob.easier_of(lo, hi)
        self.start = spec_rules.number(j("start"), start, lo, hi)
        span = (self._u(hi) - self._u(lo))
        self.step = spec_rules.number(j("step"),
                                      step if step is not None else (0.1 if self.scale == "log" else span / 20),
                                      0.0)
        if self.step <= 0:
            raise SpecError(f"{j('step')} = {self.step:g} must be positive")
        self.shrink = spec_rules.number(j("shrink"), shrink, 0.0, 1.0)
        if self.shrink <= 0:
            raise SpecError(f"{j('shrink')} = {self.shrink:g} must be in (0, 1]")
        self.min_step = spec_rules.number(j("min_step"), min_step if min_step is not None else self.step / 8, 0.0,
                                 self.step)
        self.max_reversals = spec_rules.optional(spec_rules.integer, j("max_reversals"), max_reversals)
        self.estimate_reversals = spec_rules.integer(j("estimate_reversals"), estimate_reversals)
        # +1 moves the level towards harder on the staircase's scale
        self._harder = -1.0 if knob.easier == "higher" else 1.0
        self._ratio = 1.0 if self.method == "transformed" else self.target_p / (1 - self.target_p)
        self.reset()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], knob: Knob, path: str = "staircase") -> "Staircase":
        """Build from a spec table (the keys of :data:`STAIRCASE_KEYS`)."""
        m = spec_rules.mapping(path, spec, STAIRCASE_KEYS)
        return cls(knob, **m, path=path)

    def get_config(self) -> dict:
        weighted = self.method == "weighted"
        return {"start": self.start, "method": self.method, "up": None if weighted else self.up,
                "down": None if weighted else self.down,
                "target": self.target_p if self.method == "weighted" else None, "step": self.step,
                "scale": self.scale, "shrink": self.shrink, "min_step": self.min_step, "bounds": list(self.bounds),
                "max_reversals": self.max_reversals, "estimate_reversals": self.estimate_reversals}

    @staticmethod
    def _bounds(path: str, bounds: Any) -> tuple[float, float]:
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise SpecError(f"{path} = {bounds!r} must be [low, high]")
        lo = spec_rules.number(spec_rules.join(path, 0), bounds[0])
        hi = spec_rules.number(spec_rules.join(path, 1), bounds[1])
        if not lo < hi:
            raise SpecError(f"{path} = {list(bounds)!r}: low must be < high")
        return lo, hi

    # ------------------------------------------------------------------ scale
    def _u(self, x: float) -> float:
        return math.log10(x) if self.scale == "log" else float(x)

    def _x(self, u: float) -> float:
        x = 10.0 ** u if self.scale == "log" else u
        x = min(max(x, self.bounds[0]), self.bounds[1])  # 10**log10(x) may round just outside
        return float(round(x)) if self.knob.integer else float(x)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Back to the start level with the initial step, no reversals."""
        self._level = self._u(self.start)
        self._factor = 1.0
        self._run_correct = 0
        self._run_error = 0
        self._last = 0
        self._reversals = 0
        self._reversal_levels: list[float] = []
        self._generation = 0  # counts levels set by hand (set_value): batches drawn before one do not step

    def state(self) -> dict:
        return {"level": self._level, "factor": self._factor, "run_correct": self._run_correct,
                "run_error": self._run_error, "last": self._last, "reversals": self._reversals,
                "reversal_levels": list(self._reversal_levels), "generation": self._generation}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._level = float(state["level"])
        self._factor = float(state["factor"])
        self._run_correct = int(state["run_correct"])
        self._run_error = int(state["run_error"])
        self._last = int(state["last"])
        self._reversals = int(state["reversals"])
        self._reversal_levels = [float(v) for v in state["reversal_levels"]]
        self._generation = int(state.get("generation", 0))

    # ------------------------------------------------------------------ reports
    @property
    def value(self) -> float:
        """The level the next batch runs at, in knob units."""
        return self._x(self._level)

    @property
    def target(self) -> float:
        """The proportion correct the staircase converges on."""
        return self.target_p

    @property
    def reversals(self) -> int:
        return self._reversals

    @property
    def reversal_levels(self) -> list[float]:
        """Levels (knob units) at the last ``estimate_reversals`` reversals."""
        return [self._x(u) for u in self._reversal_levels]

    @property
    def threshold(self) -> float | None:
        """Mean level at the last ``estimate_reversals`` reversals (on the staircase's scale; not rounded for an
        integer knob); None before one."""
        if not self._reversal_levels:
            return None
        u = float(np.mean(self._reversal_levels))
        return float(min(max(10.0 ** u if self.scale == "log" else u, self.bounds[0]), self.bounds[1]))

    @property
    def current_step(self) -> float:
        """The harder step now (after shrinking)."""
        return max(self.step * self._factor, self.min_step)

    @property
    def done(self) -> bool:
        return self.max_reversals is not None and self._reversals >= self.max_reversals

    def set_value(self, value: float) -> None:
        """Put the level at ``value`` (knob units), e.g. a manual override; batches drawn before it will not
        move the staircase (see :meth:`update`)."""
        lo, hi = self.bounds
        if not lo <= value <= hi:
            raise ValueError(f"{self.path}: level {value:g} is outside the staircase's bounds [{lo:g}, {hi:g}]")
        self._level = self._u(value)
        self._generation += 1

    def drawn(self) -> dict:
        """What a batch drawn now records of the staircase: ``{"level"`` (knob units, not rounded for an integer
        knob), ``"generation"}``; :meth:`update` takes them back when the batch is scored."""
        u = self._level
        return {"level": float(10.0 ** u if self.scale == "log" else u), "generation": self._generation}

    def describe(self) -> str:
        if self.method == "weighted":
            rule = f"weighted up/down (Kaernbach 1991) -> {self.target_p:.1%}"
        else:
            rule = f"{self.up}-up/{self.down}-down (Levitt 1971) -> {self.target_p:.1%}"
        return f"staircase on {self.knob.name}, {rule}"

    # ------------------------------------------------------------------ the rule
    def update(self, correct: np.ndarray, level: float | None = None, generation: int | None = None) -> dict:
        """Apply the rule to one batch's outcomes (booleans, in trial order).

        Args:
            correct: the batch's outcomes.
            level: the level (knob units) the batch ran at; None: the current level. An agent that keeps
                batches in flight answers batches drawn before the last updates, and a step is taken from the
                level the trials ran at, not from where the staircase has moved since (otherwise the lag
                overshoots and biases the threshold: the updates become interleaved staircases, each
                sequential). A reversal is recorded at that level too.
            generation: the :meth:`drawn` generation of the batch; a batch drawn before the level was last set
                by hand changes nothing (the operator's level stands).

        Returns ``{"old", "new", "ran", "harder", "easier", "reversal"}``: levels before/after and the level
        run (knob units), the number of harder and easier steps the rule called for, and whether this batch
        was a reversal.
        """
        correct = np.asarray(correct, dtype=bool)
        old = self.value
        lo, hi = self._u(self.bounds[0]), self._u(self.bounds[1])
        ran = self._level if level is None else min(max(self._u(float(level)), lo), hi)
        if generation is not None and generation != self._generation:
            return {"old": old, "new": old, "ran": self._x(ran), "harder": 0, "easier": 0, "reversal": False}
        if self.method == "weighted":
            harder = int(correct.sum())
            easier = int(correct.size - harder)
        else:
            harder = easier = 0
            run_c, run_e = self._run_correct, self._run_error
            for ok in correct.tolist():
                if ok:
                    run_c, run_e = run_c + 1, 0
                    if run_c >= self.down:
                        harder, run_c = harder + 1, 0
                else:
                    run_c, run_e = 0, run_e + 1
                    if run_e >= self.up:
                        easier, run_e = easier + 1, 0
            self._run_correct, self._run_error = run_c, run_e
        net = harder - easier * self._ratio  # in units of the harder step
        reversal = False
        direction = int(np.sign(round(net, 12)))
        if direction:
            if self._last and direction != self._last:
                reversal = True
                self._reversals += 1
                self._reversal_levels = (self._reversal_levels + [ran])[-self.estimate_reversals:]
                self._factor *= self.shrink
            self._last = direction
            self._level = min(max(ran + self._harder * net * self.current_step, lo), hi)
        return {"old": old, "new": self.value, "ran": self._x(ran), "harder": harder, "easier": easier,
                "reversal": reversal}
