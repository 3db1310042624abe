"""Stages: a learner graduates through every stage in order; regression when its accuracy is dropped
(never before the minimum dwell); per-condition criteria; staircases and other tasks inside stages;
manual overrides."""
import numpy as np
import pytest

from shaping.policies import from_spec
from shaping.policies.simulate import Observer, run

SHAPING = {
    "kind": "stages", "window": 100,
    "stages": [
        {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.8, "min_trials": 200}},
        {"name": "medium", "knobs": {"coherence": 0.3}, "graduate": {"accuracy": 0.8, "min_trials": 200}},
        {"name": "hard", "knobs": {"coherence": 0.15}, "graduate": {"accuracy": 0.8, "min_trials": 200}},
        {"name": "final", "knobs": {"coherence": [0.05, 0.1, 0.2, 0.4]}},
    ],
    "regress": {"accuracy": 0.55, "min_dwell": 300},
}


def learner():
    return Observer(alpha=0.6, alpha_final=0.08, tau_trials=1500, beta=1.5)


def moves(events):
    return [(e["event"], e["from_stage"], e["to_stage"]) for e in events if "to_stage" in e]


def test_learner_graduates_through_all_stages_in_order(task):
    policy = from_spec(SHAPING, task, seed=0)
    result = run(policy, task, learner(), 8000)
    assert moves(result.events) == [("graduated", "easy", "medium"), ("graduated", "medium", "hard"),
                                    ("graduated", "hard", "final")]
    stage_index = result.trials["stage"].map({s: i for i, s in enumerate(policy.stages)}).to_numpy()
    assert np.all(np.diff(stage_index) >= 0)
    for e in result.events:  # each graduation met its criteria when it fired
        assert e["accuracy"] >= 0.8 and "accuracy" in e["rule"] and "min_trials 200" in e["rule"]
    per_stage = result.trials.groupby("stage", sort=False)
    assert (per_stage.size()[["easy", "medium", "hard"]] >= 200).all()
    assert set(result.trials.loc[result.trials.stage == "final", "coherence"]) == {0.05, 0.1, 0.2, 0.4}
    assert result.events[-1]["knobs"]["coherence"] == [0.05, 0.1, 0.2, 0.4]


def test_graduating_the_last_stage_completes(task):
    spec = {**SHAPING, "stages": SHAPING["stages"][:3]}
    policy = from_spec(spec, task, seed=0)
    result = run(policy, task, learner(), 20_000)
    assert policy.complete and result.events[-1]["event"] == "complete" and policy.stage == "hard"
    assert len(result.trials) < 20_000  # the run stopped at completion


def test_running_out_of_trials_stops_without_completing(task):
    """A budget spent before the criterion is a censored observation, not a completion (it was reported as
    ``complete``, so a control that never learned counted as completing at its max_trials)."""
    spec = {**SHAPING, "stages": SHAPING["stages"][:3], "max_trials": 1000}
    policy = from_spec(spec, task, seed=0)
    result = run(policy, task, Observer(alpha=2.0, alpha_final=2.0, beta=1.5), 5000)  # never learns
    assert policy.complete and len(result.trials) == 1024  # stopped with the batch that reached the budget
    assert [e["event"] for e in result.events if e["event"] in ("complete", "out_of_trials")] == ["out_of_trials"]
    assert "max_trials" in result.events[-1]["rule"]


def test_regresses_when_accuracy_drops_and_not_before_min_dwell(task):
    policy = from_spec(SHAPING, task, seed=0)
    obs = learner()
    first = run(policy, task, obs, 8000)
    assert policy.stage == "final"
    obs.lapse = 1.0  # the agent stops attending: it guesses
    dropped = run(policy, task, obs, 1500, first_batch=1000)
    back = [e for e in dropped.events if e["event"] == "regressed"]
    assert back and (back[0]["from_stage"], back[0]["to_stage"]) == ("final", "hard")
    assert back[0]["accuracy"] < 0.55 and "min_dwell 300" in back[0]["rule"]
    entered_final = [e for e in first.events if e.get("to_stage") == "final"][-1]["trial"]
    assert back[0]["trial"] - entered_final >= 300
    # It keeps regressing while the lapse lasts, each stage held at least min_dwell trials: no oscillation.
    more = run(policy, task, obs, 3000, first_batch=2000)
    every = [e for e in dropped.events + more.events if e["event"] in ("regressed", "graduated")]
    assert [e["to_stage"] for e in every] == ["hard", "medium", "easy"]
    assert np.all(np.diff([e["trial"] for e in every]) >= 300)
    obs.lapse = 0.0  # attention back: it climbs again
    again = run(policy, task, obs, 4000, first_batch=3000)
    assert [m[2] for m in moves(again.events)] == ["medium", "hard", "final"]


def test_stage_regress_override_and_target(task):
    stages = [dict(s) for s in SHAPING["stages"]]
    stages[2]["regress"] = None  # never leave "hard" backwards
    stages[3]["regress"] = {"accuracy": 0.7, "min_dwell": 0, "to": "easy"}
    policy = from_spec({**SHAPING, "stages": stages}, task, seed=0)
    policy.set_stage("final")
    result = run(policy, task, Observer(alpha=0.6, lapse=1.0), 600)
    assert moves(result.events)[0] == ("regressed", "final", "easy")
    policy.set_stage("hard")
    assert not [e for e in run(policy, task, Observer(alpha=0.6, lapse=1.0), 1000).events
                if e["event"] == "regressed"]


def test_per_condition_criterion_holds_back_a_weak_condition(task):
    stage = {"name": "mixed", "knobs": {"coherence": [0.1, 0.7]}}
    overall = from_spec({"kind": "stages", "window": 200, "stages": [
        {**stage, "graduate": {"accuracy": 0.7}}, {"name": "next"}]}, task, seed=0)
    per_condition = from_spec({"kind": "stages", "window": 200, "stages": [
        {**stage, "graduate": {"per_condition": {"param": "coherence", "accuracy": 0.7, "min_trials": 30}}},
        {"name": "next"}]}, task, seed=0)
    obs = dict(alpha=0.3, beta=2.0)  # ~97 % at 0.7 but ~55 % at 0.1: about 76 % overall
    assert overall.stage == per_condition.stage == "mixed"
    assert run(overall, task, Observer(**obs), 1000).events[0]["to_stage"] == "next"
    assert not run(per_condition, task, Observer(**obs), 1000).events
    table = per_condition.window.per_condition()
    assert table[0.7][0] > 0.9 and table[0.1][0] < 0.7 and table[0.1][1] >= 30
    # once the weak condition improves, it graduates, naming every condition in the rule
    (event,) = run(per_condition, task, Observer(alpha=0.05, beta=2.0), 1000, first_batch=100).events
    assert event["event"] == "graduated" and "every coherence in 0.1, 0.7" in event["rule"]


def test_staircase_inside_a_stage_restarts_on_entry(task):
    spec = {"kind": "stages", "window": 64, "stages": [
        {"name": "warmup", "knobs": {"coherence": 0.7}, "graduate": {"min_trials": 64}},
        {"name": "titrate", "knobs": {"stim_noise": 0.2, "coherence": {"staircase": {
            "start": 0.5, "scale": "log", "bounds": [0.01, 2.0], "step": 0.05}}},
         "graduate": {"reversals": 4}},
        {"name": "final"}]}
    policy = from_spec(spec, task, seed=0)
    result = run(policy, task, Observer(alpha=0.2), 5000)
    assert moves(result.events) == [("graduated", "warmup", "titrate"), ("graduated", "titrate", "final")]
    titrate = result.trials[result.trials.stage == "titrate"]
    assert titrate["coherence"].iloc[0] == 0.5 and titrate["coherence"].nunique() > 3
    assert (titrate["stim_noise"] == 0.2).all()
    assert sum(e["event"] == "reversal" for e in result.events) == 4
    policy.set_stage("titrate")
    assert policy.conditions()["knobs"]["coherence"] == 0.5 and policy.staircases["coherence"].reversals == 0


def test_a_stage_may_run_another_task(task):
    spec = {"kind": "stages", "stages": [
        {"name": "short", "task": {"name": "PerceptualDiscrimination", "T": 1000, "stim_noise": 0.0},
         "knobs": {"coherence": 0.5}, "graduate": {"min_trials": 64}},
        {"name": "full"}]}
    policy = from_spec(spec, task, seed=0)
    c = policy.conditions()
    assert c["task"] == {"name": "PerceptualDiscrimination", "T": 1000, "stim_noise": 0.0}
    assert c["knobs"]["stim_noise"] == 0.0 and c["knobs"]["coherence"] == 0.5
    result = run(policy, task, Observer(), 128, full=True)
    short = result.trials[result.trials.stage == "short"]
    assert len(short) == 64 and (short["onset_time"] < 500).all()  # T = 1000 ms: onset ~ U(0, T/2)
    assert policy.conditions()["task"] is None


def test_manual_overrides_are_events_and_last_until_the_stage_changes(task):
    policy = from_spec(SHAPING, task, seed=0)
    (e,) = policy.set_knob("coherence", [0.6, 0.8])
    assert (e["event"], e["knob"], e["old"], e["new"]) == ("override", "coherence", 0.7, [0.6, 0.8])
    assert policy.conditions()["knobs"]["coherence"] == [0.6, 0.8]
    (e,) = policy.set_stage(2)
    assert (e["event"], e["from_stage"], e["to_stage"], e["stage"]) == ("override", "easy", "hard", "hard")
    assert "set_stage" in e["rule"] and policy.conditions()["knobs"]["coherence"] == 0.15
    with pytest.raises(ValueError, match="stage = 'expert': no such stage; stages are 'easy', 'medium'"):
        policy.set_stage("expert")
    with pytest.raises(ValueError, match="outside its range"):
        policy.set_knob("coherence", 5.0)
