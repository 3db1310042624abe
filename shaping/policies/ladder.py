"""One knob stepped up a ladder of levels, one stage per level: the curriculum of memory-length studies.

Khajehabdollahi et al. (2024, ICLR, "Emergent mechanisms for long timescales depend on training curriculum
and affect performance in memory tasks", https://arxiv.org/abs/2309.12927) train networks on N-parity and N-DMS
with N raised by one each time accuracy passes 98 %: a ladder on the knob ``N``. With a multi-head task the same
ladder adds one head per rung (the task's ``heads = "multi"``). The spec is short where the equivalent
``stages`` list would be one table per rung; it expands into exactly that list, so graduation, regression,
overrides and the journal work as for ``stages``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from . import spec as spec_rules
from .base import register
from .spec import SpecError
from .stages import StagesPolicy

if TYPE_CHECKING:  # pragma: no cover
    from shaping.tasks import Task

LEVEL_KEYS = ("from", "to", "step")


def ladder_levels(path: str, levels: Any) -> list:
    """The rungs: a list of values as given, or ``{"from": a, "to": b, "step": s}`` (both ends included; ``step``
    default 1), each a number."""
    if isinstance(levels, Mapping):
        m = spec_rules.mapping(path, levels, LEVEL_KEYS)
        if "from" not in m or "to" not in m:
            raise SpecError(f"{path} = {dict(levels)!r} needs 'from' and 'to' (and optionally 'step')")
        lo, hi = spec_rules.number(spec_rules.join(path, "from"), m["from"]), \
            spec_rules.number(spec_rules.join(path, "to"), m["to"])
        step = spec_rules.number(spec_rules.join(path, "step"), m.get("step", 1))
        if step == 0 or (hi - lo) / step < 0:
            raise SpecError(f"{path}: step {step:g} never goes from {lo:g} to {hi:g}")
        count = int(np.floor((hi - lo) / step + 1e-9)) + 1
        values = [lo + i * step for i in range(count)]
        whole = all(float(v).is_integer() for v in (lo, step))
        return [int(round(v)) if whole else float(v) for v in values]
    if not isinstance(levels, (list, tuple)) or not levels:
        raise SpecError(f"{path} = {levels!r} must be a non-empty list of values or {{from, to, step}}")
    return list(levels)


@register
class LadderPolicy(StagesPolicy):
    """One stage per level of ``knob``, in order, each graduating on the same ``graduate`` criteria; graduating
    from the last level completes the curriculum.

    Args:
        task: the task shaped (its knob ``knob`` validates every level).
        knob: the knob stepped (e.g. ``"N"``, the memory length).
        levels: the rungs, a list (``[2, 3, 5, 8]``) or ``{"from": 2, "to": 30, "step": 1}``.
        graduate: the criteria of every rung (a stage's ``graduate`` table, e.g. ``{"accuracy": 0.98}``); None:
            the first rung runs until ``max_trials``.
        knobs: the other knobs, the same on every rung.
        regress: as for ``stages`` (back one rung on a performance drop); None: never.
        window: sliding-window size in trials (the accuracy the criteria read).
        max_trials: stop after this many trials, with an ``out_of_trials`` event (None: no budget).
        seed: see :func:`~shaping.policies.base.from_spec`.

    Stages are named ``"<knob>=<level>"`` (``"N=5"``).
    """

    kind = "ladder"

    def __init__(self, task: "Task", knob: str, levels: Any, graduate: Mapping[str, Any] | None = None,
                 knobs: Mapping[str, Any] | None = None, regress: dict | None = None, window: Any = 200,
                 max_trials: int | None = None, *, seed: int | np.random.Generator | None = None):
        if not isinstance(knob, str) or not knob:
            raise SpecError(f"knob = {knob!r} must name one of the task's knobs")
        others = dict(spec_rules.mapping("knobs", knobs or {}))
        if knob in others:
            raise SpecError(f"knobs.{knob}: the ladder sets {knob!r} on every rung; leave it out of knobs")
        values = ladder_levels("levels", levels)
        stages = []
        for value in values:
            stage: dict = {"name": f"{knob}={value:g}" if isinstance(value, (int, float)) else f"{knob}={value}",
                           "knobs": {**others, knob: value}}
            if graduate is not None:
                stage["graduate"] = dict(graduate)
            stages.append(stage)
        super().__init__(task, stages, regress=regress, window=window, max_trials=max_trials, seed=seed)
        self.knob, self.levels, self.graduate, self.other_knobs = knob, levels, graduate, others

    def _config(self) -> dict:
        return {"knob": self.knob, "levels": spec_rules.plain(self.levels),
                "graduate": None if self.graduate is None else dict(self.graduate), "knobs": dict(self.other_knobs),
                "regress": self.regress, **self._base_config()}
