"""Generic laws every policy kind obeys, checked on each spec of conftest.POLICY_SPECS: the spec round
trip, JSON-able state, determinism given the seed, exact continuation after restore (Brian2's
test_restore_with_random_state, done our way), and conditions the task accepts."""
import copy
import json

import pandas as pd
import pytest
from policy_specs import POLICY_SPECS

from shaping.policies import EVENTS, from_spec
from shaping.policies.simulate import Observer, run

SPECS = pytest.mark.parametrize("spec", list(POLICY_SPECS.values()), ids=list(POLICY_SPECS))
EVENT_KEYS = {"event", "trial", "stage", "stage_index", "accuracy", "rule"}


def observer():
    return Observer(alpha=0.5, alpha_final=0.1, tau_trials=1500, p_guess1=0.6)


@SPECS
def test_config_round_trip(spec, task):
    policy = from_spec(spec, task, seed=5)
    config = policy.get_config()
    assert json.loads(json.dumps(config)) == config
    assert config["kind"] == spec["kind"] and config["seed"] == 5
    again = from_spec(config, task)
    assert again.get_config() == config
    assert again.conditions() == policy.conditions()


@SPECS
def test_conditions_are_valid_and_pure(spec, task):
    policy = from_spec(spec, task, seed=1)
    run(policy, task, observer(), 640, seed=2)
    c = policy.conditions()
    assert set(c) == {"stage", "stage_index", "knobs", "repeat", "task", "levels"}
    assert c == policy.conditions()  # asking twice changes nothing
    assert c["stage"] == policy.stage and c["stage_index"] == policy.stage_index
    assert task.validate_knobs(c["knobs"]) == {**task.knob_values, **c["knobs"]}
    json.dumps(c)


@SPECS
def test_events_are_plain_and_complete(spec, task):
    policy = from_spec(spec, task, seed=1)
    result = run(policy, task, observer(), 4000, seed=3)
    assert result.events, "a 4000-trial run should make at least one decision"
    for e in result.events:
        assert EVENT_KEYS <= set(e) and e["event"] in EVENTS
        assert 0 < e["trial"] <= policy.trials
        assert e["accuracy"] is None or 0.0 <= e["accuracy"] <= 1.0
        json.dumps(e)


@SPECS
def test_deterministic_given_seed(spec, task):
    a = run(from_spec(spec, task, seed=9), task, observer(), 1500, seed=4)
    b = run(from_spec(spec, task, seed=9), task, observer(), 1500, seed=4)
    assert a.events == b.events
    pd.testing.assert_frame_equal(a.trials, b.trials)


@SPECS
def test_restore_continues_identically(spec, task):
    policy = from_spec(spec, task, seed=21)
    obs = observer()
    first = run(policy, task, obs, 512, seed=6)
    snapshot = json.loads(json.dumps(policy.state()))  # through JSON, as the journal stores it
    obs_snapshot = copy.deepcopy(obs)
    next_batch = int(first.trials["batch"].max()) + 1
    later = run(policy, task, obs, 2400, seed=7, first_batch=next_batch)
    assert later.events, "the continuation should hold decisions to compare"

    fresh = from_spec(policy.get_config(), task)
    fresh.restore(snapshot)
    again = run(fresh, task, obs_snapshot, 2400, seed=7, first_batch=next_batch)

    assert again.conditions == later.conditions
    assert again.batch_events == later.batch_events
    pd.testing.assert_frame_equal(again.trials, later.trials)
    assert fresh.state() == policy.state()
    if not policy.complete:  # the restored RNG is where the original's is
        assert fresh.rng.random() == policy.rng.random()


@SPECS
def test_restore_rejects_another_kind(spec, task):
    policy = from_spec(spec, task, seed=1)
    other = from_spec({"kind": "fixed"} if spec["kind"] != "fixed" else POLICY_SPECS["stages"], task)
    with pytest.raises(ValueError, match="kind"):
        policy.restore(other.state())
