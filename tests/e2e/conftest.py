"""A short real lab (task server + two TensorFlow agent processes + MLflow sqlite store), run once per session.

The lab: PerceptualDiscrimination (T = 500 ms, 32 trials per batch), a two-stage curriculum, one free agent
and one Dale's-principle agent in two regions. Tests read its journal, its MLflow store and its files.
"""
from __future__ import annotations

import pytest
from labcfg import lab_config

from shaping.lab import Lab


@pytest.fixture(scope="session")
def short_lab(tmp_path_factory) -> Lab:
    """The short lab, run to completion (MLflow store in its own directory)."""
    root = tmp_path_factory.mktemp("short_lab")
    lab = Lab(lab_config(), workdir=root / "lab", tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
              progress=False, timeout_s=300)
    lab.summary_table = lab.run()
    return lab
