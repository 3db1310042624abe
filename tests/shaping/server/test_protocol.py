"""protocol.py: round trips, the decode order, limits, zero-copy read-only arrays."""
from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest

from shaping import protocol
from shaping.protocol import ProtocolError

rng = np.random.default_rng(0)

VALID = {
    "HELLO": ({"agent": "a1", "curriculum": None, "info": {"N_rec": 50, "dale_ratio": 0.8}}, None),
    "WELCOME": ({"session": "s", "agent": "a1", "curriculum": "c", "resumed": False, "epoch": 1, "trials": 0,
                 "batches": 0, "stage": "easy", "stage_index": 0, "knobs": {"coherence": [0.1, 0.7]},
                 "complete": False, "task": {"N_in": 2}, "credit": 2, "heartbeat_interval_s": 1,
                 "expiry_s": 60.0, "limits": protocol.LIMITS.to_dict(), "run": {}}, None),
    "GET": ({"n": 8}, None),
    "BATCH": ({"batch": 3, "epoch": 1, "n": 4, "task": "T", "stage": "easy", "stage_index": 0, "knobs": {},
               "params": {"label": ["a", "b", "c", "d"]}},
              {"x": rng.standard_normal((4, 10, 2), dtype=np.float32), "y": np.zeros((4, 10, 2), np.float32),
               "mask": np.ones((4, 10, 2), np.float32), "p:coherence": np.arange(4.0),
               "p:direction": np.array([0, 1, 1, 0]), "p:correction": np.array([True, False, False, False])}),
    "RESULT": ({"batch": 3, "epoch": 1}, {"y_hat": np.ones((4, 10, 2), np.float32)}),
    "SCORE": ({"batch": 3, "n": 2, "correct": 1, "accuracy": 0.5, "window_accuracy": None,
               "policy_accuracy": 0.5, "trials": 2, "batches": 1, "stage": "easy", "stage_index": 0,
               "knobs": {}, "events": [{"event": "graduated"}], "complete": False},
              {"outcome": np.array([0, 1], np.int8), "choice": np.array([1, 1], np.int32),
               "target": np.array([1, 0], np.int32)}),
    "HEARTBEAT": ({}, None),
    "BYE": ({"reason": "done"}, None),
    "ERROR": ({"code": 404, "name": "BAD_HEADER", "detail": "x", "batch": None}, None),
    "OVERRIDE": ({"agent": "a1", "knob": "coherence", "value": {"uniform": [0.1, 0.5]}, "note": "why"}, None),
    "OVERRIDDEN": ({"agent": "a1", "trials": 64, "stage": "easy", "stage_index": 0, "knobs": {"coherence": 0.3},
                    "events": [{"event": "override"}], "complete": False}, None),
    "REDIRECT": ({"endpoint": "tcp://127.0.0.1:5001", "shard": 1, "agent": "a1"}, None),
}


def frames_of(command: str, header: dict, arrays: dict | None = None) -> list[bytes]:
    return [bytes(f) for f in protocol.encode(command, header, arrays)]


@pytest.mark.parametrize("command", list(VALID))
def test_round_trip(command):
    header, arrays = VALID[command]
    msg = protocol.decode(frames_of(command, {**header, "seq": 9}, arrays))
    assert msg.type == command
    assert msg.seq == 9
    assert {k: v for k, v in msg.header.items() if k != "seq"} == header
    for name, a in (arrays or {}).items():
        np.testing.assert_array_equal(msg.arrays[name], a)
        assert msg.arrays[name].dtype == np.asarray(a).dtype.newbyteorder("<") or a.dtype.kind == "b"
        assert not msg.arrays[name].flags.writeable


def test_every_command_has_a_valid_example():
    assert set(VALID) == set(protocol.COMMANDS)


def test_arrays_are_views_of_the_frames_not_copies():
    frames = frames_of("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": np.arange(6, dtype=np.float32)})
    buf = bytearray(frames[3])
    frames[3] = buf
    msg = protocol.decode(frames)
    buf[0:4] = struct.pack("<f", 42.0)
    assert msg.arrays["y_hat"][0] == 42.0  # it sees the buffer change: zero copy


def test_encode_makes_non_contiguous_and_big_endian_arrays_wire_ready():
    a = np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2]
    msg = protocol.decode(frames_of("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": a}))
    np.testing.assert_array_equal(msg.arrays["y_hat"], a)
    with pytest.raises(ValueError, match="not allowed on the wire"):
        protocol.encode("BATCH", {}, {"x": np.array(["a"])})
    with pytest.raises(ValueError, match="unknown command"):
        protocol.encode("NOPE")


def test_encode_converts_numpy_scalars_in_headers():
    msg = protocol.decode(frames_of("GET", {"n": np.int64(5)}))
    assert msg.header["n"] == 5 and type(msg.header["n"]) is int


# ------------------------------------------------------------------ decode order: the first failing check wins
def sig(version=protocol.VERSION):
    return protocol.MAGIC + struct.pack(">H", version)


def cmd(name):
    return bytes((protocol.COMMANDS[name],))


def pack(obj):
    return msgpack.packb(obj)


CASES = {
    "too few frames": ([sig(), cmd("GET")], "MALFORMED"),
    "too many frames": ([sig(), cmd("GET"), pack({})] + [b""] * 70, "TOO_LARGE"),
    "foreign signature": ([b"GET / HTTP/1.1", cmd("GET"), pack({})], "BAD_MAGIC"),
    "short signature": ([b"SKB", cmd("GET"), pack({})], "BAD_MAGIC"),
    "other version": ([sig(3), b"\xff\xff", b"\xc1"], "BAD_VERSION"),
    "no version 0": ([sig(0), cmd("GET"), pack({})], "BAD_VERSION"),
    "REDIRECT in version 1": ([sig(1), cmd("REDIRECT"), pack({})], "UNKNOWN_TYPE"),
    "server-built BATCH without x": ([sig(), cmd("BATCH"), pack({"batch": 0, "epoch": 1, "n": 1, "task": "T",
                                                                 "stage": "s", "stage_index": 0, "knobs": {}})],
                                     "BAD_HEADER"),
    "unknown command": ([sig(), b"\x63", b"\xc1"], "UNKNOWN_TYPE"),
    "two-byte command": ([sig(), b"\x01\x01", pack({})], "UNKNOWN_TYPE"),
    "header too big": ([sig(), cmd("GET"), b"\x00" * 70000], "TOO_LARGE"),
    "header not msgpack": ([sig(), cmd("GET"), b"\xc1"], "MALFORMED"),
    "header truncated": ([sig(), cmd("GET"), pack({"n": "abcdef"})[:-2]], "MALFORMED"),
    "header not a map": ([sig(), cmd("GET"), pack([1, 2])], "MALFORMED"),
    "header int keys": ([sig(), cmd("GET"), pack({1: 2})], "MALFORMED"),
    "msgpack ext type": ([sig(), cmd("GET"), msgpack.packb({"n": msgpack.ExtType(5, b"x")})], "MALFORMED"),
    "missing field": ([sig(), cmd("RESULT"), pack({"epoch": 1})], "BAD_HEADER"),
    "wrong field type": ([sig(), cmd("GET"), pack({"n": "8"})], "BAD_HEADER"),
    "bool is not int": ([sig(), cmd("GET"), pack({"n": True})], "BAD_HEADER"),
    "non-plain map": ([sig(), cmd("HELLO"), msgpack.packb({"agent": "a", "info": {"k": b"bytes"}},
                                                            use_bin_type=True)], "BAD_HEADER"),
    "arrays vs frames": ([sig(), cmd("RESULT"), pack({"batch": 0, "epoch": 1, "arrays": []}), b"1234"],
                         "MALFORMED"),
    "array descr not triple": ([sig(), cmd("RESULT"), pack({"batch": 0, "epoch": 1, "arrays": [["y_hat"]]}),
                                b""], "MALFORMED"),
    "dtype not allowed": ([sig(), cmd("RESULT"),
                           pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<c8", [1]]]}), b"\x00" * 8],
                          "BAD_DTYPE"),
    "big endian": ([sig(), cmd("RESULT"), pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", ">f4", [1]]]}),
                    b"\x00" * 4], "BAD_DTYPE"),
    "object dtype": ([sig(), cmd("RESULT"), pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", "|O", [1]]]}),
                      b"\x00" * 8], "BAD_DTYPE"),
    "negative dim": ([sig(), cmd("RESULT"), pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<f4", [-1]]]}),
                      b""], "BAD_SHAPE"),
    "too many dims": ([sig(), cmd("RESULT"),
                       pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<f4", [1, 1, 1, 1, 1]]]}),
                       b"\x00" * 4], "BAD_SHAPE"),
    "huge declared array": ([sig(), cmd("RESULT"),
                             pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<f4", [2**20, 2**20, 64]]]}),
                             b""], "TOO_LARGE"),
    "frame shorter than shape": ([sig(), cmd("RESULT"),
                                  pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<f4", [4]]]}), b"\x00" * 12],
                                 "BAD_SHAPE"),
    "wrong dtype for y_hat": ([sig(), cmd("RESULT"),
                               pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<f8", [1]]]}), b"\x00" * 8],
                              "BAD_DTYPE"),
    "missing y_hat": ([sig(), cmd("RESULT"), pack({"batch": 0, "epoch": 1})], "BAD_HEADER"),
    "duplicate array": ([sig(), cmd("RESULT"),
                         pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<f4", [1]], ["y_hat", "<f4", [1]]]}),
                         b"\x00" * 4, b"\x00" * 4], "BAD_HEADER"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_decode_rejects(case):
    frames, name = CASES[case]
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frames)
    assert info.value.name == name
    assert info.value.code == protocol.ERRORS[name]
    assert info.value.action == protocol.ERROR_ACTIONS[name]
    assert str(info.value).startswith(f"{name} ({protocol.ERRORS[name]}): ")


def test_limits_apply_before_the_frame_is_viewed():
    small = protocol.Limits(max_array_bytes=1024, max_message_bytes=1536)
    frames = frames_of("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": np.zeros(300, np.float32)})
    with pytest.raises(ProtocolError, match="max_array_bytes is 1024") as info:
        protocol.decode(frames, small)
    assert info.value.name == "TOO_LARGE"
    frames = frames_of("BATCH", {"batch": 0, "epoch": 1, "n": 1, "task": "T", "stage": "s", "stage_index": 0,
                                 "knobs": {}},
                       {"x": np.zeros(200, np.float32), "y": np.zeros(200, np.float32),
                        "mask": np.zeros(200, np.float32)})
    with pytest.raises(ProtocolError, match="max_message_bytes") as info:
        protocol.decode(frames, small)
    assert info.value.name == "TOO_LARGE"


def test_error_details_name_the_value_and_the_expectation():
    with pytest.raises(ProtocolError) as info:
        protocol.decode([sig(), cmd("GET"), pack({"n": "8"})])
    assert "'n'" in info.value.detail and "int" in info.value.detail and "'8'" in info.value.detail
    with pytest.raises(ProtocolError) as info:
        protocol.decode([sig(), cmd("RESULT"), pack({"batch": 0, "epoch": 1, "arrays": [["y_hat", "<f4", [4]]]}),
                  b"\x00" * 12])
    assert "(4,)" in info.value.detail and "16 bytes" in info.value.detail and "12 bytes" in info.value.detail


def test_unknown_header_fields_are_ignored():
    msg = protocol.decode([sig(), cmd("GET"), pack({"n": 3, "future_field": [1, 2]})])
    assert msg.header["n"] == 3


def test_limits_validation():
    with pytest.raises(ValueError, match="max_ndim must be a positive integer, got 0"):
        protocol.Limits(max_ndim=0)
    with pytest.raises(ValueError, match="unknown limit"):
        protocol.Limits.from_dict({"max_bytes": 3})
    assert protocol.Limits.from_dict({"max_trials": 8}).max_trials == 8


def test_protocol_error_and_agent_names():
    err = ProtocolError("NO_CREDIT", "wait", batch=3)
    assert (err.code, err.name, err.action, err.batch) == (413, "NO_CREDIT", "retry", 3)
    with pytest.raises(ValueError, match="unknown error name"):
        ProtocolError("NOPE", "x")
    protocol.check_agent_name("rat-07_a.b")
    for bad in ("", "a b", "a/b", "x" * 65, "é", "abc\n"):  # "$" matched before a final newline
        with pytest.raises(ProtocolError) as info:
            protocol.check_agent_name(bad)
        assert info.value.name == "BAD_VALUE"


def test_error_frames_decode_to_error():
    msg = protocol.decode([bytes(f) for f in protocol.error_frames("UNKNOWN_BATCH", "never sent", seq=4, batch=9)])
    assert msg.type == "ERROR"
    assert msg.header == {"code": 414, "name": "UNKNOWN_BATCH", "detail": "never sent", "seq": 4, "batch": 9}


def test_a_header_with_bytes_keys_is_malformed():
    frames = [protocol.SIGNATURE, bytes((protocol.COMMANDS["HELLO"],)),
              msgpack.packb({b"agent": "a1"}, use_bin_type=True)]
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frames)
    assert info.value.name == "MALFORMED" and "keys must be strings" in info.value.detail


# ------------------------------------------------------------------ versions
def test_version_1_messages_decode_and_replies_keep_their_version():
    frames = [bytes(f) for f in protocol.encode("HELLO", {"agent": "a1"}, version=1)]
    assert frames[0] == b"SKBX\x00\x01"
    msg = protocol.decode(frames)
    assert msg.version == 1 and protocol.signed_version(frames) == 1
    assert protocol.decode(frames_of("GET", {})).version == protocol.VERSION == 2
    err = [bytes(f) for f in protocol.error_frames("BAD_HEADER", "x", version=1)]
    assert err[0] == b"SKBX\x00\x01"
    assert protocol.signed_version([b"SKBX\x00\x09"]) == protocol.VERSION  # unknown: answered in our own


def test_an_agent_built_batch_carries_no_arrays_and_its_result_may_be_float16_rows():
    header = {"batch": 0, "epoch": 1, "n": 2, "task": "T", "stage": "s", "stage_index": 0, "knobs": {},
              "build": {"task": "abc", "seed": 7, "repeat": None}}
    assert protocol.decode(frames_of("BATCH", header)).header["build"]["seed"] == 7
    rows = np.ones((5, 2), np.float16)
    msg = protocol.decode(frames_of("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": rows}))
    assert msg.arrays["y_hat"].dtype == np.float16
    with pytest.raises(ProtocolError) as e:
        protocol.decode(frames_of("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": rows.astype(np.float64)}))
    assert e.value.name == "BAD_DTYPE" and "<f4 or <f2" in e.value.detail
