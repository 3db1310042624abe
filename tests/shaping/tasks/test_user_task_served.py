"""A user's task module beside a lab config, named "module:Class": served by a real in-process TaskServer to a
NumPy client, scored with its own accuracy_function, and accepted by the lab's config validation."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import user_tasks
from server_thread import ServerThread

from shaping.client import TaskClient
from shaping.lab import load_config, process_env, validate_config

USER_MODULE = Path(user_tasks.__file__).read_text()  # copied beside a lab's TOML

STAGES = {"kind": "stages", "stages": [
    {"name": "first", "knobs": {}, "graduate": {"accuracy": 0.9, "min_trials": 128}},
    {"name": "second", "knobs": {}, "graduate": {"accuracy": 0.9, "min_trials": 128}}]}


def _module(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(USER_MODULE)
    return directory


def _serve(cfg: dict, answer, batches: int) -> list:
    with ServerThread(cfg) as srv, TaskClient(srv.endpoint, "a") as client:
        client.hello()
        scores = []
        for _ in range(batches):
            batch = client.get()
            scores.append(client.result(batch, answer(batch)))
        client.bye()
    return scores


def test_a_module_class_task_is_served_and_scored(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_module(tmp_path / "labdir", "fb_served_tasks")))  # what a lab does
    cfg = {"task": {"name": "fb_served_tasks:MyTask", "T": 500, "N_batch": 8}, "seed": 0,
           "curricula": {"fixed": {"kind": "fixed"}}, "journal": str(tmp_path / "journal")}
    right = _serve(cfg, lambda b: b.y, 2)
    assert [s.accuracy for s in right] == [1.0, 1.0]
    cfg["journal"] = str(tmp_path / "journal2")
    silent = _serve(cfg, lambda b: np.zeros_like(b.y), 2)
    assert all(s.accuracy == 0.0 and (s.outcome == 2).all() for s in silent)  # no response, not "chose 0"


def test_a_silent_agent_does_not_graduate_on_a_one_output_task(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_module(tmp_path / "labdir", "fb_flash_tasks")))
    cfg = {"task": {"name": "fb_flash_tasks:Flash"}, "seed": 0, "curricula": {"s": STAGES},
           "journal": str(tmp_path / "journal")}
    scores = _serve(cfg, lambda b: np.zeros_like(b.y), 4)
    assert 0.3 < np.mean([s.accuracy for s in scores]) < 0.7  # correct on no-go trials only
    assert all(s.stage == "first" and not s.events for s in scores)


def test_lab_validation_finds_the_module_beside_the_toml_file(tmp_path):
    labdir = _module(tmp_path / "mylab", "fb_lab_tasks")
    toml = labdir / "lab.toml"
    toml.write_text('[task]\nname = "fb_lab_tasks:MyTask"\nT = 500\nN_batch = 8\n'
                    '[curricula.fixed]\nkind = "fixed"\n[[agents]]\nname = "a"\nN_rec = 8\n')
    path_before = list(sys.path)
    cfg = load_config(toml)
    assert cfg["task"]["name"] == "fb_lab_tasks:MyTask"
    assert sys.path == path_before  # only while validating
    assert str(labdir.resolve()) in process_env(1, [labdir])["PYTHONPATH"].split(":")
    sys.modules.pop("fb_lab_tasks")
    with pytest.raises(ValueError, match=r"\[task\]: task 'fb_lab_tasks:MyTask': cannot import module"):
        validate_config(cfg)  # a dict config resolves from sys.path as it is
    assert validate_config(cfg, task_path=[labdir])["task"]["name"] == "fb_lab_tasks:MyTask"


def test_lab_validation_finds_a_stage_tasks_module_beside_the_toml_file(tmp_path):
    """The TOML's folder was on sys.path only while [task] was built, not for the curricula's stage tasks."""
    labdir = _module(tmp_path / "stagelab", "fb_stage_tasks")
    toml = labdir / "lab.toml"
    toml.write_text('[task]\nname = "PerceptualDiscrimination"\nT = 500\nN_batch = 8\n'
                    '[curricula.mine]\nkind = "stages"\nstages = [{ name = "a", knobs = {} }, { name = "b", knobs = '
                    '{}, task = { name = "fb_stage_tasks:MyTask", T = 500 } }]\n[[agents]]\nname = "a"\nN_rec = 8\n')
    assert load_config(toml)["curricula"]["mine"]["stages"][1]["task"]["name"] == "fb_stage_tasks:MyTask"


def test_the_dashboards_read_a_module_tasks_evidence_from_its_journaled_spec(tmp_path, monkeypatch):
    """The journal names a "module:Class" task by its bare class name, which the registry cannot resolve: the
    dashboards showed no psychometric curve or table. The server now journals the task's spec at HELLO."""
    from dashboards import data as lab_data

    (tmp_path / "pdmod").mkdir()
    (tmp_path / "pdmod" / "fb_pd_tasks.py").write_text(
        "from shaping.tasks import ContextDependentDM\n\nclass MyCDM(ContextDependentDM):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pdmod"))
    cfg = {"task": {"name": "fb_pd_tasks:MyCDM", "T": 1700, "N_batch": 64}, "seed": 0,
           "curricula": {"fixed": {"kind": "fixed"}}, "journal": str(tmp_path / "lab" / "journal")}
    _serve(cfg, lambda b: b.y, 3)
    tables = lab_data.read_lab(tmp_path / "lab")
    assert set(tables.trials["task"]) == {"MyCDM"}  # not importable by that name
    assert lab_data.evidence_knob(tables, "a") == "coherence_motion"
    assert lab_data.evidence_sides(tables, "a") == {"coherence_motion": "side_motion", "coherence_color": "side_color"}
    table = lab_data.psychometric_table(tables, "a")  # each evidence column, split by context as the spec says
    assert sorted(zip(table["evidence"], table["curve"])) == [
        ("coherence_color", "colour context"), ("coherence_color", "motion context"),
        ("coherence_motion", "colour context"), ("coherence_motion", "motion context")]
