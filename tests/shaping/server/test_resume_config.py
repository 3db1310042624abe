"""A restarted server resumes each journaled session under the curriculum and task it ran, or refuses to start.

A resumed session is rebuilt from the config; if the config would give it another curriculum spec or task than its
journaled HELLO records, the server (and a lab, before it changes anything) refuses, naming the agent and every
differing key. An unchanged config, however it is spelled, resumes.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from loophelp import STAGES, ServerThread, answer, config

from shaping import journal
from shaping.client import TaskClient
from shaping.lab import Lab
from shaping.server import ConfigChanged, ServerConfig, TaskServer, check_resume

# Stages that switch tasks, with a staircase, and defaults left to the policy (window, regress, ...).
LONG = {"name": "long", "task": {"name": "perceptual_discrimination", "dt": 10, "T": 600, "N_batch": 16},
        "knobs": {"coherence": {"staircase": {"start": 0.5, "down": 3}}}, "graduate": {"reversals": 4}}
SWITCHING = {"kind": "stages", "stages": [
    {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.99, "min_trials": 64}}, LONG]}
USER_SWITCHING = {"kind": "stages", "stages": [{"name": "own", "graduate": {"accuracy": 0.99, "min_trials": 64}},
                                               LONG]}
BUILTIN = (config("x")["task"], {"shaped": STAGES, "switching": SWITCHING})
USER = ({"name": "user_tasks:MyTask", "T": 500, "N_batch": 16}, {"fixed": {"kind": "fixed"},
                                                                  "switching": USER_SWITCHING})


def play(cfg: dict, agents: dict[str, str], batches: int = 2) -> dict[str, int]:
    """Run a server on ``cfg``; each agent (name -> curriculum) says HELLO and plays ``batches`` batches; returns
    the trials of every session when it stops."""
    with ServerThread(cfg) as srv:
        for name, curriculum in agents.items():
            client = TaskClient(srv.endpoint, name, curriculum=curriculum, heartbeat_interval_s=0.2)
            client.hello()
            for _ in range(batches):
                batch = client.get()
                client.result(batch, answer(batch.y, np.arange(len(batch)) % 4 > 0))
            client.bye()
        return {name: s.trials for name, s in srv.server.sessions.items()}


def test_a_changed_curriculum_or_task_is_refused_naming_each_key(tmp_path):
    cfg = config(tmp_path / "journal")
    play(cfg, {"a1": "shaped", "a2": "fixed"})
    changed = copy.deepcopy(cfg)
    changed["curricula"]["shaped"]["stages"][0]["graduate"]["accuracy"] = 0.6
    changed["task"]["T"] = 600
    segments = journal.segments(tmp_path / "journal")
    with pytest.raises(ConfigChanged) as err:
        TaskServer(changed).start()
    text = str(err.value)
    assert "agent 'a1' (curriculum 'shaped'): curriculum.stages.0.graduate.accuracy: 0.7 -> 0.6; task.T: 500 -> 600" \
        in text
    assert "agent 'a2' (curriculum 'fixed'): task.T: 500 -> 600" in text
    assert "Restore the old config" in text and "new lab directory" in text and "skinnerbox override" in text
    # Nothing was journaled by the refused servers: the journal resumes under its own config as before.
    assert [p for p in journal.segments(tmp_path / "journal") if p.stat().st_size] == segments
    assert play(cfg, {"a1": "shaped"}, batches=1)["a1"] == 3 * 16


@pytest.mark.parametrize("task, curricula", [BUILTIN, USER], ids=["builtin", "module:Class"])
def test_an_unchanged_config_resumes_run_after_run_and_new_agents_join(tmp_path, task, curricula):
    cfg = config(tmp_path / "journal", task=dict(task), curricula=copy.deepcopy(curricula))
    first = next(iter(curricula))
    assert play(cfg, {"a1": first, "a2": "switching"}) == {"a1": 32, "a2": 32}
    again = json.loads(json.dumps(cfg))  # as lab.json / server_config.json hand it back
    check_resume(ServerConfig.from_dict(again))
    assert play(again, {"a1": first, "a2": "switching"}) == {"a1": 64, "a2": 64}
    again["curricula"]["control"] = {"kind": "fixed"}  # a new curriculum and a new agent change no session
    assert play(again, {"a1": first, "a3": "control"}) == {"a1": 96, "a2": 64, "a3": 32}


def test_a_lab_with_a_changed_config_refuses_before_it_changes_anything(tmp_path):
    cfg = {"lab": {"name": "changed", "seed": 3},
           "task": {"name": "PerceptualDiscrimination", "dt": 10, "T": 300, "N_batch": 16},
           "curricula": {"shaped": copy.deepcopy(STAGES)},
           "agents": [{"name": "a1", "curriculum": "shaped", "N_rec": 8}]}
    lab_dir = tmp_path / "lab"
    play({"task": cfg["task"], "curricula": cfg["curricula"], "seed": 3, "journal": str(lab_dir / "journal")},
         {"a1": "shaped"}, batches=1)
    (lab_dir / "lab.json").write_text("as run before")
    cfg["curricula"]["shaped"]["stages"][1]["knobs"]["coherence"] = 0.2
    store = tmp_path / "mlflow.db"
    lab = Lab(cfg, workdir=lab_dir, tracking_uri=f"sqlite:///{store}", progress=False)
    with pytest.raises(ConfigChanged, match=r"agent 'a1' .*curriculum.stages.1.knobs.coherence: 0.3 -> 0.2"):
        lab.run()
    assert (lab_dir / "lab.json").read_text() == "as run before"
    assert not (lab_dir / "server_config.json").exists() and not store.exists() and lab.server is None
    assert not Path(lab_dir / "logs").exists()


def test_an_agent_removed_with_its_curriculum_does_not_stop_the_others(tmp_path):
    """A lab that drops agent a2 and its curriculum resumes a1 (it was refused: "curriculum 'fixed' is not in
    the config"); the server keeps a2's session as journaled. The lab's check and the server agree: a kept
    curriculum that changed is refused by both, whichever agent ran it."""
    cfg = config(tmp_path / "journal")
    play(cfg, {"a1": "shaped", "a2": "fixed"})
    reduced = copy.deepcopy(cfg)
    del reduced["curricula"]["fixed"]
    check_resume(ServerConfig.from_dict(reduced))
    assert play(reduced, {"a1": "shaped"}, batches=1) == {"a1": 48, "a2": 32}
    edited = copy.deepcopy(cfg)
    del edited["curricula"]["shaped"]  # a1 dropped with its curriculum, a2's edited
    edited["task"]["T"] = 600
    with pytest.raises(ConfigChanged, match="agent 'a2'"):
        check_resume(ServerConfig.from_dict(edited))
    with pytest.raises(ConfigChanged, match="agent 'a2'"):
        TaskServer(edited).start()
