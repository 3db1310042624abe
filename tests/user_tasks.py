"""Tasks as a PsychRNN user writes them (NumPy's global RNG, a per-step trial_function), shared by the tests that
serve a user's own task: they import it, or copy this file beside a lab's TOML as a "module:Class" task."""
import numpy as np

from shaping.tasks import Task


class MyTask(Task):
    """A PsychRNN user's 2AFC task (np.random, per-step trial_function)."""

    def __init__(self, dt=10, tau=100, T=500, N_batch=8, **kw):
        super().__init__(2, 2, dt, tau, T, N_batch, **kw)

    def generate_trial_params(self, batch, trial):
        return {"direction": int(np.random.choice([0, 1])), "onset": float(np.random.uniform(50, 150))}

    def trial_function(self, t, p):
        x, y, m, d = 0.1 * np.random.randn(2), np.zeros(2), np.zeros(2), p["direction"]
        if p["onset"] <= t < p["onset"] + 150:
            x[d] += 1.2
            x[1 - d] += 1
        if t >= p["onset"] + 200:
            y[d], y[1 - d], m[:] = 1.0, 0.2, 1.0
        return x, y, m


class Flash(Task):
    """README's go/no-go task: one output, correct within 0.5 of the target."""

    def __init__(self, dt=10, tau=100, T=500, N_batch=64, **kw):
        super().__init__(1, 1, dt, tau, T, N_batch, **kw)

    def generate_trial_params(self, batch, trial):
        return {"go": np.random.rand() < 0.5}

    def trial_function(self, t, p):
        return np.array([p["go"] * (t < 100)]), np.array([p["go"] * (t > 200)]), np.ones(1)

    def accuracy_function(self, y, y_hat, mask):
        return float(np.mean(np.all(np.abs((y_hat - y) * mask) < 0.5, axis=(1, 2))))
