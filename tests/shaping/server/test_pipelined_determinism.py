"""A pipelined agent (RESULT k sent, the step on k+1 taken, SCORE k read afterwards, as agents/agent.py does)
gets the same trial stream whatever the timing of its messages: the client asks for batch k+credit right behind
RESULT k, so the server draws it after exactly k's score. Staircases moved by the scores show it at once."""
from __future__ import annotations

import time

import numpy as np
import pytest
from loophelp import ServerThread, answer, config

from shaping import journal
from shaping.client import TaskClient

pytestmark = pytest.mark.timeout(60)

STAIR = {"kind": "staircase", "knob": "coherence", "start": 0.5, "scale": "log", "bounds": [0.01, 1.0],
         "step": 0.1, "up": 1, "down": 2, "max_reversals": 1000}


def pipelined_run(journal_dir, pauses: np.ndarray) -> list[tuple[int, float]]:
    """One agent, 30 batches, a pause before each RESULT (its 'training step'); (batch, coherence) journaled."""
    with ServerThread(config(journal_dir, curricula={"stair": STAIR})) as st:
        client = TaskClient(st.endpoint, "a1", curriculum="stair", timeout_s=10)
        client.hello()
        pending = None
        for k, batch in enumerate(client.batches()):
            if k == 30:
                break
            time.sleep(pauses[k])
            correct = np.random.default_rng(batch.batch_id).random(len(batch)) < 0.8  # the same answers each run
            client.result(batch, answer(batch.y, correct), wait=False)
            if pending is not None:
                client.score(pending)
            pending = batch
        client.score(pending)
        client.bye()
    trials = journal.load(journal_dir)
    per_batch = trials.groupby("batch")["coherence"].first()
    return [(int(b), round(float(c), 9)) for b, c in per_batch.items()]


def test_the_trial_stream_does_not_depend_on_when_scores_arrive(tmp_path):
    fast = pipelined_run(tmp_path / "fast", np.zeros(30))
    jittered = pipelined_run(tmp_path / "jitter", np.random.default_rng(1).choice([0.0, 0.02], 30))
    assert len(fast) >= 30 and len({c for _, c in fast}) > 5  # the staircase moved
    assert fast == jittered
