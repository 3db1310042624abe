"""Every error code, sent to one live loopback server while a second agent keeps training unharmed."""
from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest
from loophelp import AgentThread, Raw, ServerThread, config

from shaping import journal, protocol

pytestmark = pytest.mark.timeout(60)

LIMITS = {"max_array_bytes": 65536, "max_message_bytes": 262144}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    journal = tmp_path_factory.mktemp("errors")
    # A heartbeat of 1 s (silence after 3 s): a loaded 2-core CI machine can stall this in-process server's
    # thread for longer than the 0.6 s the other tests' 0.2 s heartbeat allows, and the good agent would reconnect.
    st = ServerThread(config(journal, limits=LIMITS, heartbeat_interval_s=1.0))
    good = AgentThread(st.endpoint, "good", curriculum="fixed", p_correct=0.8, pause_s=0.002, timeout_s=10).start()
    good.wait_for(2)
    yield st, good, journal
    good.stop()
    st.stop()


@pytest.fixture
def raw(lab):
    r = Raw(lab[0].endpoint)
    yield r
    r.close()


@pytest.fixture(autouse=True)
def good_agent_unharmed(lab):
    st, good, _ = lab
    n0 = len(good.scores)
    yield
    good.wait_for(n0 + 3, timeout_s=10)  # it kept being served during and after the bad input
    assert good.error is None
    assert not good.client.reconnects


def sig(version: int = protocol.VERSION) -> bytes:
    return protocol.MAGIC + struct.pack(">H", version)


def cmd(name: str) -> bytes:
    return bytes((protocol.COMMANDS[name],))


def with_session(raw: Raw, name: str) -> protocol.Message:
    w = raw.request("HELLO", {"agent": name})
    assert w.type == "WELCOME"
    b = raw.request("GET")
    assert b.type == "BATCH"
    return b


def expect(msg: protocol.Message, name: str, seq: int | None = None) -> None:
    assert msg.type == "ERROR", msg
    assert msg.header["name"] == name and msg.header["code"] == protocol.ERRORS[name], msg.header
    assert msg.header["detail"]
    if seq is not None:
        assert msg.header["seq"] == seq


def test_malformed(raw):
    raw.send([sig(), cmd("GET")])
    expect(raw.recv(), "MALFORMED")
    raw.send([sig(), cmd("GET"), b"\xc1"])
    expect(raw.recv(), "MALFORMED")


def test_bad_magic(raw):
    raw.send([b"GET / HTTP/1.1\r\n", b"Host: x", b""])
    expect(raw.recv(), "BAD_MAGIC")


def test_bad_version(raw):
    raw.send([sig(99), cmd("HELLO"), msgpack.packb({"agent": "v99"})])
    msg = raw.recv()
    expect(msg, "BAD_VERSION")
    assert "version 99" in msg.header["detail"]


def test_unknown_type(raw):
    raw.send([sig(), b"\x2a", msgpack.packb({"seq": 5})])
    expect(raw.recv(), "UNKNOWN_TYPE")


def test_bad_header(raw):
    expect(raw.request("HELLO", {"agent": 12, "seq": 6}), "BAD_HEADER", seq=6)
    expect(raw.request("HELLO", {"curriculum": "fixed"}), "BAD_HEADER")


def test_bad_dtype(raw):
    b = with_session(raw, "e-dtype")
    msg = raw.request("RESULT", {"batch": b.header["batch"], "epoch": 1, "seq": 7},
                      {"y_hat": np.asarray(b.arrays["y"], dtype=np.float64)})
    expect(msg, "BAD_DTYPE", seq=7)
    assert "'<f4'" in msg.header["detail"] or "<f4" in msg.header["detail"]


def test_bad_shape(raw):
    b = with_session(raw, "e-shape")
    msg = raw.request("RESULT", {"batch": b.header["batch"], "epoch": 1},
                      {"y_hat": np.zeros((16, 49, 2), np.float32)})
    expect(msg, "BAD_SHAPE")
    assert "(16, 49, 2)" in msg.header["detail"] and "(16, 50, 2)" in msg.header["detail"]
    raw.send([sig(), cmd("RESULT"), msgpack.packb({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<f4", [10]]]}),
              b"\x00" * 8])
    expect(raw.recv(), "BAD_SHAPE")


def test_too_large(raw):
    # 100 KB array with max_array_bytes = 64 KiB: refused with an ERROR, before any view is made
    msg = raw.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": np.zeros(25_000, np.float32)})
    expect(msg, "TOO_LARGE")
    assert "max_array_bytes is 65536" in msg.header["detail"]
    raw.send([sig(), cmd("GET"), b"\x80" + b"\x00" * 70_000])
    expect(raw.recv(), "TOO_LARGE")


def test_frame_beyond_max_message_bytes_is_cut_by_the_transport(lab):
    # Documented known weakness: the transport drops the peer, no ERROR; the server is unaffected.
    r = Raw(lab[0].endpoint)
    r.send([sig(), cmd("GET"), b"\x00" * 300_000])
    assert r.silent(0.5)
    r.close()


def test_bad_value(raw):
    expect(raw.request("HELLO", {"agent": "has space"}), "BAD_VALUE")
    with_session(raw, "e-value")
    msg = raw.request("GET", {"n": 0})
    expect(msg, "BAD_VALUE")
    assert "n = 0" in msg.header["detail"] and "4096" in msg.header["detail"]


def test_a_batch_beyond_the_advertised_limits_is_refused_naming_what_fits(raw):
    with_session(raw, "e-size")  # 50 steps: x, y and mask take 1200 bytes a trial
    msg = raw.request("GET", {"n": 200})
    expect(msg, "BAD_VALUE")
    assert "n = 200" in msg.header["detail"] and "at most 153" in msg.header["detail"]  # all arrays <= 262144
    assert raw.request("GET", {"n": 153}).type == "BATCH"  # and the agent can decode it


def test_unexpected(raw):
    expect(raw.request("SCORE", {"batch": 0, "n": 0, "correct": 0, "accuracy": 0.0, "window_accuracy": None,
                                 "policy_accuracy": None, "trials": 0, "batches": 0, "stage": "s",
                                 "stage_index": 0, "knobs": {}, "events": [], "complete": True},
                       {"outcome": np.zeros(0, np.int8), "choice": np.zeros(0, np.int32),
                        "target": np.zeros(0, np.int32)}), "UNEXPECTED")


def test_no_session(raw):
    expect(raw.request("GET", {"seq": 8}), "NO_SESSION", seq=8)
    expect(raw.request("HEARTBEAT"), "NO_SESSION")


def test_unknown_curriculum(raw):
    msg = raw.request("HELLO", {"agent": "e-curr", "curriculum": "nope"})
    expect(msg, "UNKNOWN_CURRICULUM")
    assert "fixed, shaped" in msg.header["detail"]


def test_conflict(raw):
    msg = raw.request("HELLO", {"agent": "good", "curriculum": "shaped"})  # good follows 'fixed'
    expect(msg, "CONFLICT")
    assert "'fixed'" in msg.header["detail"]


def test_no_credit(raw):
    with_session(raw, "e-credit")
    for _ in range(2):  # with_session took the first of 3
        assert raw.request("GET").type == "BATCH"
    msg = raw.request("GET")
    expect(msg, "NO_CREDIT")
    assert "credit is 3" in msg.header["detail"]


def test_unknown_batch(raw):
    with_session(raw, "e-unknown")
    msg = raw.request("RESULT", {"batch": 999, "epoch": 1}, {"y_hat": np.zeros((16, 50, 2), np.float32)})
    expect(msg, "UNKNOWN_BATCH")
    assert msg.header["batch"] == 999 and "never sent" in msg.header["detail"]


def test_already_scored_and_journaled_once(raw, lab):
    b = with_session(raw, "e-twice")
    result = ({"batch": b.header["batch"], "epoch": 1}, {"y_hat": b.arrays["y"]})
    assert raw.request("RESULT", *result).type == "SCORE"
    expect(raw.request("RESULT", *result), "ALREADY_SCORED")
    df = journal.load(lab[2])
    assert len(df[df["agent"] == "e-twice"]) == 16


def test_internal_error_is_reported_and_contained(raw, lab):
    b = with_session(raw, "e-internal")
    policy = lab[0].server.sessions["e-internal"].policy

    def fail(scored, drawn=None):
        raise RuntimeError("policy bug")

    policy.update = fail
    msg = raw.request("RESULT", {"batch": b.header["batch"], "epoch": 1}, {"y_hat": b.arrays["y"]})
    expect(msg, "INTERNAL")
    assert "policy bug" in msg.header["detail"]
    del policy.update  # back to the class's method: the session recovers
    msg = raw.request("RESULT", {"batch": b.header["batch"], "epoch": 1}, {"y_hat": b.arrays["y"]})
    assert msg.type == "SCORE"


def test_server_counted_the_errors(lab):
    assert lab[0].server.stats["errors"] >= 15
