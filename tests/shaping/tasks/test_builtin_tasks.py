"""Generic laws every built-in task obeys, one test per law, parametrised over the tasks (fixture ``task``)."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_cases import accuracy

from shaping.tasks import OUTCOMES, check_task


def test_shapes_and_dtypes(task):
    b = task.generate(16, batch_id=0)
    assert task.N_steps == int(np.ceil(task.T / task.dt))
    assert b.x.shape == (16, task.N_steps, task.N_in)
    assert b.y.shape == b.mask.shape == (16, task.N_steps, task.N_out)
    assert b.x.dtype == b.y.dtype == b.mask.dtype == np.float32
    assert len(b.params) == 16
    assert len(task.channel_names("in")) == task.N_in and len(task.channel_names("out")) == task.N_out


def test_mask_covers_exactly_the_response_epochs(task, case):
    b = task.generate(32, batch_id=0)
    expected = case.expected_mask(task, b.params)
    assert set(np.unique(b.mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(b.mask, expected)


def test_target_output_scores_perfectly(task):
    b = task.generate(64, batch_id=0)
    assert accuracy(task, b, b.y) == 1.0


def test_input_blind_outputs_score_near_chance(task, case):
    b = task.generate(512, batch_id=0)
    y_hat = np.random.default_rng(0).uniform(0, 1, b.y.shape).astype(np.float32)
    assert abs(accuracy(task, b, y_hat) - case.chance(task, b)) <= 0.08


def test_a_silent_network_is_correct_only_where_withholding_is(task):
    """All-zero outputs make no choice, so they are never a lucky 'chose channel 0'."""
    b = task.generate(256, batch_id=0)
    scored = task.score(b.y, np.zeros_like(b.y), b.mask, b.params)
    withhold = scored["target"].to_numpy() == -1  # GoNoGo's no-go trials, DelayedDiscrimination's empty ones
    np.testing.assert_array_equal(scored["outcome"].to_numpy() == "correct", withhold)


def test_same_seed_gives_identical_batches_and_another_seed_differs(case):
    first, again, other = case.factory(seed=7), case.factory(seed=7), case.factory(seed=8)
    a, b, c = (t.generate(16, batch_id=3) for t in (first, again, other))
    for field in ("x", "y", "mask"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
    assert a.params.equals(b.params)
    assert not (np.array_equal(a.x, c.x) and a.params.equals(c.params))
    d = first.generate(16, batch_id=4)
    assert not (np.array_equal(a.x, d.x) and a.params.equals(d.params))


def test_vectorised_and_stepwise_paths_agree_without_noise(task):
    quiet = {k.name: 0.0 for k in task.knobs if k.name == "stim_noise"}
    fast = task.generate(4, knobs=quiet, batch_id=2)
    slow = task.generate(4, knobs=quiet, batch_id=2, stepwise=True)
    np.testing.assert_allclose(slow.x, fast.x, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(slow.y, fast.y)
    np.testing.assert_array_equal(slow.mask, fast.mask)


def test_check_task_passes(task):
    check_task(task)
    task.get_trial_batch()  # PsychRNN's first call starts a live generator, which copies used to choke on
    check_task(task)


def test_score_without_the_trial_params_scores_or_says_what_it_needs(task):
    """trial_params is optional: a task that reads its targets from y scores without it, the others say they
    need it (five tasks raised a bare KeyError)."""
    b = task.generate(4, batch_id=0)
    try:
        scored = task.score(b.y, b.y, b.mask)
    except ValueError as err:
        assert "pass batch.params as trial_params" in str(err)
    else:
        assert (scored["outcome"] == "correct").all()


def test_score_columns(task):
    b = task.generate(8, batch_id=0)
    scored = task.score(b.y, b.y, b.mask, b.params)
    assert list(scored.columns[:4]) == ["trial", "outcome", "choice", "target"]
    assert set(scored["outcome"]) <= set(OUTCOMES)
    assert all(c in scored.columns for c in b.params.columns)


def test_get_task_params_returns_a_copy(task):
    params = task.get_task_params()
    for key in ("N_in", "N_out", "N_batch", "dt", "tau", "T", "alpha", "N_steps"):
        assert key in params
    params["N_in"] = -1
    assert task.N_in != -1


def test_get_task_params_leaves_out_the_stream_state(task):
    """A model built from these params must not take the task's seed as its own (PsychRNN's hold no seed)."""
    params = task.get_task_params()
    assert not {"seed", "batch_index", "rng", "knob_values"} & set(params)
    assert not [k for k in params if k.startswith("_")]


def test_invalid_knob_value_raises_naming_task_knob_and_range(task):
    name = type(task).__name__
    for knob in task.knobs:
        bad = knob.high + 1.0
        with pytest.raises(ValueError) as err:
            task.set_knobs(**{knob.name: bad})
        message = str(err.value)
        assert name in message and repr(knob.name) in message and f"[{knob.low:g}, {knob.high:g}]" in message
        with pytest.raises(ValueError, match=knob.name):
            task.generate(4, knobs={knob.name: [knob.low, bad]})
    with pytest.raises(ValueError, match=f"{name}.*no_such_knob"):
        task.set_knobs(no_such_knob=1.0)


def test_knob_values_are_recorded_per_trial(task):
    for knob in task.knobs:
        values = [knob.low, knob.high]
        b = task.generate(32, knobs={knob.name: values}, batch_id=0)
        assert set(np.unique(b.params[knob.name].astype(float))) <= set(values)


def test_get_trial_batch_walks_the_persistent_stream(task):
    x1, y1, mask1, params1 = task.get_trial_batch()
    x2, *_ = task.get_trial_batch()
    assert x1.shape == (task.N_batch, task.N_steps, task.N_in)
    assert params1.dtype == object and len(params1) == task.N_batch and isinstance(params1[0], dict)
    assert not np.array_equal(x1, x2)
    assert task.accuracy_function(y1, y1, mask1) == 1.0


def test_accuracy_function_agrees_with_score(task, case):
    """PsychRNN's accuracy_function (arrays only) and score (with params) agree on the ideal observer
    (ReadySetGo's arrays give the target interval only to within dt, hence its looser match)."""
    b = task.generate(256, batch_id=5)
    y_hat = case.observer(task, b, np.random.default_rng(0))
    slack = 0.03 if type(task).__name__ == "ReadySetGo" else 1e-9
    assert task.accuracy_function(b.y, y_hat, b.mask) == pytest.approx(accuracy(task, b, y_hat), abs=slack)


def test_repeating_a_trial_record_reproduces_its_targets(task):
    """Correction trials: a full params row passed as ``repeat`` rebuilds the same trial (noise aside)."""
    b = task.generate(8, batch_id=0)
    record = b.params.iloc[3].to_dict()
    again = task.generate(8, batch_id=1, repeat=[record])
    np.testing.assert_array_equal(again.y[0], b.y[3])
    np.testing.assert_array_equal(again.mask[0], b.mask[3])
    assert again.params["correction"].tolist() == [True] + [False] * 7
