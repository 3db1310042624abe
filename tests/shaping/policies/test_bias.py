"""Bias correction: side drawn against the measured bias brings a biased observer's choices back toward
balance; correction trials repeat errored trials (through the real task.generate) and stay out of the
wrapped policy's accuracy; same-side runs are capped."""
import pandas as pd
import pytest

from shaping.policies import from_spec
from shaping.policies.simulate import Observer, run
from shaping.tasks import PerceptualDiscrimination

FIXED = {"kind": "fixed", "knobs": {"coherence": 0.3}}


def biased():
    return Observer(alpha=0.3, beta=1.5, p_guess1=0.9)  # chooses side 1 on 9 guesses out of 10


def choice1(result, skip=1000):
    late = result.trials.iloc[skip:]
    late = late[late["choice"] >= 0]
    return float((late["choice"] == 1).mean())


@pytest.mark.parametrize("side, min_gain", [({"rule": "thresholded_linear", "threshold": 0.1}, 0.5),
                                            ("ibl", 0.15)], ids=["thresholded_linear", "ibl"])
def test_side_against_bias_rebalances_choices(side, min_gain, task):
    plain = choice1(run(from_spec(FIXED, task, seed=0), task, biased(), 4000, seed=1))
    policy = from_spec({"kind": "bias", "policy": FIXED, "side": side}, task, seed=0)
    result = run(policy, task, biased(), 4000, seed=1)
    corrected = choice1(result)
    assert plain > 0.6  # the bias the rule has to undo
    assert abs(corrected - 0.5) < (1 - min_gain) * abs(plain - 0.5), (plain, corrected)
    late = result.trials.iloc[1000:]
    assert late["p_choice1"].mean() < 0.45 and late["direction"].mean() < 0.45  # more side-0 targets
    changes = [e for e in result.events if e["event"] == "level_changed"]
    assert changes and all(e["knob"] == "p_choice1" for e in changes)


def test_thresholded_linear_leaves_an_unbiased_observer_alone(task):
    policy = from_spec({"kind": "bias", "policy": FIXED, "side": "thresholded_linear"}, task, seed=0)
    run(policy, task, Observer(alpha=0.3), 2000)
    assert abs(policy.bias) < 0.2 and policy.conditions()["knobs"]["p_choice1"] == 0.5


def test_thresholded_linear_settles_where_autopilot_says_instead_of_running_away():
    """A responder that picks side 1 on 65 % of trials whatever it sees gets 35 % side-1 targets (the rule's
    fixed point). Measured as mean(choice) - mean(target), the bias grew as the targets moved and the side
    probability ran to 0."""
    task = PerceptualDiscrimination(seed=0, N_batch=50)
    policy = from_spec({"kind": "bias", "policy": {"kind": "fixed", "knobs": {"coherence": 0.5}},
                        "side": {"rule": "thresholded_linear", "window": 100, "threshold": 0.1}}, task, seed=0)
    result = run(policy, task, Observer(alpha=1e6, p_guess1=0.65), 6000, seed=1)
    p = [c["knobs"]["p_choice1"] for c in result.conditions][-60:]
    assert sum(p) / len(p) == pytest.approx(0.35, abs=0.04) and min(p) > 0.1, p


def test_the_side_probability_comes_back_once_the_window_holds_one_side_only():
    """A network that first answers 0 every time drives p_choice1 to its limit, 1.0; then only side-1 targets
    are drawn and the bias cannot be measured: p used to stay at 1.0 for good, even once the network was
    perfect."""
    import numpy as np

    task = PerceptualDiscrimination(seed=0, N_batch=50)
    policy = from_spec({"kind": "bias", "policy": {"kind": "fixed"}, "side": "thresholded_linear"}, task, seed=0)
    p = []
    for k in range(12):
        c = policy.conditions()
        batch = task.generate(knobs=c["knobs"], batch_id=k)
        target = np.asarray(task.target_choice(batch.y, batch.mask, batch.params))
        choice = np.zeros_like(target) if k < 2 else target
        policy.update(pd.DataFrame({"outcome": np.where(choice == target, "correct", "error"), "choice": choice,
                                    "target": target}), c)
        p.append(policy.conditions()["knobs"]["p_choice1"])
    assert max(p[:3]) == 1.0 and p[-1] == 0.5, p


@pytest.mark.parametrize("name, side_param", [("DelayedDiscrimination", "choice"),
                                              ("ContextDependentDM", "choice"),
                                              ("DelayedMatchToSample", "choice")])
def test_pinning_a_side_the_stimulus_does_not_follow_is_refused(name, side_param):
    """Pinning a derived side would leave the stimulus as drawn: about half the trials' targets would contradict
    their inputs."""
    from shaping.tasks import make

    with pytest.raises(ValueError, match=f"pinning side_param = '{side_param}' leaves the inputs of {name}"):
        from_spec({"kind": "bias", "policy": {"kind": "fixed"}, "max_same_side": 3, "side_param": side_param},
                  make(name, seed=0), seed=0)


def test_correction_trials_repeat_errors_through_the_task():
    task = PerceptualDiscrimination(seed=3, N_batch=32)
    spec = {"kind": "bias", "policy": {"kind": "fixed", "knobs": {"coherence": [0.1, 0.7]}},
            "repeat": {"min_evidence": 0.5, "max_per_batch": 4}}
    policy = from_spec(spec, task, seed=0)
    result = run(policy, task, Observer(alpha=0.4, lapse=0.3), 640, full=True)
    repeated = 0
    for prev, cond, now in zip(result.scored, result.conditions[1:], result.scored[1:]):
        errors = prev[(prev.outcome == "error") & (prev.coherence >= 0.5)]
        assert len(cond["repeat"]) == min(len(errors), 4)
        k = len(cond["repeat"])
        assert now["correction"].tolist() == [True] * k + [False] * (len(now) - k)
        for entry, (_, row) in zip(cond["repeat"], now.iloc[:k].iterrows()):
            assert set(entry) == set(policy.repeat["params"])
            assert all(row[p] == v for p, v in entry.items())
            assert ((errors[list(entry)] == list(entry.values())).all(axis=1)).any()  # it was an error
        repeated += k
    assert repeated > 20
    # correction trials stay out of the wrapped policy: its trials and accuracy
    first = result.trials[~result.trials.correction.eq(True)]
    assert policy.inner.trials == len(first) < policy.trials == len(result.trials)
    assert policy.accuracy == pytest.approx((first.outcome.iloc[-200:] == "correct").mean())


def test_correction_trials_may_count(task):
    spec = {"kind": "bias", "policy": FIXED, "repeat": True, "exclude_correction": False}
    policy = from_spec(spec, task, seed=0)
    result = run(policy, task, Observer(alpha=0.4), 320)
    assert result.trials["correction"].any() and policy.inner.trials == policy.trials


def test_repeats_are_dropped_when_the_stage_changes(task):
    stages = {"kind": "stages", "stages": [
        {"name": "a", "knobs": {"coherence": 0.7}, "graduate": {"min_trials": 64}},
        {"name": "b", "knobs": {"coherence": 0.1}}]}
    policy = from_spec({"kind": "bias", "policy": stages, "repeat": True}, task, seed=0)
    result = run(policy, task, Observer(alpha=0.6, lapse=0.5), 160)
    moved = next(i for i, events in enumerate(result.batch_events) if events)
    assert result.batch_events[moved][0]["event"] == "graduated"
    assert (result.scored[moved].outcome == "error").any()  # errors, yet nothing repeated into stage b
    assert result.conditions[moved]["repeat"] and result.conditions[moved + 1]["repeat"] == []
    assert result.conditions[moved + 2]["repeat"]  # stage b's own errors are repeated


def runs(sides):
    longest, current = 1, 1
    for a, b in zip(sides[:-1], sides[1:]):
        current = current + 1 if a == b else 1
        longest = max(longest, current)
    return longest


def test_same_side_runs_are_capped(task):
    spec = {"kind": "bias", "policy": FIXED, "max_same_side": 2, "side_param": "direction"}
    policy = from_spec(spec, task, seed=0)
    result = run(policy, task, Observer(), 3200)
    later = result.trials.iloc[32:]  # the first batch was drawn before any plan
    assert runs(later["direction"].tolist()) == 2 and not later["correction"].any()
    assert abs(later["direction"].mean() - 0.5) < 0.05
    uncapped = run(from_spec(FIXED, task, seed=0), task, Observer(), 3200).trials
    assert runs(uncapped["direction"].tolist()) > 4


def test_same_side_runs_through_task_generate(task):
    spec = {"kind": "bias", "policy": FIXED, "max_same_side": 2, "side_param": "direction"}
    policy = from_spec(spec, task, seed=0)
    run(policy, task, Observer(), 64)
    try:
        batch = task.generate(knobs=policy.conditions()["knobs"], repeat=policy.conditions()["repeat"])
    except ValueError as err:
        pytest.skip(f"Task.generate does not take non-correction repeat entries yet: {err}")
    assert runs(batch.params["direction"].tolist()) <= 2 and not batch.params["correction"].any()


def test_a_repeat_keeps_the_trials_own_correct_choice_when_the_task_names_it_choice():
    """ContextDependentDM's trial parameter "choice" (the correct answer) shares its name with the score's
    "choice" (the network's answer): score() keeps the parameter as "param.choice", and a correction trial
    repeats the trial with its own correct answer, not the network's wrong one."""
    import numpy as np

    from shaping.tasks import ContextDependentDM

    task = ContextDependentDM(seed=0, N_batch=16)
    policy = from_spec({"kind": "bias", "policy": {"kind": "fixed"}, "repeat": True}, task, seed=0)
    batch = task.generate(batch_id=0)
    wrong = batch.y[:, :, ::-1]  # every answer on the other side
    scored = task.score(batch.y, wrong, batch.mask, batch.params)
    assert (scored["param.choice"] == batch.params["choice"]).all()
    assert (scored["choice"] != scored["param.choice"]).all() and (scored["outcome"] == "error").all()
    policy.update(scored)
    repeat = policy.conditions()["repeat"]
    assert len(repeat) == policy.repeat["max_per_batch"]
    again = task.generate(batch_id=1, repeat=repeat)
    k = len(repeat)
    np.testing.assert_array_equal(again.params["choice"].to_numpy()[:k],
                                  [r["choice"] for r in repeat])
    for entry in repeat:  # each repeat is one of the errored trials, with every parameter as it was drawn
        same = (batch.params[list(entry)] == pd.Series(entry)).all(axis=1)
        assert same.any(), entry


def test_opt_outs_do_not_count_as_side_choices():
    """A sure choice (PostDecisionWager, choice 2) is not a choice of side 0: it does not feed the bias."""
    from shaping.tasks import PostDecisionWager

    task = PostDecisionWager(seed=0, N_batch=64)
    policy = from_spec({"kind": "bias", "policy": {"kind": "fixed", "knobs": {"p_wager": 1.0}},
                        "side": {"rule": "thresholded_linear", "window": 50}}, task, seed=0)
    for i in range(4):
        b = task.generate(batch_id=i, **{"knobs": policy.conditions()["knobs"]})
        y_hat = b.y.copy()
        y_hat[:, :, 2] = 2.0  # opt out of every trial
        policy.update(task.score(b.y, y_hat, b.mask, b.params))
    assert policy.conditions()["knobs"]["p_choice1"] == 0.5 and not policy.bias


def test_opt_outs_are_not_repeated_as_missed_trials():
    from shaping.tasks import PostDecisionWager

    task = PostDecisionWager(seed=0, N_batch=32)
    spec = {"kind": "bias", "policy": {"kind": "fixed", "knobs": {"p_wager": 1.0}},
            "repeat": {"on": ["error", "no_response"], "max_per_batch": 32}}
    policy = from_spec(spec, task, seed=0)
    b = task.generate(batch_id=0, knobs=policy.conditions()["knobs"])
    y_hat = b.y.copy()
    y_hat[:, :, 2] = 2.0  # opt out everywhere
    scored = task.score(b.y, y_hat, b.mask, b.params)
    scored.loc[:3, "choice"] = -1  # and the first four: no answer at all
    assert (scored["outcome"] == "no_response").all()
    policy.update(scored)
    assert len(policy.conditions()["repeat"]) == 4  # only the trials without an answer
