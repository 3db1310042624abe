"""A large journal costs a restarting server bounded memory, and never stalls the server's other agents.

- ``restore_sessions`` streams the journal: its result is the last HELLO, the last state and the highest batch per
  agent, as before, and what it holds does not grow with the journal.
- A BYE's MLflow work (reading the agent's trial log from the journal) runs on the tracker's writer thread: while it
  reads, the server goes on answering the other agents.
"""
from __future__ import annotations

import json
import threading
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from loophelp import ServerThread, answer, config

from shaping import journal
from shaping.client import TaskClient
from shaping.server import attach_tracking
from shaping.tasks import make

pytestmark = pytest.mark.timeout(120)


def reference_restore(path) -> dict[str, dict]:
    """restore_sessions as it was: every BATCH and OVERRIDE record decoded and held, then the last one taken."""
    out: dict[str, dict] = {}
    for _, rec in journal.JournalReader(path, kinds=[journal.HELLO]).poll():
        out.setdefault(rec["agent"], {"state": None, "last_batch": -1})["hello"] = rec
    records = journal.JournalReader(path, kinds=[journal.BATCH, journal.OVERRIDE]).poll()
    for kind, rec in records:
        entry = out.setdefault(rec["agent"], {"state": None, "last_batch": -1, "hello": None})
        entry["state"] = json.loads(rec["state"])
        if kind == journal.BATCH:
            entry["last_batch"] = max(entry["last_batch"], rec["batch"])
    return out


def write_journal(path, batches: int, segment_bytes: int = 1 << 20, starts: int = 2) -> None:
    """``starts`` server runs: agents a0..a2 with HELLOs, batches and an override; ``lost`` has batches, no HELLO."""
    task = make("PerceptualDiscrimination", T=300, N_batch=16, seed=1)
    b = task.generate(batch_id=0)
    scored = task.score(b.y, b.y, b.mask, b.params)
    for start in range(starts):
        with journal.Journal(path, segment_bytes=segment_bytes) as j:
            for agent in ("a0", "a1", "a2"):
                j.write(journal.HELLO, {"agent": agent, "session": f"{agent}-s", "epoch": start + 1, "spec": {},
                                  "task": {}, "seed": 1, "curriculum": "c"})
            for k in range(batches):
                agent = ("a0", "a1", "a2", "lost")[k % 4]
                state = {"policy": {"k": k}, "trials": 16 * k, "batches": k, "window": [1, 0, 1]}
                j.append_batch(agent=agent, session=f"{agent}-s", batch=start * batches + k, epoch=start + 1,
                               task="PerceptualDiscrimination", stage="easy", stage_index=0, knobs=b.knobs,
                               scored=scored, events=[], state=state)
                if k == batches - 2:
                    j.append_override(agent="a1", session="a1-s", batch=k, trials=16 * k, events=[],
                                      state={"policy": {"moved": start}, "trials": 16 * k})


def test_restore_streams_the_journal_and_returns_what_it_did(tmp_path):
    write_journal(tmp_path / "small", batches=40, segment_bytes=20_000)
    assert journal.restore_sessions(tmp_path / "small") == reference_restore(tmp_path / "small")
    write_journal(tmp_path / "big", batches=1500, segment_bytes=256 << 10)
    size = sum(p.stat().st_size for p in journal.segments(tmp_path / "big"))
    tracemalloc.start()
    try:
        restored = journal.restore_sessions(tmp_path / "big")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 4 << 20 and peak < 1 << 20  # a segment and a record at a time, not the journal (as before: 13 MB)
    assert restored == reference_restore(tmp_path / "big")
    assert restored["a1"]["state"] == {"policy": {"moved": 1}, "trials": 16 * 1498}
    assert restored["lost"]["hello"] is None and restored["lost"]["last_batch"] == 1500 + 1499


def test_a_bye_does_not_hold_up_other_agents_while_its_trial_log_is_read(tmp_path, monkeypatch):
    from shaping.tracking import LabRun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lab = LabRun.start(uri, "bye", {"lab": "bye"}, run_name="bye")
    reading, release = threading.Event(), threading.Event()
    real_load = journal.load

    def slow_load(path, agent=None):  # a journal so big that reading it takes until the test says so
        reading.set()
        release.wait(15)
        return real_load(path, agent=agent)

    monkeypatch.setattr(journal, "load", slow_load)
    with ServerThread(config(tmp_path / "journal", heartbeat_interval_s=1.0)) as srv:  # no reconnect on a CI stall
        tracker = attach_tracking(srv.server, {"tracking_uri": uri, "run_id": lab.run_id})
        a0, a1 = (TaskClient(srv.endpoint, name, heartbeat_interval_s=1.0, timeout_s=30) for name in ("a0", "a1"))
        for client in (a0, a1, a0, a1):  # each: HELLO, then a batch
            batch = client.get()
            client.result(batch, answer(batch.y, np.ones(len(batch), bool)))
        a0.bye("complete")
        assert reading.wait(10), "the tracker never read a0's trial log"
        batches = [a1.get() for _ in range(3)]  # while a0's trial log is being read
        scores = [a1.result(b, answer(b.y, np.ones(len(b), bool))) for b in batches]
        answered_while_reading = not release.is_set()
        release.set()
        assert answered_while_reading and all(s is not None for s in scores) and a1.reconnects == 0
        run_id = srv.server.sessions["a0"].run["run_id"]
        a1.bye()
    assert tracker.flush(30)
    path = lab.client.download_artifacts(run_id, "curriculum/trials.parquet", str(tmp_path))
    trials = pd.read_parquet(path)
    assert set(trials["agent"]) == {"a0"} and len(trials) == 2 * 16  # a0's trials only
