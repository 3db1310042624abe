"""Every built-in task through a real task server: generated, sent, answered, scored and journaled."""
from __future__ import annotations

import numpy as np
import pytest
from loophelp import ServerThread
from loophelp import config as small_config

from shaping import journal
from shaping.client import TaskClient
from shaping.tasks import catalog

NAMES = catalog()["name"].tolist()


def config(journal, **overrides) -> dict:
    """The small test server's config with a 1 s heartbeat: a loaded machine stalling a thread for a second
    must not make a client give its session up (these tests do not wait on heartbeats)."""
    return small_config(journal, **{"heartbeat_interval_s": 1.0, **overrides})


@pytest.mark.parametrize("name", NAMES)
def test_task_round_trip_through_server_and_journal(name, tmp_path):
    cfg = config(tmp_path, task={"name": name, "N_batch": 8}, curricula={"fixed": {"kind": "fixed"}})
    with ServerThread(cfg) as st:
        with TaskClient(st.endpoint, "a", timeout_s=10) as c:
            batch = c.get()
            assert batch.x.shape[0] == 8 and batch.x.shape[2] == c.task_spec["N_in"]
            score = c.result(batch, batch.y)  # the targets themselves: every trial correct
            assert score is not None and score.n == 8 and score.accuracy == 1.0
    trials = journal.load(tmp_path)
    assert len(trials) == 8 and (trials["outcome"] == "correct").all()
    # Every trial parameter the agent saw is in the journal; one named like a score column (the correct
    # "choice" of some tasks) as "param.<name>".
    for column in batch.params.columns:
        stored = f"param.{column}" if column in ("trial", "outcome", "choice", "target") else column
        assert stored in trials.columns, column
        sent = batch.params[column].to_numpy()
        if sent.dtype.kind in "biuf":
            np.testing.assert_allclose(trials[stored].to_numpy(dtype=float), sent.astype(float))
