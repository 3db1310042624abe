"""The policy contract, its events and the registry of policy kinds.

A policy owns one agent's curriculum. The task server asks it what to run next and tells it what happened:

- ``conditions()`` -> the next batch's ``{"stage", "stage_index", "knobs", "repeat", "task"}``;
- ``update(scored)`` -> the events its decisions produced, given the per-trial table of ``task.score``.

Spec vs state (Keras ``get_config`` / Brian2 ``store``-``restore``): the *spec* is the constructor's
arguments as plain data (``from_spec(spec, task)`` builds a policy, ``get_config()`` gives the spec back,
defaults filled in); the *state* is what has happened since (``state()`` / ``restore(state)``: trial
counts, stage, staircase levels, windows, the RNG as ``bit_generator.state``), plain JSON-able data.
The law every policy obeys: ``from_spec(spec, task)`` followed by ``restore(snapshot)`` continues exactly as
the policy that was snapshotted. No wall clock is read anywhere; decisions depend on (spec, seed, trials).
"""
from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from ..registry import Registry, legacy_snake, snake
from ..tasks.base import OUTCOMES  # the one definition of the outcome labels
from . import spec as spec_rules
from .spec import SpecError

if TYPE_CHECKING:  # pragma: no cover
    from shaping.tasks import Task

# "complete": the curriculum's criterion was met; "out_of_trials": max_trials ran out first (the agent stops too,
# but has not reached the criterion: a censored observation, not a completion)
EVENTS = ("graduated", "regressed", "level_changed", "reversal", "override", "complete", "out_of_trials")
"""Kinds of event: every decision a policy makes is one of these."""



def make_event(event: str, trial: int, stage: str, stage_index: int, accuracy: float | None, rule: str,
               **extra: Any) -> dict:
    """An event as policies emit it (plain JSON-able data); ``event`` is one of :data:`EVENTS`."""
    if event not in EVENTS:
        raise ValueError(f"event = {event!r}; expected one of {', '.join(EVENTS)}")
    out = {"event": event, "trial": int(trial), "stage": stage, "stage_index": int(stage_index),
           "accuracy": None if accuracy is None else float(accuracy), "rule": rule}
    out.update(extra)
    return spec_rules.plain(out)


def make_seed(seed: int | np.random.Generator | None) -> int:
    """A plain int seed: kept as given, drawn from a Generator, or fresh entropy (kept, so it can be replayed)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63))
    if seed is None:
        return int(np.random.SeedSequence().entropy % (2**63))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SpecError(f"seed = {seed!r} must be a non-negative whole number or None")
    return int(seed)


def child_seed(seed: int, key: int) -> int:
    """A seed for a nested object, a function of (seed, key) only."""
    return int(np.random.SeedSequence(seed, spawn_key=(key,)).generate_state(2, np.uint64)[0] % (2**63))


def trial_param_names(task: "Task") -> list[str]:
    """The names of the trial parameters ``task`` draws (the columns a correction trial may repeat)."""
    if task.vectorised:
        return [str(c) for c in task.sample_params(1, np.random.default_rng(0), task.knob_values).columns]
    saved = np.random.get_state()  # a PsychRNN task draws from the global RNG: leave it as it was
    try:
        return [str(k) for k in task.generate_trial_params(1, 0)]
    finally:
        np.random.set_state(saved)


def check_scored(scored: pd.DataFrame, need: tuple[str, ...] = ("outcome",)) -> pd.DataFrame:
    """Check that ``scored`` looks like the output of ``Task.score``; returns it with a fresh 0..n-1 index."""
    if not isinstance(scored, pd.DataFrame):
        raise TypeError(f"update(scored): expected the pandas DataFrame from task.score, got {type(scored).__name__}")
    missing = [c for c in need if c not in scored.columns]
    if missing:
        raise ValueError(f"update(scored): missing column(s) {', '.join(missing)}; "
                         f"columns are {', '.join(map(str, scored.columns))}")
    bad = set(scored["outcome"].tolist()) - set(OUTCOMES)
    if bad:
        raise ValueError(f"update(scored): outcome {sorted(map(str, bad))[0]!r} is not one of "
                         f"{', '.join(OUTCOMES)}")
    idx = scored.index
    if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
        return scored
    return scored.reset_index(drop=True)


@functools.lru_cache(maxsize=None)
def _drawn_call(function: Any) -> str:
    """How ``function(self, scored, ...)`` takes the ``drawn`` conditions: ``"positional"``, ``"keyword"`` or
    ``"none"`` (a policy method written before policies were told them)."""
    params = list(inspect.signature(function).parameters.values())[1:]  # after self
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params):
        return "positional"
    if any(p.kind is p.VAR_KEYWORD or (p.kind is p.KEYWORD_ONLY and p.name == "drawn") for p in params):
        return "keyword"
    return "none"


def _with_drawn(method: Any, scored: pd.DataFrame, drawn: Mapping[str, Any] | None) -> list[dict]:
    how = _drawn_call(getattr(method, "__func__", method))
    if how == "positional":
        return method(scored, drawn)
    return method(scored, drawn=drawn) if how == "keyword" else method(scored)


def tell(policy: "Policy", scored: pd.DataFrame, drawn: Mapping[str, Any] | None = None) -> list[dict]:
    """``policy.update(scored, drawn)``, for any policy: one whose ``update`` predates ``drawn`` gets
    ``update(scored)`` (what the server and wrapping policies call)."""
    return _with_drawn(policy.update, scored, drawn)


class Policy:
    """Base class of every shaping policy.

    What a user of a policy calls:
        conditions(): knob values (and stage, correction-trial repeats, task) for the next batch.
        update(scored, drawn=None): feed one scored batch (and the conditions it was drawn under); returns the
            events (list of dicts) it caused.
        state() / restore(state): snapshot and resume (plain JSON-able data, RNG included).
        get_config(): the spec back (``from_spec(policy.get_config(), task)`` rebuilds it).
        set_stage(name_or_index) / set_knob(name, value): manual overrides, each an ``"override"`` event.

    Attributes:
        complete: the curriculum is finished (the server then tells the agent to stop).
        accuracy: window accuracy now (None before any trial counts).
        trials: trials seen so far.
        stage, stage_index: where the agent is.

    Every event is a dict with at least ``event`` (one of :data:`EVENTS`), ``trial`` (trials seen when it
    fired), ``stage``, ``stage_index``, ``accuracy`` (window accuracy) and ``rule`` (the rule that fired,
    readable), plus event-specific keys (``knob``, ``old``, ``new``, ``from_stage``, ``to_stage``, ...).

    Subclasses set ``kind`` (the registry name) and implement ``conditions``, ``_update``, ``_config``,
    ``_state``/``_restore``, ``set_stage``/``set_knob`` and the ``stage``/``stage_index``/``accuracy``
    properties.
    """

    kind: str = ""

    def __init__(self, task: "Task", *, seed: int | np.random.Generator | None = None):
        self.task = task
        self.seed = make_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self._trials = 0
        self._complete = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any], task: "Task",
                    seed: int | np.random.Generator | None = None) -> "Policy":
        """Build from a spec without its ``kind`` (unknown keys are a ``SpecError``)."""
        return build(cls, dict(config), task, seed)

    # ------------------------------------------------------------------ the contract
    def conditions(self) -> dict:
        """``{"stage": str, "stage_index": int, "knobs": {knob: value}, "repeat": [dict, ...],
        "task": None | {"name": ..., **kwargs}, "levels": {knob: {"level", "generation"}}}`` for the next batch
        (``levels``: what its staircases record of a batch drawn now, handed back through :meth:`update`).
        Calling it changes nothing."""
        raise NotImplementedError

    def update(self, scored: pd.DataFrame, drawn: Mapping[str, Any] | None = None) -> list[dict]:
        """Feed one scored batch (the DataFrame of ``task.score``); returns the events it caused.

        ``drawn``: the :meth:`conditions` the batch was drawn under (the server passes them). An agent that keeps
        batches in flight answers each after the policy has moved on; a staircase steps from the level its batch
        ran at, and ignores a batch drawn before an operator set its level. None: the batch's own trial
        parameters tell the level."""
        return _with_drawn(self._update, check_scored(scored), drawn)  # a user's _update may predate drawn

    def _update(self, scored: pd.DataFrame, drawn: Mapping[str, Any] | None = None) -> list[dict]:
        raise NotImplementedError

    def stage_tasks(self) -> dict[str, dict]:
        """Stage name -> the task spec (``{"name", **kwargs}``) of each stage that runs a task of its own."""
        return {}

    def set_stage(self, stage: str | int) -> list[dict]:
        """Move to a stage by name or index now (an ``"override"`` event)."""
        raise NotImplementedError(f"{type(self).__name__} has no stages to set")

    def set_knob(self, name: str, value: Any) -> list[dict]:
        """Set a knob's value now, until the stage changes (an ``"override"`` event)."""
        raise NotImplementedError(f"{type(self).__name__} has no knobs to set")

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def trials(self) -> int:
        return self._trials

    @property
    def accuracy(self) -> float | None:
        raise NotImplementedError

    @property
    def stage(self) -> str:
        raise NotImplementedError

    @property
    def stage_index(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------------ spec and state
    def get_config(self) -> dict:
        """The spec (constructor arguments, defaults filled in, ``seed`` included) as plain data."""
        return spec_rules.plain({"kind": self.kind, **self._config(), "seed": self.seed})

    def _config(self) -> dict:
        raise NotImplementedError

    def state(self) -> dict:
        """A JSON-able snapshot: counters, stage, windows, staircases and the RNG (``bit_generator.state``).

        It does not hold the spec or the task: restore it into a policy built from the same spec."""
        return spec_rules.plain({"kind": self.kind, "trials": self._trials, "complete": self._complete,
                        "rng": self.rng.bit_generator.state, **self._state()})

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a snapshot taken by :meth:`state` on a policy built from the same spec."""
        if not isinstance(state, Mapping) or state.get("kind") != self.kind:
            got = state.get("kind") if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"{type(self).__name__}.restore: state is of kind {got!r}, expected {self.kind!r}")
        self._trials = int(state["trials"])
        self._complete = bool(state["complete"])
        self.rng.bit_generator.state = state["rng"]
        self._restore(state)

    def _state(self) -> dict:
        return {}

    def _restore(self, state: Mapping[str, Any]) -> None:
        pass

    # ------------------------------------------------------------------ helpers
    def _event(self, kind: str, rule: str, trial: int | None = None, **extra: Any) -> dict:
        return make_event(kind, self._trials if trial is None else trial, self.stage, self.stage_index,
                          self.accuracy, rule, **extra)

    def __repr__(self) -> str:
        acc = "None" if self.accuracy is None else f"{self.accuracy:.3f}"
        return (f"{type(self).__name__}(stage={self.stage!r}, trials={self.trials}, accuracy={acc}, "
                f"complete={self.complete})")


# ---------------------------------------------------------------------- registry
POLICIES = Registry("policy kind", Policy, error=SpecError,
                    unknown="kind = {name!r}: unknown policy kind; known kinds: {known}{suggestion}")


def register(cls: type[Policy]) -> type[Policy]:
    """Class decorator: make a policy class buildable from a spec by its ``kind``, class name or snake name."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__}: set a class attribute `kind` before registering it")
    return POLICIES.register(cls, name=cls.kind,
                             aliases=(cls.__name__, snake(cls.__name__), legacy_snake(cls.__name__)))


def kinds() -> list[str]:
    """The registered policy kinds."""
    return POLICIES.names()


def lookup(kind: Any) -> type[Policy]:
    """The class registered as ``kind`` (``SpecError`` listing the known kinds and the closest otherwise)."""
    return POLICIES.lookup(kind)


def from_spec(spec: Mapping[str, Any], task: "Task", seed: int | np.random.Generator | None = None) -> Policy:
    """Build a policy from a plain declarative spec, validating it.

    Args:
        spec: ``{"kind": ..., **arguments of that kind}`` (see docs/policies.md); may hold ``"seed"``.
        task: the task the policy shapes (its knobs validate the spec).
        seed: overrides ``spec["seed"]``; with neither, fresh entropy (kept in ``policy.seed``).

    Raises:
        ValueError (``SpecError``): naming the spec field that is wrong.
    """
    spec = spec_rules.mapping("spec", spec, required=("kind",))
    cls = lookup(spec.pop("kind"))
    spec_seed = spec.pop("seed", None)
    return cls.from_config(spec, task, seed=spec_seed if seed is None else seed)


def get(identifier: Any, task: "Task" = None, seed: int | np.random.Generator | None = None) -> Policy:
    """A policy from a Policy (returned as is), a kind name, a spec dict, or None (no shaping: ``fixed``)."""
    if isinstance(identifier, Policy):
        return identifier
    if identifier is None:
        identifier = {"kind": "fixed"}
    if isinstance(identifier, str):
        identifier = {"kind": identifier}
    if isinstance(identifier, Mapping):
        return from_spec(identifier, task, seed)
    raise SpecError(f"policy = {identifier!r}: expected a Policy, a kind name, a spec dict or None")


def build(cls: type[Policy], config: Mapping[str, Any], task: "Task", seed: Any) -> Policy:
    """``cls(task, **config, seed=seed)``, turning unknown keys into a ``SpecError`` that lists the known ones."""
    params = inspect.signature(cls.__init__).parameters
    allowed = [n for n, p in params.items() if n not in ("self", "task", "seed")
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in config:
        if key not in allowed:
            raise SpecError(f"{key}: unknown key for policy kind {cls.kind!r}; expected one of "
                            f"{', '.join(sorted(allowed + ['kind', 'seed']))}")
    return cls(task, **config, seed=seed)
