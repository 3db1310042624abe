"""A sharded lab end to end: ``[server] shards = 2`` runs two task servers behind a front (with ``build = "agent"``:
the networks build their own trials), four TensorFlow networks
(one pack process) each train on the shard that holds their session, one shard is killed with SIGKILL mid-run, the
lab restarts it on its journal, and its agents come back through the front and resume in their stage."""
from __future__ import annotations

import json
import os
import signal

import pytest
from labcfg import lab_config
from labthread import run_in_thread, wait_for

from shaping import journal
from shaping.client import override
from shaping.lab import Lab
from shaping.shards import shard_of

pytestmark = [pytest.mark.procs, pytest.mark.tf, pytest.mark.timeout(600)]

K = 2
NETS = ["net-seed=1", "net-seed=2", "net-seed=3", "net-seed=4"]


def _config() -> dict:
    """The short lab's task; a curriculum with a stage ``hold`` that never ends by itself (released by an operator
    override), so the kill surely lands mid-curriculum; four networks of one size, trained in one pack process."""
    cfg = lab_config()
    cfg["lab"].update(pack_size=4)
    cfg["server"] = {"shards": K, "build": "agent"}  # the configuration for GPU agents: both keys of issue 15
    shaped = cfg["curricula"]["shaped"]
    easy, final = shaped["stages"]
    shaped["stages"] = [easy, {"name": "hold", "knobs": dict(final["knobs"]), "graduate": {"min_trials": 10**9}},
                        final]
    shaped["max_trials"] = 10**9
    cfg["agents"] = [{"name": "net", "curriculum": "shaped", "N_rec": 24, "learning_rate": 0.005,
                      "checkpoint_every": 5, "sweep": {"seed": [1, 2, 3, 4]}}]
    return cfg


def _stages(lab: Lab) -> dict:
    return {s["agent"]: s.get("stage") for s in lab.status().get("sessions", [])}


def _trained_in_hold(lab: Lab) -> set[str]:
    """The networks with trials of the hold stage in the journal (the status names the stage of the next batch)."""
    trials = journal.load(lab.journal_dir)
    return set(trials.loc[trials["stage"] == "hold", "agent"]) if len(trials) else set()


def test_a_shard_killed_with_sigkill_is_restarted_and_its_agents_resume(tmp_path):
    homes = {name: shard_of(name, K) for name in NETS}
    assert sorted(homes.values()) == [0, 0, 1, 1]  # both shards hold sessions, so either kill would tell
    lab = Lab(_config(), workdir=tmp_path / "lab", tracking_uri="none", progress=False, timeout_s=400)
    thread = run_in_thread(lab)
    wait_for(lambda: all(_stages(lab).get(n) == "hold" for n in NETS), 300, "every network to reach hold", thread)
    wait_for(lambda: _trained_in_hold(lab) >= set(NETS), 120, "every network to train in hold", thread)
    assert json.loads((lab.journal_dir / "server.json").read_text())["shards"] == K  # agents came in by the front
    acknowledged = journal.load(lab.journal_dir)
    killed = 0
    shard = lab.shards[killed]
    killed_pid = shard.handle.pid
    os.kill(killed_pid, signal.SIGKILL)  # its agents are held: they cannot complete meanwhile

    def restarted_shard_serves() -> bool:  # the new shard has restored its sessions and written its endpoint
        try:
            pid = json.loads((journal.shard_dir(lab.journal_dir, killed) / "server.json").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return False
        return shard.restarts >= 1 and pid != killed_pid and pid == shard.handle.pid

    wait_for(restarted_shard_serves, 120, "the lab to restart the shard", thread)
    for name in NETS:  # through the front, which redirects each override to the shard that holds the agent
        reply = override(lab.endpoint, name, stage="final", note="release the hold", timeout_s=60)
        (moved,) = [e for e in reply["events"] if e.get("event") == "override"]
        assert (moved["from_stage"], moved["to_stage"]) == ("hold", "final"), name  # the restart kept the stage
    thread.join(300)
    assert not thread.is_alive()

    assert [p.restarts for p in lab.shards] == [1, 0] and lab.server.restarts == 0  # only the killed shard
    hellos = [rec for _, rec in journal.iter_records(lab.journal_dir, kinds=[journal.HELLO])]
    assert {(h["agent"], h["build"], h["version"]) for h in hellos} == {(n, "agent", 2) for n in NETS}
    summary = lab.summary().set_index("agent")
    assert sorted(summary.index) == sorted(NETS)  # the lab's summary sees both shards as one journal
    assert summary["complete"].all() and (summary["exit"] == 0).all(), summary
    for i in range(K):  # each session lives in exactly one shard's journal: its own
        own = set(journal.load(journal.shard_dir(lab.journal_dir, i))["agent"])
        assert own == {n for n, home in homes.items() if home == i}
    after = journal.load(lab.journal_dir)
    keys = ["agent", "batch", "trial"]
    assert not after[keys].duplicated().any(), "a trial was journaled twice"
    cols = [*keys, "stage", "coherence", "outcome", "choice"]
    before = after.merge(acknowledged[keys], on=keys)
    assert len(before) == len(acknowledged), "an acknowledged trial was lost"
    assert before[cols].sort_values(keys).reset_index(drop=True).equals(
        acknowledged[cols].sort_values(keys).reset_index(drop=True))  # and none was changed
    for name in NETS:  # every network went on from hold, none back to the start
        mine = after[after["agent"] == name].sort_values(["batch", "trial"]).reset_index(drop=True)
        held_from = mine.index[mine["stage"] == "hold"][0]
        assert set(mine.loc[held_from:, "stage"]) == {"hold", "final"}
    for log in ("front.log", "server-0.log", "server-1.log", "pack-0.log"):
        assert (lab.dir / "logs" / log).exists(), log
    assert "sends it to shard 0" in (lab.dir / "logs" / "pack-0.log").read_text()
