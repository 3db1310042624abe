"""A slow store: the agent's metrics, every weights file and the final snapshot make it; figures wait, and what
cannot be written in the time an agent has to stop is dropped and reported (real sqlite store)."""
import logging
import time

import numpy as np
from mlflow import MlflowClient

import agents.tracking as AT
from agents.weights import snapshot_tag
from shaping import figures, tracking
from shaping.lab import AGENT_STOP_GRACE_S

SNAPSHOTS = 8
SLOW_S = 0.6  # per intermediate W_rec figure: the backlog is far longer than the wait at close


def weights(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"W_in": rng.normal(size=(8, 2)), "W_rec": rng.normal(0, 0.3, (8, 8)), "W_out": rng.normal(size=(2, 8))}


def test_a_slow_store_still_gets_the_final_snapshot_and_every_metric(tmp_path, monkeypatch, caplog):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tracking.LabRun.start(uri, "slow", {"test": True}).child("agent")
    heatmap = figures.w_rec_heatmap

    def slow_heatmap(*args, title: str = "", **kwargs):
        if "final" not in title:
            time.sleep(SLOW_S)
        return heatmap(*args, title=title, **kwargs)

    monkeypatch.setattr(figures, "w_rec_heatmap", slow_heatmap)
    tracker = AT.AgentTracker(run, weights_dir=tmp_path / "weights", figure_backlog=5)
    tags = [snapshot_tag(k % 2, "ab"[k % 2], 32 * (k + 1)) for k in range(SNAPSHOTS)]
    for k, tag in enumerate(tags):
        path = tmp_path / f"agent_{tag}.npz"
        np.savez(path, **weights(k))
        for step in range(32 * k + 8, 32 * (k + 1) + 1, 8):
            tracker.log_metrics({"train/loss": 1.0 / step}, step=step)
        tracker.log_connectivity(path, weights(k), step=32 * (k + 1), tag=tag)
    np.savez(tmp_path / "agent.npz", **weights(99))
    tracker.log_connectivity(tmp_path / "agent.npz", weights(99), step=32 * SNAPSHOTS, tag="final")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="agents.tracking"):
        assert not tracker.close(timeout_s=3.0)
    assert time.monotonic() - started < 3.0 + SLOW_S + 1.0  # bounded: the lab's SIGKILL never comes first

    client = MlflowClient(uri)
    loss = sorted(m.step for m in client.get_metric_history(run["run_id"], "train/loss"))
    assert loss == list(range(8, 32 * SNAPSHOTS + 1, 8))
    final = {f.path.rsplit("/", 1)[1] for f in client.list_artifacts(run["run_id"], "connectivity/final")}
    assert {"agent.npz", "W_rec.png", "eigenspectrum.png", "W_in.png", "W_out.png"} <= final
    drawn = 0
    for tag in tags:  # every weights file is there; some figure sets are not, and the warning names them
        files = {f.path.rsplit("/", 1)[1] for f in client.list_artifacts(run["run_id"], f"connectivity/{tag}")}
        assert f"agent_{tag}.npz" in files
        drawn += "W_out.png" in files
    assert drawn < SNAPSHOTS
    (message,) = [r.getMessage() for r in caplog.records if "were not made" in r.getMessage()]
    missing = SNAPSHOTS - drawn
    assert f"{missing} connectivity figures (" in message or f"{missing - 1} connectivity figures (" in message
    assert any(tag in message for tag in tags) and str(tmp_path / "weights") in message
    assert "can fill" not in message  # `skinnerbox sync` does not fill in agent data


def test_an_agent_waits_for_the_store_for_less_than_the_lab_gives_it():
    assert AT.CLOSE_TIMEOUT_S <= AGENT_STOP_GRACE_S / 2
