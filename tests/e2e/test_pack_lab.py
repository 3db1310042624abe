"""Packs in a real lab: several TensorFlow networks in one agent process, each with its own session, stage,
checkpoint, weights and MLflow run; a pack killed with SIGKILL resumes every session it held."""
from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from labcfg import lab_config
from labthread import run_in_thread, wait_for

from shaping import journal
from shaping.lab import Lab

pytestmark = [pytest.mark.procs, pytest.mark.tf, pytest.mark.timeout(600)]


def _config(held: bool = False) -> dict:
    """The short lab's task and curriculum; one entry sweeping seed x dale_ratio (4 networks, one pack) and a
    plain agent of another size (a process of its own). ``held``: the shaped curriculum gets a stage that never
    ends by itself (released by an operator override), so a kill surely lands mid-curriculum."""
    cfg = lab_config()
    cfg["lab"].update(pack_size=8)
    if held:
        shaped = cfg["curricula"]["shaped"]
        easy, final = shaped["stages"]
        shaped["stages"] = [easy, {"name": "hold", "knobs": dict(final["knobs"]), "graduate": {"min_trials": 10**9}},
                            final]
        shaped["max_trials"] = 10**9
    cfg["agents"] = [
        {"name": "net", "curriculum": "shaped", "N_rec": 24, "learning_rate": 0.005, "checkpoint_every": 5,
         "autapses": False, "sweep": {"seed": [1, 2], "dale_ratio": [0.75, 0.5]}},
        {"name": "big", "curriculum": "shaped", "N_rec": 32, "learning_rate": 0.005, "seed": 3, "checkpoint_every": 5},
        # packed with the sweep; its session is refused (a checkpoint of an earlier session lies in its place)
        {"name": "stale", "curriculum": "shaped", "N_rec": 24, "learning_rate": 0.005, "checkpoint_every": 5,
         "autapses": False, "seed": 9, "dale_ratio": 0.75},
    ]
    return cfg


NETS = ["net-seed=1-dale_ratio=0.75", "net-seed=1-dale_ratio=0.5", "net-seed=2-dale_ratio=0.75",
        "net-seed=2-dale_ratio=0.5"]






def _stages(lab: Lab) -> dict:
    return {s["agent"]: s.get("stage") for s in lab.status().get("sessions", [])}


@pytest.fixture(scope="module")
def pack_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("pack_lab")
    (root / "lab" / "checkpoints").mkdir(parents=True)
    (root / "lab" / "checkpoints" / "stale.ckpt.npz").write_bytes(b"")  # refused before it is read
    lab = Lab(_config(), workdir=root / "lab", tracking_uri=f"sqlite:///{root / 'mlflow.db'}", progress=False,
              timeout_s=400)
    lab.summary_table = lab.run()
    return lab


def test_compatible_networks_share_one_process(pack_lab):
    assert sorted(pack_lab.agents) == ["big", "pack-0"]
    assert pack_lab.agents["pack-0"].members == [*NETS, "stale"]
    summary = pack_lab.summary_table.set_index("agent")
    assert sorted(summary.index) == sorted([*NETS, "big", "stale"])
    assert summary.loc[[*NETS, "big"], "complete"].all() and (summary["exit"] == 0).all(), summary


def test_a_refused_network_leaves_the_others_training(pack_lab):
    summary = pack_lab.summary_table.set_index("agent")
    assert not summary.loc["stale", "complete"] and summary.loc["stale", "trials"] == 0
    assert pack_lab.agents["pack-0"].restarts == 0  # refused alone: the pack process did not fail
    assert "holds a network trained in an earlier session" in (pack_lab.dir / "logs" / "pack-0.log").read_text()


def test_each_network_of_a_pack_keeps_its_own_files_constraints_and_run(pack_lab):
    from mlflow.tracking import MlflowClient

    for name in NETS:
        assert (pack_lab.dir / "checkpoints" / f"{name}.ckpt.npz").exists()
        weights = np.load(pack_lab.dir / "weights" / f"{name}.npz")
        w_rec, sign = weights["W_rec"], np.diag(weights["Dale_rec"])
        assert (w_rec[:, sign > 0] >= 0).all() and (w_rec[:, sign < 0] <= 0).all()  # its own Dale signs
        assert np.all(np.diag(w_rec) == 0)
        assert np.isclose((sign > 0).mean(), float(name.rsplit("=", 1)[1]))
    client = MlflowClient(pack_lab.tracking_uri)
    exp = client.get_experiment_by_name(pack_lab.labfile.lab.experiment)
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], "tags.`skinnerbox.role` = 'agent'")}
    assert set(NETS) <= set(runs)
    assert {runs[n].data.params["sweep.dale_ratio"] for n in NETS} == {"0.75", "0.5"}
    (parent,) = client.search_runs([exp.experiment_id], "tags.`skinnerbox.role` = 'lab'")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "sweep.csv", "sweep.png"} <= logged  # the sweep's table and figure on the lab's run


def test_a_pack_killed_with_sigkill_resumes_every_session(tmp_path):
    lab = Lab(_config(held=True), workdir=tmp_path / "lab", tracking_uri="none", progress=False, timeout_s=400)
    thread = run_in_thread(lab)
    wait_for(lambda: all(_stages(lab).get(n) == "hold" for n in NETS), 300, "every network to reach hold", thread)
    acknowledged = journal.load(lab.journal_dir)
    pack = lab.agents["pack-0"]
    killed = pack.handle.pid
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: pack.restarts >= 1, 60, "the lab to restart the pack", thread)
    log_path = lab.dir / "logs" / "pack-0.log"
    wait_for(lambda: log_path.read_text().count("resumed from") >= len(NETS), 180, "every network to resume", thread)
    from shaping.client import override

    for name in [*NETS, "big", "stale"]:
        override(lab.endpoint, name, stage="final", note="release the hold", timeout_s=60)
    thread.join(300)
    assert not thread.is_alive()
    summary = lab.summary().set_index("agent")
    assert summary.loc[NETS, "complete"].all() and (summary.loc[NETS, "restarts"] == 1).all(), summary
    after = journal.load(lab.journal_dir)
    keys = ["agent", "batch", "trial"]
    assert not after[keys].duplicated().any()
    kept = acknowledged[keys].merge(after[keys], how="left", indicator=True)
    assert (kept["_merge"] == "both").all(), "an acknowledged trial was lost"
    for name in NETS:  # the restarted pack rejoined each session in its hold stage, not back at the start
        held_from = after.index[(after["agent"] == name) & (after["stage"] == "hold")][0]
        assert set(after.loc[held_from:].query("agent == @name")["stage"]) == {"hold", "final"}
