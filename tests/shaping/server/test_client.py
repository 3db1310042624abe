"""client.py against a live server: the agent loop, prefetching, reconnect/resume, errors and give-up."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from loophelp import ServerThread, config, free_port

from shaping import journal, protocol
from shaping.client import RemoteBatch, ServerClosed, TaskClient
from shaping.protocol import ProtocolError

pytestmark = pytest.mark.timeout(60)


def wait_until(cond, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def crash(st: ServerThread) -> None:
    """Stop a server thread without telling its agents (as a killed server would)."""
    st.server._send_to = lambda *args, **kw: False  # no BYE, no reply: it just vanishes
    st.stop()


def test_agent_loop_until_the_curriculum_is_complete(tmp_path):
    cfg = config(tmp_path, curricula={"short": {"kind": "fixed", "max_trials": 160}})
    with ServerThread(cfg) as st:
        with TaskClient(st.endpoint, "a1", info={"N_rec": 50}, heartbeat_interval_s=0.2, timeout_s=5) as c:
            w = c.hello()
            assert w.curriculum == "short" and c.task_spec["N_steps"] == 50 and c.credit == 3
            scores = []
            for batch in c.batches():
                assert isinstance(batch, RemoteBatch) and batch.x.shape == (16, 50, 2)
                assert not batch.x.flags.writeable
                params = batch.params
                assert len(params) == 16 and {"coherence", "direction", "onset_time"} <= set(params.columns)
                scores.append(c.result(batch, batch.y))
            assert scores[-1].complete and not any(s.complete for s in scores[:-1])
            assert [s.trials for s in scores] == list(range(16, 161, 16))
            assert all(s.accuracy == 1.0 and s.outcome.dtype == np.int8 for s in scores)
        time.sleep(0.1)
        assert not st.server.sessions["a1"].connected  # bye() on leaving the with block
    assert journal.load_sessions(tmp_path)["info"].tolist() == [{"N_rec": 50}]


def test_prefetch_keeps_credit_batches_in_flight(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        for credit, expected in ((None, 3), (1, 1)):
            name = f"p{credit}"
            c = TaskClient(st.endpoint, name, credit=credit, n=5, timeout_s=5)
            b = c.get()  # hello() on first use
            assert len(b) == 5
            session = st.server.sessions[name]
            wait_until(lambda: len(session.in_flight) == expected)  # the next batch is ready while we "train"
            assert c.result(b, b.y).n == 5
            c.close()


def test_results_without_waiting(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        c = TaskClient(st.endpoint, "nw", timeout_s=5)
        b1 = c.get()
        b2 = c.get()
        assert c.result(b1, b1.y, wait=False) is None
        assert c.result(b2.batch_id, b2.y, wait=False) is None
        got = []
        wait_until(lambda: got.extend(c.scores()) or len(got) == 2)
        assert sorted(s.batch_id for s in got) == [b1.batch_id, b2.batch_id]
        c.close()


def test_reconnects_to_a_restarted_server_and_resumes(tmp_path):
    cfg = config(tmp_path, bind=f"tcp://127.0.0.1:{free_port()}")
    st = ServerThread(cfg)
    c = TaskClient(st.endpoint, "r1", heartbeat_interval_s=0.2, timeout_s=10, reconnect_max_s=0.2)
    for _ in range(3):
        b = c.get()
        assert c.result(b, b.y) is not None
    trials = c.welcome.trials + 48
    pending = c.get()
    crash(st)
    restarted = []
    timer = threading.Timer(1.0, lambda: restarted.append(ServerThread(cfg)))
    timer.start()
    try:
        assert c.result(pending, pending.y) is None  # its epoch ended with the old server: void, not scored
        assert c.reconnects >= 1 and c.epoch == 2 and c.welcome.resumed and c.welcome.trials == trials
        b = c.get()
        assert b.batch_id == pending.batch_id  # never scored, so issued again: the same id in a new epoch
        c.result(b, b.y, wait=False)
        score = c.score(b)  # the new batch's real score, not the void one of the old epoch
        assert score is not None and score.trials == trials + 16
    finally:
        timer.join()
        c.close()
        restarted[0].stop()
    df = journal.load(tmp_path)
    assert len(df) == trials + 16 and not df.duplicated(["batch", "trial"]).any()


def test_graceful_shutdown_reaches_the_agent_as_server_closed(tmp_path):
    st = ServerThread(config(tmp_path))
    c = TaskClient(st.endpoint, "s1", timeout_s=5)
    c.get()
    st.stop()
    with pytest.raises(ServerClosed, match="shutdown") as info:
        for _ in range(c.credit + 1):  # batches already prefetched are handed out first
            c.get()
    assert info.value.reason == "shutdown"
    c.close()


def test_with_find_server_a_shutdown_is_waited_out_and_the_moved_server_found(tmp_path):
    from shaping.procs import ENDPOINT_FILE, current_endpoint

    st = ServerThread(config(tmp_path))
    c = TaskClient(st.endpoint, "mover", heartbeat_interval_s=0.2, timeout_s=20, reconnect_max_s=0.2,
                   find_server=lambda: current_endpoint(tmp_path / ENDPOINT_FILE))
    b = c.get()
    assert c.result(b, b.y) is not None
    old = st.endpoint
    st.stop()  # a graceful shutdown: BYE to the agent, as a requeued SLURM job's server says
    moved = ServerThread(config(tmp_path))  # back on another port, as on another node
    try:
        assert moved.endpoint != old
        for _ in range(c.credit + 2):  # past the batches prefetched from the old server
            b = c.get()
            c.result(b, b.y)
        assert c.endpoint == moved.endpoint and c.welcome.resumed and c.reconnects >= 1
    finally:
        c.close()
        moved.stop()


def test_gives_up_without_a_server(caplog):
    c = TaskClient(f"tcp://127.0.0.1:{free_port()}", "lonely", heartbeat_interval_s=0.1, timeout_s=0.6,
                   reconnect_initial_s=0.05, reconnect_max_s=0.1)
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match="no WELCOME .* within timeout_s = 0.6 s"):
        c.hello()
    assert time.monotonic() - t0 < 3 and "reconnecting in" in caplog.text  # backed off and retried
    c.close()


def test_refusals_are_raised_to_the_agent(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        c = TaskClient(st.endpoint, "z", curriculum="missing", timeout_s=5)
        with pytest.raises(ProtocolError) as info:
            c.hello()
        assert info.value.name == "UNKNOWN_CURRICULUM" and info.value.action == "give up"
        c.close()


def test_argument_errors():
    with pytest.raises(ProtocolError, match="agent name"):
        TaskClient("tcp://127.0.0.1:1", "bad name")
    with pytest.raises(ValueError, match="credit must be a positive integer, got 0"):
        TaskClient("tcp://127.0.0.1:1", "a", credit=0)
    with pytest.raises(ValueError, match="timeout_s must be a positive number of seconds, got -1"):
        TaskClient("tcp://127.0.0.1:1", "a", timeout_s=-1)


def test_a_reply_lost_on_the_way_is_recovered_by_resynchronising(tmp_path):
    with ServerThread(config(tmp_path, heartbeat_interval_s=0.1, expiry_s=0.6)) as st:
        server = st.server
        send = server._send
        dropped = []

        def lossy(session, frames):  # drop the first BATCH, as a full send queue would
            if frames[1] == bytes((protocol.COMMANDS["BATCH"],)) and not dropped:
                dropped.append(1)
                return False
            return send(session, frames)

        server._send = lossy
        c = TaskClient(st.endpoint, "lossy", credit=1, timeout_s=5)
        t0 = time.monotonic()
        b = c.get()
        assert dropped and 0.5 < time.monotonic() - t0 < 3
        assert c.epoch == 2 and c.reconnects == 1
        assert c.result(b, b.y).n == 16
        c.close()


def test_score_needs_a_result_first(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        c = TaskClient(st.endpoint, "s", timeout_s=5)
        b = c.get()
        with pytest.raises(ValueError, match="no RESULT is waiting for a score for batch 0"):
            c.score(b)
        c.result(b, b.y, wait=False)
        assert c.score(b).n == 16
        with pytest.raises(ValueError, match="batch 0"):  # collected already
            c.score(b)
        c.close()


def test_a_result_after_completion_is_journaled_as_stale(tmp_path):
    """A pipelined agent answers the batch it trained while the completing SCORE was on its way."""
    cfg = config(tmp_path, curricula={"short": {"kind": "fixed", "max_trials": 32}})
    with ServerThread(cfg) as st:
        with TaskClient(st.endpoint, "late", timeout_s=5) as c:
            b0, b1, b2 = c.get(), c.get(), c.get()
            c.result(b0, b0.y, wait=False)
            c.result(b1, b1.y, wait=False)
            assert c.score(b0).trials == 16 and c.score(b1).complete
            late = c.result(b2, b2.y)
            assert late is not None and late.complete and late.trials == 48
            assert st.server.sessions["late"].policy.state()["trials"] == 32  # the policy did not count it
    trials = journal.load(tmp_path)
    assert trials.groupby("batch")["stale"].all().to_dict() == {0: False, 1: False, 2: True}


def test_a_batch_from_an_earlier_visit_of_the_same_stage_is_stale(tmp_path):
    """Stage a -> b -> a while batch 2 (drawn in the first visit of a) was in flight: it is not counted."""
    stages = {"kind": "stages", "window": 16, "regress": {"accuracy": 0.9, "min_dwell": 16},
              "stages": [{"name": "a", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.5, "min_trials": 16}},
                         {"name": "b", "knobs": {"coherence": 0.3},
                          "graduate": {"accuracy": 0.99, "min_trials": 10**6}}]}
    with ServerThread(config(tmp_path, curricula={"aba": stages})) as st:
        with TaskClient(st.endpoint, "v", timeout_s=5) as c:
            b0, b1, b2 = c.get(), c.get(), c.get()
            assert c.result(b0, b0.y).stage == "b"  # graduated
            c.result(b1, b1.y)  # drawn in a, answered in b: stale
            b3 = c.get()
            assert b3.stage == "b"
            assert c.result(b3, b3.y[:, :, ::-1]).stage == "a"  # every trial wrong: regressed
            c.result(b2, b2.y)  # drawn in the first visit of a, answered in the second
    trials = journal.load(tmp_path)
    stale = trials.groupby("batch")["stale"].all().to_dict()
    assert stale == {0: False, 1: True, 2: True, 3: False}
