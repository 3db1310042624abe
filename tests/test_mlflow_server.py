"""A lab logging to a shared ``mlflow server`` on PostgreSQL with served artifacts (issue 14), for real.

A small lab (a task server and two TensorFlow agent processes) runs with ``tracking_uri`` = the server's URL. Its
parent run and agent runs are read back through ``MlflowClient``, their artifacts are found as files under the
server's ``--artifacts-destination`` (uploaded over HTTP, not written beside the lab), and the runs are rows of
PostgreSQL's ``runs`` table. A second lab runs while its tracking server is down; ``skinnerbox sync`` brings its
runs in once the server is up on the address the lab recorded.

Needs PostgreSQL (``.ci/services`` starts it; ``$SKINNERBOX_TEST_POSTGRES`` names another server): skips without.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from services import free_port, fresh_database, mlflow_server, postgres_reason

from shaping import journal
from shaping.lab import Lab

pytestmark = [pytest.mark.procs, pytest.mark.tf, pytest.mark.slow,
              pytest.mark.skipif(postgres_reason() is not None, reason=str(postgres_reason()))]

TINY_CURRICULUM = {
    "kind": "stages", "window": 32,
    "stages": [
        {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.0, "min_trials": 64}},
        {"name": "final", "knobs": {"coherence": [0.5, 0.7]}, "graduate": {"accuracy": 0.0, "min_trials": 64}},
    ],
}
AGENTS = ("free", "dale")


def lab_config(name: str) -> dict:
    """Two small agents through a two-stage curriculum that graduates on trial counts (a few batches each)."""
    return {
        "lab": {"name": name, "experiment": f"{name}-lab", "seed": 5, "max_restarts": 0},
        "task": {"name": "PerceptualDiscrimination", "dt": 10, "tau": 100, "T": 500, "N_batch": 32},
        "curricula": {"tiny": TINY_CURRICULUM},
        "agents": [{"name": "free", "curriculum": "tiny", "N_rec": 16, "learning_rate": 0.005, "seed": 1},
                   {"name": "dale", "curriculum": "tiny", "N_rec": 16, "learning_rate": 0.005, "seed": 2,
                    "dale_ratio": 0.75}],
    }


@dataclass
class Store:
    """One lab's experiment as the tracking server holds it."""

    client: object  # MlflowClient
    experiment_id: str
    parent: object  # mlflow.entities.Run
    children: dict  # agent name -> Run


def read_store(tracking_uri: str, experiment: str) -> Store:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} on {tracking_uri}"
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = {r.data.tags["skinnerbox.agent"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    return Store(client, exp.experiment_id, parents[0], children)


def artifact_sizes(client, run_id: str, path: str | None = None) -> dict[str, int]:
    """Every artifact file of a run (listed by the server): relative path -> size in bytes."""
    out = {}
    for info in client.list_artifacts(run_id, path):
        out.update(artifact_sizes(client, run_id, info.path) if info.is_dir else {info.path: info.file_size})
    return out


def pg_rows(db_url: str, sql: str, *args) -> list[tuple]:
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        return conn.execute(sql, args).fetchall()


def check_runs_are_rows(db_url: str, store: Store) -> None:
    """The parent run and the agent runs are rows of the database's ``runs`` table, with their params."""
    rows = pg_rows(db_url, "SELECT run_uuid, name, status FROM runs WHERE experiment_id = %s",
                   int(store.experiment_id))
    want = {(r.info.run_id, r.info.run_name, r.info.status) for r in [store.parent, *store.children.values()]}
    assert set(rows) == want
    for agent, run in store.children.items():
        params = dict(pg_rows(db_url, "SELECT key, value FROM params WHERE run_uuid = %s", run.info.run_id))
        assert params == run.data.params, agent


def check_agent_runs(store: Store, journal_dir: Path, model_params: bool = True) -> None:
    """One finished run per agent under the parent, with curriculum params, model params (logged by the agent
    process; a sync from the journal has none) and one accuracy value per journaled batch."""
    batches = journal.load_batches(journal_dir)
    assert set(store.children) == set(AGENTS)
    for agent, run in store.children.items():
        assert run.data.tags["mlflow.parentRunId"] == store.parent.info.run_id
        assert run.info.status == "FINISHED", agent
        assert run.data.params["policy.kind"] == "stages", agent
        assert run.data.params.get("model.N_rec") == ("16" if model_params else None), agent
        steps = batches.loc[batches["agent"] == agent, "n"].cumsum().astype(int).tolist()
        accuracy = store.client.get_metric_history(run.info.run_id, "curriculum/accuracy")
        assert sorted(m.step for m in accuracy) == steps and len(steps) >= 4, agent


# ---------------------------------------------------------------------------------------------- server up
@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The lab run against a live tracking server; yields (lab, tracking URI, database URL, artifacts dir)."""
    root = tmp_path_factory.mktemp("shared_mlflow")
    with fresh_database() as db, mlflow_server(db, root / "artifacts") as uri:
        lab = Lab(lab_config("shared"), workdir=root / "lab", tracking_uri=uri, progress=False, timeout_s=240)
        summary = lab.run().set_index("agent")
        yield lab, summary, uri, db, root / "artifacts"


def test_the_lab_logs_its_runs_through_the_server(shared):
    lab, summary, uri, _, _ = shared
    assert summary["complete"].all() and (summary["exit"] == 0).all(), summary
    assert lab.lab_run.tracking_uri == uri and lab.lab_run.run_id is not None
    store = read_store(uri, "shared-lab")
    assert store.parent.info.run_id == lab.lab_run.run_id and store.parent.info.status == "FINISHED"
    assert store.parent.data.tags["skinnerbox.role"] == "lab"
    assert {f"summary/{a}/trials_to_criterion" for a in AGENTS} <= set(store.parent.data.metrics)
    check_agent_runs(store, lab.journal_dir)
    for log in (lab.dir / "logs").glob("*.log"):  # no process lost its tracking
        assert "MLflow tracking" not in log.read_text(errors="replace"), log.name


def test_artifacts_are_uploaded_to_the_server(shared, tmp_path):
    lab, _, uri, _, artifacts = shared
    store = read_store(uri, "shared-lab")
    config = store.client.download_artifacts(store.parent.info.run_id, "lab_config.json", str(tmp_path))
    assert json.loads(Path(config).read_text()) == lab.config
    for run in [store.parent, *store.children.values()]:
        # served artifacts: the client uploads over HTTP, the server writes under --artifacts-destination
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        sizes = artifact_sizes(store.client, run.info.run_id)
        assert sizes, run.info.run_name
        stored = artifacts / store.experiment_id / run.info.run_id / "artifacts"
        for path, size in sizes.items():
            assert (stored / path).is_file() and (stored / path).stat().st_size == size, path
    assert {"summary.csv", "lab_config.json"} <= set(artifact_sizes(store.client, store.parent.info.run_id))
    for agent, run in store.children.items():
        weights = [p for p in artifact_sizes(store.client, run.info.run_id, "connectivity") if p.endswith(".npz")]
        assert weights, f"{agent}: no weight file uploaded"
        stored = artifacts / store.experiment_id / run.info.run_id / "artifacts"
        with np.load(stored / weights[-1]) as arrays:
            assert arrays["W_rec"].shape == (16, 16), agent
    assert not (lab.dir / "mlartifacts").exists() and not (lab.dir / "mlflow.db").exists()


def test_the_runs_are_rows_in_postgresql(shared):
    _, _, uri, db, _ = shared
    check_runs_are_rows(db, read_store(uri, "shared-lab"))


# ---------------------------------------------------------------------------------------------- server down
def test_a_lab_with_the_server_down_syncs_into_it_later(tmp_path):
    port = free_port()  # nothing listens there while the lab runs; the server starts on it afterwards
    uri = f"http://127.0.0.1:{port}"
    lab = Lab(lab_config("offline"), workdir=tmp_path / "lab", tracking_uri=uri, progress=False, timeout_s=240)
    summary = lab.run().set_index("agent")
    assert summary["complete"].all() and (summary["exit"] == 0).all(), summary
    assert lab.lab_run is not None and lab.lab_run.run_id is None  # tracking was off, training went on
    assert all((lab.dir / "weights" / f"{a}.npz").exists() for a in AGENTS)

    with fresh_database() as db, mlflow_server(db, tmp_path / "artifacts", port=port) as served:
        assert served == uri
        # plain `skinnerbox sync LAB`: the lab recorded its tracking URI in lab.json
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        cmd = [sys.executable, "-m", "shaping.cli", "sync", str(lab.dir)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert "2 agent run(s)" in done.stdout and uri in done.stdout, done.stdout
        store = read_store(uri, "offline-lab")
        check_agent_runs(store, lab.journal_dir, model_params=False)
        check_runs_are_rows(db, store)
        stored = tmp_path / "artifacts" / store.experiment_id / store.parent.info.run_id / "artifacts"
        assert json.loads((stored / "lab_config.json").read_text()) == lab.config
