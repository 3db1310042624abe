"""Task-specific scoring: withholding, ties, produced intervals, held bits."""
from __future__ import annotations

import numpy as np
import pytest

from shaping.tasks import (
    ContextDependentDM,
    DelayedDiscrimination,
    DelayedMatchToSample,
    FlipFlop,
    GoNoGo,
    MatchToCategory,
    MultiSensoryIntegration,
    PerceptualDiscrimination,
    PostDecisionWager,
    ProAntiSaccade,
    ReadySetGo,
)

ARGMAX_TASKS = [PerceptualDiscrimination, DelayedDiscrimination, DelayedMatchToSample, MatchToCategory,
                ContextDependentDM, ProAntiSaccade, MultiSensoryIntegration, PostDecisionWager]


@pytest.mark.parametrize("cls", ARGMAX_TASKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("level", [0.0, 0.5])
def test_tied_outputs_are_no_response_not_choice_0(cls, level):
    task = cls(seed=0)
    b = task.generate(64, batch_id=0)
    scored = task.score(b.y, np.full_like(b.y, level), b.mask, b.params)
    asked = scored["target"].to_numpy() >= 0
    assert asked.sum() > 32
    assert (scored["choice"] == -1).all()
    assert (scored.loc[asked, "outcome"] == "no_response").all()


def test_only_an_exact_tie_of_the_top_two_channels_is_no_choice():
    task = ProAntiSaccade(seed=0)  # 8 output channels
    b = task.generate(16, batch_id=0)
    y_hat = np.zeros_like(b.y)
    y_hat[:, :, 2] = y_hat[:, :, 5] = 0.8  # two channels tie on top, the others lower
    assert (task.score(b.y, y_hat, b.mask, b.params)["choice"] == -1).all()
    y_hat[:, :, 5] -= 1e-3
    assert (task.score(b.y, y_hat, b.mask, b.params)["choice"] == 2).all()
    y_hat[:, :, 1] = 0.9  # a clear winner above the tied pair
    assert (task.score(b.y, y_hat, b.mask, b.params)["choice"] == 1).all()


def test_gonogo_withholding_is_correct_on_nogo_and_a_miss_on_go():
    task = GoNoGo(seed=0)
    b = task.generate(64, batch_id=0)
    nogo = b.params["nogo"].to_numpy() == 1
    assert nogo.any() and (~nogo).any()
    withheld = task.score(b.y, np.zeros_like(b.y), b.mask, b.params)
    assert (withheld.loc[nogo, "outcome"] == "correct").all() and (withheld.loc[nogo, "target"] == -1).all()
    assert (withheld.loc[~nogo, "outcome"] == "no_response").all()
    responded = task.score(b.y, np.ones_like(b.y), b.mask, b.params)
    assert (responded.loc[nogo, "outcome"] == "error").all()
    assert (responded.loc[~nogo, "outcome"] == "correct").all()


def _step_at(task, b, produced_ms):
    t = np.arange(task.N_steps) * task.dt
    go = b.params["set_on_ms"].to_numpy() + produced_ms
    return (t[None, :] >= go[:, None]).astype(np.float32)[:, :, None]


@pytest.mark.parametrize("factor,choice,outcome", [(1.0, 1, "correct"), (0.5, 0, "error"), (1.6, 2, "error")])
def test_ready_set_go_produced_interval(factor, choice, outcome):
    task = ReadySetGo(seed=0)
    b = task.generate(32, knobs={"tolerance": 0.2}, batch_id=0)
    target = b.params["production_ms"].to_numpy()
    scored = task.score(b.y, _step_at(task, b, factor * target), b.mask, b.params)
    assert (scored["choice"] == choice).all() and (scored["outcome"] == outcome).all()
    assert np.allclose(scored["produced_ms"], factor * target, atol=task.dt)


@pytest.mark.parametrize("dt", [10, 40, 50])
def test_ready_set_go_targets_produce_the_target_interval_exactly(dt):
    """Set and the target time fall between steps: the produced interval ran late by up to dt, and at dt=40
    with a tight tolerance a quarter of the targets themselves scored late."""
    task = ReadySetGo(dt=dt, seed=0)
    b = task.generate(256, knobs={"tolerance": 0.02}, batch_id=0)
    scored = task.score(b.y, b.y, b.mask, b.params)
    assert (scored["outcome"] == "correct").all()
    np.testing.assert_allclose(scored["produced_ms"], task.target_ms(b.params))
    assert np.all(np.abs(task.target_ms(b.params) - b.params["production_ms"]) < dt)


def test_ready_set_go_no_response_and_tolerance_edges():
    task = ReadySetGo(seed=0)
    b = task.generate(16, knobs={"tolerance": 0.1, "interval_ms": 600.0}, batch_id=0)
    silent = task.score(b.y, np.zeros_like(b.y), b.mask, b.params)
    assert (silent["outcome"] == "no_response").all() and silent["produced_ms"].isna().all()
    tol = 0.1 * 600 + 25  # 85 ms
    inside = task.score(b.y, _step_at(task, b, 600 + tol - task.dt), b.mask, b.params)
    outside = task.score(b.y, _step_at(task, b, 600 + tol + task.dt), b.mask, b.params)
    assert (inside["outcome"] == "correct").all() and (outside["choice"] == 2).all()


def test_flip_flop_counts_bits_held_through_the_masked_window():
    task = FlipFlop(seed=0)
    b = task.generate(8, batch_id=0)
    assert (task.score(b.y, b.y, b.mask, b.params)["choice"] == 3).all()
    wrong = b.y.copy()
    trial, step = 0, int(np.argmax(b.mask[0, :, 1] > 0))
    wrong[trial, step, 1] *= -1  # one masked step of one bit
    scored = task.score(b.y, wrong, b.mask, b.params)
    assert scored.loc[0, "choice"] == 2 and scored.loc[0, "outcome"] == "error"
    assert (scored.loc[1:, "outcome"] == "correct").all()
    settling = b.y.copy()
    unmasked = b.mask == 0
    settling[unmasked] *= -1  # wrong only while a bit may still be flipping
    assert (task.score(b.y, settling, b.mask, b.params)["outcome"] == "correct").all()


def test_flip_flop_holds_state_until_the_next_pulse_on_that_bit():
    task = FlipFlop(seed=0)
    b = task.generate(1, knobs={"n_pulses": 1, "stim_noise": 0.0}, batch_id=0)
    row = b.params.iloc[0]
    bit, sign, onset = int(row["pulse0_bit"]), row["pulse0_sign"], row["pulse0_ms"]
    t = np.arange(task.N_steps) * task.dt
    assert (b.y[0, t < onset, bit] == row[f"init{bit}"]).all() and (b.y[0, t >= onset, bit] == sign).all()
    for other in set(range(3)) - {bit}:
        assert (b.y[0, :, other] == row[f"init{other}"]).all()
    assert (b.x[0, (t >= onset) & (t < onset + task.pulse_ms), bit] == sign).all()
