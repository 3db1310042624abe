"""Each difficulty knob moves an ideal observer's accuracy in its declared direction.

For every (task, knob) pair except side-bias knobs: batches are drawn at the knob's low and high end (other
knobs at values where the observer errs at all), the task's ideal observer answers, ``score`` scores it,
and the easier end must beat the harder one by a clear margin (fixed seeds, 800 trials per end).
"""
from __future__ import annotations

import numpy as np
import pytest
from builtin_cases import CASES, accuracy

PAIRS = [(name, k.name) for name, case in sorted(CASES.items()) for k in case.factory.knobs
         if k.name != getattr(case.factory, "side_knob", None)]
MARGIN = 0.05


@pytest.mark.parametrize("name,knob", PAIRS, ids=[f"{n}-{k}" for n, k in PAIRS])
def test_knob_moves_ideal_observer_in_declared_direction(name, knob):
    case = CASES[name]
    task, stress = case.for_knob(knob, seed=11)
    spec = task.knob(knob)
    acc = {}
    for end, value in (("low", spec.low), ("high", spec.high)):
        batch = task.generate(800, knobs={**stress, knob: value}, batch_id=1)
        acc[end] = accuracy(task, batch, case.observer(task, batch, np.random.default_rng(3)))
    easier, harder = ("high", "low") if spec.easier == "higher" else ("low", "high")
    assert acc[easier] >= acc[harder] + MARGIN, f"{name}.{knob} ({spec.easier} easier): {acc}"


def test_every_task_has_a_difficulty_knob():
    for name, case in CASES.items():
        assert any(n == name for n, _ in PAIRS), f"{name} has no difficulty knob"


def test_an_integer_knob_drawn_from_a_range_gives_every_whole_number_equal_odds():
    """Rounding a uniform draw gave the two ends half the odds of the others (0/1/2 at 0.25/0.50/0.25)."""
    from shaping.tasks import FlipFlop

    knob = {k.name: k for k in FlipFlop.knobs}["n_pulses"]
    values = knob.sample({"uniform": [0, 2]}, 30_000, np.random.default_rng(0))
    assert set(np.unique(values)) == {0.0, 1.0, 2.0}
    np.testing.assert_allclose(np.bincount(values.astype(int)) / values.size, 1 / 3, atol=0.015)


@pytest.mark.parametrize("name", ["ContextDependentDM", "MultiSensoryIntegration", "DelayedMatchToSample",
                                  "ProAntiSaccade", "PostDecisionWager", "GoNoGo"])
def test_a_period_the_trial_needs_cannot_be_shorter_than_a_step(name):
    """A zero-length decision period left nothing to score: MultiSensoryIntegration scored a silent network
    correct on every trial."""
    from shaping.tasks import make

    with pytest.raises(ValueError, match=r"timing\['decision'\] = 5 ms is shorter than one time step"):
        make(name, dt=10, timing={"decision": 5})
    make(name, dt=10, timing={"decision": 10})
