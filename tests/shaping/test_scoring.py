"""shaping.scoring: psychometric fits recover a simulated observer's bias, slope, threshold and lapse rates; the
lapse-free logistic does not; signed evidence and the trials that count."""
import numpy as np
import pandas as pd
import pytest

from shaping.policies.simulate import logistic, weibull
from shaping.scoring import (
    MIN_EVIDENCE_LEVELS,
    fit_logistic,
    fit_psychometric,
    fit_trials,
    no_fit_reason,
    responded,
    signed_evidence,
)


def observe(p: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(p.shape) < p).astype(float)


def test_logistic_fit_recovers_bias_width_and_both_lapse_rates():
    x = np.repeat(np.linspace(-0.5, 0.5, 11), 1200)
    truth = dict(mu=0.06, width=0.08, guess=0.04, lapse=0.10)  # lapses towards 0 (upper) and 1 (lower)
    y = observe(logistic(x, **truth), seed=0)
    fit = fit_psychometric(x, y, "logistic")
    assert fit.mu == pytest.approx(0.06, abs=0.01) and fit.width == pytest.approx(0.08, abs=0.012)
    assert fit.gamma == pytest.approx(0.04, abs=0.015) and fit.lapse == pytest.approx(0.10, abs=0.015)
    assert fit.threshold(0.5 * (1 + fit.gamma - fit.lapse)) == pytest.approx(fit.mu)
    assert fit(np.array([fit.mu]))[0] == pytest.approx(0.5 * (1 + fit.gamma - fit.lapse))
    # Without lapse rates the slope comes out far too shallow (Wichmann & Hill 2001).
    b0, b1 = fit_logistic(x, y)
    assert 1 / b1 > 1.3 * truth["width"]


def test_weibull_fit_recovers_threshold_and_lapse_with_the_guess_rate_fixed():
    x = np.repeat(np.array([0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8]), 1000)
    y = observe(weibull(x, alpha=0.2, beta=1.5, guess=0.5, lapse=0.05), seed=1)
    fit = fit_psychometric(x, y, "weibull")
    assert fit.gamma == 0.5 and fit.kind == "weibull"
    assert fit.mu == pytest.approx(0.2, rel=0.08) and fit.width == pytest.approx(1.5, rel=0.15)
    assert fit.lapse == pytest.approx(0.05, abs=0.015)
    f75 = (0.75 - 0.5) / (1 - 0.5 - 0.05)  # the true 75 %-correct threshold
    assert fit.threshold(0.75) == pytest.approx(0.2 * (-np.log1p(-f75)) ** (1 / 1.5), rel=0.08)
    assert np.isnan(fit.threshold(0.99))  # above the upper asymptote


def test_fit_trials_picks_the_axes_and_the_model_from_the_table():
    rng = np.random.default_rng(2)
    coherence = rng.choice([0.05, 0.1, 0.2, 0.4], 4000)
    target = rng.integers(0, 2, 4000)
    p1 = logistic(coherence * (2 * target - 1), mu=-0.02, width=0.05, guess=0.0, lapse=0.0)
    choice = (rng.random(4000) < p1).astype(int)
    outcome = np.where(choice == target, "correct", "error").astype(object)
    outcome[:100] = "no_response"  # left out
    trials = pd.DataFrame({"coherence": coherence, "target": target, "choice": choice, "outcome": outcome})
    x, y, label = signed_evidence(trials, "coherence")
    assert label == "P(choice = 1)" and len(x) == 3900 and responded(trials).sum() == 3900
    fit = fit_trials(trials, "coherence")
    assert fit.kind == "logistic" and fit.mu == pytest.approx(-0.02, abs=0.01)
    # three targets: P(correct) against unsigned evidence, guess rate 1/3
    trials["target"] = rng.integers(0, 3, 4000)
    fit = fit_trials(trials, "coherence")
    assert fit.kind == "weibull" and fit.gamma == pytest.approx(1 / 3)
    assert fit_trials(trials.assign(coherence=0.1), "coherence") is None  # one level constrains nothing
    assert fit_trials(trials, "no_such_column") is None


def test_no_curve_through_fewer_than_three_evidence_levels():
    """One coherence signed by side is two levels: any sigmoid passes through them; the fit says so instead."""
    rng = np.random.default_rng(5)
    target = rng.integers(0, 2, 2000)
    choice = np.where(rng.random(2000) < 0.8, target, 1 - target)
    trials = pd.DataFrame({"coherence": 0.7, "target": target, "choice": choice,
                           "outcome": np.where(choice == target, "correct", "error")})
    assert MIN_EVIDENCE_LEVELS == 3
    assert fit_trials(trials, "coherence") is None
    assert no_fit_reason(trials, "coherence") == "2 evidence levels (a curve needs 3)"
    three = trials.assign(coherence=rng.choice([0.1, 0.7], 2000))  # +-0.1, +-0.7: four levels
    assert no_fit_reason(three, "coherence") is None and fit_trials(three, "coherence") is not None
    assert no_fit_reason(trials.assign(choice=1), "coherence") == "2 evidence levels (a curve needs 3)"
    assert no_fit_reason(three.assign(choice=1), "coherence") == "a single answer at every level"


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "probit"}, "expected 'logistic' or 'weibull'"),
    ({"kind": "weibull", "x": [-0.1, 0.2]}, "unsigned evidence"),
    ({"y": [0.0, 0.5]}, "0/1 responses"),
    ({"max_lapse": 0.6}, r"max_lapse = 0.6 must be in \[0, 0.5\)"),
])
def test_bad_input_is_refused_precisely(kwargs, message):
    args = {"x": [0.1, 0.2], "y": [0.0, 1.0], **kwargs}
    with pytest.raises(ValueError, match=message):
        fit_psychometric(args.pop("x"), args.pop("y"), **args)


def test_a_task_signs_its_evidence_by_its_own_side_parameter():
    """ContextDependentDM's motion evidence decides the choice in the motion context only: signed by the correct
    choice, an agent that always reports the colour side got a steep 'motion' curve; signed by the motion side
    (the task's evidence_side) its curve is flat, as its use of motion is."""
    from shaping.policies.simulate import outputs_for
    from shaping.tasks import make

    task = make("ContextDependentDM", seed=0, N_batch=2000)
    b = task.generate(knobs={"coherence_motion": [0.05, 0.1, 0.2, 0.4], "coherence_color": 0.4}, batch_id=0)
    colour_only = b.params["side_color"].to_numpy().astype(int)
    scored = task.score(b.y, outputs_for(colour_only, b.y, b.mask), b.mask, b.params)
    by_target = fit_logistic(*signed_evidence(scored, "coherence_motion")[:2])[1]
    journaled = scored.assign(task="ContextDependentDM")  # the journal's trial table names the task
    by_motion = fit_logistic(*signed_evidence(journaled, "coherence_motion")[:2])[1]
    assert by_target > 3 and abs(by_motion) < 1, (by_target, by_motion)
    by_colour = fit_logistic(*signed_evidence(journaled, "coherence_color")[:2])[1]  # its own side, not motion's
    assert by_colour > 3, by_colour
