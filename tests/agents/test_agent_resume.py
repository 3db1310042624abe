"""An agent resumed in a new lab session logs its model into that session's run, and a checkpoint is only ever
continued in the server session it belongs to.

Real task server (in a thread, loopback ZeroMQ, MLflow sqlite store) and the real agent loop (TensorFlow).
"""
from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from pathlib import Path
from typing import Iterator

import pytest

from shaping import journal
from shaping.server import TaskServer, attach_tracking

pytestmark = [pytest.mark.tf, pytest.mark.procs]

TASK = {"name": "PerceptualDiscrimination", "dt": 20, "T": 400, "N_batch": 16}
MODEL = {"model": "Basic", "N_rec": 8, "seed": 0}


@contextlib.contextmanager
def serving(journal_dir: Path, tracking: dict | None = None) -> Iterator[str]:
    """A task server on ``journal_dir`` (logging to ``tracking``'s parent run, if given); yields its endpoint."""
    srv = TaskServer({"task": dict(TASK), "curricula": {"fixed": {"kind": "fixed"}}, "seed": 1,
                      "journal": str(journal_dir), "heartbeat_interval_s": 0.2})
    if tracking:
        attach_tracking(srv, tracking)
    endpoint = srv.start()
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        srv.stop()
        thread.join(30)


def run_agent(endpoint: str, workdir: Path, batches: int = 2) -> dict:
    from agents.agent import Agent, AgentConfig

    return Agent(AgentConfig(name="a", server=endpoint, model=dict(MODEL), workdir=str(workdir),
                             max_batches=batches)).run()


def test_a_resumed_agent_logs_its_model_into_the_new_lab_sessions_run(tmp_path):
    from mlflow import MlflowClient

    from shaping.tracking import LabRun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    for session in ("first", "resumed"):  # two lab sessions: each has its own parent run and agent run
        lab = LabRun.start(uri, "resume", {"lab": session}, run_name=session)
        with serving(tmp_path / "journal", {"tracking_uri": uri, "run_id": lab.run_id}) as endpoint:
            run_agent(endpoint, tmp_path)
        (child,) = client.search_runs([lab.experiment_id], f"tags.`mlflow.parentRunId` = '{lab.run_id}'")
        params = child.data.params
        assert params.get("model.N_rec") == "8" and "policy.kind" in params, (session, sorted(params))
        assert "constraints/masks.npz" in [a.path for a in client.list_artifacts(child.info.run_id, "constraints")]
    assert (tmp_path / "checkpoints" / "a.ckpt.npz").exists()  # the second session continued from it


def test_a_checkpoint_is_refused_for_a_new_session_and_a_fresh_network_is_warned_about(tmp_path, caplog):
    from agents.agent import main

    with serving(tmp_path / "journal") as endpoint:
        run_agent(endpoint, tmp_path)
    config = tmp_path / "lab.json"
    config.write_text(json.dumps({"lab": {"workdir": str(tmp_path)}, "task": TASK,
                                  "curricula": {"fixed": {"kind": "fixed"}},
                                  "agents": [{"name": "a", **MODEL}]}))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with serving(tmp_path / "new_journal") as endpoint, caplog.at_level(logging.INFO, "agents.agent"):
            status = main(["--server", endpoint, "--name", "a", "--config", str(config), "--max-batches", "1"])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert status != 0
    assert "holds a network trained in an earlier session, but the server's session of this agent is new" \
        in caplog.text
    assert len(journal.load(tmp_path / "new_journal")) == 0  # it trained on nothing
    (tmp_path / "checkpoints" / "a.ckpt.npz").unlink()
    caplog.clear()
    with serving(tmp_path / "journal") as endpoint, caplog.at_level(logging.WARNING, "agents.agent"):
        assert run_agent(endpoint, tmp_path, batches=1)["batches"] == 1
    assert "no checkpoint at" in caplog.text and "the server's session has 32 trials" in caplog.text


def test_a_misspelt_model_key_is_refused_not_restarted(tmp_path, caplog):
    """A key the model does not take (``theads`` for ``threads``) is the lab file's error: the agent exits with
    REFUSED (the lab does not restart it) and one logged line naming the key, and says BYE."""
    from agents.agent import main
    from shaping.procs import REFUSED

    config = tmp_path / "lab.json"
    config.write_text(json.dumps({"lab": {"workdir": str(tmp_path)}, "task": TASK,
                                  "curricula": {"fixed": {"kind": "fixed"}},
                                  "agents": [{"name": "a", "theads": 2, **MODEL}]}))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with serving(tmp_path / "journal") as endpoint, caplog.at_level(logging.ERROR, "agents.agent"):
            status = main(["--server", endpoint, "--name", "a", "--config", str(config)])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert status == REFUSED
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "agents.agent"]
    assert line.startswith("agent 'a': model spec: unknown key(s) 'theads'")
    ends = [rec for _, rec in journal.iter_records(tmp_path / "journal", kinds=[journal.END])]
    assert [e["reason"] for e in ends] == ["refused: bad model spec"]
