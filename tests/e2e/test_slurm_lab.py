"""A whole lab through the real single-node SLURM (``.ci/services``): the task server and the TensorFlow agents
as jobs, a swept curriculum, a requeue mid-run, an agent that refuses its session; skipped without SLURM.

One lab, run once: ``net`` sweeps ``curriculum`` over ``shaped`` and ``held`` (``held`` parks its agent in a stage
that never ends by itself until the test releases it, so the requeue surely lands mid-curriculum), and ``broken``
names a model that does not exist (it exits 2, refused, and must never be resubmitted).
"""
from __future__ import annotations

import subprocess

import pytest
from labcfg import lab_config
from labthread import run_in_thread, wait_for
from services import slurm_reason

from shaping import journal
from shaping.lab import Lab

pytestmark = [pytest.mark.procs, pytest.mark.tf, pytest.mark.slurm, pytest.mark.timeout(600),
              pytest.mark.skipif(slurm_reason() is not None, reason=str(slurm_reason()))]

HELD = "net-curriculum=held"
SHAPED = "net-curriculum=shaped"


def _config() -> dict:
    cfg = lab_config()
    cfg["lab"].update(launcher="slurm", max_restarts=1)
    cfg["launcher"] = {"slurm": {"timeout_min": 15, "server": "job"}}
    shaped = cfg["curricula"]["shaped"]
    easy, final = shaped["stages"]
    hold = {"name": "hold", "knobs": dict(final["knobs"]), "graduate": {"min_trials": 10**9}}
    cfg["curricula"]["held"] = {**shaped, "stages": [easy, hold, final], "max_trials": 10**9}
    net = {k: v for k, v in cfg["agents"][0].items() if k not in ("name", "curriculum")}
    cfg["agents"] = [{"name": "net", **net, "sweep": {"curriculum": ["shaped", "held"]}},
                     {"name": "broken", "curriculum": "shaped", "model": "no-such-model",
                      "launcher": {"gres": "gpu:1"}}]  # its own job resources: [agents.launcher]
    return cfg




def _session(lab: Lab, agent: str) -> dict:
    return {s["agent"]: s for s in lab.status().get("sessions", [])}.get(agent, {})


@pytest.fixture(scope="module")
def slurm_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_lab")
    lab = Lab(_config(), workdir=root / "lab", tracking_uri=f"sqlite:///{root / 'mlflow.db'}", progress=False,
              timeout_s=500)
    seen: dict = {}
    thread = run_in_thread(lab)
    try:
        wait_for(lambda: _session(lab, HELD).get("stage") == "hold", 300, f"{HELD} to reach its hold stage",
                  thread)
        proc = lab.agents[HELD]
        job = proc.handle.job_id
        seen["acknowledged"] = journal.load(lab.journal_dir)
        subprocess.run(["scontrol", "requeue", job], check=True)
        wait_for(lambda: lab.launcher.states([proc]).get(job) == "PENDING", 60, "the job to be back in the queue")
        # SLURM holds a requeued job until a begin time about two minutes ahead: start it now
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
        log_path = lab.dir / "logs" / f"{HELD}.log"
        wait_for(lambda: "resumed from" in log_path.read_text(), 240, "the requeued agent to load its checkpoint",
                  thread)
        seen["resumed_at"] = _session(lab, HELD).get("stage")
        # the server's job requeued too: it binds a new port, and the agents find it again from server.json
        server_job, old_endpoint = lab.server.handle.job_id, lab.endpoint
        subprocess.run(["scontrol", "requeue", server_job], check=True)
        wait_for(lambda: lab.launcher.states([lab.server]).get(server_job) == "PENDING", 60,
                  "the server's job to be back in the queue", thread)
        subprocess.run(["scontrol", "update", f"JobId={server_job}", "StartTime=now"], check=True)
        wait_for(lambda: lab.endpoint != old_endpoint, 120, "the requeued server to bind", thread)
        wait_for(lambda: "the task server moved" in log_path.read_text(), 120, "the agent to follow the server",
                  thread)
        seen["server_moved"] = (old_endpoint, lab.endpoint)
        from shaping.client import override

        override(lab.endpoint, HELD, stage="final", note="release the hold", timeout_s=60)
        thread.join(400)
        assert not thread.is_alive(), "the lab did not finish"
    finally:
        lab.request_stop()
        thread.join(120)
    lab.summary_table = lab.summary()
    lab.seen = seen
    return lab


def test_every_agent_ran_as_a_job_and_the_lab_summarised_them(slurm_lab):
    summary = slurm_lab.summary_table.set_index("agent")
    assert set(summary.index) == {SHAPED, HELD, "broken"}
    for name in (SHAPED, HELD):
        assert summary.loc[name, "complete"] and summary.loc[name, "exit"] == 0, summary
        assert slurm_lab.agents[name].where.startswith("job ")
    assert slurm_lab.server.where.startswith("job ")  # server = "job"
    sweep = slurm_lab.summary_table.attrs["sweep"]
    assert list(sweep["factor"]) == ["curriculum", "curriculum"] and list(sweep["reached"]) == [1, 1], sweep


def test_the_requeued_agent_resumed_its_session_and_lost_nothing(slurm_lab):
    summary = slurm_lab.summary_table.set_index("agent")
    assert summary.loc[HELD, "restarts"] == 1 and summary.loc[SHAPED, "restarts"] == 0, summary
    starts = slurm_lab.launcher.starts(slurm_lab.agents[HELD])
    assert len(starts) == 2 and starts[0]["job"] == starts[1]["job"] and starts[1]["restart_count"] == 1
    assert slurm_lab.seen["resumed_at"] == "hold"  # the server kept its stage across the requeue
    before = slurm_lab.seen["acknowledged"]
    after = journal.load(slurm_lab.journal_dir)
    keys = ["agent", "batch", "trial"]
    assert not after[keys].duplicated().any(), "a trial was journaled twice"
    kept = before[keys].merge(after[keys], how="left", indicator=True)
    assert (kept["_merge"] == "both").all(), "an acknowledged trial was lost across the requeue"


def test_the_agents_followed_the_requeued_server(slurm_lab):
    old, new = slurm_lab.seen["server_moved"]
    assert old != new and len(slurm_lab.launcher.starts(slurm_lab.server)) == 2
    assert f"moved from {old} to {new}" in (slurm_lab.dir / "logs" / f"{HELD}.log").read_text()


def test_a_refusing_agent_is_never_resubmitted(slurm_lab):
    (start,) = slurm_lab.launcher.starts(slurm_lab.agents["broken"])
    assert start["CUDA_VISIBLE_DEVICES"] in ("0", "1")  # its [agents.launcher] gres, not the lab's (none)
    assert "CUDA_VISIBLE_DEVICES" not in slurm_lab.launcher.starts(slurm_lab.agents[SHAPED])[0]
    summary = slurm_lab.summary_table.set_index("agent")
    assert summary.loc["broken", "exit"] == 2 and summary.loc["broken", "restarts"] == 0
    assert len(slurm_lab.launcher.starts(slurm_lab.agents["broken"])) == 1
    assert "no-such-model" in (slurm_lab.dir / "logs" / "broken.log").read_text()


def test_no_job_of_the_lab_is_left_running(slurm_lab):
    procs = [*slurm_lab.agents.values(), slurm_lab.server]
    states = slurm_lab.launcher.states(procs)
    assert not any(s in ("RUNNING", "PENDING", "COMPLETING") for s in states.values()), states


def test_agent_runs_carry_their_sweep_factors(slurm_lab):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(slurm_lab.tracking_uri)
    exp = client.get_experiment_by_name(slurm_lab.labfile.lab.experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`sweep.curriculum` = 'held'")
    assert [r.info.run_name for r in runs] == [HELD]
    assert runs[0].data.params["sweep.curriculum"] == "held" and runs[0].data.tags["skinnerbox.group"] == "net"
