"""A restarted server goes on with each agent's MLflow curriculum run where the journal says it is.

The first server's tracker falls behind and dies with writes queued (as at a kill -9); a second server on the
same journal and parent run must carry on the cumulative reversal count and the accuracy window, and write the
batches the first one never did. A new lab session's run (a new parent) starts at the resume, with the counters
the journal gives.
"""
from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
from loophelp import AgentThread, ServerThread, config

from shaping import journal as J
from shaping import tracking
from shaping.server import attach_tracking

pytestmark = pytest.mark.timeout(120)

STAIR = {"kind": "staircase", "knob": "coherence", "start": 0.7, "down": 3, "scale": "log", "bounds": [0.005, 2.0],
         "step": 0.05}
WINDOW = 64


def serve(cfg: dict, parent: tracking.LabRun, batches: int, seed: int, killed: bool = False) -> None:
    """One server on the journal: agent ``a`` does ``batches`` more batches; a ``killed`` server's tracker
    stops writing halfway and the server dies without a word to its hooks."""
    with ServerThread(cfg) as st:
        tracker = attach_tracking(st.server, {"tracking_uri": parent.tracking_uri, "run_id": parent.run_id})
        agent = AgentThread(st.endpoint, "a", "stair", p_correct=0.8, seed=seed).start()
        agent.wait_for(batches // 2)
        if killed:
            tracker.writer.abandon()  # what was queued, and all that follows, never reaches the store
        agent.wait_for(batches)
        agent._stop.set()
        agent.thread.join(10)
        if killed:
            st.server.on_session_end = st.server.on_stop = None
            agent.client.close()
        else:
            agent.client.bye("done")


def history(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def expected(journal_dir) -> pd.DataFrame:
    """Per batch of ``a``: its cumulative count, the reversals so far and the accuracy window (last WINDOW)."""
    b = J.load_batches(journal_dir)
    b = b[b["agent"] == "a"].reset_index(drop=True)
    ev = J.load_events(journal_dir)
    per = ev[(ev["agent"] == "a") & (ev["event"] == "reversal")].groupby("batch").size()
    correct = (J.load(journal_dir, agent="a")["outcome"] == "correct").to_numpy(float)
    steps = b["n"].cumsum().to_numpy()
    return pd.DataFrame({"step": steps, "reversals": np.cumsum([per.get(k, 0) for k in b["batch"]]),
                         "window": [correct[max(0, s - WINDOW):s].mean() for s in steps]})


def test_a_restarted_server_carries_the_run_on_and_fills_in_what_the_dead_one_lost(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = tracking.LabRun.start(uri, "resume", {"test": True})
    cfg = config(tmp_path / "journal", curricula={"stair": STAIR}, window_trials=WINDOW)
    serve(cfg, parent, 12, seed=0, killed=True)
    client = tracking.MlflowClient(uri)
    run_id = parent.child("a")["run_id"]
    lost = set(expected(cfg["journal"])["step"]) - set(history(client, run_id, "curriculum/reversals"))
    assert len(lost) >= 6  # the dead server's gap

    readers = []
    load = J.load
    monkeypatch.setattr(J, "load", lambda *a, **k: readers.append(threading.current_thread().name) or load(*a, **k))
    serve(cfg, parent, 8, seed=1)
    assert readers and "mlflow" in readers[0]  # the journal is read on the tracker's thread, not the server's
    want = expected(cfg["journal"])
    reversals = history(client, run_id, "curriculum/reversals")
    assert sorted(reversals) == want["step"].tolist()  # no gap, nothing twice
    assert [reversals[s] for s in want["step"]] == want["reversals"].tolist()
    assert want["reversals"].iloc[-1] > want["reversals"].iloc[12] > 0  # reversals before and after the restart
    window = history(client, run_id, "curriculum/accuracy_window")
    assert np.allclose([window[s] for s in want["step"]], want["window"])
    table = json.loads(_download(client, run_id, tmp_path))
    logged = pd.DataFrame(table["data"], columns=table["columns"])
    journaled = J.load_events(cfg["journal"])
    assert sorted(logged["step"].astype(int)) == sorted(journaled["session_trials"])

    resumed_at = want["step"].iloc[-1]
    fresh = tracking.LabRun.start(uri, "resume", {"test": "resumed lab"})  # a new lab session: a new run
    serve(cfg, fresh, 4, seed=2)
    want = expected(cfg["journal"]).set_index("step")
    new = history(client, fresh.child("a")["run_id"], "curriculum/reversals")
    assert sorted(new) == [s for s in want.index if s > resumed_at]  # it starts at the resume...
    assert [new[s] for s in sorted(new)] == want.loc[sorted(new), "reversals"].tolist()  # ...counting on


def _download(client, run_id: str, tmp_path) -> str:
    with open(client.download_artifacts(run_id, "curriculum/events.json", str(tmp_path))) as f:
        return f.read()


def test_events_sharing_a_step_with_the_stores_last_are_back_filled_once(tmp_path):
    """Two overrides at one trial count, the second still queued when the server dies: the restarted server wrote
    neither again (its watermark was the step), losing the second; it must write exactly the one the store lacks."""
    from shaping.client import override

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = tracking.LabRun.start(uri, "overrides", {"t": 1})
    cfg = config(tmp_path / "journal")
    with ServerThread(cfg) as st:
        tracker = attach_tracking(st.server, {"tracking_uri": uri, "run_id": parent.run_id})
        agent = AgentThread(st.endpoint, "a", "shaped", p_correct=0.5).start()
        agent.wait_for(3)
        agent._stop.set()
        agent.thread.join(10)
        override(st.endpoint, "a", stage="medium", note="first")
        assert tracker.flush(30)
        tracker.writer.abandon()  # a kill -9 with the next write queued
        override(st.endpoint, "a", knob="coherence", value=0.5, note="second")
        st.server.on_session_end = st.server.on_stop = None
        agent.client.close()
    with ServerThread(cfg) as st:
        tracker = attach_tracking(st.server, {"tracking_uri": uri, "run_id": parent.run_id})
        agent = AgentThread(st.endpoint, "a", "shaped", p_correct=0.5, seed=1).start()
        agent.wait_for(2)
        agent._stop.set()
        agent.thread.join(10)
        agent.client.bye("done")
    assert tracker.flush(30)
    path = tracking.MlflowClient(uri).download_artifacts(parent.child("a")["run_id"], "curriculum/events.json",
                                                          str(tmp_path))
    table = json.loads(open(path).read())
    logged = pd.DataFrame(table["data"], columns=table["columns"])
    assert sorted(logged.loc[logged["event"] == "override", "note"]) == ["first", "second"]
