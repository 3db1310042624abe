"""No shaping: the final task from the first trial (the control condition every shaping study needs)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import register
from .staged import StagedPolicy, parse_stage

if TYPE_CHECKING:  # pragma: no cover
    from shaping.tasks import Task


@register
class FixedPolicy(StagedPolicy):
    """One stage with fixed knob values for the whole run; stops after ``max_trials`` (if given).

    Args:
        task: the task (its knobs validate ``knobs``).
        knobs: knob values (default: the task's own).
        stage: the stage's name.
        window: accuracy window (reported, never acted on).
        max_trials: stop after this many trials, with an ``out_of_trials`` event (None: never).
        seed: see :func:`~shaping.policies.base.from_spec`.
    """

    kind = "fixed"

    def __init__(self, task: "Task", knobs: dict | None = None, stage: str = "final", window: Any = 200,
                 max_trials: int | None = None, *, seed: int | np.random.Generator | None = None):
        super().__init__(task, window=window, max_trials=max_trials, seed=seed)
        self._stages = [parse_stage("", {"name": stage, "knobs": knobs or {}}, task)]
        self._setup()

    def _config(self) -> dict:
        st = self._stages[0]
        return {"knobs": dict(st.knobs), "stage": st.name, **self._base_config()}
