"""TrialBuilder's verbs on a small hand-checked batch: periods and their rounding rule, channels by index, name,
per-trial index or list of names, choice targets and masks."""
from __future__ import annotations

import numpy as np
import pytest

from shaping.tasks import ContextDependentDM, TrialBuilder


@pytest.fixture
def builder():
    """Three trials of a 5-input, 2-output task, dt = 10 ms, 10 steps (T = 100 ms)."""
    task = ContextDependentDM(dt=10, T=100, N_batch=3, seed=0)
    return TrialBuilder(task, 3)


def test_periods_follow_one_rounding_rule(builder):
    on, off = builder.add_period("stimulus", [20, 25, 0], onset_ms=[10, 15, 95])
    np.testing.assert_array_equal(off, [30, 40, 95])
    builder.add_period("decision", 30)  # after the last one added
    np.testing.assert_array_equal(builder.periods["decision"][0], off)
    # step i (t = 10 i ms) is inside when onset <= t < offset: steps ceil(on/dt) .. ceil(off/dt) - 1
    stim = builder.in_period("stimulus")
    assert stim[0].nonzero()[0].tolist() == [1, 2] and stim[1].nonzero()[0].tolist() == [2, 3]
    assert not stim[2].any()  # empty period
    decision = builder.in_period("decision")
    assert decision[0].nonzero()[0].tolist() == [3, 4, 5] and decision[2].nonzero()[0].tolist() == []
    np.testing.assert_array_equal(builder.before("decision"), ~builder.after("decision"))
    assert builder.until("stimulus")[1].nonzero()[0].tolist() == [0, 1, 2, 3]


def test_explicit_bounds_are_taken_as_given(builder):
    on, off = builder.add_period("cue", onset_ms=[0.1, 0.2, 0.3], offset_ms=[0.3, 0.6, 0.9])
    np.testing.assert_array_equal(off, [0.3, 0.6, 0.9])  # not 0.1 + (0.3 - 0.1), which is 0.30000000000000004
    with pytest.raises(ValueError, match=r"add_period\('x'\): give either duration_ms or offset_ms"):
        builder.add_period("x", 10, onset_ms=0, offset_ms=20)
    with pytest.raises(ValueError, match="give either duration_ms or offset_ms"):
        builder.add_period("x")


def test_channels_by_index_name_per_trial_index_and_list_of_names(builder):
    builder.add_period("all", 100, onset_ms=0)
    builder.add_input(0, 1.0, "all")
    builder.add_input("fixation", 0.5, "all")  # adds to what is there
    builder.add_input(np.array([1, 2, 1]), [10.0, 20.0, 30.0], "all")  # per-trial channel and value
    builder.add_input(["context_motion", "context_color"], np.eye(2)[[1, 0, 0]], "all")  # (n, k)
    x = builder.x[:, 0, :]
    np.testing.assert_array_equal(x, [[1.5, 10, 0, 0, 1], [1.5, 0, 20, 1, 0], [1.5, 30, 0, 1, 0]])
    with pytest.raises(ValueError, match="ContextDependentDM: no input channel 'colour'; its inputs are fixation, "
                                         "motion, color"):
        builder.add_input("colour", 1.0, "all")


def test_choice_targets_and_masks(builder):
    builder.add_period("decision", 30, onset_ms=[0, 50, 70])
    builder.set_choice_target([1, 0, 1], "decision", hi=1.0, lo=0.2)
    builder.set_mask(1.0, "decision")
    builder.set_mask([0.0, 1.0, 0.5], "decision", channel="choice1")  # one value per trial, one output
    x, y, mask = builder.result()
    assert x.dtype == y.dtype == mask.dtype == np.float32
    np.testing.assert_array_equal(y[0, :, 1], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(y[0, :, 0], np.float32([0.2, 0.2, 0.2, 0, 0, 0, 0, 0, 0, 0]))
    np.testing.assert_array_equal(y[1, 5:8], np.float32([[1, 0.2]] * 3))
    np.testing.assert_array_equal(mask[:, :, 0].sum(axis=1), [3, 3, 3])
    np.testing.assert_array_equal(mask[:, :, 1].sum(axis=1), [0, 3, 1.5])


def test_a_value_is_written_only_inside_its_period(builder):
    """A non-finite value of a trial whose period is empty leaves that trial alone (NaN * 0 would not)."""
    builder.add_period("stimulus", [20, 0, 20], onset_ms=0)
    builder.add_input("motion", [1.0, np.nan, 2.0], "stimulus")
    builder.set_groundtruth("choice0", [np.inf, np.nan, 1.0], builder.in_period("stimulus"))
    assert np.isfinite(builder.x[1]).all() and np.isfinite(builder.y[1]).all()
    np.testing.assert_array_equal(builder.x[:, :3, 1], [[1, 1, 0], [0, 0, 0], [2, 2, 0]])
