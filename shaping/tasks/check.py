"""``check_task(task)``: does a task keep the contract? (our ``check_env``)

Run it on any task, a PsychRNN-style subclass included, before giving it to a server::

    from shaping.tasks import check_task
    check_task(MyTask(dt=10, tau=100, T=2000, N_batch=64))

It generates a few small batches and raises ``AssertionError`` naming the task and the broken law when
attributes and channel names disagree, arrays have the wrong shape or dtype or are not finite, a mask leaves
[0, 1], the same (seed, batch id, knobs) does not give a bit-identical batch, a knob's value is not recorded
in the params table (each knob is tried at the low and high end of its range), a knob value outside its range
is accepted, the vectorised and per-step paths disagree on targets and masks, ``score`` cannot judge the task
(one output channel and neither ``accuracy_function`` nor choice methods), returns bad columns or does not
score the targets themselves as correct, or ``get_task_params`` exposes the live task. It leaves
the task's stream position, knob values and generator state as it found them.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd

from .base import OUTCOMES, PARAM_PREFIX, SCORE_COLUMNS, Batch, Task
from .knobs import Knob

__all__ = ["check_task"]

_SCORE_COLUMNS = list(SCORE_COLUMNS)


class _Checker:
    def __init__(self, task: Task, n: int):
        self.task = task
        self.name = type(task).__name__
        self.n = n

    def fail(self, message: str) -> None:
        raise AssertionError(f"{self.name}: {message}")

    def expect(self, condition: Any, message: str) -> None:
        if not condition:
            self.fail(message)

    # ------------------------------------------------------------------ laws
    def attributes(self) -> None:
        t = self.task
        self.expect(isinstance(t, Task), "is not a shaping.tasks.Task subclass (import Task from shaping.tasks)")
        self.expect(t.N_steps == int(np.ceil(t.T / t.dt)),
                    f"N_steps={t.N_steps} but ceil(T / dt) = {int(np.ceil(t.T / t.dt))}")
        self.expect(np.allclose(t.alpha, t.dt / np.asarray(t.tau, dtype=float)), "alpha is not dt / tau")
        for which, count in (("in", t.N_in), ("out", t.N_out)):
            names = t.channel_names(which)
            self.expect(len(names) == count, f"{len(names)} {which}put channel names for N_{which}={count}")
            self.expect(len(set(names)) == len(names), f"duplicate {which}put channel names {names}")
        names = [k.name for k in t.knobs]
        self.expect(all(isinstance(k, Knob) for k in t.knobs), "knobs must be Knob instances")
        self.expect(len(set(names)) == len(names), f"duplicate knob names {names}")
        for k in t.knobs:
            self.expect(k.contains(k.default), f"knob {k.name!r}: default {k.default!r} is outside its range "
                                               f"[{k.low:g}, {k.high:g}]")
        for attr in ("side_knob", "evidence_knob"):
            ref = getattr(t, attr, None)
            self.expect(ref is None or ref in names, f"{attr}={ref!r} is not one of its knobs {names}")
        by = getattr(t, "psychometric_by", None)
        self.expect(by is None or isinstance(by, str), f"psychometric_by={by!r}: expected a trial parameter name")

    def batch(self, b: Any, n: int, what: str) -> None:
        t = self.task
        self.expect(isinstance(b, Batch), f"{what}: generate() returned {type(b).__name__}, not a Batch")
        for arr, label, ch in ((b.x, "x", t.N_in), (b.y, "y", t.N_out), (b.mask, "mask", t.N_out)):
            self.expect(isinstance(arr, np.ndarray), f"{what}: {label} is {type(arr).__name__}, not an ndarray")
            self.expect(arr.shape == (n, t.N_steps, ch),
                        f"{what}: {label} has shape {arr.shape}, expected (N_batch, N_steps, "
                        f"{'N_in' if label == 'x' else 'N_out'}) = {(n, t.N_steps, ch)}")
            self.expect(arr.dtype == np.float32, f"{what}: {label} has dtype {arr.dtype}, expected float32")
            self.expect(np.all(np.isfinite(arr)), f"{what}: {label} holds NaN or inf")
        self.expect(b.mask.min() >= 0 and b.mask.max() <= 1,
                    f"{what}: mask values must lie in [0, 1], got [{b.mask.min():g}, {b.mask.max():g}]")
        self.expect(b.mask.any(), f"{what}: the mask is 0 everywhere: nothing would be trained or scored")
        self.expect(isinstance(b.params, pd.DataFrame) and len(b.params) == n,
                    f"{what}: params must be a DataFrame with one row per trial ({n})")
        by = t.psychometric_by
        self.expect(by is None or by in b.params.columns,
                    f"{what}: psychometric_by={by!r} is not a trial parameter (params columns)")

    def same(self, a: Batch, b: Batch, what: str) -> None:
        for label in ("x", "y", "mask"):
            u, v = getattr(a, label), getattr(b, label)
            self.expect(u.shape == v.shape and u.tobytes() == v.tobytes(), f"{what}: {label} differs")
        self.expect(a.params.equals(b.params), f"{what}: params differ")

    def reproducible(self, first: Batch) -> None:
        t = self.task
        again = t.generate(self.n, batch_id=0)
        self.same(first, again, "same (seed, batch_id=0, knobs) twice is not bit-identical")
        t.generate(self.n, batch_id=1)
        self.same(first, t.generate(self.n, batch_id=0),
                  "batch 0 depends on what was generated before it (after batch 1 it differs)")
        explicit = t.generate(self.n, knobs=dict(t.knob_values), batch_id=0)
        self.same(first, explicit, "passing the task's own knob values explicitly changes the batch")

    def knobs(self) -> None:
        t = self.task
        before = copy.deepcopy(t.knob_values)
        for k in t.knobs:
            for value in (k.low, k.high):
                value = float(round(value)) if k.integer else float(value)
                try:
                    b = t.generate(self.n, knobs={k.name: value}, batch_id=0)
                except ValueError as err:
                    self.fail(f"refused knob {k.name!r} = {value:g}, inside its range [{k.low:g}, {k.high:g}]: "
                              f"{err}")
                self.batch(b, self.n, f"knob {k.name!r} = {value:g}")
                self.recorded(k, value, b.params, "the batch's params")
                self.recorded(k, value, self.own_params(k, value), "the task's own trial params")
            self.rejected(k)
        try:
            t.generate(self.n, knobs={"no_such_knob": 1.0}, batch_id=0)
        except ValueError as err:
            self.expect(self.name in str(err) and "no_such_knob" in str(err),
                        f"the error for an unknown knob does not name the task and the knob: {err}")
        else:
            self.fail("generate() accepted an unknown knob 'no_such_knob'")
        self.expect(t.knob_values == before, "generate(knobs=...) changed the task's own knob values")

    def recorded(self, k: Knob, value: float, params: pd.DataFrame, where: str) -> None:
        self.expect(k.name in params.columns, f"knob {k.name!r} is not recorded in {where} (no column)")
        got = pd.to_numeric(params[k.name], errors="coerce").to_numpy(dtype=float)
        self.expect(np.allclose(got, value),
                    f"knob {k.name!r} = {value:g} is not honoured: {where} hold {np.unique(got)[:5]}")

    def own_params(self, k: Knob, value: float) -> pd.DataFrame:
        """The trial params as the task itself produces them (before Task.generate fills in knob columns)."""
        t = self.task
        knobs = t.validate_knobs({k.name: value})
        if t.vectorised:
            return t.sample_params(self.n, t.batch_rng(0), knobs)
        saved_knobs, saved_np = t.knob_values, np.random.get_state()
        t.knob_values = knobs
        try:
            np.random.seed(0)
            return pd.DataFrame.from_records([t.generate_trial_params(1, i) for i in range(self.n)])
        finally:
            t.knob_values = saved_knobs
            np.random.set_state(saved_np)

    def rejected(self, k: Knob) -> None:
        bad = k.high + max(1.0, k.high - k.low)
        try:
            self.task.generate(self.n, knobs={k.name: bad}, batch_id=0)
        except ValueError as err:
            msg = str(err)
            self.expect(self.name in msg and k.name in msg,
                        f"the error for knob {k.name!r} = {bad:g} does not name the task and the knob: {msg}")
        else:
            self.fail(f"accepted knob {k.name!r} = {bad:g}, outside its range [{k.low:g}, {k.high:g}]")

    def paths(self) -> None:
        t = self.task
        if not t.vectorised:
            return
        n = min(self.n, 3)
        fast = t.generate(n, batch_id=0)
        slow = t.generate(n, batch_id=0, stepwise=True)
        self.batch(slow, n, "per-step path")
        for label in ("y", "mask"):
            diff = np.argwhere(getattr(fast, label) != getattr(slow, label))
            self.expect(diff.size == 0, f"vectorised and per-step {label} differ, first at (trial, step, "
                                        f"channel) = {tuple(diff[0]) if diff.size else ()}")

    def score(self, b: Batch) -> None:
        t = self.task
        try:
            t._check_scorable()
        except ValueError as err:
            self.fail(f"score() cannot judge it: {str(err).removeprefix(self.name + ' ')}")
        scored = t.score(b.y, b.y, b.mask, b.params)
        self.expect(isinstance(scored, pd.DataFrame),
                    f"score() returned {type(scored).__name__}, not a DataFrame")
        self.expect(list(scored.columns[:4]) == _SCORE_COLUMNS,
                    f"score() columns must start with {_SCORE_COLUMNS}, got {list(scored.columns[:4])}")
        self.expect(len(scored) == len(b), f"score() returned {len(scored)} rows for {len(b)} trials")
        self.expect(np.array_equal(scored["trial"].to_numpy(), np.arange(len(b))),
                    "score(): trial is not 0..n-1")
        bad = set(scored["outcome"]) - set(OUTCOMES)
        self.expect(not bad, f"score(): outcomes {sorted(bad)} are not among {OUTCOMES}")
        for c in ("choice", "target"):
            self.expect(pd.api.types.is_integer_dtype(scored[c]), f"score(): {c} has dtype {scored[c].dtype}, "
                                                                  f"expected integers (-1: none)")
        missing = [c for c in b.params.columns
                   if (PARAM_PREFIX + c if c in SCORE_COLUMNS else c) not in scored.columns]
        self.expect(not missing, f"score() dropped trial parameters {missing}")
        wrong = np.flatnonzero(scored["outcome"].to_numpy() != "correct")
        self.expect(wrong.size == 0, f"the targets themselves do not score correct on trials "
                                     f"{wrong[:10].tolist()}: target_choice and choice_from_output disagree "
                                     f"with y and mask")

    def task_params(self) -> None:
        t = self.task
        p = t.get_task_params()
        self.expect(isinstance(p, dict), f"get_task_params() returned {type(p).__name__}, not a dict")
        for key in ("N_in", "N_out", "N_batch", "dt", "tau", "T", "alpha", "N_steps"):
            self.expect(key in p, f"get_task_params() lacks {key!r}")
        p["N_in"] = -1
        self.expect(t.N_in != -1, "get_task_params() returns the live attributes, not a copy")

    def psychrnn_api(self) -> None:
        t = copy.deepcopy(self.task)
        out = t.get_trial_batch()
        self.expect(isinstance(out, tuple) and len(out) == 4,
                    "get_trial_batch() must return (x, y, mask, trial_params)")
        x, y, mask, params = out
        self.expect(x.shape == (t.N_batch, t.N_steps, t.N_in), f"get_trial_batch(): x has shape {x.shape}")
        self.expect(isinstance(params, np.ndarray) and params.dtype == object and len(params) == t.N_batch
                    and all(isinstance(p, dict) for p in params),
                    "get_trial_batch(): trial_params must be an object array of N_batch dicts")
        acc = t.accuracy_function(y, y, mask)
        self.expect(np.isscalar(acc) and 0 <= float(acc) <= 1, f"accuracy_function returned {acc!r}")


def check_task(task: Task, n: int | None = None) -> None:
    """Check ``task`` against the task contract; return None or raise.

    Args:
        task: an instance of any :class:`~shaping.tasks.base.Task` subclass.
        n: trials per test batch (default ``min(N_batch, 8)``); ``get_trial_batch`` is also run once with
            the task's own ``N_batch``, on a copy.

    Raises:
        AssertionError: a law of the contract is broken; the message names the task and the law.
        ValueError: only if the task raises one where it should not (reported with the knob in question).
    """
    n = min(task.N_batch, 8) if n is None else int(n)
    checker = _Checker(task, n)
    saved = (task.batch_index, copy.deepcopy(task.knob_values), task.rng.bit_generator.state, task._generator)
    try:
        checker.attributes()
        first = task.generate(n, batch_id=0)
        checker.batch(first, n, "generate(batch_id=0)")
        checker.reproducible(first)
        checker.knobs()
        checker.paths()
        checker.score(first)
        checker.task_params()
        checker.psychrnn_api()
    finally:
        task.batch_index, task.knob_values, task.rng.bit_generator.state, task._generator = saved
