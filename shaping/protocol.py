"""The skinnerbox wire protocol: constants, ``encode`` and a validating ``decode``.

This module mirrors ``shaping/PROTOCOL.md`` one to one: the constants below carry the names of the tables
there (``COMMANDS``, ``HEADER_FIELDS``, ``ARRAYS``, ``DTYPES``, ``LIMITS``, ``ERRORS``, ``ERROR_ACTIONS``) and
a test compares them with the document. A message is ``[signature, command id, msgpack header, *arrays]``;
arrays travel as raw little-endian C-ordered buffers described in the header, never pickled.

``decode`` validates in the document's order (frame count, signature, command, header size, header schema,
each array's dtype/shape/size against the limits) and only then views the frames as read-only arrays,
without copying. Every failure is a :class:`ProtocolError` carrying the error code and a message that names
the field or array, the value received and what was expected.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

import msgpack
import numpy as np

MAGIC = b"SKBX"
VERSION = 2
VERSIONS = (1, 2)  # what a peer of this version reads; replies go out in the version of the request
SIGNATURE = MAGIC + struct.pack(">H", VERSION)
SIGNATURES = {v: MAGIC + struct.pack(">H", v) for v in VERSIONS}
LIVENESS = 3  # heartbeat intervals of silence before a peer is presumed dead (ZeroMQ RFC 6)

COMMANDS: dict[str, int] = {
    "HELLO": 1, "WELCOME": 2, "GET": 3, "BATCH": 4, "RESULT": 5, "SCORE": 6, "HEARTBEAT": 7, "BYE": 8,
    "ERROR": 9, "OVERRIDE": 10, "OVERRIDDEN": 11, "REDIRECT": 12,
}
COMMAND_NAMES: dict[int, str] = {v: k for k, v in COMMANDS.items()}
AGENT_COMMANDS = frozenset({"HELLO", "GET", "RESULT", "HEARTBEAT", "BYE"})
SERVER_COMMANDS = frozenset({"WELCOME", "BATCH", "SCORE", "HEARTBEAT", "BYE", "ERROR", "OVERRIDDEN", "REDIRECT"})
V2_COMMANDS = frozenset({"REDIRECT"})  # commands a version 1 peer does not know
OPERATOR_COMMANDS = frozenset({"OVERRIDE"})  # sent by an experimenter's tool, on a connection of its own

ERRORS: dict[str, int] = {
    "MALFORMED": 400, "BAD_MAGIC": 401, "BAD_VERSION": 402, "UNKNOWN_TYPE": 403, "BAD_HEADER": 404,
    "BAD_DTYPE": 405, "BAD_SHAPE": 406, "TOO_LARGE": 407, "BAD_VALUE": 408, "UNEXPECTED": 409,
    "NO_SESSION": 410, "UNKNOWN_CURRICULUM": 411, "CONFLICT": 412, "NO_CREDIT": 413, "UNKNOWN_BATCH": 414,
    "ALREADY_SCORED": 415, "UNKNOWN_AGENT": 416, "BUILD_MISMATCH": 417, "INTERNAL": 500, "SHUTTING_DOWN": 503,
}
ERROR_NAMES: dict[int, str] = {v: k for k, v in ERRORS.items()}
GIVE_UP, RECONNECT, RETRY = "give up", "reconnect", "retry"
ERROR_ACTIONS: dict[str, str] = {
    **{name: GIVE_UP for name in ("MALFORMED", "BAD_MAGIC", "BAD_VERSION", "UNKNOWN_TYPE", "BAD_HEADER",
                                  "BAD_DTYPE", "BAD_SHAPE", "TOO_LARGE", "BAD_VALUE", "UNEXPECTED",
                                  "UNKNOWN_CURRICULUM", "CONFLICT", "UNKNOWN_AGENT", "BUILD_MISMATCH")},
    "NO_SESSION": RECONNECT, "NO_CREDIT": RETRY, "UNKNOWN_BATCH": RETRY, "ALREADY_SCORED": RETRY,
    "INTERNAL": RECONNECT, "SHUTTING_DOWN": RECONNECT,
}

DTYPES: tuple[str, ...] = ("<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "|b1")
_NP_DTYPES = {s: np.dtype(s) for s in DTYPES}

OUTCOME_CODES: dict[str, int] = {"correct": 0, "error": 1, "no_response": 2}

# Header fields per command: field -> (type, required). "*" applies to every command.
HEADER_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "*": {"arrays": ("list", False), "seq": ("int", False)},
    "HELLO": {"agent": ("str", True), "curriculum": ("str?", False), "resume": ("str?", False),
              "info": ("map", False), "build": ("str?", False), "versions": ("map", False)},
    "WELCOME": {"session": ("str", True), "agent": ("str", True), "curriculum": ("str", True),
                "resumed": ("bool", True), "epoch": ("int", True), "trials": ("int", True),
                "batches": ("int", True), "stage": ("str", True), "stage_index": ("int", True),
                "knobs": ("map", True), "complete": ("bool", True), "task": ("map", True),
                "credit": ("int", True), "heartbeat_interval_s": ("float", True),
                "expiry_s": ("float", True), "limits": ("map", True), "run": ("map", True),
                "build": ("str", False), "tasks": ("map", False), "fingerprint": ("str", False),
                "outputs": ("str", False)},
    "GET": {"n": ("int", False), "fingerprint": ("str", False)},
    "BATCH": {"batch": ("int", True), "epoch": ("int", True), "n": ("int", True), "task": ("str", True),
              "stage": ("str", True), "stage_index": ("int", True), "knobs": ("map", True),
              "params": ("map", False), "build": ("map", False)},
    "RESULT": {"batch": ("int", True), "epoch": ("int", True)},
    "SCORE": {"batch": ("int", True), "n": ("int", True), "correct": ("int", True),
              "accuracy": ("float", True), "window_accuracy": ("float?", True),
              "policy_accuracy": ("float?", True), "trials": ("int", True), "batches": ("int", True),
              "stage": ("str", True), "stage_index": ("int", True), "knobs": ("map", True),
              "events": ("list", True), "complete": ("bool", True)},
    "HEARTBEAT": {},
    "BYE": {"reason": ("str", False)},
    "ERROR": {"code": ("int", True), "name": ("str", True), "detail": ("str", True), "batch": ("int?", False)},
    "OVERRIDE": {"agent": ("str", True), "stage": ("str?", False), "stage_index": ("int?", False),
                 "knob": ("str?", False), "value": ("plain", False), "note": ("str?", False)},
    "OVERRIDDEN": {"agent": ("str", True), "trials": ("int", True), "stage": ("str", True),
                   "stage_index": ("int", True), "knobs": ("map", True), "events": ("list", True),
                   "complete": ("bool", True)},
    "REDIRECT": {"endpoint": ("str", True), "shard": ("int", True), "agent": ("str", True)},
}

# Arrays per command: name -> (dtype, required). "any" allows any dtype in DTYPES; "p:NAME" is a pattern.
ARRAYS: dict[str, dict[str, tuple[str, bool]]] = {
    "BATCH": {"x": ("<f4", False), "y": ("<f4", False), "mask": ("<f4", False), "p:NAME": ("any", False)},
    "RESULT": {"y_hat": ("<f4 or <f2", True)},
    "SCORE": {"outcome": ("|i1", True), "choice": ("<i4", True), "target": ("<i4", True)},
}
PARAM_PREFIX = "p:"
AGENT_NAME = re.compile(r"[A-Za-z0-9_.=\-]+")  # the whole name (fullmatch): "$" would let a final newline in


@dataclass(frozen=True)
class Limits:
    """Size limits checked before anything is allocated (the Limits table of PROTOCOL.md).

    Attributes:
        max_frames: frames in one message (3 + arrays).
        max_header_bytes: size of the header frame (bytes).
        max_array_bytes: size of one array frame (bytes).
        max_message_bytes: all array frames together (bytes); also the transport's per-frame cut-off.
        max_ndim: dimensions of one array.
        max_trials: trials in one batch.
        max_name_bytes: agent and array names (bytes).
    """

    max_frames: int = 64
    max_header_bytes: int = 65536
    max_array_bytes: int = 67108864
    max_message_bytes: int = 268435456
    max_ndim: int = 4
    max_trials: int = 4096
    max_name_bytes: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            val = getattr(self, f.name)
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"Limits: {f.name} must be a positive integer, got {val!r}")
        if self.max_frames < 4:
            raise ValueError(f"Limits: max_frames must be at least 4 (3 frames + 1 array), got {self.max_frames}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "Limits":
        """Defaults updated with ``values`` (``ValueError`` naming an unknown limit)."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown limit(s) {', '.join(unknown)}; known limits: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


LIMITS = Limits()


class ProtocolError(Exception):
    """A message that breaks the protocol, or a request the server refuses.

    Attributes:
        code: the error code (``ERRORS``), e.g. 404.
        name: the error name, e.g. ``"BAD_HEADER"``.
        detail: what was wrong, with the value received and what was expected.
        action: what the agent does next: ``"give up"``, ``"reconnect"`` or ``"retry"``.
        batch: the batch concerned, when there is one.
        seq: the offending message's ``seq``, when its header could be read (echoed in the ERROR).
    """

    def __init__(self, code: int | str, detail: str, batch: int | None = None, seq: int | None = None):
        if isinstance(code, str):
            if code not in ERRORS:
                raise ValueError(f"ProtocolError: unknown error name {code!r}; known: {', '.join(ERRORS)}")
            code = ERRORS[code]
        self.code = int(code)
        self.name = ERROR_NAMES.get(self.code, "UNKNOWN")
        self.detail = detail
        self.batch = batch
        self.seq = seq
        self.action = ERROR_ACTIONS.get(self.name, GIVE_UP)
        super().__init__(f"{self.name} ({self.code}): {detail}")


@dataclass
class Message:
    """A decoded message.

    Attributes:
        type: the command name, e.g. ``"BATCH"``.
        header: the header map (``arrays`` removed).
        arrays: read-only arrays by name, viewing the received frames (no copy).
        version: the protocol version of its signature (a reply goes out in the same version).
    """

    type: str
    header: dict
    arrays: dict
    version: int = VERSION

    @property
    def seq(self) -> int | None:
        return self.header.get("seq")


# ---------------------------------------------------------------------------------------------- encode
def _plain(obj: Any) -> Any:
    """msgpack fallback for NumPy scalars and arrays."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} {obj!r} in a header; use plain data")


def pack(obj: Any) -> bytes:
    """msgpack-encode plain data (NumPy scalars become Python numbers)."""
    return msgpack.packb(obj, use_bin_type=True, default=_plain)


def wire_array(arr: Any) -> np.ndarray:
    """``arr`` as a C-contiguous array of an allowed little-endian dtype (a view when it already is one)."""
    a = np.asarray(arr)
    if a.dtype.str not in _NP_DTYPES:
        if a.dtype.byteorder == ">" and a.dtype.newbyteorder("<").str in _NP_DTYPES:
            a = a.astype(a.dtype.newbyteorder("<"))
        else:
            raise ValueError(f"array dtype {a.dtype} is not allowed on the wire; allowed: {', '.join(DTYPES)}")
    return np.ascontiguousarray(a)


def encode(command: str, header: Mapping[str, Any] | None = None,
           arrays: Mapping[str, Any] | None = None, version: int = VERSION) -> list:
    """Frames of one message: ``[SIGNATURE, command id, header, *array buffers]``.

    Args:
        command: command name (``COMMANDS``).
        header: header fields (plain data; ``arrays`` is filled in here).
        arrays: name -> array; converted to an allowed dtype, C order, without copy where possible.
        version: the protocol version to sign the message with (a reply: the request's).

    Returns:
        A list of frames (bytes and buffers) for ``socket.send_multipart``.
    """
    if command not in COMMANDS:
        raise ValueError(f"encode: unknown command {command!r}; known: {', '.join(COMMANDS)}")
    head = dict(header or {})
    frames: list = [SIGNATURES[version], bytes((COMMANDS[command],)), b""]
    if arrays:
        descr = []
        for name, value in arrays.items():
            a = wire_array(value)
            descr.append([name, a.dtype.str, list(a.shape)])
            frames.append(a.data if a.size else b"")
        head["arrays"] = descr
    frames[2] = pack(head)
    return frames


# ---------------------------------------------------------------------------------------------- decode
def _frame_bytes(frame: Any) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if hasattr(frame, "bytes"):  # zmq.Frame
        return frame.bytes
    return bytes(frame)


def _frame_buffer(frame: Any) -> Any:
    if hasattr(frame, "buffer"):  # zmq.Frame: zero-copy view
        return frame.buffer
    return frame


def frame_nbytes(frame: Any) -> int:
    """The size of one frame (bytes, a buffer or a ``zmq.Frame``) in bytes."""
    return _frame_len(frame)


def _frame_len(frame: Any) -> int:
    if hasattr(frame, "buffer"):
        return frame.buffer.nbytes
    return memoryview(frame).nbytes


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


_PLAIN_TYPES = (type(None), bool, int, float, str)


def _is_plain(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _PLAIN_TYPES):
        return True
    if depth > 32:
        return False
    if isinstance(value, list):
        return all(_is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _type_ok(value: Any, kind: str) -> bool:
    if kind.endswith("?"):
        if value is None:
            return True
        kind = kind[:-1]
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "map":
        return isinstance(value, dict) and _is_plain(value)
    if kind == "list":
        return isinstance(value, list) and _is_plain(value)
    if kind == "plain":
        return _is_plain(value)
    raise AssertionError(f"unknown field type {kind!r}")


def _check_header(command: str, header: dict) -> None:
    schema = {**HEADER_FIELDS["*"], **HEADER_FIELDS[command]}
    for name, (kind, required) in schema.items():
        if name not in header:
            if required:
                raise ProtocolError("BAD_HEADER", f"{command} header lacks required field {name!r} ({kind})")
            continue
        if not _type_ok(header[name], kind):
            raise ProtocolError("BAD_HEADER", f"{command} header field {name!r} must be {kind}, got "
                                              f"{_short(header[name])}")


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _array_rule(command: str, name: str) -> tuple[str, bool] | None:
    rules = ARRAYS.get(command, {})
    if name in rules:
        return rules[name]
    if name.startswith(PARAM_PREFIX) and "p:NAME" in rules:
        return rules["p:NAME"]
    return None


def decode(frames: Sequence[Any], limits: Limits = LIMITS) -> Message:
    """Validate and decode one message (the frames after the ROUTER's routing id).

    Args:
        frames: bytes or ``zmq.Frame`` objects.
        limits: the size limits to enforce.

    Returns:
        The :class:`Message`, its arrays read-only views of the frames.

    Raises:
        ProtocolError: at the first check that fails, in the order of PROTOCOL.md.
    """
    nf = len(frames)
    if nf < 3:
        raise ProtocolError("MALFORMED", f"message has {nf} frame(s); expected at least 3 "
                                         "(signature, command, header)")
    if nf > limits.max_frames:
        raise ProtocolError("TOO_LARGE", f"message has {nf} frames; the limit max_frames is {limits.max_frames}")
    sig = _frame_bytes(frames[0]) if _frame_len(frames[0]) <= 64 else b""
    if len(sig) != len(SIGNATURE) or sig[:4] != MAGIC:
        raise ProtocolError("BAD_MAGIC", f"first frame {_short(sig or '<%d bytes>' % _frame_len(frames[0]))} "
                                         f"is not the signature {SIGNATURE!r}")
    version = struct.unpack(">H", sig[4:])[0]
    if version not in VERSIONS:
        raise ProtocolError("BAD_VERSION", f"protocol version {version}; this peer speaks versions "
                                           f"{', '.join(map(str, VERSIONS))} (upgrade skinnerbox on the older side)")
    cmd = _frame_bytes(frames[1]) if _frame_len(frames[1]) <= 8 else b""
    if len(cmd) != 1 or cmd[0] not in COMMAND_NAMES:
        raise ProtocolError("UNKNOWN_TYPE", f"command frame {_short(cmd) if cmd else '<long frame>'} names no "
                                            f"command; expected one byte in {sorted(COMMAND_NAMES)}")
    command = COMMAND_NAMES[cmd[0]]
    if version < 2 and command in V2_COMMANDS:
        raise ProtocolError("UNKNOWN_TYPE", f"{command} does not exist in protocol version {version}")
    hlen = _frame_len(frames[2])
    if hlen > limits.max_header_bytes:
        raise ProtocolError("TOO_LARGE", f"{command} header is {hlen} bytes; the limit max_header_bytes is "
                                         f"{limits.max_header_bytes}")
    try:
        header = msgpack.unpackb(_frame_bytes(frames[2]), raw=False, strict_map_key=True, ext_hook=_no_ext,
                                 use_list=True)
    except Exception as err:  # msgpack raises several exception types for corrupt input
        raise ProtocolError("MALFORMED", f"{command} header is not valid msgpack: {err}") from None
    if not isinstance(header, dict):
        raise ProtocolError("MALFORMED", f"{command} header must be a msgpack map, got {type(header).__name__}")
    if not all(isinstance(k, str) for k in header):
        raise ProtocolError("MALFORMED", f"{command} header keys must be strings, got "
                                         f"{_short(sorted(repr(k) for k in header if not isinstance(k, str)))}")
    seq = header.get("seq")
    try:
        _check_header(command, header)
        descr = header.pop("arrays", [])
        if len(descr) != nf - 3:
            raise ProtocolError("MALFORMED", f"{command} header lists {len(descr)} array(s) but the message has "
                                             f"{nf - 3} array frame(s)")
        arrays = _decode_arrays(command, descr, frames[3:], limits)
        if command == "BATCH" and "build" not in header:  # a batch the server built carries its trials
            missing = [name for name in ("x", "y", "mask") if name not in arrays]
            if missing:
                raise ProtocolError("BAD_HEADER", f"BATCH without 'build' lacks required array(s) "
                                                  f"{', '.join(map(repr, missing))} (<f4)")
    except ProtocolError as err:
        if isinstance(seq, int) and not isinstance(seq, bool):
            err.seq = seq
        raise
    return Message(command, header, arrays, version)


def _decode_arrays(command: str, descr: list, frames: Sequence[Any], limits: Limits) -> dict:
    specs = []
    total = 0
    for i, d in enumerate(descr):
        if not (isinstance(d, list) and len(d) == 3 and isinstance(d[0], str) and isinstance(d[1], str)
                and isinstance(d[2], list)):
            raise ProtocolError("MALFORMED", f"{command} arrays[{i}] must be [name, dtype, shape], got {_short(d)}")
        name, dtype, shape = d
        if not name or len(name.encode()) > limits.max_name_bytes:
            raise ProtocolError("BAD_HEADER", f"{command} arrays[{i}] name {_short(name)} must be 1 to "
                                              f"{limits.max_name_bytes} bytes")
        if any(s[0] == name for s in specs):
            raise ProtocolError("BAD_HEADER", f"{command} array {name!r} appears twice")
        if dtype not in _NP_DTYPES:
            raise ProtocolError("BAD_DTYPE", f"{command} array {name!r} has dtype {_short(dtype)}; allowed dtypes: "
                                             f"{', '.join(DTYPES)}")
        if len(shape) > limits.max_ndim or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                   for s in shape):
            raise ProtocolError("BAD_SHAPE", f"{command} array {name!r} has shape {_short(shape)}; expected at most "
                                             f"{limits.max_ndim} non-negative integer dimensions")
        itemsize = _NP_DTYPES[dtype].itemsize
        nbytes = math.prod(shape) * itemsize
        if nbytes > limits.max_array_bytes:
            raise ProtocolError("TOO_LARGE", f"{command} array {name!r} of shape {tuple(shape)} {dtype} is {nbytes} "
                                             f"bytes; the limit max_array_bytes is {limits.max_array_bytes}")
        total += nbytes
        if total > limits.max_message_bytes:
            raise ProtocolError("TOO_LARGE", f"{command} arrays total more than max_message_bytes = "
                                             f"{limits.max_message_bytes} bytes")
        got = _frame_len(frames[i])
        if got != nbytes:
            raise ProtocolError("BAD_SHAPE", f"{command} array {name!r} declared {tuple(shape)} {dtype} "
                                             f"({nbytes} bytes) but its frame has {got} bytes")
        rule = _array_rule(command, name)
        if rule is not None and rule[0] != "any" and dtype not in rule[0].split(" or "):
            raise ProtocolError("BAD_DTYPE", f"{command} array {name!r} must be {rule[0]}, got {dtype}")
        specs.append((name, dtype, shape))
    names = {s[0] for s in specs}
    for name, (dtype, required) in ARRAYS.get(command, {}).items():
        if required and name not in names:
            raise ProtocolError("BAD_HEADER", f"{command} lacks required array {name!r} ({dtype})")
    arrays = {}
    for (name, dtype, shape), frame in zip(specs, frames):
        a = np.frombuffer(_frame_buffer(frame), dtype=_NP_DTYPES[dtype]) if math.prod(shape) else \
            np.empty(0, dtype=_NP_DTYPES[dtype])
        a = a.reshape(shape)
        a.flags.writeable = False
        arrays[name] = a
    return arrays


# ---------------------------------------------------------------------------------------------- helpers
def error_frames(code: int | str, detail: str, seq: int | None = None, batch: int | None = None,
                 version: int = VERSION) -> list:
    """Frames of an ERROR message (signed with ``version``: the request's)."""
    err = ProtocolError(code, detail, batch)
    header: dict[str, Any] = {"code": err.code, "name": err.name, "detail": detail}
    if seq is not None:
        header["seq"] = seq
    if batch is not None:
        header["batch"] = batch
    return encode("ERROR", header, version=version)


def signed_version(frames: Sequence[Any]) -> int:
    """The version a message's signature names when it is one this peer speaks, else :data:`VERSION`: an
    error about a message that does not decode is answered in its sender's version where it can be."""
    if frames and _frame_len(frames[0]) == len(SIGNATURE):
        sig = _frame_bytes(frames[0])
        for version, signature in SIGNATURES.items():
            if sig == signature:
                return version
    return VERSION


def check_agent_name(name: str, limits: Limits = LIMITS) -> None:
    """``ProtocolError(BAD_VALUE)`` unless ``name`` is a valid agent name."""
    if not (0 < len(name.encode()) <= limits.max_name_bytes) or not AGENT_NAME.fullmatch(name):
        raise ProtocolError("BAD_VALUE", f"agent name {_short(name)} must be 1 to {limits.max_name_bytes} "
                                         "characters from [A-Za-z0-9_.=-]")
