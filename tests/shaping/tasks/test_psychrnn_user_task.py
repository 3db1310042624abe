"""A PsychRNN user's task (only ``generate_trial_params`` with np.random and ``trial_function``) runs here."""
from __future__ import annotations

import numpy as np

from shaping.tasks import Task, check_task


class UserDiscrimination(Task):
    """Written exactly as for PsychRNN 1.0.0 (no seed argument, NumPy's global RNG)."""

    def __init__(self, dt, tau, T, N_batch):
        super().__init__(2, 2, dt, tau, T, N_batch)

    def generate_trial_params(self, batch, trial):
        return {"direction": np.random.choice([0, 1]), "coherence": np.random.choice([0.1, 0.5]),
                "onset": np.random.uniform(100, 300), "stim_noise": 0.1}

    def trial_function(self, t, params):
        x_t = params["stim_noise"] * np.random.randn(self.N_in)
        y_t = np.zeros(self.N_out)
        mask_t = np.zeros(self.N_out)
        d = params["direction"]
        if params["onset"] <= t < params["onset"] + 300:
            x_t[d] += 1 + params["coherence"]
            x_t[1 - d] += 1
        if t >= params["onset"] + 400:
            y_t[d], y_t[1 - d] = 1.0, 0.2
            mask_t[:] = 1.0
        return x_t, y_t, mask_t


def make(seed=None):
    task = UserDiscrimination(10, 100, 1000, 16)
    if seed is not None:
        task.reseed(seed)
    return task


def test_get_trial_batch_yields_psychrnn_tuples_from_a_persistent_generator():
    task = make(seed=1)
    x, y, mask, params = task.get_trial_batch()
    assert x.shape == (16, 100, 2) and y.shape == mask.shape == (16, 100, 2)
    assert params.dtype == object and len(params) == 16
    assert set(params[0]) == {"direction", "coherence", "onset", "stim_noise"}
    x2, _, _, params2 = task.get_trial_batch()
    assert not np.array_equal(x, x2)
    assert task.batch_index == 2


def test_same_seed_twice_gives_identical_batches():
    a, b = make(seed=5), make(seed=5)
    for _ in range(2):
        (xa, ya, ma, pa), (xb, yb, mb, pb) = a.get_trial_batch(), b.get_trial_batch()
        assert xa.tobytes() == xb.tobytes() and ya.tobytes() == yb.tobytes() and ma.tobytes() == mb.tobytes()
        assert list(pa) == list(pb)


def test_global_numpy_rng_is_left_as_found():
    task = make(seed=2)  # building it without a seed draws one from the global RNG: do that first
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    task.get_trial_batch()
    assert np.random.random() == expected


def test_score_and_accuracy_function():
    task = make(seed=3)
    x, y, mask, params = task.get_trial_batch()
    scored = task.score(y, y, mask, params)
    assert (scored["outcome"] == "correct").all()
    assert (scored["target"] == scored["direction"]).all()
    flipped = task.score(y, y[:, :, ::-1], mask, params)
    assert (flipped["outcome"] == "error").all()
    assert task.accuracy_function(y, y, mask) == 1.0


def test_check_task_accepts_it():
    check_task(make(seed=4))
