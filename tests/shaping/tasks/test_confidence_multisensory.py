"""Task-specific facts of PostDecisionWager (sure cue, sure scoring) and MultiSensoryIntegration (modalities,
the multisensory benefit)."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_cases import CASES, accuracy, between, col

from shaping.tasks import MultiSensoryIntegration, PostDecisionWager
from shaping.tasks.multisensory import AUDITORY, BOTH, VISUAL


# ---------------------------------------------------------------------- PostDecisionWager
def test_sure_cue_and_sure_mask_only_on_wager_trials():
    task = PostDecisionWager(seed=0)
    b = task.generate(64, knobs={"stim_noise": 0.0}, batch_id=0)
    p = b.params
    wager = p["wager"].to_numpy() == 1
    assert wager.any() and (~wager).any()
    cue_window = between(task, col(p, "sure_on_ms"), col(p, "decision_off_ms"))
    np.testing.assert_array_equal(b.x[:, :, 3], (cue_window & wager[:, None]).astype(np.float32))
    after_offset = col(p, "sure_on_ms") - col(p, "stim_off_ms")
    assert ((after_offset >= 500) & (after_offset <= 750)).all()
    assert (col(p, "sure_on_ms") < col(p, "decision_on_ms")).all()
    assert (b.mask[wager, :, 2].any(axis=1)).all() and not b.mask[~wager, :, 2].any()
    # the supervised target is the correct side on every trial, wager or not
    assert (task.score(b.y, b.y, b.mask, b.params)["choice"] == p["direction"]).all()


@pytest.mark.parametrize("p_wager,expected", [(0.0, 0), (1.0, 1)])
def test_p_wager_sets_the_fraction_of_wager_trials(p_wager, expected):
    b = PostDecisionWager(seed=0).generate(32, knobs={"p_wager": p_wager}, batch_id=0)
    assert (b.params["wager"] == expected).all()


def _outputs(b, side_level, sure_level, wrong_side=False):
    """Outputs with ``side_level`` on the correct side (or the wrong one) and ``sure_level`` on ``sure``."""
    side = b.params["direction"].to_numpy()
    if wrong_side:
        side = 1 - side
    y_hat = np.zeros_like(b.y)
    y_hat[np.arange(len(side)), :, side] = side_level
    y_hat[:, :, 2] = sure_level
    return y_hat


def test_sure_choice_is_no_response_on_wager_trials_and_not_an_option_elsewhere():
    task = PostDecisionWager(seed=0)
    b = task.generate(64, batch_id=0)
    wager = b.params["wager"].to_numpy() == 1
    for wrong_side in (False, True):
        scored = task.score(b.y, _outputs(b, 0.5, 1.0, wrong_side), b.mask, b.params)
        assert (scored.loc[wager, "choice"] == 2).all() and scored.loc[wager, "opted_out"].all()
        assert (scored.loc[wager, "outcome"] == "no_response").all()
        # without the cue the sure target is absent: the sure output is not read, the side decides
        assert not scored.loc[~wager, "opted_out"].any()
        assert (scored.loc[~wager, "outcome"] == ("error" if wrong_side else "correct")).all()
    committed = task.score(b.y, _outputs(b, 1.0, 0.5, wrong_side=True), b.mask, b.params)
    assert (committed["outcome"] == "error").all() and not committed["opted_out"].any()
    assert task.accuracy_function(b.y, _outputs(b, 0.5, 1.0), b.mask) == pytest.approx(np.mean(~wager))


def test_timing_validates_the_sure_window():
    with pytest.raises(ValueError, match="sure_min <= sure_max <= delay"):
        PostDecisionWager(timing={"delay": 600.0})
    with pytest.raises(ValueError, match="unknown timing key 'pre_sure'"):
        PostDecisionWager(timing={"pre_sure": 500.0})


def test_wagering_observer_opts_out_when_evidence_is_weak_and_is_better_when_it_commits():
    """Kiani & Shadlen's signature: fewer opt-outs at higher coherence, and higher accuracy on wager trials
    where the sure target was declined than on trials where it was not offered."""
    task = PostDecisionWager(seed=3)
    b = task.generate(4000, knobs={"stim_noise": 0.3, "coherence": [0.064, 0.128, 0.256]}, batch_id=0)
    scored = task.score(b.y, CASES["PostDecisionWager"].observer(task, b, np.random.default_rng(0)), b.mask,
                        b.params)
    wager = scored["wager"] == 1
    rate = scored[wager].groupby("coherence")["opted_out"].mean()
    assert rate.is_monotonic_decreasing and rate.iloc[0] > rate.iloc[-1] + 0.2
    declined = scored[wager & ~scored["opted_out"]]
    offered_none = scored[~wager]
    assert (declined["outcome"] == "correct").mean() > (offered_none["outcome"] == "correct").mean() + 0.05


# ---------------------------------------------------------------------- MultiSensoryIntegration
def test_modalities_carry_the_same_side_and_absent_ones_are_silent():
    task = MultiSensoryIntegration(seed=0)
    b = task.generate(256, knobs={"stim_noise": 0.0, "coherence": 0.4, "gain_visual": 0.5}, batch_id=0)
    p = b.params
    modality, side = p["modality"].to_numpy(), p["choice"].to_numpy()
    assert set(modality) == {VISUAL, AUDITORY, BOTH}
    stim = between(task, col(p, "stim_on_ms"), col(p, "stim_off_ms"))
    rows = np.arange(len(p))
    mean = np.einsum("nt,ntc->nc", stim, b.x[:, :, 1:5]) / stim.sum(axis=1, keepdims=True)
    for first, coh, shown in ((0, 0.2, modality != AUDITORY), (2, 0.4, modality != VISUAL)):
        pair = mean[:, first:first + 2]
        np.testing.assert_allclose(pair[shown][rows[: shown.sum()], side[shown]], (1 + coh) / 2, atol=1e-6)
        np.testing.assert_allclose(pair[shown][rows[: shown.sum()], 1 - side[shown]], (1 - coh) / 2, atol=1e-6)
        np.testing.assert_array_equal(pair[~shown], 0.0)
    outside = ~stim
    assert not b.x[:, :, 1:5][outside].any()


@pytest.mark.parametrize("p_multisensory", [0.0, 1.0])
def test_p_multisensory_sets_the_fraction_of_multisensory_trials(p_multisensory):
    m = MultiSensoryIntegration(seed=0).generate(2000, knobs={"p_multisensory": p_multisensory},
                                                 batch_id=0).params["modality"]
    if p_multisensory == 1.0:
        assert (m == BOTH).all()
    else:
        assert (m != BOTH).all() and abs((m == VISUAL).mean() - 0.5) < 0.04


def test_ideal_observer_gains_from_combining_modalities():
    """At the same coherences the observer combining both modalities beats either one alone, by about the
    sqrt(2) gain in sensitivity of two equally reliable, independent cues."""
    task = MultiSensoryIntegration(seed=5)
    b = task.generate(6000, knobs={"stim_noise": 0.3, "coherence": 0.15}, batch_id=0)
    scored = task.score(b.y, CASES["MultiSensoryIntegration"].observer(task, b, np.random.default_rng(0)),
                        b.mask, b.params)
    acc = (scored["outcome"] == "correct").groupby(scored["modality"]).mean()
    assert acc[BOTH] > acc[VISUAL] + 0.04 and acc[BOTH] > acc[AUDITORY] + 0.04
    assert abs(acc[VISUAL] - acc[AUDITORY]) < 0.04
    from statistics import NormalDist
    z = NormalDist().inv_cdf
    predicted = NormalDist().cdf(np.sqrt(2) * z((acc[VISUAL] + acc[AUDITORY]) / 2))
    assert acc[BOTH] == pytest.approx(predicted, abs=0.03)
    assert accuracy(task, b, b.y) == 1.0


def test_a_modality_with_a_lower_gain_is_less_reliable():
    task = MultiSensoryIntegration(seed=6)
    b = task.generate(6000, knobs={"stim_noise": 0.3, "coherence": 0.15, "gain_visual": 0.5}, batch_id=0)
    scored = task.score(b.y, CASES["MultiSensoryIntegration"].observer(task, b, np.random.default_rng(0)),
                        b.mask, b.params)
    acc = (scored["outcome"] == "correct").groupby(scored["modality"]).mean()
    assert acc[VISUAL] < acc[AUDITORY] - 0.05 < acc[BOTH]
    assert (scored["coherence"] == 0.15).all()  # the psychometric variable is the same on every trial
