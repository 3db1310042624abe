"""The agent process's loop (``agents.agent.Agent``) against a real task server on loopback.

The loop is pipelined (SCORE of batch k read after the step on k + 1): these tests check what that must not
change: every batch the network learned from is journaled, and a checkpoint never holds learning from a batch
the server has not journaled yet.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from shaping import journal
from shaping.server import TaskServer

pytestmark = [pytest.mark.tf, pytest.mark.procs]

TASK = {"name": "PerceptualDiscrimination", "dt": 20, "T": 400, "N_batch": 16}
MODEL = {"model": "Basic", "N_rec": 16, "seed": 0}


@pytest.fixture
def server(tmp_path):
    curricula = {"fixed": {"kind": "fixed"}, "short": {"kind": "fixed", "max_trials": 80}}
    srv = TaskServer({"task": dict(TASK), "curricula": curricula, "seed": 1,
                      "journal": str(tmp_path / "journal"), "heartbeat_interval_s": 0.2})
    endpoint = srv.start()
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    yield srv, endpoint
    srv.stop()
    thread.join(10)


def test_every_trained_batch_is_journaled_and_checkpoints_wait_for_their_scores(server, tmp_path, monkeypatch):
    from agents.agent import Agent, AgentConfig
    from agents.rnn import RNN

    srv, endpoint = server
    agent = Agent(AgentConfig(name="a", server=endpoint, model=dict(MODEL), workdir=str(tmp_path),
                              checkpoint_every=3, max_batches=8))
    seen = []  # at each checkpoint: (updates in the model, batches the server has journaled for the agent)
    save = RNN.save_checkpoint

    def recording_save(model, path):
        seen.append((int(model.optimizer.iterations.numpy()), srv.sessions["a"].batches))
        return save(model, path)

    monkeypatch.setattr(RNN, "save_checkpoint", recording_save)
    summary = agent.run()
    assert summary["batches"] == 8 and not summary["complete"]
    assert seen == [(3, 3), (6, 6), (8, 8), (8, 8)]  # every 3 batches, at the stop, at the end
    trials = journal.load(tmp_path / "journal")
    assert sorted(trials["batch"].unique()) == list(range(8)) and len(trials) == 8 * 16
    ckpt = np.load(tmp_path / "checkpoints" / "a.ckpt.npz")
    assert int(ckpt["opt/iterations"]) == 8


def test_completion_stops_the_agent_after_at_most_one_batch_more(server, tmp_path):
    from agents.agent import Agent, AgentConfig

    _, endpoint = server
    agent = Agent(AgentConfig(name="b", server=endpoint, model=dict(MODEL), workdir=str(tmp_path),
                              curriculum="short", checkpoint_every=100))
    summary = agent.run()
    assert summary["complete"]
    trials = journal.load(tmp_path / "journal")
    counted, extra = trials[~trials["stale"]], trials[trials["stale"]]
    assert len(counted) == 80  # the policy completed on exactly its max_trials
    assert extra["batch"].nunique() <= 1 and (extra["batch"] > counted["batch"].max()).all()
    assert summary["batches"] == trials["batch"].nunique()  # nothing trained that is not journaled


def test_asking_for_a_gpu_that_is_not_there_is_a_clear_error(tmp_path):
    from agents._tf import tf
    from agents.agent import Agent, AgentConfig

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible here")
    agent = Agent(AgentConfig(name="g", server="tcp://127.0.0.1:1", model=dict(MODEL), workdir=str(tmp_path),
                              device="GPU"))
    with pytest.raises(RuntimeError, match="device = 'GPU', but TensorFlow sees no GPU"):
        agent.run()
