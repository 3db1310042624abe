"""Ordered training stages with graduation and regression, as animal trainers shape a task.

Each stage is a set of knob values (or ranges, or a staircase, or another task). The agent *graduates* to
the next stage when every criterion in the stage's ``graduate`` table holds:

- ``accuracy``: accuracy over a full sliding window of ``window`` trials of this stage;
- ``min_trials``: at least this many trials in the stage;
- ``per_condition``: accuracy per value of a trial parameter (e.g. each coherence), each over at least
  ``min_trials`` window trials, as the IBL rig checks each contrast before a mouse moves on
  (International Brain Laboratory 2021, eLife 10:e63711, https://doi.org/10.7554/eLife.63711);
- ``reversals``: the stage's staircase(s) made at least this many reversals.

It *regresses* (to the previous stage, or ``regress.to``) when the window is full and its accuracy falls
below ``regress.accuracy``, but only after ``regress.min_dwell`` trials in the stage, so it does not
oscillate. ``regress`` is set once for the policy and may be overridden (or switched off with null) per stage.
Graduating from the last stage completes the curriculum; a last stage without ``graduate`` runs until
``max_trials``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .base import register
from .spec import SpecError
from .staged import Stage, StagedPolicy, check_names, parse_regress, parse_stage

if TYPE_CHECKING:  # pragma: no cover
    from shaping.tasks import Task


@register
class StagesPolicy(StagedPolicy):
    """Named stages in order, with graduation criteria and regression on a performance drop.

    Args:
        task: the task shaped (its knobs validate the stages).
        stages: list of stage tables ``{"name", "knobs", "task", "graduate", "regress"}`` (see
            :mod:`shaping.policies.staged` and docs/policies.md).
        regress: ``{"accuracy": floor, "min_dwell": trials, "to": stage}`` for every stage (None: never).
        start: the first stage, by name or index.
        window: sliding-window size in trials, or ``{"size", "exclude_no_response", "exclude_correction"}``.
        max_trials: stop after this many trials, with an ``out_of_trials`` event (None: no budget).
        seed: see :func:`~shaping.policies.base.from_spec`.
    """

    kind = "stages"

    def __init__(self, task: "Task", stages: list, regress: dict | None = None, start: str | int = 0,
                 window: Any = 200, max_trials: int | None = None, *,
                 seed: int | np.random.Generator | None = None):
        super().__init__(task, window=window, max_trials=max_trials, seed=seed)
        if not isinstance(stages, (list, tuple)) or not stages:
            raise SpecError(f"stages = {stages!r} must be a non-empty list of stage tables")
        self._stages = [parse_stage(f"stages[{i}]", st, task) for i, st in enumerate(stages)]
        check_names("stages", self._stages)
        self.regress = None if regress is None else parse_regress("regress", regress)
        for i, st in enumerate(self._stages):
            rg = st.regress if st.regress is not None else self.regress
            if rg and rg.get("to") is not None:
                self.resolve_stage(rg["to"], f"{st.path}.regress.to" if st.regress else "regress.to")
        self.start = start
        self._setup(self.resolve_stage(start, "start"))

    def _config(self) -> dict:
        return {"stages": [s.spec() for s in self._stages], "regress": self.regress, "start": self.start,
                **self._base_config()}

    # ------------------------------------------------------------------ criteria
    def _regress_rule(self, stage: Stage) -> dict | None:
        rg = stage.regress if stage.regress is not None else self.regress
        return rg or None

    def graduation(self) -> str | None:
        """The reason the current stage's graduation criteria hold now, or None if they do not."""
        g = self._stages[self._index].graduate
        if g is None:
            return None
        path = f"stages[{self._index}].graduate"
        reasons = []
        if "min_trials" in g:
            if self._in_stage < g["min_trials"]:
                return None
            reasons.append(f"{self._in_stage} trials in stage >= min_trials {g['min_trials']}")
        if "accuracy" in g:
            acc = self.window.accuracy
            if not self.window.full or acc < g["accuracy"]:
                return None
            reasons.append(f"accuracy {acc:.3f} >= {g['accuracy']:g} over the last {self.window.size} trials")
        if "per_condition" in g:
            pc = g["per_condition"]
            table = self.window.per_condition()
            wanted = pc["values"] if pc["values"] is not None else sorted(table)
            if not wanted:
                return None
            for v in wanted:
                hit = [table[k] for k in table if np.isclose(k, v)]
                if not hit or hit[0][1] < pc["min_trials"] or hit[0][0] < pc["accuracy"]:
                    return None
            reasons.append(f"accuracy >= {pc['accuracy']:g} at every {pc['param']} in "
                           f"{', '.join(f'{v:g}' for v in wanted)} (>= {pc['min_trials']} trials each)")
        if "reversals" in g:
            if any(sc.reversals < g["reversals"] for sc in self._staircases.values()):
                return None
            reasons.append(f"staircase reversals >= {g['reversals']}")
        return f"{path}: " + "; ".join(reasons)

    def regression(self) -> tuple[int, str] | None:
        """``(target stage, reason)`` when the regression criterion holds now, else None."""
        rg = self._regress_rule(self._stages[self._index])
        if rg is None:
            return None
        to = self.resolve_stage(rg["to"]) if rg["to"] is not None else self._index - 1
        if to < 0 or to == self._index or not self.window.full or self._in_stage < rg["min_dwell"]:
            return None
        acc = self.window.accuracy
        if acc >= rg["accuracy"]:
            return None
        where = "regress" if self._stages[self._index].regress is None else f"stages[{self._index}].regress"
        return to, (f"{where}: accuracy {acc:.3f} < {rg['accuracy']:g} over the last {self.window.size} trials "
                    f"after {self._in_stage} trials in stage (min_dwell {rg['min_dwell']})")

    def _decide(self, scored: pd.DataFrame) -> list[dict]:
        reason = self.graduation()
        if reason is not None:
            if self._index == len(self._stages) - 1:
                self._complete = True
                return [self._event("complete", reason)]
            return [self._move("graduated", self._index + 1, reason)]
        back = self.regression()
        if back is not None:
            return [self._move("regressed", back[0], back[1])]
        return []
