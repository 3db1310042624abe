"""A sharded server in one process: a real front and two real shard TaskServers on loopback, in threads, with
simulated agents (real TaskClients) and a bare DEALER for bad input.

Agents land on the shard ``shard_of`` names and nowhere else, an override sent to the front reaches the owning
shard's journal, a protocol 1 agent is told to upgrade, bad input gets its ERROR while the front keeps serving,
a shard that restarts on a new port is found again (by the front and by its agents), and a redirect loop ends.
"""
from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
import time
from dataclasses import replace
from pathlib import Path

import msgpack
import pytest
from loophelp import AgentThread, Raw, ServerThread, config

from shaping import journal, protocol
from shaping.client import TaskClient, override
from shaping.errors import ConfigError
from shaping.labfile import ServerConfig
from shaping.server.front import Front, check_shards
from shaping.shards import shard_of

pytestmark = pytest.mark.timeout(60)

K = 2
# Two agents per shard (the assignment is a fixed hash of the name: these are the first two of each).
NAMES = sorted([n for n in (f"f{i}" for i in range(20)) if shard_of(n, K) == 0][:2]
               + [n for n in (f"f{i}" for i in range(20)) if shard_of(n, K) == 1][:2])


def shard_config(root: Path, i: int) -> dict:
    # A 1 s heartbeat: a loaded 2-core machine can stall an in-process server's thread past 0.6 s (see
    # test_server_errors.py).
    return config(journal.shard_dir(root, i), heartbeat_interval_s=1.0, shards=K)


class FrontThread:
    """A real Front running its loop in a background thread; a context manager that stops it."""

    def __init__(self, root: Path, shards: int = K):
        self.front = Front(config(root, heartbeat_interval_s=1.0, shards=shards))
        self.endpoint = self.front.start()
        self.thread = threading.Thread(target=self.front.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.front.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "front thread did not stop"

    def __enter__(self) -> "FrontThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The front, its two shards and four agents (two per shard) that keep training."""
    root = tmp_path_factory.mktemp("front") / "journal"
    shards = [ServerThread(shard_config(root, i)) for i in range(K)]
    front = FrontThread(root)
    agents = {n: AgentThread(front.endpoint, n, curriculum="fixed", p_correct=0.8, pause_s=0.002,
                             timeout_s=10).start() for n in NAMES}
    for agent in agents.values():
        agent.wait_for(2)
    yield root, front, shards, agents
    for agent in agents.values():
        agent.stop()
    front.stop()
    for st in shards:
        st.stop()


def wait_for(predicate, timeout_s: float, what: str):
    """Poll ``predicate`` until it returns something true (returned); AssertionError after ``timeout_s`` (s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_the_assignment_puts_agents_on_both_shards():
    assert sorted(shard_of(n, K) for n in NAMES) == [0, 0, 1, 1]


def test_agents_land_on_their_shard_and_sessions_are_disjoint(lab):
    root, front, shards, agents = lab
    for name, agent in agents.items():
        i = shard_of(name, K)
        assert agent.client.shard == i and agent.client.shard_endpoint == shards[i].endpoint
        assert agent.client.endpoint == front.endpoint  # the front is where it comes back to
        assert not agent.client.reconnects and agent.error is None
    for i, st in enumerate(shards):
        mine = {n for n in NAMES if shard_of(n, K) == i}
        assert set(st.server.sessions) == mine
        journaled = set(journal.load(journal.shard_dir(root, i))["agent"])
        assert journaled == mine  # every agent trains on its shard, and only there
    assert set(journal.load(root)["agent"]) == set(NAMES)  # the shards read as one journal


def test_the_front_writes_the_public_endpoint_and_a_merged_status(lab):
    root, front, shards, agents = lab
    info = json.loads((root / "server.json").read_text())
    assert info["endpoint"] == front.endpoint and info["shards"] == K and info["pid"] == os.getpid()

    def merged() -> dict:  # the shards rewrite their status each second, the front merges them each second
        try:
            status = json.loads((root / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return status if len(status["sessions"]) == len(NAMES) else {}

    status = wait_for(merged, 10, "the merged status to list every agent")
    assert sorted(s["agent"] for s in status["sessions"]) == sorted(NAMES)
    assert [s["endpoint"] for s in status["shards"]] == [st.endpoint for st in shards]
    assert status["endpoint"] == front.endpoint and status["front"]["redirects"] >= len(NAMES)


def test_an_override_sent_to_the_front_reaches_the_owning_shard(lab):
    root, front, shards, agents = lab
    name = NAMES[-1]
    own = shard_of(name, K)
    reply = override(front.endpoint, name, knob="coherence", value=0.4, note="via the front", timeout_s=10)
    assert reply["agent"] == name and reply["knobs"]["coherence"] == 0.4
    events = journal.load_events(journal.shard_dir(root, own))
    (moved,) = events[(events["event"] == "override") & (events["agent"] == name)].to_dict("records")
    assert moved["note"] == "via the front"
    assert "override" not in set(journal.load_events(journal.shard_dir(root, 1 - own))["event"])


def test_an_override_of_an_unknown_agent_is_refused_by_its_shard(lab):
    _, front, _, _ = lab
    with pytest.raises(protocol.ProtocolError, match="UNKNOWN_AGENT"):
        override(front.endpoint, "nobody", stage=0, timeout_s=10)


def sig(version: int = protocol.VERSION) -> bytes:
    return protocol.MAGIC + struct.pack(">H", version)


def cmd(name: str) -> bytes:
    return bytes((protocol.COMMANDS[name],))


@pytest.fixture
def raw(lab):
    r = Raw(lab[1].endpoint)
    yield r
    r.close()


def expect(msg: protocol.Message, name: str) -> None:
    assert msg.type == "ERROR", msg
    assert msg.header["name"] == name and msg.header["code"] == protocol.ERRORS[name], msg.header
    assert msg.header["detail"]


def test_a_version_1_hello_is_told_to_upgrade(raw):
    raw.send(protocol.encode("HELLO", {"agent": "old", "seq": 3}, version=1))
    msg = raw.recv()
    expect(msg, "BAD_VERSION")
    assert msg.version == 1 and msg.header["seq"] == 3  # answered in the version it speaks
    assert "protocol version 2" in msg.header["detail"] and "upgrade skinnerbox" in msg.header["detail"]


def test_a_redirect_answers_in_the_requests_version(raw):
    msg = raw.request("HELLO", {"agent": NAMES[0], "seq": 4})
    assert (msg.type, msg.version, msg.header["seq"]) == ("REDIRECT", 2, 4)
    assert msg.header["agent"] == NAMES[0] and msg.header["shard"] == shard_of(NAMES[0], K)


@pytest.mark.parametrize("frames, name", [
    ([b"GET / HTTP/1.1\r\n", b"Host: x", b""], "BAD_MAGIC"),
    ([sig(99), cmd("HELLO"), msgpack.packb({"agent": "v99"})], "BAD_VERSION"),
    ([sig(), b"\x2a", msgpack.packb({"seq": 5})], "UNKNOWN_TYPE"),
    ([sig(1), cmd("REDIRECT"), msgpack.packb({"endpoint": "x", "shard": 0, "agent": "a"})], "UNKNOWN_TYPE"),
    ([sig(), cmd("HELLO")], "MALFORMED"),
    ([sig(), cmd("HELLO"), b"\xc1"], "MALFORMED"),
    ([sig(), cmd("HELLO"), msgpack.packb({"agent": 12})], "BAD_HEADER"),
    ([sig(), cmd("HELLO"), msgpack.packb({"agent": "a b"})], "BAD_VALUE"),
    ([sig(), cmd("OVERRIDE"), msgpack.packb({"stage": "x"})], "BAD_HEADER"),
    ([sig(), cmd("GET"), msgpack.packb({})], "NO_SESSION"),
    ([sig(), cmd("RESULT"), msgpack.packb({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<f4", [1]]]}), b"\0" * 4],
     "NO_SESSION"),
    ([sig(), cmd("SCORE"), msgpack.packb({})], "BAD_HEADER"),
    ([sig(), cmd("REDIRECT"), msgpack.packb({"endpoint": "x", "shard": 0, "agent": "a"})], "UNEXPECTED"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input_gets_its_error_and_the_front_keeps_serving(raw, lab, frames, name):
    _, front, _, agents = lab
    redirects = front.front.stats["redirects"]
    raw.send(frames)
    expect(raw.recv(), name)
    ok = raw.request("HELLO", {"agent": NAMES[1]})  # the same connection is still served
    assert ok.type == "REDIRECT" and front.front.stats["redirects"] == redirects + 1
    assert all(a.error is None and not a.client.reconnects for a in agents.values())


def test_heartbeats_and_bye_get_no_answer(raw):
    raw.send_msg("HEARTBEAT")
    raw.send_msg("BYE", {"reason": "done"})
    raw.send(protocol.encode("HEARTBEAT", version=1))
    assert raw.silent(0.3)


def test_a_shard_that_is_down_is_waited_for_and_found_on_its_new_port(tmp_path):
    """No shard yet: SHUTTING_DOWN (come back). The shard starts: REDIRECT there, and an agent trains. The shard
    stops (BYE shutdown) and starts again on another port: the agent goes back to the front, which reads the new
    endpoint, and resumes its session there."""
    root = tmp_path / "journal"
    name = NAMES[0]
    i = shard_of(name, K)
    with FrontThread(root) as front:
        raw = Raw(front.endpoint)
        try:
            expect(raw.request("HELLO", {"agent": name}), "SHUTTING_DOWN")
            first = ServerThread(shard_config(root, i))
            assert raw.request("HELLO", {"agent": name}).header["endpoint"] == first.endpoint
            agent = AgentThread(front.endpoint, name, curriculum="fixed", timeout_s=20,
                                find_server=lambda: front.endpoint).start()  # a lab agent: waits out a shutdown
            agent.wait_for(3)
            first.stop()  # BYE shutdown; server.json removed
            expect(raw.request("HELLO", {"agent": name}), "SHUTTING_DOWN")
            second = ServerThread(shard_config(root, i))
            try:
                assert second.endpoint != first.endpoint
                assert raw.request("HELLO", {"agent": name}).header["endpoint"] == second.endpoint
                n = len(agent.scores)
                agent.wait_for(n + 3, timeout_s=30)
                assert agent.client.shard_endpoint == second.endpoint
                assert agent.client.welcome.resumed and agent.error is None
                assert set(second.server.sessions) == {name}
                agent.stop()
            finally:
                second.stop()
        finally:
            raw.close()
    trials = journal.load(journal.shard_dir(root, i))
    assert not trials[["agent", "batch", "trial"]].duplicated().any()
    assert set(trials["agent"]) == {name}


def test_a_killed_shards_leftover_endpoint_file_is_not_followed(tmp_path):
    """A shard killed outright leaves its server.json; the front sees on this host that its pid is gone."""
    root = tmp_path / "journal"
    name = NAMES[0]
    path = journal.shard_dir(root, shard_of(name, K)) / "server.json"
    path.parent.mkdir(parents=True)
    dead = _dead_pid()
    path.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:9", "pid": dead, "host": socket.gethostname()}))
    with FrontThread(root) as front:
        raw = Raw(front.endpoint)
        try:
            expect(raw.request("HELLO", {"agent": name}), "SHUTTING_DOWN")
            path.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:9", "pid": os.getpid(),
                                        "host": socket.gethostname()}))
            assert raw.request("HELLO", {"agent": name}).type == "REDIRECT"
        finally:
            raw.close()


def _dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_redirect_loop_is_an_error_with_a_clear_message(tmp_path):
    """A shard's server.json naming the front itself: the client stops after a few REDIRECTs in a row."""
    root = tmp_path / "journal"
    with FrontThread(root) as front:
        for i in range(K):
            d = journal.shard_dir(root, i)
            d.mkdir(parents=True)
            (d / "server.json").write_text(json.dumps({"endpoint": front.endpoint, "pid": os.getpid(),
                                                       "host": socket.gethostname()}))
        client = TaskClient(front.endpoint, NAMES[0], timeout_s=10)
        try:
            with pytest.raises(ConnectionError, match="redirected 5 times in a row without a WELCOME"):
                client.hello()
        finally:
            client.close()
        assert front.front.stats["redirects"] == client.max_redirects + 1


def test_a_journal_is_resumed_only_with_the_shards_it_was_written_with(lab):
    root = lab[0]
    cfg = ServerConfig.from_dict(config(root, shards=K))
    check_shards(cfg)  # the same number: every session where it was
    with pytest.raises(ConfigError, match=r"another number of shards(.|\n)*agent 'f\w+' is journaled in"):
        check_shards(replace(cfg, shards=1))
    moved = [n for n in NAMES if shard_of(n, 3) != shard_of(n, K)]
    assert moved  # so the check below can fail
    with pytest.raises(ConfigError, match=rf"agent '{moved[0]}' is journaled in .*shard-{shard_of(moved[0], K)}, but "
                                          rf"\[server\] shards = 3 serves it from .*shard-{shard_of(moved[0], 3)}"):
        check_shards(replace(cfg, shards=3))


@pytest.mark.parametrize("shards", [0, 1.5, "2", True])
def test_the_number_of_shards_is_checked_naming_it(tmp_path, shards):
    with pytest.raises(ConfigError, match=rf"shards must be an integer >= 1, got {shards!r}"):
        ServerConfig.from_dict(config(tmp_path, shards=shards))


@pytest.mark.parametrize("shards, args, message", [
    (2, [], r"shards = 2: run it as a lab .*`--front`.*`--shard I`, I = 0 to 1"),
    (1, ["--front"], r"--front needs a config with shards >= 2"),
    (2, ["--shard", "2"], r"--shard 2: the config has shards = 2, so I is 0 to 1"),
])
def test_skinnerbox_server_refuses_what_cannot_shard(tmp_path, capsys, shards, args, message):
    from shaping.cli import main

    path = tmp_path / "server.json"
    path.write_text(json.dumps(config(tmp_path / "journal", shards=shards)))
    assert main(["server", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "journal").exists()  # refused before anything was written


def test_a_sharded_server_by_hand_needs_one_seed_for_every_shard(tmp_path, capsys):
    from shaping.cli import main

    cfg = config(tmp_path / "journal", shards=2)
    del cfg["seed"]
    path = tmp_path / "server.json"
    path.write_text(json.dumps(cfg))
    assert main(["server", str(path), "--shard", "0"]) == 2
    assert "needs a fixed seed, the same for every shard" in capsys.readouterr().err


def test_a_front_and_its_shards_on_ipc(tmp_path):
    """An ``ipc://`` bind: the front on the path, each shard on a path of its own beside it; no CURVE."""
    from shaping.shards import shard_bind

    root, sock = tmp_path / "journal", tmp_path / "lab.sock"
    bind = f"ipc://{sock}"
    name = NAMES[0]
    i = shard_of(name, K)
    shards = [ServerThread({**shard_config(root, j), "bind": shard_bind(bind, j)}) for j in range(K)]
    try:
        front = Front(config(root, heartbeat_interval_s=1.0, shards=K, bind=bind))
        thread = threading.Thread(target=front.run, daemon=True)
        assert front.start() == bind
        thread.start()
        agent = AgentThread(front.endpoint, name, curriculum="fixed", timeout_s=10).start()
        agent.wait_for(3)
        assert agent.client.shard_endpoint == shards[i].endpoint == f"ipc://{sock}.shard-{i}"
        agent.stop()
        front.stop()
        thread.join(10)
        assert not sock.exists() and (tmp_path / f"lab.sock.shard-{i}").exists()  # the front's file is gone
    finally:
        for st in shards:
            st.stop()


def test_a_lab_refuses_another_number_of_shards_before_it_starts_anything(lab, tmp_path):
    import shutil

    from loophelp import SMALL_TASK, STAGES

    from shaping.lab import Lab

    shutil.copytree(lab[0], tmp_path / "lab" / "journal",  # the journal two shards wrote, without their live files
                    ignore=shutil.ignore_patterns("*.lock", "server.json", "status.json"))
    cfg = {"lab": {"name": "resharded", "seed": 7}, "task": dict(SMALL_TASK),
           "curricula": {"fixed": {"kind": "fixed"}, "shaped": STAGES}, "server": {"shards": 3},
           "agents": [{"name": n, "curriculum": "fixed", "N_rec": 8} for n in NAMES]}
    resharded = Lab(cfg, workdir=tmp_path / "lab", tracking_uri="none", progress=False)
    with pytest.raises(ConfigError, match="was written with another number of shards"):
        resharded.start()
    assert resharded.server is None and not (tmp_path / "lab" / "server_config.json").exists()
