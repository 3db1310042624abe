"""Fixtures for the policy tests (the policy specs they share live in policy_specs.py)."""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest

from shaping.tasks import PerceptualDiscrimination


@pytest.fixture
def task():
    """The task every policy test shapes: 32-trial batches, fixed seed."""
    return PerceptualDiscrimination(seed=11, N_batch=32)
