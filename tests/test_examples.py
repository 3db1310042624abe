"""Every lab config in examples/ is valid: its task, curricula and every agent's model build."""
from __future__ import annotations

from pathlib import Path

import pytest

from shaping import tasks
from shaping.lab import load_config, model_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))


def test_there_are_examples():
    assert {p.stem for p in EXAMPLES} >= {"demo", "working_memory", "confidence", "psychophysics"}


@pytest.mark.tf
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_builds(path):
    from agents import build_model

    cfg = load_config(path)  # task and curricula are built here; errors name the field
    task = tasks.make(cfg["task"]["name"], **{k: v for k, v in cfg["task"].items() if k != "name"})
    for entry in cfg["agents"]:
        model = build_model(model_spec(entry), task.spec())
        assert (model.N_in, model.N_out) == (task.N_in, task.N_out), entry["name"]
        model.destruct()
