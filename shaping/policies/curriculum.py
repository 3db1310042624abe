"""PsychRNN's ``Curriculum`` as a policy, so a PsychRNN curriculum ports over as one object.

PsychRNN 1.0.0 (Ehrlich et al. 2021, eNeuro, https://doi.org/10.1523/ENEURO.0427-20.2020;
``psychrnn/backend/curriculum.py``): a list of tasks, one accuracy threshold each (default 0.9); every
``metric_epoch`` training batches (default 10; PsychRNN counts batches from 1 and tests when
``epoch % metric_epoch == 0``) the current task's accuracy on one batch is compared with its threshold and,
if ``accuracy >= threshold``, training moves to the next task; after the last it stops.

Here the batch is the one just scored (PsychRNN draws a fresh one for the test), its accuracy is the fraction
correct of ``task.score`` (PsychRNN's default ``accuracy_function`` is the same argmax rule), and the batch
counter is the number of ``update`` calls. A PsychRNN curriculum

    Curriculum([PerceptualDiscrimination(coherence=0.7), PerceptualDiscrimination(coherence=0.1)],
               thresholds=[0.9, 0.8], metric_epoch=10)

is the spec

    {"kind": "curriculum", "metric_epoch": 10, "thresholds": [0.9, 0.8],
     "tasks": [{"name": "PerceptualDiscrimination", "coherence": 0.7},
               {"name": "PerceptualDiscrimination", "coherence": 0.1}]}
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import spec as spec_rules
from .base import register
from .spec import SpecError
from .staged import StagedPolicy, check_names, parse_stage
from .window import batch_accuracy

if TYPE_CHECKING:  # pragma: no cover
    from shaping.tasks import Task


@register
class CurriculumPolicy(StagedPolicy):
    """A list of tasks with one accuracy threshold each, checked every ``metric_epoch`` batches (PsychRNN).

    Args:
        task: the task of entries that name none.
        tasks: list of entries; an entry is a task spec ``{"name": registry name, **constructor kwargs}``,
            optionally with ``"knobs"`` (knob values on top) and ``"stage"`` (a label; default
            ``"<index>:<task name>"``). An entry without ``"name"`` runs ``task`` with its ``"knobs"``.
        thresholds: accuracy to reach on each task (default 0.9 each, as PsychRNN).
        metric_epoch: check every this many batches (default 10, as PsychRNN).
        window: accuracy window (reported; the decision uses the checked batch, as PsychRNN does), also
            setting whether no-response and correction trials count.
        max_trials: stop after this many trials, with an ``out_of_trials`` event (None: never).
        seed: see :func:`~shaping.policies.base.from_spec`.
    """

    kind = "curriculum"

    def __init__(self, task: "Task", tasks: list, thresholds: list | None = None, metric_epoch: int = 10,
                 window: Any = 200, max_trials: int | None = None, *,
                 seed: int | np.random.Generator | None = None):
        super().__init__(task, window=window, max_trials=max_trials, seed=seed)
        if not isinstance(tasks, (list, tuple)) or not tasks:
            raise SpecError(f"tasks = {tasks!r} must be a non-empty list of task specs")
        self._entries = [spec_rules.jsonable(f"tasks[{i}]", e) for i, e in enumerate(tasks)]
        for i, entry in enumerate(self._entries):
            m = spec_rules.mapping(f"tasks[{i}]", entry)
            label = m.pop("stage", None)
            knobs = m.pop("knobs", {})
            name = m.get("name")
            if name is None and m:
                raise SpecError(f"tasks[{i}]: {', '.join(m)} given without a task 'name'")
            default = f"{i}:{name or type(task).__name__}"
            try:
                self._stages.append(parse_stage(f"tasks[{i}]", {"name": label or default, "knobs": knobs,
                                                                  "task": m or None}, task))
            except SpecError as err:  # the entry *is* the task spec: report its fields as written
                raise SpecError(str(err).replace(f"tasks[{i}].task", f"tasks[{i}]")) from None
        check_names("tasks", self._stages)
        if thresholds is None:
            thresholds = [0.9] * len(tasks)
        if not isinstance(thresholds, (list, tuple)) or len(thresholds) != len(tasks):
            raise SpecError(f"thresholds = {thresholds!r} must be a list with one threshold per task "
                            f"({len(tasks)})")
        self.thresholds = [spec_rules.fraction(f"thresholds[{i}]", t) for i, t in enumerate(thresholds)]
        self.metric_epoch = spec_rules.integer("metric_epoch", metric_epoch)
        self._epoch = 0
        self._setup()

    @property
    def epoch(self) -> int:
        """Batches seen (PsychRNN's training epoch counter)."""
        return self._epoch

    def _config(self) -> dict:
        return {"tasks": spec_rules.plain(self._entries), "thresholds": list(self.thresholds),
                "metric_epoch": self.metric_epoch, **self._base_config()}

    def _decide(self, scored: pd.DataFrame) -> list[dict]:
        self._epoch += 1
        if self._epoch % self.metric_epoch:
            return []
        acc = batch_accuracy(scored, self.window.exclude_no_response, self.window.exclude_correction)
        threshold = self.thresholds[self._index]
        if acc is None or acc < threshold:
            return []
        rule = (f"curriculum: batch accuracy {acc:.3f} >= thresholds[{self._index}] = {threshold:g} "
                f"at epoch {self._epoch} (checked every {self.metric_epoch})")
        if self._index == len(self._stages) - 1:
            self._complete = True
            return [self._event("complete", rule, value=acc, epoch=self._epoch)]
        return [self._move("graduated", self._index + 1, rule, value=acc, epoch=self._epoch)]

    def _state(self) -> dict:
        return {**super()._state(), "epoch": self._epoch}

    def _restore(self, state: Any) -> None:
        super()._restore(state)
        self._epoch = int(state["epoch"])
