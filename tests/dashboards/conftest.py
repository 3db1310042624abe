"""Fixtures of the dashboard tests: one short real lab run per test session (see labsim.py)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import labsim


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> dict:
    """A finished lab: three simulated agents (two seeds shaped with Dale, one unshaped without), its
    journal with status.json, weight files and MLflow store. See labsim.py."""
    return labsim.build_lab(tmp_path_factory.mktemp("dash") / "lab")


@pytest.fixture(scope="session")
def sweep_lab(tmp_path_factory) -> dict:
    """A finished swept lab: 8 simulated agents from one [agents.sweep] (curriculum x noise floor x seed) and one
    outside it, with the lab.json a lab writes; no MLflow store. See labsim.py."""
    return labsim.build_sweep_lab(tmp_path_factory.mktemp("dash") / "sweep-lab")
