"""journal.py: records round trip, torn tails from a crash mid-write, live reading, locking, loaders."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from shaping import journal
from shaping.tasks import make

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def scored_batches():
    task = make("PerceptualDiscrimination", T=300, N_batch=8, seed=3)
    rng = np.random.default_rng(0)
    out = []
    for bid in range(6):
        b = task.generate(batch_id=bid, repeat=[{"direction": 1}] if bid % 2 else None)
        y_hat = b.y + rng.normal(0, 0.3, b.y.shape).astype(np.float32)
        scored = task.score(b.y, y_hat, b.mask, b.params)
        if "correction" not in scored:
            scored["correction"] = False
        out.append((bid, b, scored))
    return out


def write_batches(writer: journal.Journal, scored_batches, agent="a1", session="s1"):
    for bid, b, scored in scored_batches:
        writer.append_batch(agent=agent, session=session, batch=bid, epoch=1, task="PerceptualDiscrimination",
                             stage="easy" if bid < 3 else "hard", stage_index=int(bid >= 3), knobs=b.knobs,
                             scored=scored, events=[{"event": "graduated", "trial": 24}] if bid == 2 else [],
                             state={"policy": {"rng": {"state": 2**127 + bid}}, "trials": 8 * (bid + 1),
                                    "batches": bid + 1, "next_batch": bid + 1, "window": [1, 0]},
                             time_s=1000.0 + bid)


def test_load_returns_every_trial_with_its_columns(tmp_path, scored_batches):
    with journal.Journal(tmp_path) as j:
        write_batches(j, scored_batches)
    df = journal.load(tmp_path)
    assert len(df) == 6 * 8
    assert list(df.columns[:6]) == list(journal.META_COLUMNS)
    assert list(df.columns[-7:]) == list(journal.RESULT_COLUMNS)
    for col in ("coherence", "direction", "stim_noise", "onset_time", "p_choice1"):
        assert col in df.columns
    expected = pd.concat([s for _, _, s in scored_batches], ignore_index=True)
    np.testing.assert_array_equal(df["choice"].to_numpy(), expected["choice"].to_numpy())
    np.testing.assert_array_equal(df["coherence"].to_numpy(), expected["coherence"].to_numpy())
    assert (df["outcome"].astype(str).to_numpy() == expected["outcome"].to_numpy()).all()
    assert df["outcome"].dtype == "category"
    assert df["correction"].dtype == bool and df["correction"].sum() == 3  # one repeat in batches 1, 3, 5
    assert df.groupby("batch")["time"].first().tolist() == [1000.0 + b for b in range(6)]
    assert df["stage"].tolist()[:8] == ["easy"] * 8 and df["stage_index"].max() == 1


def test_batches_events_snapshots(tmp_path, scored_batches):
    with journal.Journal(tmp_path) as j:
        write_batches(j, scored_batches)
    batches = journal.load_batches(tmp_path)
    assert batches["batch"].tolist() == list(range(6))
    assert (batches["n"] == 8).all()
    assert batches["knob.coherence"][0] == [0.1, 0.3, 0.5, 0.7]
    events = journal.load_events(tmp_path)
    assert events[["agent", "batch", "event", "trial"]].values.tolist() == [["a1", 2, "graduated", 24]]
    snaps = journal.load_snapshots(tmp_path)
    assert snaps["trials"].tolist() == [8, 16, 24, 32, 40, 48]
    state = journal.latest_state(tmp_path, "a1")
    assert state["policy"]["rng"]["state"] == 2**127 + 5  # 128-bit integers survive (JSON, not msgpack)
    assert journal.latest_state(tmp_path, "nobody") is None


def test_empty_journal_loads_empty_frames(tmp_path):
    journal.Journal(tmp_path).close()
    assert journal.load(tmp_path).empty
    assert journal.load_events(tmp_path).empty
    assert journal.load_snapshots(tmp_path).empty
    with pytest.raises(FileNotFoundError, match="no journal"):
        journal.load(tmp_path / "missing")


def test_torn_record_at_every_cut_point_is_dropped_and_the_rest_kept(tmp_path, scored_batches):
    with journal.Journal(tmp_path / "full") as j:
        write_batches(j, scored_batches[:3])
    (seg,) = journal.segments(tmp_path / "full")
    data = seg.read_bytes()
    # record boundaries
    ends, pos = [], 0
    while pos < len(data):
        _, _, length, _ = journal._HEAD.unpack_from(data, pos)
        pos += journal.HEAD_BYTES + length
        ends.append(pos)
    cuts = sorted(set(np.linspace(1, len(data) - 1, 40).astype(int)) | {e - 1 for e in ends} | {e + 3 for e in ends})
    for cut in cuts:
        if cut >= len(data):
            continue
        part = tmp_path / f"cut{cut}"
        part.mkdir()
        (part / "segment-000001.skj").write_bytes(data[:cut])
        complete = sum(e <= cut for e in ends)
        assert len(journal.load(part)) == 8 * complete, cut


def test_corrupt_record_in_an_old_segment_is_skipped_later_segments_read(tmp_path, scored_batches, caplog):
    with journal.Journal(tmp_path) as j:
        write_batches(j, scored_batches[:2])
    seg1 = journal.segments(tmp_path)[0]
    data = bytearray(seg1.read_bytes())
    data[-5] ^= 0xFF  # flip a byte in the last record's payload: its CRC no longer matches
    seg1.write_bytes(bytes(data))
    with journal.Journal(tmp_path) as j:  # a restarted server writes a new segment
        write_batches(j, scored_batches[2:4])
    assert journal.load(tmp_path)["batch"].unique().tolist() == [0, 2, 3]
    assert "torn record" in caplog.text


def test_reader_follows_a_journal_being_written(tmp_path, scored_batches):
    j = journal.Journal(tmp_path, fsync="never")
    reader = journal.JournalReader(tmp_path, kinds=[journal.BATCH])
    assert reader.poll() == []
    write_batches(j, scored_batches[:2])
    assert [r["batch"] for _, r in reader.poll()] == [0, 1]
    # a half-written record (as a reader may see it mid-write) is left for the next poll
    payload = journal._pack({"agent": "x"})
    head = journal._HEAD.pack(journal.RECORD_MAGIC, journal.BATCH, len(payload), __import__("zlib").crc32(payload))
    os.write(j._fd, head + payload[:3])
    assert reader.poll() == []
    j.close()
    assert reader.poll() == []


def test_segments_roll_and_each_writer_opens_a_new_one(tmp_path, scored_batches):
    with journal.Journal(tmp_path, segment_bytes=2000) as j:
        write_batches(j, scored_batches)
    n = len(journal.segments(tmp_path))
    assert n >= 3
    with journal.Journal(tmp_path) as j:
        pass
    assert len(journal.segments(tmp_path)) == n + 1
    assert len(journal.load(tmp_path)) == 48


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path):
    with journal.Journal(tmp_path):
        with pytest.raises(journal.JournalLocked, match=f"pid {os.getpid()}"):
            journal.Journal(tmp_path)
    journal.Journal(tmp_path).close()  # free again after close


@pytest.mark.procs
def test_lock_is_released_when_the_writer_is_killed(tmp_path):
    code = (f"import os; from shaping.journal import Journal; j = Journal({str(tmp_path)!r}); "
            "os.kill(os.getpid(), 9)")
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    journal.Journal(tmp_path).close()


def test_fsync_modes_and_argument_errors(tmp_path, scored_batches):
    for mode in journal.FSYNC_MODES:
        with journal.Journal(tmp_path / mode, fsync=mode, fsync_interval_s=0.01) as j:
            write_batches(j, scored_batches[:1])
            j.maybe_sync()
        assert len(journal.load(tmp_path / mode)) == 8
    with pytest.raises(ValueError, match="fsync must be one of always, interval, never, got 'sometimes'"):
        journal.Journal(tmp_path / "x", fsync="sometimes")


def test_columns_keep_dtypes_and_objects():
    frame = pd.DataFrame({"i": np.arange(3, dtype=np.int32), "f": [0.5, 1.5, np.nan], "b": [True, False, True],
                          "s": ["a", None, "c"], "arr": [np.arange(2), np.arange(2), np.arange(2)],
                          "outcome": ["correct", "error", "no_response"]})
    cols = journal.encode_columns(frame)
    assert journal.decode_column(cols["i"], 3).dtype == np.int32
    assert np.isnan(journal.decode_column(cols["f"], 3)[2])
    assert journal.decode_column(cols["b"], 3).tolist() == [True, False, True]
    assert journal.decode_column(cols["s"], 3) == ["a", None, "c"]
    assert journal.decode_column(cols["arr"], 3) == [[0, 1]] * 3
    assert list(journal.decode_column(cols["outcome"], 3)) == ["correct", "error", "no_response"]
    with pytest.raises(TypeError, match="plain data"):
        journal.dumps({"x": object()})
    assert json.loads(journal.dumps({"n": np.int64(3), "a": np.arange(2)})) == {"n": 3, "a": [0, 1]}
