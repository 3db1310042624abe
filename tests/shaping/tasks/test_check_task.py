"""check_task catches each kind of broken task, with a message naming the task and the law."""
from __future__ import annotations

import numpy as np
import pytest

from shaping.tasks import PerceptualDiscrimination, Task, check_task


class OneChannelUnscored(Task):
    """PsychRNN-style, one output channel and no accuracy_function: score() cannot judge it."""

    def __init__(self, dt=10, tau=100, T=500, N_batch=8):
        super().__init__(1, 1, dt, tau, T, N_batch)

    def generate_trial_params(self, batch, trial):
        return {"level": np.random.uniform(0.5, 1.0)}

    def trial_function(self, t, params):
        on = float(t >= 200)
        return np.array([params["level"] * on + 0.1 * np.random.randn()]), np.array([on]), np.array([on])


class UserTask(OneChannelUnscored):
    """A well-formed PsychRNN-style task; the subclasses below break one law each."""

    def accuracy_function(self, correct_output, test_output, output_mask):
        return float(np.mean(np.all(np.abs((test_output - correct_output) * output_mask) < 0.5, axis=(1, 2))))


class UnseededNoise(UserTask):
    def trial_function(self, t, params):
        x, y, m = super().trial_function(t, params)
        return x + np.random.default_rng().standard_normal(1), y, m


class MaskOutOfRange(UserTask):
    def trial_function(self, t, params):
        x, y, m = super().trial_function(t, params)
        return x, y, 2 * m


class IgnoresCoherence(PerceptualDiscrimination):
    def sample_params(self, n, rng, knobs):
        return super().sample_params(n, rng, {**knobs, "coherence": 0.5})


class StepwiseDisagrees(PerceptualDiscrimination):
    def build_trials(self, params, rng):  # vectorised still (trial_function is PerceptualDiscrimination's)
        x, y, m = super().build_trials(params, rng)
        return x, 0.9 * y, m


class BadScore(UserTask):
    def score(self, y, y_hat, mask, trial_params=None):
        return super().score(y, y_hat, mask, trial_params).drop(columns="target")


class LiveParams(UserTask):
    def get_task_params(self):
        return self.__dict__


def test_well_formed_user_task_passes():
    check_task(UserTask())


@pytest.mark.parametrize("task,law", [
    (UnseededNoise(), "not bit-identical"),
    (MaskOutOfRange(), r"mask values must lie in \[0, 1\]"),
    (IgnoresCoherence(seed=0), "knob 'coherence' = 0 is not honoured"),
    (StepwiseDisagrees(seed=0), "vectorised and per-step y differ"),
    (BadScore(), "score\\(\\) columns must start with"),
    (LiveParams(), "returns the live attributes"),
    (OneChannelUnscored(), "N_out=1.*implement accuracy_function"),
], ids=["unseeded-noise", "mask-out-of-range", "knob-ignored", "paths-disagree", "bad-score", "live-params",
        "one-channel-unscored"])
def test_broken_task_is_caught(task, law):
    with pytest.raises(AssertionError, match=f"^{type(task).__name__}: .*{law}"):
        check_task(task)


def test_check_task_leaves_the_task_as_it_found_it():
    task = PerceptualDiscrimination(seed=3)
    task.generate()
    before = (task.batch_index, dict(task.knob_values), task.rng.bit_generator.state)
    check_task(task)
    assert (task.batch_index, dict(task.knob_values), task.rng.bit_generator.state) == before


def test_trial_builder_noise_leaves_the_stream_alone_at_sd_0():
    """add_noise used to skip its draw at SD 0, so everything drawn after it depended on the noise level."""
    from shaping.tasks import TrialBuilder

    task = PerceptualDiscrimination(N_batch=4, seed=0)
    after = []
    for sd in (0.0, 0.3):
        rng = np.random.default_rng(5)
        b = TrialBuilder(task, 4)
        b.add_noise(sd, rng)
        assert (np.std(b.x) > 0.2) == (sd > 0)
        after.append(rng.random(3))
    np.testing.assert_array_equal(after[0], after[1])
