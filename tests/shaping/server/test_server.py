"""server.py against a live loopback server (in-process thread): the loop, journaling, shaping, restart."""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd
import pytest
from loophelp import AgentThread, Raw, ServerThread, config, free_port

from shaping import journal, protocol
from shaping.server import ENDPOINT_FILE, ServerConfig, TaskServer, agent_seed, read_endpoint

pytestmark = pytest.mark.timeout(60)


def hello(raw: Raw, agent: str = "a1", **fields) -> protocol.Message:
    msg = raw.request("HELLO", {"agent": agent, **fields})
    assert msg.type == "WELCOME", msg.header
    return msg


def test_hello_get_result_round(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        raw = Raw(st.endpoint)
        w = hello(raw, seq=1).header
        assert w["seq"] == 1 and w["agent"] == "a1" and w["curriculum"] == "fixed"
        assert (w["resumed"], w["epoch"], w["trials"], w["batches"], w["complete"]) == (False, 1, 0, 0, False)
        assert w["task"]["N_in"] == 2 and w["task"]["N_out"] == 2 and w["task"]["N_steps"] == 50
        assert w["task"]["dt"] == 10 and w["task"]["output_names"] == ["choice0", "choice1"]
        assert w["credit"] == 3 and w["limits"] == protocol.LIMITS.to_dict() and w["run"] == {}
        assert w["stage"] == "final" and w["knobs"]["coherence"] == [0.1, 0.3, 0.5, 0.7]
        b = raw.request("GET", {"seq": 2})
        assert b.type == "BATCH" and b.header["seq"] == 2 and b.header["batch"] == 0 and b.header["epoch"] == 1
        assert b.arrays["x"].shape == b.arrays["y"].shape == b.arrays["mask"].shape == (16, 50, 2)
        assert {"p:coherence", "p:direction", "p:onset_time"} <= set(b.arrays)
        assert b.header["task"] == "PerceptualDiscrimination" and b.header["stage"] == "final"
        y = b.arrays["y"]
        wrong = y.copy()
        wrong[:4] = wrong[:4][..., ::-1]
        s = raw.request("RESULT", {"batch": 0, "epoch": 1, "seq": 3}, {"y_hat": wrong})
        assert s.type == "SCORE" and s.header["seq"] == 3
        assert (s.header["n"], s.header["correct"], s.header["trials"], s.header["batches"]) == (16, 12, 16, 1)
        assert s.header["accuracy"] == 0.75 and s.header["window_accuracy"] == 0.75
        assert s.arrays["outcome"].tolist() == [1] * 4 + [0] * 12
        np.testing.assert_array_equal(s.arrays["target"], b.arrays["p:direction"])
        np.testing.assert_array_equal(s.arrays["choice"][:4], 1 - b.arrays["p:direction"][:4])
        raw.close()


def test_every_acknowledged_batch_is_already_in_the_journal(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        raw = Raw(st.endpoint)
        hello(raw)
        reader = journal.JournalReader(tmp_path, kinds=[journal.BATCH])
        seen = []
        for k in range(5):
            b = raw.request("GET")
            s = raw.request("RESULT", {"batch": b.header["batch"], "epoch": 1}, {"y_hat": b.arrays["y"]})
            assert s.type == "SCORE"
            seen += [r["batch"] for _, r in reader.poll()]  # read the moment SCORE arrives
            assert seen == list(range(k + 1))
        df = journal.load(tmp_path)
        assert len(df) == 80 and (df["outcome"] == "correct").all()
        raw.close()


def test_shaping_moves_an_agent_through_its_stages(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        agent = AgentThread(st.endpoint, "rat", curriculum="shaped", p_correct=0.95, timeout_s=10).start()
        agent.thread.join(30)
        assert agent.error is None and agent.scores[-1].complete
        df = journal.load(tmp_path)
        stages = df.groupby("batch")["stage_index"].first().to_numpy()
        assert (np.diff(stages) >= 0).all() and stages[0] == 0 and stages[-1] == 2
        for stage, coherence in (("easy", 0.7), ("medium", 0.3), ("hard", 0.1)):
            assert np.allclose(df.loc[df["stage"] == stage, "coherence"], coherence)
        events = journal.load_events(tmp_path)
        assert events["event"].tolist().count("graduated") >= 2
        assert agent.scores[-1].trials == len(df) == df.groupby(["batch", "trial"]).ngroups
        agent.stop()


def test_stream_is_a_function_of_server_seed_and_agent_name(tmp_path):
    xs = {}
    for run, (seed, name) in enumerate([(7, "a"), (7, "a"), (7, "b"), (8, "a")]):
        with ServerThread(config(tmp_path / str(run), seed=seed)) as st:
            raw = Raw(st.endpoint)
            hello(raw, name)
            xs[run] = np.array(raw.request("GET").arrays["x"])
            raw.close()
    np.testing.assert_array_equal(xs[0], xs[1])
    assert not np.array_equal(xs[0], xs[2]) and not np.array_equal(xs[0], xs[3])
    assert agent_seed(7, "a") == agent_seed(7, "a") != agent_seed(7, "b")


def test_restart_restores_every_session(tmp_path):
    cfg = config(tmp_path, bind=f"tcp://127.0.0.1:{free_port()}")
    with ServerThread(cfg) as st:
        a = AgentThread(st.endpoint, "a", curriculum="shaped", p_correct=0.95, timeout_s=5).start()
        b = AgentThread(st.endpoint, "b", curriculum="fixed", p_correct=0.6, timeout_s=5).start()
        a.wait_for(6)
        b.wait_for(6)
        a.stop()
        b.stop()
        before = {name: (s.trials, s.batches, s.conditions["stage"], s.policy.state(), list(s.window),
                         s.session_id, s.epoch, max(s.scored_ids)) for name, s in st.server.sessions.items()}
    st2 = TaskServer(cfg)
    st2.start()
    try:
        for name, (trials, batches, stage, state, window, session_id, epoch, last) in before.items():
            s = st2.sessions[name]
            assert (s.trials, s.batches, s.conditions["stage"], s.session_id, s.epoch) == \
                (trials, batches, stage, session_id, epoch)
            assert s.policy.state() == json.loads(json.dumps(state))
            assert list(s.window) == window and s.next_batch == last + 1
            assert not s.connected and not s.in_flight
    finally:
        st2.close()
    with ServerThread(cfg) as st3:
        raw = Raw(st3.endpoint)
        w = hello(raw, "a").header
        assert w["resumed"] and w["epoch"] == before["a"][6] + 1 and w["trials"] == before["a"][0]
        assert w["session"] == before["a"][5] and w["stage"] == before["a"][2]
        bt = raw.request("GET")
        assert bt.header["batch"] == before["a"][7] + 1
        raw.close()
    trials = journal.load(tmp_path)
    assert not trials.duplicated(["agent", "batch", "trial"]).any()


def test_hooks_fill_run_see_each_batch_and_cannot_break_the_server(tmp_path, caplog):
    seen = []
    with ServerThread(config(tmp_path)) as st:
        st.server.on_session_start = lambda s: {"mlflow_run_id": f"run-{s.agent}"}
        st.server.on_scored = lambda s, scored, events, cond: seen.append((s.agent, len(scored), cond["stage"],
                                                                          isinstance(scored, pd.DataFrame)))
        raw = Raw(st.endpoint)
        assert hello(raw, "h1").header["run"] == {"mlflow_run_id": "run-h1"}
        b = raw.request("GET")
        raw.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": b.arrays["y"]})
        deadline = time.monotonic() + 2  # the hook runs just after SCORE is sent
        while not seen and time.monotonic() < deadline:
            time.sleep(0.005)
        assert seen == [("h1", 16, "final", True)]

        def broken(*args):
            raise RuntimeError("tracking store down")

        st.server.on_scored = broken
        with caplog.at_level(logging.WARNING, logger="shaping.server"):
            for k in (1, 2, 3):
                b = raw.request("GET")
                assert raw.request("RESULT", {"batch": k, "epoch": 1}, {"y_hat": b.arrays["y"]}).type == "SCORE"
        assert caplog.text.count("hook on_scored failed") == 1
        raw.close()
    assert journal.load_sessions(tmp_path)["run"].tolist() == [{"mlflow_run_id": "run-h1"}]


def test_silent_agent_loses_its_in_flight_batches(tmp_path):
    with ServerThread(config(tmp_path, heartbeat_interval_s=0.1, expiry_s=0.5)) as st:
        raw = Raw(st.endpoint)
        hello(raw)
        raw.request("GET")
        beats = 0
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # the server heartbeats a connected agent
            try:
                beats += raw.recv(0.3, skip_heartbeats=False).type == "HEARTBEAT"
            except TimeoutError:
                break
        assert beats >= 1
        time.sleep(0.8)
        assert not st.server.sessions["a1"].in_flight
        err = raw.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": np.zeros((16, 50, 2), np.float32)})
        assert err.header["name"] == "UNKNOWN_BATCH" and "expired" in err.header["detail"]
        assert raw.request("GET").header["batch"] == 1  # it may carry on
        raw.close()


def test_a_new_connection_takes_over_the_session_and_voids_old_batches(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        old, new = Raw(st.endpoint), Raw(st.endpoint)
        hello(old, "x")
        b0 = old.request("GET")
        w = hello(new, "x").header
        assert w["resumed"] and w["epoch"] == 2
        assert old.recv().header == {"reason": "replaced"}
        err = old.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": b0.arrays["y"]})
        assert err.header["name"] == "NO_SESSION"
        err = new.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": b0.arrays["y"]})
        assert err.header["name"] == "UNKNOWN_BATCH" and "epoch 2" in err.header["detail"]
        assert new.request("GET").header["batch"] == 1
        new.send_msg("BYE", {"reason": "done"})
        time.sleep(0.1)
        assert not st.server.sessions["x"].in_flight and not st.server.sessions["x"].connected
        assert new.request("GET").header["name"] == "NO_SESSION"
        old.close()
        new.close()
    assert len(journal.load(tmp_path)) == 0


def test_non_finite_outputs_are_refused_and_the_batch_stays_in_flight(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        raw = Raw(st.endpoint)
        hello(raw)
        b = raw.request("GET")
        bad = np.array(b.arrays["y"])
        bad[0, 0, 0] = np.nan
        err = raw.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": bad})
        assert err.header["name"] == "BAD_VALUE" and err.header["batch"] == 0
        assert raw.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": b.arrays["y"]}).type == "SCORE"
        raw.close()


def test_endpoint_file_written_while_running_and_removed_on_stop(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        info = read_endpoint(tmp_path, timeout_s=2)
        assert info["endpoint"] == st.endpoint and info["curve"] is False and info["pid"] > 0
        with pytest.raises(journal.JournalLocked):
            TaskServer(config(tmp_path)).start()
    assert not (tmp_path / ENDPOINT_FILE).exists()
    with pytest.raises(TimeoutError, match="no task server endpoint"):
        read_endpoint(tmp_path, timeout_s=0.05)


def test_requests_during_shutdown_get_shutting_down(tmp_path):
    server = TaskServer(config(tmp_path))
    server.start()
    sent = []
    server._send_to = lambda ident, frames, session=None: sent.append(protocol.decode([bytes(f) for f in frames]))
    server.stop()
    server._handle(b"\x00id", [bytes(f) for f in protocol.encode("HELLO", {"agent": "late"})])
    assert sent[-1].header["name"] == "SHUTTING_DOWN" and sent[-1].header["code"] == 503
    server.close()


def test_config_errors_name_the_key(tmp_path):
    good = config(tmp_path)
    with pytest.raises(ValueError, match="reachable from other machines.*requires CurveZMQ keys"):
        ServerConfig.from_dict({**good, "bind": "tcp://0.0.0.0:5555"})
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'colour'"):
        ServerConfig.from_dict({**good, "colour": "red"})
    assert ServerConfig.from_dict({**good, "colour": "red"}, ignore_unknown=True).credit == 3
    with pytest.raises(ValueError, match="default_curriculum = 'x' is not one of the curricula: fixed, shaped"):
        ServerConfig.from_dict({**good, "default_curriculum": "x"})
    with pytest.raises(ValueError, match="credit must be an integer >= 1, got 0"):
        ServerConfig.from_dict({**good, "credit": 0})
    with pytest.raises(ValueError, match="expiry_s = 0.5 must be at least 3 x heartbeat_interval_s"):
        ServerConfig.from_dict({**good, "expiry_s": 0.5})
    with pytest.raises(ValueError, match="unknown limit"):
        ServerConfig.from_dict({**good, "limits": {"max_bytes": 1}})
    with pytest.raises(ValueError, match="curricula.bad"):
        TaskServer({**good, "curricula": {"bad": {"kind": "stages", "stages": []}}})
    with pytest.raises(ValueError, match="task must be a table with a 'name'"):
        ServerConfig.from_dict({**good, "task": {"T": 5}})


def test_stage_tasks_and_batch_sizes_are_checked_at_start(tmp_path):
    """A stage that switches to a task of other sizes, or a batch beyond the limits, used to fail only when an
    agent reached it: every GET answered INTERNAL and the agent reconnected forever."""
    good = config(tmp_path)
    gonogo = {"kind": "stages", "stages": [{"name": "a", "knobs": {}},
                                           {"name": "go", "knobs": {}, "task": {"name": "GoNoGo"}}]}
    with pytest.raises(ValueError, match=r"curricula.mixed: stage 'go' runs GoNoGo with N_in=\d, N_out=1"):
        TaskServer({**good, "curricula": {"mixed": gonogo}})
    with pytest.raises(ValueError, match=r"task: batches of N_batch = 4096 trials of .* \(50 steps\) would exceed "
                                         r".* at most 163"):
        TaskServer({**good, "task": {**good["task"], "N_batch": 4096}, "limits": {"max_array_bytes": 65536}})
    long_stage = {"kind": "stages", "stages": [{"name": "a", "knobs": {}}, {"name": "long", "knobs": {}, "task": {
        "name": "PerceptualDiscrimination", "T": 5000, "N_batch": 4}}]}  # the session's N_batch (16) is what runs
    with pytest.raises(ValueError, match=r"stage 'long': batches of N_batch = 16 trials .* \(500 steps\)"):
        TaskServer({**good, "curricula": {"long": long_stage}, "limits": {"max_array_bytes": 16000}})


def test_a_task_that_cannot_describe_itself_fails_at_start_not_at_every_hello(tmp_path):
    from shaping.tasks import PerceptualDiscrimination, register, registry

    with registry.TASKS.scope():  # registered for this test only

        @register
        class BadSides(PerceptualDiscrimination):
            evidence_side = ["direction"]

        with pytest.raises(ValueError, match=r"server config: task: BadSides.evidence_side"):
            TaskServer(config(tmp_path, task={"name": "BadSides", "T": 500}))
    with pytest.raises(ValueError, match="BadSides"):
        registry.get("BadSides")


def test_a_client_gives_up_when_the_server_fails_the_same_way_again_and_again(tmp_path):
    from shaping.client import TaskClient
    from shaping.protocol import ProtocolError

    with ServerThread(config(tmp_path)) as st:
        client = TaskClient(st.endpoint, "a1", timeout_s=10, reconnect_initial_s=0.01)
        client.hello()
        st.server.sessions["a1"].task_for = lambda conditions: 1 / 0  # a bug on every GET
        with pytest.raises(ProtocolError, match="failed 5 times in a row") as info:
            next(client.batches())
        assert info.value.name == "INTERNAL" and "ZeroDivisionError" in info.value.detail
        client.close()


def test_config_from_toml_resolves_paths_next_to_the_file(tmp_path):
    (tmp_path / "lab.toml").write_text(
        'journal = "runs/j"\nseed = 3\n[task]\nname = "PerceptualDiscrimination"\nT = 500\n'
        '[curricula.control]\nkind = "fixed"\n')
    cfg = ServerConfig.from_toml(tmp_path / "lab.toml")
    assert cfg.journal == str(tmp_path / "runs" / "j") and cfg.default_curriculum == "control"
    assert cfg.task == {"name": "PerceptualDiscrimination", "T": 500} and cfg.seed == 3


def test_config_from_json(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"task": {"name": "PerceptualDiscrimination"},
                                                 "curricula": {"c": {"kind": "fixed"}}, "journal": "j"}))
    assert ServerConfig.from_toml(tmp_path / "s.json").journal == str(tmp_path / "j")


def test_server_command_line_paths_are_the_shells_and_config_paths_the_files(tmp_path, monkeypatch):
    from shaping.cli import build_parser, server_config

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "s.toml").write_text('journal = "j"\n[task]\nname = "PerceptualDiscrimination"\n'
                                              '[curricula.fixed]\nkind = "fixed"\n')
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["server", "conf/s.toml"])
    assert server_config(args)[0].journal == str(tmp_path / "conf" / "j")  # next to the file
    args = build_parser().parse_args(["server", "conf/s.toml", "--journal", "runs/j", "--keys", "k"])
    config, _ = server_config(args)
    assert config.journal == str(tmp_path / "runs" / "j") and config.keys == str(tmp_path / "k")  # the shell's


def test_a_server_run_on_its_own_serves_a_task_module_beside_its_config(tmp_path, monkeypatch):
    import sys

    from shaping.cli import build_parser, server_config

    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "beside_config_task.py").write_text(
        "from shaping.tasks import PerceptualDiscrimination\n\n"
        "class Mine(PerceptualDiscrimination):\n    pass\n")
    (tmp_path / "conf" / "s.toml").write_text('journal = "j"\n[task]\nname = "beside_config_task:Mine"\nT = 500\n'
                                              '[curricula.fixed]\nkind = "fixed"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    config, _ = server_config(build_parser().parse_args(["server", "conf/s.toml"]))
    with ServerThread(config.to_dict()) as st:
        w = Raw(st.endpoint).request("HELLO", {"agent": "a1"})
        assert w.type == "WELCOME" and w.header["task"]["task"] == "Mine"
