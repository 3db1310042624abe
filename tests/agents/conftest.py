"""Shared helpers for the agents tests: one TensorFlow thread, small networks, a short task."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


def _small_params(**overrides) -> dict:
    """A small Basic network's PsychRNN-style params (N_in=2, N_rec=12, N_out=2, dt=10 ms, tau=100 ms)."""
    params = {"name": "test", "N_in": 2, "N_rec": 12, "N_out": 2, "dt": 10, "tau": 100, "N_steps": 30,
              "N_batch": 8, "seed": 1}
    params.update(overrides)
    return params


def _batch(n: int = 8, steps: int = 30, n_in: int = 2, n_out: int = 2, seed: int = 0):
    """Random ``(x, y, mask)`` float32 arrays."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, steps, n_in), dtype=np.float32)
    y = rng.random((n, steps, n_out), dtype=np.float32)
    mask = (rng.random((n, steps, n_out)) < 0.7).astype(np.float32)
    return x, y, mask


@pytest.fixture
def small_params():
    """A function: ``small_params(**overrides) -> params`` (fixtures, because test modules cannot import
    from this folder: it is not a package)."""
    return _small_params


@pytest.fixture
def batch():
    """A function: ``batch(n, steps, n_in, n_out, seed) -> (x, y, mask)``."""
    return _batch


@pytest.fixture(autouse=True)
def _one_tf_thread(request):
    """TensorFlow tests run on one thread (set before TensorFlow's first op)."""
    if request.node.get_closest_marker("tf") is not None:
        import agents

        agents.configure_threads(1)
    yield


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    if not (FIXTURES / "psychrnn_plain.weights.npz").exists():
        pytest.skip(f"PsychRNN fixture not found at {FIXTURES} (the shared/ folder beside the repository)")
    return FIXTURES
