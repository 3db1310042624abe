"""Bias correction: a wrapper around any policy that counters side biases, as behaviour rigs do.

Three mechanisms, each optional:

- **Correction trials** (``repeat``): trials answered wrongly are run again at the start of the next batch
  with the same trial parameters (``conditions()["repeat"]``; the task flags them in a ``correction``
  column). IBL repeats only errors on easy trials (contrast >= 50 %): ``min_evidence`` does that
  (iblrig, ``training_choice_world``; International Brain Laboratory 2021, eLife 10:e63711). Correction
  trials are kept from the wrapped policy by default (``exclude_correction``), so they neither count towards
  its accuracy nor move its staircases.
- **Side drawn against the measured bias** (``side``): the task's side knob (``task.side_knob``, the
  probability that the correct choice is 1) is set for the next batch from the agent's recent choices.
  ``"thresholded_linear"`` (Autopilot's ``Bias_Correction``, Saunders & Wehr 2019,
  https://doi.org/10.1101/807693): when ``|bias| > threshold`` the side probability becomes ``p - bias`` (a
  65 %-left responder gets 65 % right targets, as Autopilot's docstring states the rule), else ``p``. The bias
  is measured over the last ``window`` responded trials as (P(choice 1 | target 0) - P(choice 0 | target 1)) / 2,
  which the mix of targets cannot change: measured as mean(choice == 1) - mean(target == 1), it would grow as
  the rule moves the targets away from the preferred side, and the side probability would run to its limit.
  When the window holds one target side only, the side probability returns to ``p``. ``"ibl"``: iblrig draws
  the side of a debias trial as ``N(mu, sigma) >= 0.5`` with ``mu`` from the fraction of rightward choices
  over the last 10 responded trials; here the side probability is that draw's probability, oriented against
  the bias: ``p + Phi((0.5 - r) / sigma) - 0.5`` with ``r`` = fraction of choice-1 responses. ``p`` is the wrapped
  policy's side-knob value, and the result is clipped to ``limits``.
- **A cap on same-side runs** (``max_same_side``): the policy plans the side of every trial of the next
  batch (drawn with the side probability, forced to the other side when a run would exceed the cap,
  continuing the run from the last batch) and pins it through ``repeat`` entries ``{side_param: side,
  "correction": False}``. This needs ``Task.generate`` to accept such non-correction entries (see
  docs/policies.md) and the name of the trial parameter that sets the side (``side_param``).

Choices are 2AFC sides 0/1; a choice of -1 (no response) is left out of the bias. Several batches in flight:
``conditions()`` does not consume what it hands out, so the same repeats reach every batch generated before
the next ``update``.
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from ..tasks.base import PARAM_PREFIX
from . import spec as spec_rules
from .base import Policy, check_scored, child_seed, from_spec, register, tell, trial_param_names
from .spec import SpecError
from .window import correction_flags

if TYPE_CHECKING:  # pragma: no cover
    from shaping.tasks import Task

SIDE_RULES = ("thresholded_linear", "ibl")


@register
class BiasCorrection(Policy):
    """Wraps a policy with correction trials, side-against-bias drawing and a cap on same-side runs.

    Args:
        task: the task (declares ``side_knob``; ``evidence_knob`` for ``repeat.min_evidence``).
        policy: the wrapped policy's spec.
        repeat: correction trials: ``True`` (defaults) or ``{"params": [trial params to repeat] (default:
            every parameter the task draws), "on": ["error"] (or also "no_response"), "min_evidence":
            number (only repeat trials at least this easy on the task's evidence knob), "max_per_batch": int
            (default N_batch // 4; a random subset beyond it)}``; None: none.
        side: ``"thresholded_linear"``/``"ibl"`` or ``{"rule", "window" (trials; 100 / 10), "threshold"
            (thresholded_linear, 0.2), "sigma" (ibl, 0.5), "limits" ([0, 1])}``; None: the wrapped policy's.
        max_same_side: longest run of one correct side (None: no cap); needs ``side_param``.
        side_param: the trial parameter that sets the correct side (e.g. ``"direction"``).
        exclude_correction: keep correction trials from the wrapped policy (its accuracy and staircases).
        seed: see :func:`~shaping.policies.base.from_spec`; the wrapped policy gets a seed derived from it
            unless its spec has one.
    """

    kind = "bias"

    def __init__(self, task: "Task", policy: Mapping[str, Any], repeat: Any = None, side: Any = None,
                 max_same_side: int | None = None, side_param: str | None = None,
                 exclude_correction: bool = True, *, seed: int | np.random.Generator | None = None):
        super().__init__(task, seed=seed)
        inner = spec_rules.mapping("policy", policy, required=("kind",))
        try:
            self.inner = from_spec(inner, task, seed=None if "seed" in inner else child_seed(self.seed, 1))
        except SpecError as err:
            raise SpecError(f"policy.{err}") from None
        self.exclude_correction = bool(exclude_correction)
        self._param_names = trial_param_names(task)
        self.side_knob = getattr(task, "side_knob", None)
        self.repeat = self._parse_repeat(repeat)
        self.side = self._parse_side(side)
        self.max_same_side = spec_rules.optional(spec_rules.integer, "max_same_side", max_same_side)
        if side_param is not None and side_param not in self._param_names:
            raise SpecError(f"side_param = {side_param!r}: {type(task).__name__} draws no such trial parameter; "
                            f"its parameters are {', '.join(self._param_names)}")
        if self.max_same_side is not None and side_param is None:
            raise SpecError("max_same_side needs side_param: the trial parameter that sets the correct side")
        self.side_param = side_param
        if self.max_same_side is not None:
            self._check_pinning()
        self._choices: list[int] = []
        self._targets: list[int] = []
        self._p_side: float | None = None
        self._pending: list[dict] = []
        self._plan: list[int] = []
        self._run = [-1, 0]  # side of the current run of correct sides, its length

    # ------------------------------------------------------------------ spec
    def _parse_repeat(self, value: Any) -> dict | None:
        if value is None or value is False:
            return None
        m = spec_rules.mapping("repeat", {} if value is True else value,
                               ("params", "on", "min_evidence", "max_per_batch"))
        params = m.get("params")
        if params is None:
            params = list(self._param_names)
        if not isinstance(params, (list, tuple)) or not params:
            raise SpecError(f"repeat.params = {params!r} must be a non-empty list of trial-parameter names")
        for i, p in enumerate(params):
            if p not in self._param_names:
                raise SpecError(f"repeat.params[{i}] = {p!r}: {type(self.task).__name__} draws no such trial "
                                f"parameter; its parameters are {', '.join(self._param_names)}")
        on = m.get("on", ["error"])
        if isinstance(on, str):
            on = [on]
        if not on:
            raise SpecError("repeat.on = []: give 'error' and/or 'no_response'")
        for i, o in enumerate(on):
            spec_rules.choice(f"repeat.on[{i}]", o, ("error", "no_response"))
        min_evidence = m.get("min_evidence")
        if min_evidence is not None:
            ev = getattr(self.task, "evidence_knob", None)
            if ev is None:
                raise SpecError(f"repeat.min_evidence: {type(self.task).__name__} declares no evidence_knob")
            min_evidence = spec_rules.number("repeat.min_evidence", min_evidence)
        max_per_batch = m.get("max_per_batch")
        if max_per_batch is None:
            max_per_batch = max(1, self.task.N_batch // 4)
        return {"params": list(params), "on": list(on), "min_evidence": min_evidence,
                "max_per_batch": spec_rules.integer("repeat.max_per_batch", max_per_batch)}

    def _parse_side(self, value: Any) -> dict | None:
        if value is None or value is False:
            return None
        if isinstance(value, str):
            value = {"rule": value}
        m = spec_rules.mapping("side", value, ("rule", "window", "threshold", "sigma", "limits"), required=("rule",))
        rule = spec_rules.choice("side.rule", m["rule"], SIDE_RULES)
        if self.side_knob is None:
            raise SpecError(f"side: {type(self.task).__name__} declares no side_knob (the probability that the "
                            f"correct choice is 1), so its side cannot be drawn")
        allowed = {"thresholded_linear": ("threshold",), "ibl": ("sigma",)}[rule]
        for key in ("threshold", "sigma"):
            if key in m and key not in allowed:
                raise SpecError(f"side.{key}: not used by rule {rule!r}")
        limits = m.get("limits", [0.0, 1.0])
        if not isinstance(limits, (list, tuple)) or len(limits) != 2:
            raise SpecError(f"side.limits = {limits!r} must be [low, high]")
        limits = [spec_rules.fraction("side.limits[0]", limits[0]), spec_rules.fraction("side.limits[1]", limits[1])]
        if limits[0] > limits[1]:
            raise SpecError(f"side.limits = {limits!r}: low must be <= high")
        out = {"rule": rule, "window": spec_rules.integer("side.window", m.get("window", 100 if rule != "ibl" else 10)),
               "limits": limits}
        if rule == "thresholded_linear":
            out["threshold"] = spec_rules.fraction("side.threshold", m.get("threshold", 0.2))
        else:
            out["sigma"] = spec_rules.number("side.sigma", m.get("sigma", 0.5), 1e-9)
        return out

    def _check_pinning(self) -> None:
        """Pinning ``side_param`` must set the side the inputs show: in a task whose side follows from other
        parameters (e.g. DelayedDiscrimination's f1 > f2) pinning it alone leaves the stimulus as drawn, and the
        trial's target would contradict its inputs. Checked on one batch with every trial's side flipped."""
        n = 16
        try:
            drawn = self.task.generate(n, batch_id=0)
            sides = drawn.params[self.side_param].to_numpy()
            flipped = self.task.generate(n, batch_id=0, repeat=[{self.side_param: int(1 - v), "correction": False}
                                                                 for v in sides.tolist()])
        except Exception as err:  # a task that cannot take pinned sides
            raise SpecError(f"max_same_side: {type(self.task).__name__} cannot pin {self.side_param!r} "
                            f"({type(err).__name__}: {err})") from None
        unchanged = sum(np.array_equal(drawn.x[i], flipped.x[i]) for i in range(n))
        if unchanged > n // 2:  # a few may show no evidence either way (zero coherence)
            raise SpecError(f"max_same_side: pinning side_param = {self.side_param!r} leaves the inputs of "
                            f"{type(self.task).__name__} as drawn on {unchanged} of {n} trials whose side it flips: "
                            f"the side follows from other trial parameters, so pinned trials would contradict "
                            f"their stimulus; pin the parameter the stimulus is built from, or use side (the side "
                            f"knob) instead")

    def _config(self) -> dict:
        return {"policy": self.inner.get_config(), "repeat": copy.deepcopy(self.repeat),
                "side": copy.deepcopy(self.side), "max_same_side": self.max_same_side,
                "side_param": self.side_param, "exclude_correction": self.exclude_correction}

    # ------------------------------------------------------------------ reports
    @property
    def complete(self) -> bool:
        return self.inner.complete

    @property
    def accuracy(self) -> float | None:
        return self.inner.accuracy

    @property
    def stage(self) -> str:
        return self.inner.stage

    @property
    def stage_index(self) -> int:
        return self.inner.stage_index

    @property
    def bias(self) -> float | None:
        """The choice bias towards side 1 over the bias window: (P(choice 1 | target 0) - P(choice 0 |
        target 1)) / 2, in [-0.5, 0.5]; a responder that picks side 1 on a fraction q of trials whatever the
        target has bias q - 0.5, and a perfect one 0, whatever mix of targets it was given (None until both
        sides were responded to)."""
        if not self._choices:
            return None
        choices, targets = np.asarray(self._choices), np.asarray(self._targets)
        if targets.all() or not targets.any():
            return None
        return float((choices[targets == 0].mean() - (1 - choices[targets == 1]).mean()) / 2)

    @property
    def p_side(self) -> float | None:
        """The side probability the next batch runs at (None: the wrapped policy's)."""
        return self._p_side

    # ------------------------------------------------------------------ the contract
    def conditions(self) -> dict:
        c = self.inner.conditions()
        if self._p_side is not None and self.side_knob in c["knobs"]:
            c["knobs"][self.side_knob] = self._p_side
        pending = [dict(entry) for entry in self._pending]
        for entry, s in zip(pending, self._plan):
            entry.setdefault(self.side_param, s)
        repeat = list(c["repeat"]) + pending
        repeat += [{self.side_param: s, "correction": False} for s in self._plan[len(pending):]]
        c["repeat"] = repeat
        return c

    def _update(self, scored: pd.DataFrame, drawn: Mapping[str, Any] | None = None) -> list[dict]:
        self._trials += len(scored)
        before = (self.inner.stage_index, self.inner.conditions()["task"])
        inner_rows = scored
        if self.exclude_correction:
            flags = correction_flags(scored)
            if flags.any():
                inner_rows = scored.take(np.flatnonzero(~flags)).reset_index(drop=True)
        events = tell(self.inner, inner_rows, drawn)
        for e in events:
            e["trial"] = self._trials
        moved = (self.inner.stage_index, self.inner.conditions()["task"]) != before
        if self.side is not None or self.max_same_side is not None:
            check_scored(scored, ("outcome", "choice", "target"))
            self._measure(scored)
        if self.side is not None:
            events += self._draw_side()
        self._pending = self._corrections(scored) if self.repeat is not None and not moved else []
        self._plan = self._plan_sides() if self.max_same_side is not None else []
        return events

    def _measure(self, scored: pd.DataFrame) -> None:
        choice = scored["choice"].to_numpy(dtype=np.int64)
        target = scored["target"].to_numpy(dtype=np.int64)
        if self.side is not None:
            ok = (choice == 0) | (choice == 1)  # a response to a side (not none, not an opt-out)
            n = self.side["window"]
            self._choices = (self._choices + (choice[ok] == 1).astype(int).tolist())[-n:]
            self._targets = (self._targets + (target[ok] == 1).astype(int).tolist())[-n:]
        for t in target.tolist():  # the run of correct sides, continued across batches
            self._run = [t, self._run[1] + 1] if t == self._run[0] else [t, 1]

    def _base_side(self) -> float:
        value = self.inner.conditions()["knobs"].get(self.side_knob)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.5

    def _draw_side(self) -> list[dict]:
        base = self._base_side()
        bias = self.bias
        if not self._choices:
            p, why = base, "no responses yet"
        elif self.side["rule"] == "thresholded_linear":
            if bias is None:  # the window holds one target side only (e.g. after p reached a limit): start over
                p, why = base, "targets of one side only in the window: back to the wrapped policy's p"
            elif abs(bias) > self.side["threshold"]:
                p, why = base - bias, f"|bias| {abs(bias):.3f} > {self.side['threshold']:g}: p = {base:g} - bias"
            else:
                p, why = base, f"|bias| {abs(bias):.3f} <= {self.side['threshold']:g}"
        else:
            r = float(np.mean(self._choices))
            shift = 0.5 * (1 + math.erf((0.5 - r) / (self.side["sigma"] * math.sqrt(2)))) - 0.5
            p = base + shift
            why = f"choice-1 fraction {r:.3f}: p = {base:g} + Phi((0.5 - r) / {self.side['sigma']:g}) - 0.5"
        lo, hi = self.side["limits"]
        p = float(min(max(p, lo), hi))
        old = self._p_side if self._p_side is not None else base
        self._p_side = p
        if abs(p - old) < 1e-12:
            return []
        rule = f"bias.side {self.side['rule']} over the last {len(self._choices)} responses: {why}"
        return [self._event("level_changed", rule, knob=self.side_knob, old=old, new=p, bias=bias)]

    def _corrections(self, scored: pd.DataFrame) -> list[dict]:
        rp = self.repeat
        outcome = scored["outcome"].to_numpy()
        hit = np.isin(outcome, rp["on"])
        # an opt-out (a no_response with a choice, e.g. PostDecisionWager's sure target) was an answer
        hit &= ~((outcome == "no_response") & (scored["choice"].to_numpy() >= 0))
        if rp["min_evidence"] is not None:
            ev = self.task.evidence_knob
            values = scored[ev].to_numpy(dtype=float)
            easy = values >= rp["min_evidence"] if self.task.knob(ev).easier == "higher" \
                else values <= rp["min_evidence"]
            hit &= easy
        rows = np.nonzero(hit)[0]
        if rows.size > rp["max_per_batch"]:
            rows = np.sort(self.rng.choice(rows, rp["max_per_batch"], replace=False))
        # a trial parameter named like a score column (e.g. a task's correct "choice") is under "param.<name>":
        # a repeat must take the trial's own value, not the network's answer
        columns = {p: PARAM_PREFIX + p if PARAM_PREFIX + p in scored.columns else p for p in rp["params"]}
        values = {p: scored[c].to_numpy()[rows].tolist() for p, c in columns.items() if c in scored.columns}
        return [{p: v[i] for p, v in values.items()} for i in range(rows.size)]  # tolist(): plain scalars

    def _plan_sides(self) -> list[int]:
        p = self._p_side if self._p_side is not None else self._base_side()
        n = self.task.N_batch
        side, run = self._run
        plan = []
        draws = self.rng.random(n)
        for i in range(n):
            if i < len(self._pending) and self.side_param in self._pending[i]:
                s = int(self._pending[i][self.side_param])  # a correction trial keeps its side
            else:
                s = int(draws[i] < p)
                if s == side and run >= self.max_same_side:
                    s = 1 - s
            side, run = (s, run + 1) if s == side else (s, 1)
            plan.append(s)
        return plan

    def stage_tasks(self) -> dict[str, dict]:
        return self.inner.stage_tasks()

    # ------------------------------------------------------------------ overrides
    def set_stage(self, stage: str | int) -> list[dict]:
        events = self.inner.set_stage(stage)
        self._pending, self._plan = [], []
        for e in events:
            e["trial"] = self._trials
        return events

    def set_knob(self, name: str, value: Any) -> list[dict]:
        events = self.inner.set_knob(name, value)
        if name == self.side_knob:
            self._p_side = None  # the operator's value holds until the next batch is measured
        for e in events:
            e["trial"] = self._trials
        return events

    # ------------------------------------------------------------------ state
    def _state(self) -> dict:
        return {"inner": self.inner.state(), "choices": list(self._choices), "targets": list(self._targets),
                "p_side": self._p_side, "pending": copy.deepcopy(self._pending), "plan": list(self._plan),
                "run": list(self._run)}

    def _restore(self, state: Mapping[str, Any]) -> None:
        self.inner.restore(state["inner"])
        self._choices = [int(v) for v in state["choices"]]
        self._targets = [int(v) for v in state["targets"]]
        self._p_side = None if state["p_side"] is None else float(state["p_side"])
        self._pending = copy.deepcopy(list(state["pending"]))
        self._plan = [int(v) for v in state["plan"]]
        self._run = [int(v) for v in state["run"]]
