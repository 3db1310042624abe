"""A staircase policy: one adaptive up/down staircase on one knob (the others fixed), e.g. to measure a
psychometric threshold or to hold an agent at a fixed proportion correct while it trains.

The procedures (transformed up/down, Levitt 1971: 1-up/2-down -> 70.7 %, 1-up/3-down -> 79.4 %; weighted
up/down, Kaernbach 1991: any target) and their batch semantics are described in
:mod:`shaping.policies.updown`. The policy completes after ``max_reversals`` reversals (or ``max_trials``
trials); the ``complete`` event carries the threshold estimate.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .base import register
from .spec import SpecError
from .staged import StagedPolicy, parse_stage
from .updown import STAIRCASE_KEYS, Staircase

if TYPE_CHECKING:  # pragma: no cover
    from shaping.tasks import Task


@register
class StaircasePolicy(StagedPolicy):
    """One staircase on ``knob``; the other knobs fixed at ``knobs``.

    Args:
        task: the task (its knob ``knob`` is moved).
        knob: the knob's name.
        start, method, up, down, target, step, scale, shrink, min_step, bounds, max_reversals,
            estimate_reversals: the staircase (see :class:`~shaping.policies.updown.Staircase`).
        knobs: fixed values of the other knobs.
        stage: the stage's name.
        window: accuracy window (reported).
        max_trials: stop after this many trials, with an ``out_of_trials`` event (None: never).
        seed: see :func:`~shaping.policies.base.from_spec`.
    """

    kind = "staircase"

    def __init__(self, task: "Task", knob: str, start: float | None = None, method: str = "transformed",
                 up: int | None = None, down: int | None = None, target: float | None = None,
                 step: float | None = None, scale: str = "linear", shrink: float = 1.0, min_step: float | None = None,
                 bounds: list | None = None, max_reversals: int | None = None, estimate_reversals: int = 6,
                 knobs: dict | None = None, stage: str = "staircase", window: Any = 200,
                 max_trials: int | None = None, *, seed: int | np.random.Generator | None = None):
        super().__init__(task, window=window, max_trials=max_trials, seed=seed)
        if not isinstance(knob, str):
            raise SpecError(f"knob = {knob!r} must be the name of one of the task's knobs")
        if knob in (knobs or {}):
            raise SpecError(f"knobs.{knob}: {knob!r} is the staircase's knob; it cannot also be fixed")
        args = dict(start=start, method=method, up=up, down=down, target=target, step=step, scale=scale,
                    shrink=shrink, min_step=min_step, bounds=bounds, max_reversals=max_reversals,
                    estimate_reversals=estimate_reversals)
        assert set(args) == set(STAIRCASE_KEYS)
        try:
            task.knob(knob)
        except ValueError as err:
            raise SpecError(f"knob = {knob!r}: {err}") from None
        stage_spec = {"name": stage, "knobs": {**(knobs or {}), knob: {"staircase": args}}}
        try:
            self._stages = [parse_stage("", stage_spec, task)]
        except SpecError as err:  # report top-level keys, as the user wrote them
            raise SpecError(str(err).replace(f"knobs.{knob}.staircase.", "")) from None
        self.knob = knob
        self._setup()

    @property
    def staircase(self) -> Staircase:
        return self._staircases[self.knob]

    @property
    def threshold(self) -> float | None:
        """The staircase's threshold estimate (knob units)."""
        return self.staircase.threshold

    def _config(self) -> dict:
        st = self._stages[0]
        return {"knob": self.knob, **st.staircases[self.knob], "knobs": dict(st.knobs), "stage": st.name,
                **self._base_config()}

    def _decide(self, scored: pd.DataFrame) -> list[dict]:
        sc = self.staircase
        if sc.done:
            self._complete = True
            return [self._event("complete", f"max_reversals: {sc.reversals} reversals >= {sc.max_reversals}",
                                knob=self.knob, threshold=sc.threshold, target=sc.target)]
        return []
