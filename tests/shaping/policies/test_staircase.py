"""Staircases: Levitt's transformed rules converge on 70.7 % and 79.4 % correct, Kaernbach's weighted rule on
its target, on a simulated observer with a known psychometric function; and the mechanics (direction,
bounds, reversals, shrinking steps, log scale, completion, events)."""
import numpy as np
import pytest

from shaping.policies import Staircase, from_spec
from shaping.policies.simulate import Observer, run
from shaping.tasks import PerceptualDiscrimination

# Tuned for 32-trial batches: small per-trial steps that shrink at reversals, threshold over 32 reversals.
CONVERGE = {"kind": "staircase", "knob": "coherence", "start": 0.7, "scale": "log", "bounds": [0.005, 2.0],
            "step": 0.02, "shrink": 0.6, "min_step": 0.0015, "estimate_reversals": 32}


@pytest.mark.parametrize("rule, target", [({"up": 1, "down": 2}, 0.7071), ({"up": 1, "down": 3}, 0.7937),
                                          ({"method": "weighted", "target": 0.75}, 0.75)],
                         ids=["1up2down", "1up3down", "weighted75"])
def test_converges_on_its_target(rule, target):
    errors = []
    for seed in range(5):
        task = PerceptualDiscrimination(seed=100 + seed, N_batch=32)
        policy = from_spec({**CONVERGE, **rule}, task, seed=seed)
        observer = Observer(alpha=0.2, beta=1.5)
        run(policy, task, observer, 4000, seed=seed)
        assert policy.staircase.target == pytest.approx(target, abs=1e-4)
        assert policy.staircase.reversals >= 32
        errors.append(float(observer.p_correct(policy.threshold)) - target)
    assert np.max(np.abs(errors)) < 0.03, errors


def test_batches_in_flight_do_not_bias_the_threshold():
    """With the server's default credit an agent answers each batch two updates after it was drawn; steps are
    taken from the level each batch ran at, so the lag neither overshoots nor biases the estimate (stepping
    from the moved level gave 67.7 % for 1-up/2-down here), and each reversal is recorded at its batch's level."""
    spec = {**CONVERGE, "up": 1, "down": 2, "step": 0.05, "shrink": 1.0, "estimate_reversals": 6}
    p_at_threshold = []
    for seed in range(20):
        task = PerceptualDiscrimination(seed=seed, N_batch=16)
        policy = from_spec(spec, task, seed=seed)
        observer = Observer(alpha=0.2, beta=1.5)
        result = run(policy, task, observer, 3000, seed=seed, in_flight=3)
        for cond, batch_events in zip(result.conditions, result.batch_events):
            for ev in batch_events:
                if ev["event"] == "reversal":
                    assert ev["level"] == pytest.approx(cond["knobs"]["coherence"])
        p_at_threshold.append(float(observer.p_correct(policy.threshold)))
    assert np.mean(p_at_threshold) == pytest.approx(0.7071, abs=0.015), p_at_threshold


def test_an_integer_knob_climbs_though_its_trials_run_at_rounded_levels():
    """Stepping from the level read back from the trials (rounded) froze a step below 0.5: a perfect agent
    stayed at 4 pulses; stepping from the unrounded level the batch was drawn at climbs."""
    from shaping.tasks import FlipFlop

    task = FlipFlop(seed=0, N_batch=8)
    policy = from_spec({"kind": "staircase", "knob": "n_pulses", "start": 4, "step": 0.4, "up": 1, "down": 1,
                        "bounds": [0, 16]}, task, seed=0)
    in_flight = []
    for b in range(20):
        c = policy.conditions()
        batch = task.generate(knobs=c["knobs"], batch_id=b)
        in_flight.append((task.score(batch.y, batch.y, batch.mask, batch.params), c))  # a perfect agent
        if len(in_flight) == 3:
            policy.update(*in_flight.pop(0))
    assert policy.conditions()["knobs"]["n_pulses"] >= 9


def knob(name="coherence"):
    return PerceptualDiscrimination.knob(name)


def test_transformed_rule_steps_after_runs():
    sc = Staircase(knob(), start=1.0, up=1, down=3, step=0.1)
    assert sc.update([True, True])["new"] == 1.0  # two correct: no step yet
    r = sc.update([True])
    assert r["harder"] == 1 and r["new"] == pytest.approx(0.9)  # coherence: harder is lower
    r = sc.update([True, True, False])
    assert r["easier"] == 1 and r["new"] == pytest.approx(1.0)
    assert sc.reversals == 1 and sc.reversal_levels == [pytest.approx(0.9)]


def test_harder_follows_the_knobs_easier_direction():
    noise = Staircase(knob("stim_noise"), start=0.5, step=0.1)  # lower noise is easier: harder is up
    assert noise.update([True, True])["new"] == pytest.approx(0.6)
    assert noise.update([False])["new"] == pytest.approx(0.5)


def test_weighted_steps_follow_kaernbach():
    sc = Staircase(knob(), start=1.0, method="weighted", target=0.75, step=0.01)
    assert sc.update([True])["new"] == pytest.approx(0.99)
    assert sc.update([False])["new"] == pytest.approx(1.02)  # up step = 0.01 * 0.75 / 0.25
    assert sc.update([True, True, True, False])["new"] == pytest.approx(1.02)  # balance: no move


def test_bounds_shrink_and_completion():
    sc = Staircase(knob(), start=0.2, step=0.1, bounds=[0.1, 0.5], shrink=0.5, min_step=0.03, max_reversals=3)
    for _ in range(5):
        sc.update([True] * 4)
    assert sc.value == pytest.approx(0.1)  # clipped at the hard bound
    sc.update([False])
    assert sc.reversals == 1 and sc.current_step == pytest.approx(0.05)
    sc.update([True, True])
    sc.update([False])
    assert sc.reversals == 3 and sc.done
    assert sc.current_step == pytest.approx(0.03)  # 0.1 * 0.5**3 floored at min_step
    assert sc.threshold == pytest.approx(np.mean(sc.reversal_levels))


def test_an_integer_knobs_threshold_is_the_unrounded_mean_of_the_levels_run():
    from shaping.tasks import FlipFlop

    sc = Staircase(FlipFlop.knob("n_pulses"), start=8, up=1, down=1, step=1, estimate_reversals=4)
    for ok, level in [(True, 8), (False, 9), (True, 8), (False, 9), (True, 8), (False, 10)]:
        sc.update([ok], level=level)
    assert sc.reversal_levels == [8, 9, 8, 10] and sc.threshold == 8.75  # was rounded to 9


def test_log_scale_multiplies_and_estimates_geometrically():
    sc = Staircase(knob(), start=0.4, scale="log", step=np.log10(2), bounds=[0.01, 2.0])
    sc.update([True, True])
    assert sc.value == pytest.approx(0.2)
    sc.update([False])
    sc.update([True, True])
    assert sc.reversal_levels == [pytest.approx(0.2), pytest.approx(0.4)]
    assert sc.threshold == pytest.approx(np.sqrt(0.2 * 0.4))


def test_policy_events_and_completion(task):
    policy = from_spec({**CONVERGE, "max_reversals": 5}, task, seed=0)
    result = run(policy, task, Observer(alpha=0.2), 10_000)
    kinds = [e["event"] for e in result.events]
    assert policy.complete and kinds[-1] == "complete" and kinds.count("reversal") == 5
    assert result.events[-1]["threshold"] == pytest.approx(policy.threshold)
    changes = [e for e in result.events if e["event"] == "level_changed"]
    assert all(e["knob"] == "coherence" and e["old"] != e["new"] for e in changes)
    levels = result.trials.groupby("batch")["coherence"].first().to_numpy()
    before_last = [e for e in changes if e["trial"] < policy.trials]
    assert np.count_nonzero(np.diff(levels)) == len(before_last)  # each change reached the next batch
    assert "Levitt 1971" in changes[0]["rule"]
    assert policy.trials == len(result.trials) < 10_000


def test_manual_set_knob_moves_the_staircase(task):
    policy = from_spec(CONVERGE, task, seed=0)
    (event,) = policy.set_knob("coherence", 0.3)
    assert event["event"] == "override" and event["old"] == 0.7 and event["new"] == pytest.approx(0.3)
    assert policy.conditions()["knobs"]["coherence"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="bounds"):
        policy.set_knob("coherence", 0.001)
