"""The journal: an append-only log of every scored trial, policy event and policy state snapshot.

One job: what the server acknowledges is on disk first, and a restarted server (or a dashboard) can read it
back. Invariant: a batch's trials, the policy events it caused and the policy state after it are written as
**one** record, handed to the operating system before the server sends ``SCORE``; a record is either read
back whole or not at all.

Format (why this one). A journal is a directory of segment files ``segment-000001.skj``, ... Each segment is
a sequence of records::

    b"SKJ1" | kind (1 byte) | payload length (uint32 LE) | CRC-32 of payload (uint32 LE) | payload (msgpack)

- *Crash mid-write.* A record goes to the OS in one ``write`` call on an unbuffered file, so a killed server
  leaves at most one torn record, at the very end of the segment it was writing; the length and CRC expose it
  and readers drop it. A server never appends to an old segment: each start opens a new one, so a torn tail is
  never followed by good records. No rewrite, rename or index is ever needed, and no acknowledged record can
  be damaged by a later crash (unlike a parquet file rewritten in place, or a single growing Arrow stream whose
  torn end hides nothing but whose schema cannot change when a stage switches tasks).
- *Readers while the server writes.* A dashboard reads up to the end of the file and stops at an incomplete
  record; :class:`JournalReader` remembers where it stopped and picks up the rest on the next poll. Readers
  take no lock and never block the writer (sqlite would serialise them against it).
- *Speed.* Trials are stored column-wise (one raw buffer per numeric column, category codes for the outcome),
  so appending a batch costs one msgpack call, one CRC and one ``write``: well under 0.1 ms for 128 trials.
- *Durability.* ``fsync="interval"`` (default) syncs at most every ``fsync_interval_s``: a server crash loses
  nothing (the data is in the OS), a power cut may lose the last interval. ``"always"`` syncs every record,
  ``"never"`` leaves it to the OS.

Shards. Several server processes may share a lab (``[server] shards = K``): the lab's journal directory then
holds one ordinary journal per shard, ``shard-0``, ``shard-1``, ... (:func:`shard_dir`), each written by its own
server, each agent's session in exactly one of them. Every reader here takes such a directory as **one**
journal (:func:`journal_dirs`): the shards' records are merged by their ``time`` field (unix s), each shard's
own records kept in write order, so per-agent tables read exactly as from one server and lab-level tables
(sessions, events) are in time order. A directory holding segment files of its own as well as shards (a lab run
unsharded, then sharded) is read as the union of all of them.

Loading: :func:`load` (one row per trial), :func:`load_batches` (one row per batch), :func:`load_events`,
:func:`load_snapshots`, :func:`latest_state`, :func:`load_sessions`.
"""
from __future__ import annotations

import heapq
import json
import logging
import os
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Generator, Iterator, Mapping, Sequence

import msgpack
import numpy as np
import pandas as pd

from .errors import InUseError, MissingFile
from .tasks.base import OUTCOMES  # the one definition of the outcome labels

log = logging.getLogger(__name__)

RECORD_MAGIC = b"SKJ1"
_HEAD = struct.Struct("<4sBII")  # magic, kind, length, crc
HEAD_BYTES = _HEAD.size
SEGMENT_GLOB = "segment-*.skj"
LOCK_FILE = "journal.lock"
SHARD_GLOB = "shard-*"  # a sharded journal's shard directories (shard-0, shard-1, ...)
_SHARD_NAME = re.compile(r"shard-(\d+)")

# Record kinds.
OPEN, HELLO, BATCH, END, CLOSE, OVERRIDE = 1, 2, 3, 4, 5, 6
KIND_NAMES = {OPEN: "open", HELLO: "hello", BATCH: "batch", END: "end", CLOSE: "close", OVERRIDE: "override"}
FSYNC_MODES = ("always", "interval", "never")

# Columns of load(), in this order, before the trial parameters.
META_COLUMNS = ("agent", "session", "batch", "trial", "stage", "stage_index")
RESULT_COLUMNS = ("outcome", "choice", "target", "correction", "time", "epoch", "task")


# ---------------------------------------------------------------------------------------------- encoding
def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    raise TypeError(f"journal: cannot store {type(obj).__name__} {obj!r}; policy state and events must be "
                    "plain data")


def dumps(obj: Any) -> str:
    """JSON text of plain data (NumPy scalars allowed); used for policy state and events, whose RNG states
    hold 128-bit integers that msgpack cannot carry."""
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True, default=_json_default)


def encode_columns(frame: pd.DataFrame) -> dict:
    """Column-wise encoding of a table: ``{name: [dtype, raw bytes]}`` for numeric and bool columns,
    ``["cat", categories, int8 codes]`` for the outcome, ``["obj", values]`` for anything else."""
    cols = {}
    for name in frame.columns:
        column = frame[name]
        if name == "outcome" and isinstance(column.dtype, pd.CategoricalDtype) \
                and tuple(column.cat.categories) == OUTCOMES:  # Task.score's: its codes are ours
            cols[name] = ["cat", list(OUTCOMES), column.cat.codes.to_numpy(dtype=np.int8).tobytes()]
            continue
        values = column.to_numpy()
        kind = values.dtype.kind
        if kind in "biuf":
            arr = np.ascontiguousarray(values)
            if arr.dtype.byteorder == ">":
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            cols[name] = [arr.dtype.str, arr.tobytes()]
        elif name == "outcome":
            codes = np.full(len(values), -1, dtype=np.int8)
            for i, label in enumerate(OUTCOMES):
                codes[values == label] = i
            cols[name] = ["cat", list(OUTCOMES), codes.tobytes()]
        else:
            cols[name] = ["obj", [v.tolist() if isinstance(v, np.ndarray) else v for v in values.tolist()]]
    return cols


def decode_column(spec: list, n: int) -> Any:
    """Inverse of :func:`encode_columns` for one column: a NumPy array or a list of ``n`` values."""
    tag = spec[0]
    if tag == "obj":
        return spec[1]
    if tag == "cat":
        codes = np.frombuffer(spec[2], dtype=np.int8)
        return pd.Categorical.from_codes(codes, categories=spec[1])
    return np.frombuffer(spec[1], dtype=np.dtype(tag))


# ---------------------------------------------------------------------------------------------- writing
class JournalLocked(InUseError):
    """Another live process holds the journal directory (or the lab)."""


class Journal:
    """Append-only writer (one per server process; a lock file keeps a second server out).

    Args:
        path: the journal directory (created if missing).
        fsync: ``"always"``, ``"interval"`` (default) or ``"never"`` (see the module docstring).
        fsync_interval_s: the longest time a record stays unsynced under ``"interval"`` (s).
        segment_bytes: a new segment is started when the current one exceeds this size (bytes).
    """

    def __init__(self, path: str | os.PathLike, fsync: str = "interval", fsync_interval_s: float = 1.0,
                 segment_bytes: int = 64 << 20):
        if fsync not in FSYNC_MODES:
            raise ValueError(f"Journal: fsync must be one of {', '.join(FSYNC_MODES)}, got {fsync!r}")
        if not fsync_interval_s > 0:
            raise ValueError(f"Journal: fsync_interval_s must be > 0 s, got {fsync_interval_s!r}")
        if not segment_bytes > 0:
            raise ValueError(f"Journal: segment_bytes must be > 0, got {segment_bytes!r}")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.fsync_interval_s = float(fsync_interval_s)
        self.segment_bytes = int(segment_bytes)
        self._lock_fd = self._lock()
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self._last_sync = time.monotonic()
        self.records = 0
        self.bytes = 0
        self.segment: Path | None = None
        self._new_segment()

    def _lock(self) -> int:
        return hold_lock(self.path / LOCK_FILE, f"journal {self.path} is in use by another server",
                         "stop it or choose another journal directory")

    def _new_segment(self) -> None:
        if self._fd is not None:
            self._sync()
            os.close(self._fd)
        index = max((_segment_index(p) for p in self.path.glob(SEGMENT_GLOB)), default=0) + 1
        self.segment = self.path / f"segment-{index:06d}.skj"
        self._fd = os.open(self.segment, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._size = 0
        _fsync_dir(self.path)

    def write(self, kind: int, record: Mapping[str, Any]) -> None:
        """Append one record and hand it to the OS (synced according to ``fsync``)."""
        if self._fd is None:
            raise RuntimeError(f"journal {self.path} is closed")
        payload = _pack(record)
        data = _HEAD.pack(RECORD_MAGIC, kind, len(payload), zlib.crc32(payload)) + payload
        if self._size and self._size + len(data) > self.segment_bytes:
            self._new_segment()
        view = memoryview(data)
        while view:  # a regular file takes it all in one call; the loop only guards against short writes
            view = view[os.write(self._fd, view):]
        self._size += len(data)
        self.records += 1
        self.bytes += len(data)
        self._dirty = True
        if self.fsync == "always":
            self._sync()

    def append_batch(self, *, agent: str, session: str, batch: int, epoch: int, task: str, stage: str,
                     stage_index: int, knobs: Mapping[str, Any], scored: pd.DataFrame,
                     events: Sequence[Mapping[str, Any]], state: Mapping[str, Any],
                     time_s: float | None = None, policy_accuracy: float | None = None) -> None:
        """Append one scored batch: its trials (``task.score`` output), the policy's events and the session
        state after it, as one record; ``policy_accuracy`` is the policy's own accuracy after it (what its
        graduation criterion reads; None when it keeps none)."""
        self.write(BATCH, {
            "time": time.time() if time_s is None else time_s, "agent": agent, "session": session,
            "batch": int(batch), "epoch": int(epoch), "task": task, "stage": stage,
            "stage_index": int(stage_index), "knobs": dumps(knobs), "n": len(scored),
            "cols": encode_columns(scored), "events": dumps(list(events)), "state": dumps(state),
            "policy_accuracy": None if policy_accuracy is None else float(policy_accuracy),
        })

    def append_override(self, *, agent: str, session: str, batch: int, trials: int,
                        events: Sequence[Mapping[str, Any]], state: Mapping[str, Any],
                        time_s: float | None = None) -> None:
        """Append an experimenter's override: its ``override`` events and the session state after it, as one
        record. ``batch``: the session's last scored batch (-1: none yet), the one the override follows;
        ``trials``: the session's scored trials then."""
        self.write(OVERRIDE, {"time": time.time() if time_s is None else time_s, "agent": agent,
                              "session": session, "batch": int(batch), "trials": int(trials),
                              "events": dumps(list(events)), "state": dumps(state)})

    def maybe_sync(self, now: float | None = None) -> None:
        """Under ``fsync="interval"``, sync if a record has waited ``fsync_interval_s``."""
        if self._dirty and self.fsync == "interval":
            now = time.monotonic() if now is None else now
            if now - self._last_sync >= self.fsync_interval_s:
                self._sync()

    def _sync(self) -> None:
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def flush(self) -> None:
        """Sync everything written so far to disk."""
        self._sync()

    def close(self) -> None:
        if self._fd is not None:
            self._sync()
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _try_lock(path: Path) -> tuple[int | None, str | None]:
    """Open ``path`` and try to take an exclusive lock on it: ``(fd, None)``, or ``(None, the holder's pid as
    written in the file)`` when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl  # POSIX only; Windows runs unlocked
    except ImportError:
        return fd, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        return None, holder
    return fd, None


def hold_lock(path: str | os.PathLike, busy: str, hint: str) -> int:
    """Hold an exclusive lock on ``path`` (created if missing) until the returned descriptor is closed, with
    this process's pid written in it. ``JournalLocked`` ("``busy`` (pid N); ``hint``") when another process
    holds it; a process that dies releases it."""
    fd, holder = _try_lock(Path(path))
    if fd is None:
        raise JournalLocked(f"{busy} (pid {holder}); {hint}")
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def lock_holder(path: str | os.PathLike) -> str | None:
    """The pid of the process holding the lock on ``path`` (see :func:`hold_lock`), or None when nobody does
    (or there is no such file); it takes and changes nothing."""
    path = Path(path)
    if not path.is_file():
        return None
    fd, holder = _try_lock(path)
    if fd is not None:
        os.close(fd)
    return holder


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _segment_index(path: Path) -> int:
    try:
        return int(path.stem.split("-")[1])
    except (IndexError, ValueError):
        return 0


# ---------------------------------------------------------------------------------------------- shards
def shard_name(index: int) -> str:
    """The directory name of shard ``index`` (0, 1, ...) in a sharded journal: ``"shard-0"``, ..."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"shard_name: index must be an int >= 0, got {index!r}")
    return f"shard-{int(index)}"


def shard_dir(path: str | os.PathLike, index: int) -> Path:
    """The journal directory of shard ``index`` inside the lab's journal directory ``path``."""
    return Path(path) / shard_name(index)


def shard_index(path: str | os.PathLike) -> int | None:
    """The index of a shard directory (``.../shard-3`` -> 3), or None for any other name."""
    match = _SHARD_NAME.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


def shard_dirs(path: str | os.PathLike) -> list[Path]:
    """The shard directories of a sharded journal, in shard order (numerically: ``shard-10`` after
    ``shard-9``); ``[]`` when ``path`` holds none (or is no directory)."""
    p = Path(path)
    if not p.is_dir():
        return []
    found = [(shard_index(d), d) for d in p.glob(SHARD_GLOB) if d.is_dir()]
    return [d for _, d in sorted((i, d) for i, d in found if i is not None)]


def journal_dirs(path: str | os.PathLike) -> list[Path]:
    """The journal directories ``path`` stands for: its shard directories (:func:`shard_dirs`), after ``path``
    itself when it holds segment files of its own too; ``[path]`` for an unsharded journal (or a missing one)."""
    p = Path(path)
    shards = shard_dirs(p)
    if not shards:
        return [p]
    own = [p] if any(p.glob(SEGMENT_GLOB)) else []
    return [*own, *shards]


def is_sharded(path: str | os.PathLike) -> bool:
    """True when ``path`` is a sharded journal (it holds ``shard-N`` journal directories)."""
    return bool(shard_dirs(path))


# ---------------------------------------------------------------------------------------------- reading
def segments(path: str | os.PathLike) -> list[Path]:
    """The journal's segment files in write order (``path`` may also be one segment file); for a sharded
    journal, each journal directory's (:func:`journal_dirs`) in turn."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise MissingFile(f"no journal at {p} (expected a directory of {SEGMENT_GLOB} files)")
    return [seg for d in journal_dirs(p) for seg in _dir_segments(d)]


def _dir_segments(path: Path) -> list[Path]:
    """The segment files of one journal directory (not of its shards), in write order."""
    return sorted(path.glob(SEGMENT_GLOB), key=_segment_index)


def _record_time(item: tuple[Path, int, dict]) -> float:
    t = item[2].get("time")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.0


class JournalReader:
    """Incremental reader: each :meth:`poll` returns the complete records written since the last one.

    Safe while a server writes: an incomplete record at the end of a segment is left for the next poll. A
    sharded journal (see the module docstring) is read as one: each poll merges the shards' new records by
    their ``time`` field, each shard's in write order (a shard that appears later is picked up then).

    Args:
        path: a journal directory (sharded or not) or one segment file.
        kinds: record kinds to decode (others are skipped without decoding); None: all.
    """

    def __init__(self, path: str | os.PathLike, kinds: Sequence[int] | None = None):
        self.path = Path(path)
        self.kinds = None if kinds is None else frozenset(kinds)
        self._offsets: dict[Path, int] = {}
        self._warned: set[Path] = set()

    def poll(self) -> list[tuple[int, dict]]:
        """New complete records as ``(kind, record)`` pairs, in write order (merged by time across shards)."""
        return list(self.records())

    def records(self) -> Iterator[tuple[int, dict]]:
        """:meth:`poll` one record at a time: only one segment's bytes (per shard) and the record being read are
        held, so a caller that keeps what it needs reads a journal of any size in bounded memory. A segment
        counts as read (the next call starts after it) once the iteration has gone through it."""
        for _, kind, rec in self.sourced_records():
            yield kind, rec

    def sourced_records(self) -> Iterator[tuple[Path, int, dict]]:
        """:meth:`records` as ``(journal directory, kind, record)``: which shard (or the unsharded journal, or
        the segment file given) wrote each record."""
        if self.path.is_file():
            yield from self._dir_records(self.path, [self.path])
            return
        if not self.path.is_dir():
            segments(self.path)  # MissingFile, as for an unsharded journal
        dirs = journal_dirs(self.path)
        if len(dirs) == 1:
            yield from self._dir_records(dirs[0], _dir_segments(dirs[0]))
            return
        # heapq.merge is stable (ties go to the earlier shard) and never reorders one shard's own records
        yield from heapq.merge(*(self._dir_records(d, _dir_segments(d)) for d in dirs), key=_record_time)

    def _dir_records(self, source: Path, segs: list[Path]) -> Iterator[tuple[Path, int, dict]]:
        """The new complete records of one journal directory's segments ``segs``, in write order."""
        for i, seg in enumerate(segs):
            last = i == len(segs) - 1
            start = self._offsets.get(seg, 0)
            try:
                size = seg.stat().st_size
            except FileNotFoundError:
                continue
            if size <= start:
                continue
            with open(seg, "rb") as f:
                f.seek(start)
                data = f.read(size - start)
            used, torn = yield from self._parse(data, source)
            self._offsets[seg] = start + used
            if torn and not last and seg not in self._warned:
                self._warned.add(seg)
                log.warning("journal segment %s ends with a torn record at byte %d (a crash mid-write); "
                            "it is ignored", seg, start + used)

    def _parse(self, data: bytes, source: Path) -> Generator[tuple[Path, int, dict], None, tuple[int, bool]]:
        """Yield the complete records of ``data``; returns (bytes used, whether a torn record ends it)."""
        pos, n = 0, len(data)
        view = memoryview(data)
        while pos + HEAD_BYTES <= n:
            magic, kind, length, crc = _HEAD.unpack_from(data, pos)
            if magic != RECORD_MAGIC:
                return pos, True
            end = pos + HEAD_BYTES + length
            if end > n:
                return pos, True
            if self.kinds is None or kind in self.kinds:
                payload = view[pos + HEAD_BYTES:end]
                if zlib.crc32(payload) != crc:
                    return pos, True
                yield source, kind, msgpack.unpackb(payload, raw=False, strict_map_key=False)
            pos = end
        return pos, pos < n


def iter_records(path: str | os.PathLike, kinds: Sequence[int] | None = None) -> Iterator[tuple[int, dict]]:
    """Every complete record of the journal, in write order (merged by time across shards; streamed: see
    :meth:`JournalReader.records`)."""
    yield from JournalReader(path, kinds).records()


# ---------------------------------------------------------------------------------------------- tables
def trials_frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per trial from batch records (what :func:`load` returns)."""
    groups: dict[tuple, list[dict]] = {}
    for rec in records:
        groups.setdefault(tuple(rec["cols"]), []).append(rec)
    frames = [_group_frame(recs) for recs in groups.values()]
    if not frames:
        return pd.DataFrame(columns=[*META_COLUMNS, *RESULT_COLUMNS])
    df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if len(frames) > 1:
        df = df.sort_values(["time", "agent", "batch", "trial"], kind="stable", ignore_index=True)
    if "correction" not in df.columns:
        df["correction"] = False
    elif df["correction"].dtype == object:
        df["correction"] = df["correction"].fillna(False).astype(bool)
    if "outcome" in df.columns and not isinstance(df["outcome"].dtype, pd.CategoricalDtype):
        df["outcome"] = pd.Categorical(df["outcome"], categories=OUTCOMES)
    params = [c for c in df.columns if c not in META_COLUMNS and c not in RESULT_COLUMNS]
    return df[[*META_COLUMNS, *params, *RESULT_COLUMNS]]


def _group_frame(recs: list[dict]) -> pd.DataFrame:
    """Records with the same columns, concatenated column by column (fast: no per-record DataFrame)."""
    ns = np.array([r["n"] for r in recs], dtype=np.int64)
    total = int(ns.sum())
    data: dict[str, Any] = {}
    for key, dtype in (("agent", object), ("session", object), ("stage", object), ("task", object)):
        data[key] = np.repeat(np.array([r[key] for r in recs], dtype=dtype), ns)
    for key in ("batch", "stage_index", "epoch"):
        data[key] = np.repeat(np.array([r[key] for r in recs], dtype=np.int64), ns)
    data["time"] = np.repeat(np.array([r["time"] for r in recs], dtype=float), ns)
    for name in recs[0]["cols"]:
        parts = [decode_column(r["cols"][name], r["n"]) for r in recs]
        if isinstance(parts[0], pd.Categorical):
            codes = np.concatenate([p.codes for p in parts]) if parts else np.empty(0, np.int8)
            data[name] = pd.Categorical.from_codes(codes, categories=parts[0].categories)
        elif isinstance(parts[0], list):
            data[name] = [v for p in parts for v in p]
        else:
            data[name] = np.concatenate(parts) if len(parts) > 1 else parts[0].copy()
    assert all(len(v) == total for v in data.values())
    return pd.DataFrame(data)


def load(path: str | os.PathLike, agent: str | None = None) -> pd.DataFrame:
    """Every journaled trial, one row each (only ``agent``'s when given: the other agents' records are read
    and dropped one at a time, never held).

    Columns: ``agent, session, batch, trial, stage, stage_index``, then the trial parameters (knob values
    drawn for the trial included), then ``outcome`` (categorical: correct / error / no_response), ``choice``
    (-1 = none), ``target``, ``correction`` (a repeated trial after an error), ``time`` (unix s, when
    scored), ``epoch`` and ``task``. Safe to call while a server writes.
    """
    return trials_frame([rec for _, rec in iter_records(path, kinds=[BATCH])
                         if agent is None or rec["agent"] == agent])


def load_batches(path: str | os.PathLike) -> pd.DataFrame:
    """One row per scored batch: ``agent, session, batch, epoch, time, task, stage, stage_index, n,
    correct, accuracy, policy_accuracy`` (the policy's own accuracy after the batch; None when it keeps none
    or the journal predates it), then ``knob.NAME`` for each knob's setting (a number, a list of choices or a
    ``{"uniform": [lo, hi]}`` range)."""
    rows = []
    for _, rec in iter_records(path, kinds=[BATCH]):
        outcome = rec["cols"].get("outcome")
        correct = int(np.count_nonzero(np.frombuffer(outcome[2], np.int8) == 0)) if outcome else None
        row = {k: rec[k] for k in ("agent", "session", "batch", "epoch", "time", "task", "stage",
                                   "stage_index", "n")}
        row["correct"] = correct
        row["accuracy"] = correct / rec["n"] if correct is not None and rec["n"] else None
        row["policy_accuracy"] = rec.get("policy_accuracy")
        for k, v in json.loads(rec["knobs"]).items():
            row[f"knob.{k}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def event_rows(kind: int, rec: Mapping[str, Any], counts: dict[str, int]) -> list[dict]:
    """The events of one BATCH or OVERRIDE record (read in journal order) as rows: ``agent, session, batch,
    time`` and the event's fields, ``session_trials`` included. ``counts`` (agent -> trials journaled so far,
    updated here) gives ``session_trials`` to the events of journals written before the server added it."""
    agent = rec["agent"]
    if kind == BATCH:
        counts[agent] = counts.get(agent, 0) + int(rec["n"])
    head = {"agent": agent, "session": rec["session"], "batch": rec["batch"], "time": rec["time"],
            "session_trials": counts.get(agent, 0)}
    rows = [{**head, **ev} for ev in json.loads(rec["events"])]
    for row in rows:  # journals written before the event existed called a spent budget "complete"
        if row.get("event") == "complete" and str(row.get("rule", "")).startswith("max_trials:"):
            row["event"] = "out_of_trials"
    return rows


def load_events(path: str | os.PathLike) -> pd.DataFrame:
    """Every policy event: ``agent, session, batch, time, session_trials``, then the event's own fields
    (``event, trial, stage, stage_index, accuracy, rule``, ...). ``trial`` is the policy's count, which leaves
    out stale trials; ``session_trials`` counts every trial the session scored (and the network trained on):
    the metrics' step and the x axis of every figure. An experimenter's ``override`` carries the batch it
    followed (-1 before the first) and its ``note``."""
    rows: list[dict] = []
    counts: dict[str, int] = {}
    for kind, rec in iter_records(path, kinds=[BATCH, OVERRIDE]):
        rows.extend(event_rows(kind, rec, counts))
    return pd.DataFrame(rows, columns=None if rows else ["agent", "session", "batch", "time", "session_trials",
                                                         "event"])


def load_snapshots(path: str | os.PathLike) -> pd.DataFrame:
    """The session state after every scored batch: ``agent, session, batch, time, trials, state`` (a dict:
    ``policy`` state, ``next_batch``, ``trials``, ``batches``, ``window``, ...)."""
    rows = []
    for _, rec in iter_records(path, kinds=[BATCH]):
        state = json.loads(rec["state"])
        rows.append({"agent": rec["agent"], "session": rec["session"], "batch": rec["batch"],
                     "time": rec["time"], "trials": state.get("trials"), "state": state})
    return pd.DataFrame(rows, columns=["agent", "session", "batch", "time", "trials", "state"])


def load_sessions(path: str | os.PathLike) -> pd.DataFrame:
    """Every HELLO the server accepted: ``agent, session, curriculum, epoch, resumed, time, seed, info,
    run``."""
    rows = [rec for _, rec in iter_records(path, kinds=[HELLO])]
    cols = ["agent", "session", "curriculum", "epoch", "resumed", "time", "seed", "info", "run"]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)


def restore_sessions(path: str | os.PathLike) -> dict[str, dict]:
    """What a restarting server needs, per agent: the last HELLO record (``hello``, None if there is none) and
    the state after the last scored batch or override (``state``, None before the first), plus the highest batch
    id journaled (``last_batch``, -1 if none). One streaming pass that keeps only that much per agent, so its
    memory does not grow with the journal."""
    out: dict[str, dict] = {}
    for kind, rec in iter_records(path, kinds=[HELLO, BATCH, OVERRIDE]):
        entry = out.setdefault(rec["agent"], {"hello": None, "state": None, "last_batch": -1})
        if kind == HELLO:
            entry["hello"] = rec
            continue
        entry["state"] = rec["state"]  # JSON text, decoded once at the end
        if kind == BATCH:
            entry["last_batch"] = max(entry["last_batch"], rec["batch"])
    for entry in out.values():
        if entry["state"] is not None:
            entry["state"] = json.loads(entry["state"])
    return out


def latest_state(path: str | os.PathLike, agent: str) -> dict | None:
    """The state of ``agent``'s session after its last scored batch (see :func:`load_snapshots`), or None."""
    entry = restore_sessions(path).get(agent)
    return None if entry is None else entry["state"]
