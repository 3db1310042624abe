"""Sliding-window accuracy: what counts, what slides out, per-condition accuracy, snapshot."""
import numpy as np
import pandas as pd
import pytest

from shaping.policies import AccuracyWindow, batch_accuracy


def scored(outcomes, correction=None, coherence=None):
    df = pd.DataFrame({"trial": np.arange(len(outcomes)), "outcome": outcomes})
    if correction is not None:
        df["correction"] = correction
    if coherence is not None:
        df["coherence"] = coherence
    return df


BATCH = scored(["correct", "error", "no_response", "correct"], correction=[False, False, False, True])


@pytest.mark.parametrize("exclude_no_response, exclude_correction, expected", [
    (False, False, 2 / 4), (True, False, 2 / 3), (False, True, 1 / 3), (True, True, 1 / 2)])
def test_what_counts(exclude_no_response, exclude_correction, expected):
    w = AccuracyWindow(10, exclude_no_response, exclude_correction)
    w.push(BATCH)
    assert w.accuracy == pytest.approx(expected)
    assert batch_accuracy(BATCH, exclude_no_response, exclude_correction) == pytest.approx(expected)


def test_slides_over_the_last_n_trials():
    w = AccuracyWindow(4)
    assert w.accuracy is None and not w.full
    w.push(scored(["error"] * 3))
    w.push(scored(["correct"] * 3))
    assert w.full and w.n == 4 and w.accuracy == pytest.approx(3 / 4)


def test_missing_or_object_correction_column():
    w = AccuracyWindow(10, exclude_correction=True)
    w.push(scored(["correct", "error"]))  # no correction column: nothing excluded
    w.push(scored(["error", "error"], correction=np.array([True, None], dtype=object)))
    assert w.n == 3 and w.accuracy == pytest.approx(1 / 3)


def test_per_condition():
    w = AccuracyWindow(6, condition="coherence")
    w.push(scored(["correct", "error", "correct", "correct", "correct", "error", "correct"],
                  coherence=[0.7, 0.1, 0.1, 0.7, 0.7, 0.1, 0.1]))
    assert w.per_condition() == {0.1: (0.5, 4), 0.7: (1.0, 2)}  # the first trial slid out


def test_spec_forms_and_state_round_trip():
    assert AccuracyWindow.from_spec(50).get_config() == {"size": 50, "exclude_no_response": False,
                                                        "exclude_correction": False}
    w = AccuracyWindow.from_spec({"size": 5, "exclude_no_response": True}, condition="coherence")
    w.push(scored(["correct", "no_response", "error"], coherence=[0.1, 0.2, 0.3]))
    copy = AccuracyWindow.from_spec(w.get_config(), condition="coherence")
    copy.restore(w.state())
    assert copy.accuracy == w.accuracy == 0.5 and copy.per_condition() == w.per_condition()
