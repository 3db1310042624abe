"""What every stage-based policy shares: stages as knob sets (or other tasks), staircases inside stages,
a sliding accuracy window, manual overrides, a trial budget, and the events they produce.

A stage is ``{"name", "knobs", "task", "graduate", "regress"}`` (only ``name`` is required):

- ``knobs``: ``{knob: value}`` with a value as the task's knobs define it (a number, a list of choices,
  ``{"uniform": [lo, hi]}``), or ``{"staircase": {...}}`` to run a :class:`~.updown.Staircase` on that
  knob while the stage lasts (it restarts from its ``start`` each time the stage is entered).
- ``task``: ``{"name": registry name, **constructor kwargs}`` to run a different task in this stage
  (its knobs then validate the stage's knobs).
- ``graduate`` / ``regress``: the criteria a :class:`~.stages.StagesPolicy` checks.

``conditions()["knobs"]`` always holds *every* knob of the stage's task: the task's own values, then the
stage's, then the staircases' levels, then manual overrides (``set_knob``), which last until the stage
changes. The accuracy window restarts empty when the stage changes, so a stage is judged on its own trials.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from shaping.tasks import registry

from . import spec as spec_rules
from .base import Policy
from .spec import SpecError
from .updown import Staircase
from .window import AccuracyWindow, correction_flags

if TYPE_CHECKING:  # pragma: no cover
    from shaping.tasks import Task

STAGE_KEYS = ("name", "knobs", "task", "graduate", "regress")


@dataclass
class Stage:
    """One parsed, validated stage."""

    name: str
    knobs: dict                    # knob -> validated value (stage-set, not staircased)
    staircases: dict               # knob -> Staircase config (normalised)
    task: dict | None              # None: the policy's task
    defaults: dict                 # the stage task's own knob values
    task_obj: Any = field(repr=False, default=None)
    graduate: dict | None = None
    regress: Any = None            # None: use the policy's; False: never; dict: this stage's own
    path: str = ""

    def spec(self) -> dict:
        """The stage as it would be written in a spec (normalised)."""
        knobs = dict(self.knobs)
        knobs.update({k: {"staircase": v} for k, v in self.staircases.items()})
        out: dict = {"name": self.name, "knobs": knobs}
        if self.task is not None:
            out["task"] = copy.deepcopy(self.task)
        if self.graduate is not None:
            out["graduate"] = copy.deepcopy(self.graduate)
        if self.regress is not None:
            out["regress"] = None if self.regress is False else copy.deepcopy(self.regress)
        return out


def stage_task(path: str, value: Any, task: "Task") -> tuple[dict | None, Any]:
    """Validate a stage's ``task`` entry; returns ``(plain spec or None, task instance)``."""
    if value is None:
        return None, task
    m = spec_rules.mapping(path, value, required=("name",))
    name = m.pop("name")
    try:
        cls = registry.get(name)
    except ValueError as err:
        raise SpecError(f"{spec_rules.join(path, 'name')} = {name!r}: {err}") from None
    kwargs = spec_rules.jsonable(path, m)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{path}: {name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {err}") \
            from None
    return {"name": name, **kwargs}, obj


def knob_of(path: str, task_obj: Any, name: str):
    try:
        return task_obj.knob(name)
    except ValueError as err:
        raise SpecError(f"{path}: {err}") from None


def validate_knob(path: str, task_obj: Any, name: str, value: Any) -> Any:
    """A knob value validated against ``task_obj``'s knob ``name``, as plain data."""
    knob = knob_of(path, task_obj, name)
    try:
        return spec_rules.plain(knob.validate(value, type(task_obj).__name__))
    except ValueError as err:
        raise SpecError(f"{path} = {value!r}: {err}") from None


def parse_graduate(path: str, value: Any, staircases: dict) -> dict | None:
    if value is None:
        return None
    m = spec_rules.mapping(path, value, ("accuracy", "min_trials", "per_condition", "reversals"))
    if not m:
        raise SpecError(f"{path}: give at least one of accuracy, min_trials, per_condition, reversals "
                        f"(or leave graduate out for a stage that never ends)")
    out: dict = {}
    if "accuracy" in m:
        out["accuracy"] = spec_rules.fraction(spec_rules.join(path, "accuracy"), m["accuracy"])
    if "min_trials" in m:
        out["min_trials"] = spec_rules.integer(spec_rules.join(path, "min_trials"), m["min_trials"], 0)
    if "per_condition" in m:
        p = spec_rules.join(path, "per_condition")
        pc = spec_rules.mapping(p, m["per_condition"], ("param", "accuracy", "min_trials", "values"),
                       required=("param", "accuracy"))
        if not isinstance(pc["param"], str):
            raise SpecError(f"{spec_rules.join(p, 'param')} = {pc['param']!r} must be a trial-parameter name")
        out["per_condition"] = {
            "param": pc["param"],
            "accuracy": spec_rules.fraction(spec_rules.join(p, "accuracy"), pc["accuracy"]),
            "min_trials": spec_rules.integer(spec_rules.join(p, "min_trials"), pc.get("min_trials", 1)),
            "values": None if pc.get("values") is None else
            [spec_rules.number(spec_rules.join(spec_rules.join(p, "values"), i), v)
             for i, v in enumerate(_as_list(spec_rules.join(p, "values"), pc["values"]))],
        }
    if "reversals" in m:
        out["reversals"] = spec_rules.integer(spec_rules.join(path, "reversals"), m["reversals"])
        if not staircases:
            raise SpecError(f"{spec_rules.join(path, 'reversals')}: the stage runs no staircase")
    return out


def parse_regress(path: str, value: Any) -> dict:
    m = spec_rules.mapping(path, value, ("accuracy", "min_dwell", "to"), required=("accuracy",))
    to = m.get("to")
    if to is not None and not isinstance(to, (str, int)):
        raise SpecError(f"{spec_rules.join(path, 'to')} = {to!r} must be a stage name or index")
    return {"accuracy": spec_rules.fraction(spec_rules.join(path, "accuracy"), m["accuracy"]),
            "min_dwell": spec_rules.integer(spec_rules.join(path, "min_dwell"), m.get("min_dwell", 0), 0), "to": to}


def _as_list(path: str, value: Any) -> list:
    if not isinstance(value, (list, tuple)) or not value:
        raise SpecError(f"{path} = {value!r} must be a non-empty list")
    return list(value)


def parse_stage(path: str, raw: Any, task: "Task") -> Stage:
    """Validate one stage of a spec (at ``path``) against ``task``."""
    m = spec_rules.mapping(path, raw, STAGE_KEYS)
    name = m.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{spec_rules.join(path, 'name')} = {name!r} must be a non-empty string")
    task_spec, task_obj = stage_task(spec_rules.join(path, "task"), m.get("task"), task)
    knobs, staircases = {}, {}
    kpath = spec_rules.join(path, "knobs")
    for knob_name, value in spec_rules.mapping(kpath, m.get("knobs") or {}).items():
        p = spec_rules.join(kpath, knob_name)
        if isinstance(value, Mapping) and "staircase" in value:
            spec_rules.mapping(p, value, ("staircase",))
            sc = Staircase.from_spec(value["staircase"], knob_of(p, task_obj, knob_name),
                                     spec_rules.join(p, "staircase"))
            staircases[knob_name] = sc.get_config()
        else:
            knobs[knob_name] = validate_knob(p, task_obj, knob_name, value)
    regress = None
    if "regress" in m:
        regress = False if m["regress"] is None else parse_regress(spec_rules.join(path, "regress"), m["regress"])
    return Stage(name=name, knobs=knobs, staircases=staircases, task=task_spec,
                 defaults=spec_rules.plain(dict(task_obj.knob_values)), task_obj=task_obj,
                 graduate=parse_graduate(spec_rules.join(path, "graduate"), m.get("graduate"), staircases),
                 regress=regress, path=path)


def check_names(path: str, stages: list[Stage]) -> None:
    seen: dict[str, int] = {}
    for i, st in enumerate(stages):
        if st.name in seen:
            raise SpecError(f"{spec_rules.join(spec_rules.join(path, i), 'name')} = {st.name!r} repeats the name of "
                            f"{path}[{seen[st.name]}]")
        seen[st.name] = i


class StagedPolicy(Policy):
    """Base of the policies that move an agent through an ordered list of stages.

    Subclasses build ``self._stages`` (a list of :class:`Stage`) before calling ``_setup`` and implement
    ``_decide(scored)`` (graduation, regression, ...) and ``_config``.
    """

    def __init__(self, task: "Task", *, window: Any = 200, max_trials: int | None = None,
                 seed: int | np.random.Generator | None = None):
        super().__init__(task, seed=seed)
        self._window_spec = AccuracyWindow.from_spec(window, "window").get_config()
        self.max_trials = spec_rules.optional(spec_rules.integer, "max_trials", max_trials)
        self._stages: list[Stage] = []

    def _setup(self, start: int = 0) -> None:
        """Enter the first stage; subclasses call it once ``self._stages`` is built."""
        self._enter(start)

    # ------------------------------------------------------------------ stages
    def _enter(self, index: int) -> None:
        """Enter stage ``index`` afresh: empty window, staircases at their start, no overrides."""
        self._index = int(index)
        self._in_stage = 0
        self._overrides = {}
        stage = self._stages[self._index]
        pc = (stage.graduate or {}).get("per_condition")
        self.window = AccuracyWindow.from_spec(self._window_spec, "window", pc["param"] if pc else None)
        self._staircases = {
            k: Staircase(stage.task_obj.knob(k), **cfg,
                         path=spec_rules.join(spec_rules.join(spec_rules.join(stage.path, "knobs"), k), "staircase"))
            for k, cfg in stage.staircases.items()}

    def resolve_stage(self, stage: str | int, path: str = "stage") -> int:
        """The index of a stage given by name or index (``ValueError`` listing the names otherwise)."""
        names = [s.name for s in self._stages]
        if isinstance(stage, (int, np.integer)) and not isinstance(stage, bool):
            if -len(names) <= stage < len(names):
                return int(stage) % len(names)
        elif stage in names:
            return names.index(stage)
        raise SpecError(f"{path} = {stage!r}: no such stage; stages are {', '.join(map(repr, names))} "
                        f"(or an index 0..{len(names) - 1})")

    def stage_tasks(self) -> dict[str, dict]:
        return {st.name: copy.deepcopy(st.task) for st in self._stages if st.task}

    @property
    def stages(self) -> list[str]:
        """Stage names, in order."""
        return [s.name for s in self._stages]

    @property
    def stage(self) -> str:
        return self._stages[self._index].name

    @property
    def stage_index(self) -> int:
        return self._index

    @property
    def trials_in_stage(self) -> int:
        return self._in_stage

    @property
    def accuracy(self) -> float | None:
        return self.window.accuracy

    @property
    def staircases(self) -> dict[str, Staircase]:
        """The staircases running in the current stage, by knob."""
        return dict(self._staircases)

    # ------------------------------------------------------------------ the contract
    def conditions(self) -> dict:
        stage = self._stages[self._index]
        knobs = copy.deepcopy(stage.defaults)
        knobs.update(copy.deepcopy(stage.knobs))
        knobs.update({k: sc.value for k, sc in self._staircases.items()})
        knobs.update(copy.deepcopy(self._overrides))
        return {"stage": stage.name, "stage_index": self._index, "knobs": knobs, "repeat": [],
                "task": copy.deepcopy(stage.task), "levels": {k: sc.drawn() for k, sc in self._staircases.items()}}

    def _update(self, scored: pd.DataFrame, drawn: Mapping[str, Any] | None = None) -> list[dict]:
        self._trials += len(scored)
        self._in_stage += len(scored)
        self.window.push(scored)
        if self._complete:
            return []
        events = self._run_staircases(scored, (drawn or {}).get("levels") or {})
        events += self._decide(scored)
        if not self._complete and self.max_trials is not None and self._trials >= self.max_trials:
            self._complete = True
            events.append(self._event("out_of_trials",
                                      f"max_trials: {self._trials} trials >= {self.max_trials}"))
        return events

    def _decide(self, scored: pd.DataFrame) -> list[dict]:
        return []

    def _run_staircases(self, scored: pd.DataFrame, levels: Mapping[str, Any]) -> list[dict]:
        """Step each staircase from the level its batch was drawn at (``levels``: the ``conditions()["levels"]``
        the batch was drawn under; else read from its trials)."""
        if not self._staircases:
            return []
        keep = self.window.eligible(scored)
        correct = scored["outcome"].to_numpy()[keep] == "correct"
        events = []
        for name, sc in self._staircases.items():
            at = levels.get(name)
            if at is None:
                r = sc.update(correct, level=None if sc.knob.integer else _level_run(scored, name, keep))
            else:
                r = sc.update(correct, level=at["level"], generation=at["generation"])
            if r["reversal"]:
                events.append(self._event(
                    "reversal", f"{sc.describe()}: direction reversed (reversal {sc.reversals}); harder step now "
                    f"{sc.current_step:g}", knob=name, level=r["ran"], reversals=sc.reversals,
                    threshold=sc.threshold))
            if r["new"] != r["old"]:
                events.append(self._event(
                    "level_changed", f"{sc.describe()}: {r['harder']} harder and {r['easier']} easier steps "
                    f"called for by {correct.size} trials", knob=name, old=r["old"], new=r["new"]))
        return events

    # ------------------------------------------------------------------ transitions
    def _move(self, kind: str, to: int, rule: str, **extra: Any) -> dict:
        """Move to stage ``to`` and return the event (its accuracy is the one that triggered the move)."""
        old = self.stage
        event = self._event(kind, rule, from_stage=old, to_stage=self._stages[to].name, **extra)
        self._enter(to)
        event.update(stage=self.stage, stage_index=self._index, knobs=spec_rules.plain(self.conditions()["knobs"]))
        return event

    def set_stage(self, stage: str | int) -> list[dict]:
        """Move to a stage by name or index now; resumes a completed curriculum. An ``"override"`` event."""
        to = self.resolve_stage(stage)
        self._complete = False
        return [self._move("override", to, f"manual set_stage({stage!r})")]

    def set_knob(self, name: str, value: Any) -> list[dict]:
        """Set a knob until the stage changes (a staircased knob: its staircase's level). An ``"override"``."""
        stage = self._stages[self._index]
        value = validate_knob(f"set_knob({name!r})", stage.task_obj, name, value)
        old = self.conditions()["knobs"].get(name)
        if name in self._staircases:
            if not isinstance(value, (int, float)):
                raise ValueError(f"set_knob({name!r}, {value!r}): {name} runs a staircase in stage "
                                 f"{stage.name!r}; give it a single number")
            self._staircases[name].set_value(float(value))
        else:
            self._overrides[name] = value
        return [self._event("override", f"manual set_knob({name!r}, {value!r})", knob=name, old=old,
                            new=self.conditions()["knobs"][name])]

    # ------------------------------------------------------------------ spec and state
    def _base_config(self) -> dict:
        return {"window": dict(self._window_spec), "max_trials": self.max_trials}

    def _state(self) -> dict:
        return {"stage_index": self._index, "trials_in_stage": self._in_stage, "window": self.window.state(),
                "staircases": {k: sc.state() for k, sc in self._staircases.items()},
                "overrides": copy.deepcopy(self._overrides)}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self._enter(int(state["stage_index"]))
        self._in_stage = int(state["trials_in_stage"])
        self.window.restore(state["window"])
        for k, st in state["staircases"].items():
            self._staircases[k].restore(st)
        self._overrides = copy.deepcopy(dict(state["overrides"]))


def _level_run(scored: pd.DataFrame, knob: str, keep: np.ndarray) -> float | None:
    """The level a staircased knob had in a scored batch: its trials' common value (None when the trials do
    not record it, or disagree, e.g. a task that jitters it per trial)."""
    keep = keep & ~correction_flags(scored)  # a correction trial repeats an earlier trial's level
    if knob not in scored.columns or not keep.any():
        return None
    try:
        values = scored[knob].to_numpy(dtype=float)[keep]
    except (TypeError, ValueError):
        return None
    first = values[0]
    return float(first) if np.isfinite(first) and np.allclose(values, first, rtol=1e-9, atol=0.0) else None
