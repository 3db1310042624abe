"""`skinnerbox sync LAB` pushes into the store the lab ran with: `--tracking-uri` or $MLFLOW_TRACKING_URI
included (lab.json records the one used)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shaping import cli, tracking
from shaping import journal as J
from shaping.lab import Lab

CONFIG = {"lab": {"name": "synced"}, "task": {"name": "PerceptualDiscrimination", "T": 500, "N_batch": 16},
          "curricula": {"fixed": {"kind": "fixed"}}, "agents": [{"name": "a", "N_rec": 8}]}


def journaled_lab(root, **lab_kw) -> Lab:
    """A lab's directory as a run leaves it: lab.json and a journal of one scored batch."""
    lab = Lab(json.loads(json.dumps(CONFIG)), workdir=root, progress=False, **lab_kw)
    lab._write_configs()
    n = 16
    scored = pd.DataFrame({"trial": np.arange(n), "outcome": ["correct"] * n, "choice": np.zeros(n, int),
                           "target": np.zeros(n, int)})
    with J.Journal(root / "journal") as jr:
        jr.append_batch(agent="a", session="s", batch=0, epoch=1, task="PerceptualDiscrimination", stage="fixed",
                        stage_index=0, knobs={}, scored=scored, events=[], state={"trials": n})
    return lab


def synced_runs(uri: str) -> list:
    client = tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("synced")
    return [] if exp is None else client.search_runs([exp.experiment_id], "tags.`skinnerbox.role` = 'agent'")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_sync_goes_to_the_store_the_lab_ran_with(tmp_path, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    if how == "option":
        journaled_lab(tmp_path / "lab", tracking_uri=uri)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        journaled_lab(tmp_path / "lab")
        monkeypatch.delenv("MLFLOW_TRACKING_URI")  # sync runs later, in another shell
    assert json.loads((tmp_path / "lab" / "lab.json").read_text())["lab"]["tracking_uri"] == uri
    assert cli.main(["sync", str(tmp_path / "lab")]) == 0
    assert not (tmp_path / "mlflow.db").exists()
    assert [r.data.tags["skinnerbox.agent"] for r in synced_runs(uri)] == ["a"]


def test_a_lab_run_without_mlflow_records_it(tmp_path):
    lab = journaled_lab(tmp_path / "lab", tracking_uri="none")
    assert lab.tracking_uri is None
    assert json.loads((tmp_path / "lab" / "lab.json").read_text())["lab"]["tracking_uri"] == "none"
