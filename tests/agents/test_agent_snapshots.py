"""Connectivity snapshots: one per stage change, however often the agent leaves a stage (a real agent and
server on loopback, MLflow on sqlite), and the dashboards and report read them, old names and new."""
from __future__ import annotations

import shutil
import threading

import pytest

from shaping import journal, tracking
from shaping.server import TaskServer, attach_tracking

pytestmark = [pytest.mark.tf, pytest.mark.procs, pytest.mark.timeout(180)]

TASK = {"name": "PerceptualDiscrimination", "dt": 20, "T": 400, "N_batch": 16}
# Easy for one counted batch, final until a batch is below 100 % correct: the agent leaves each stage often.
BOUNCE = {"kind": "stages", "window": 16, "max_trials": 96, "regress": {"accuracy": 1.0, "min_dwell": 16},
          "stages": [{"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"min_trials": 16}},
                     {"name": "final", "knobs": {"coherence": 0.1}}]}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab directory (journal, weights, checkpoints) and its store, after one agent ran out of trials."""
    from agents.agent import Agent, AgentConfig

    root = tmp_path_factory.mktemp("snapshots")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    parent = tracking.LabRun.start(uri, "snapshots", {"test": True})
    srv = TaskServer({"task": dict(TASK), "curricula": {"bounce": BOUNCE}, "seed": 3,
                      "journal": str(root / "journal"), "heartbeat_interval_s": 0.2})
    attach_tracking(srv, {"tracking_uri": uri, "run_id": parent.run_id})
    endpoint = srv.start()
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        summary = Agent(AgentConfig(name="a", server=endpoint, model={"model": "Basic", "N_rec": 8, "seed": 0},
                                    workdir=str(root), curriculum="bounce", checkpoint_every=100)).run()
    finally:
        srv.stop()
        thread.join(30)
    assert summary["complete"]
    events = journal.load_events(root / "journal")
    return {"root": root, "uri": uri, "run_id": parent.child("a")["run_id"],
            "moves": events[events["event"].isin(["graduated", "regressed"])]}


def test_every_stage_change_has_its_own_weights_file_and_mlflow_folder(lab):
    moves = lab["moves"]
    assert moves["from_stage"].value_counts().min() >= 2  # each stage was left more than once
    names = {"easy": 0, "final": 1}
    want = [f"stage{names[s]}_{s}_trial{n}" for s, n in zip(moves["from_stage"], moves["session_trials"])]
    files = sorted(p.stem[len("a_"):] for p in (lab["root"] / "weights").glob("a_*.npz"))
    assert files == sorted(want)
    client = tracking.MlflowClient(lab["uri"])
    folders = {f.path.split("/")[1] for f in client.list_artifacts(lab["run_id"], "connectivity")}
    assert folders == {*want, "final"}
    for tag in want:
        arts = {f.path.rsplit("/", 1)[1] for f in client.list_artifacts(lab["run_id"], f"connectivity/{tag}")}
        assert f"a_{tag}.npz" in arts


def test_dashboards_and_report_read_old_and_new_snapshot_names(lab, tmp_path):
    from dashboards import data as lab_data
    from dashboards import report

    root = tmp_path / "lab"
    shutil.copytree(lab["root"] / "journal", root / "journal")
    shutil.copytree(lab["root"] / "weights", root / "weights")
    new = sorted((root / "weights").glob("a_stage0_easy_trial*.npz"), key=lambda p: p.stat().st_mtime)
    shutil.copy2(new[0], root / "weights" / "a_stage0_easy.npz")  # as an older agent named it
    tables = lab_data.read_lab(root)
    files = lab_data.weight_files(root, tables=tables).set_index("tag")
    moves = lab["moves"]
    for tag in files.index:
        parsed = tag.rsplit("_trial", 1)
        if len(parsed) == 2:
            assert files.loc[tag, "trial"] == int(parsed[1])
    left_easy = moves[moves["from_stage"] == "easy"]["session_trials"]
    assert files.loc["stage0_easy", "trial"] == left_easy.iloc[-1]  # an old name: the last time it left easy
    assert files.loc["final", "trial"] == tables.batches["trials"].iloc[-1]
    built = report.build_report(root)
    assert {f"a-wrec-{tag}" for tag in files.index} <= set(built.figures)
    (changes,) = [it.table for _, items in built.sections for it in items if it.name == "a-connectivity-changes"]
    assert changes.set_index("tag")["trial"].to_dict() == files["trial"].to_dict()
