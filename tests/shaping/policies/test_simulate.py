"""The simulated observer has the psychometric function it claims, learns, can be biased; the fast path
builds the same scored table as task.generate + task.score."""
import numpy as np
import pandas as pd
import pytest

from shaping.policies import from_spec
from shaping.policies.simulate import Observer, logistic, run, weibull, weibull_inverse


def test_weibull_and_its_inverse():
    p = np.array([0.6, 0.707, 0.794, 0.9])
    assert weibull(weibull_inverse(p, 0.2, 1.5), 0.2, 1.5) == pytest.approx(p)
    assert weibull(0.2, 0.2, 1.5) == pytest.approx(0.5 + 0.5 * (1 - np.exp(-1)))
    assert logistic(0.3, 0.3, 0.05) == pytest.approx(0.75)


def test_observer_matches_its_psychometric_function():
    obs = Observer(alpha=0.2, beta=1.5, lapse=0.1)
    rng = np.random.default_rng(0)
    for c in (0.05, 0.2, 0.6):
        target = rng.integers(0, 2, 40_000)
        accuracy = np.mean(obs.respond(np.full(target.size, c), target, rng) == target)
        assert accuracy == pytest.approx(float(obs.p_correct(c)), abs=0.01)


def test_learner_improves_with_practice():
    obs = Observer(alpha=0.6, alpha_final=0.1, tau_trials=1000)
    before = float(obs.p_correct(0.2))
    obs.respond(np.full(3000, 0.2), np.zeros(3000, dtype=int), np.random.default_rng(0))
    assert obs.practice == 3000 and obs.threshold == pytest.approx(0.1 + 0.5 * np.exp(-3))
    assert float(obs.p_correct(0.2)) > before + 0.2


def test_biased_observer_chooses_one_side_but_keeps_its_accuracy():
    rng = np.random.default_rng(1)
    obs = Observer(alpha=0.3, p_guess1=0.9, p_no_response=0.1)
    target = rng.integers(0, 2, 40_000)
    choice = obs.respond(np.full(target.size, 0.3), target, rng)
    sees = 1 - np.exp(-1)
    responded = choice >= 0
    assert responded.mean() == pytest.approx(0.9, abs=0.01)
    assert (choice[responded] == 1).mean() == pytest.approx(0.5 * sees + 0.9 * (1 - sees), abs=0.01)
    assert (choice == target)[responded].mean() == pytest.approx(float(obs.p_correct(0.3)), abs=0.01)


def test_fast_path_scores_as_the_task_does(task):
    spec = {"kind": "bias", "policy": {"kind": "fixed", "knobs": {"coherence": [0.1, 0.5]}}, "repeat": True}
    fast = run(from_spec(spec, task, seed=0), task, Observer(alpha=0.3), 320, seed=5)
    full = run(from_spec(spec, task, seed=0), task, Observer(alpha=0.3), 320, seed=5, full=True)
    assert fast.trials["correction"].any()
    pd.testing.assert_frame_equal(fast.trials, full.trials[fast.trials.columns], check_dtype=False)
