"""A sharded journal reads as one journal, in every reader: two real task servers (``journal/shard-0`` and
``journal/shard-1``) with disjoint simulated agents, one shard restarted on the way, against one unsharded journal
holding the same records in time order (the layout's promise), table by table: ``shaping.journal``'s loaders and
resume, ``shaping.readout`` (one pass and incremental), ``dashboards.data`` (status merged from the shards),
``dashboards.report`` and ``skinnerbox sync`` into real sqlite MLflow stores."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pandas.testing import assert_frame_equal

from shaping import cli, readout
from shaping import journal as J

sys.path.insert(0, str(Path(__file__).resolve().parent / "server"))  # loophelp: server thread, simulated agents
from loophelp import AgentThread, ServerThread, config

pytestmark = pytest.mark.timeout(300)

AGENTS = {0: ["a0", "a1"], 1: ["b0", "b1"]}  # shard -> its agents (disjoint)


def _agents(endpoint: str, names: list[str], seed: int) -> list[AgentThread]:
    return [AgentThread(endpoint, name, curriculum="shaped", p_correct=0.9, seed=seed + i, heartbeat_interval_s=0.2,
                        timeout_s=10).start() for i, name in enumerate(names)]


def _merged_copy(shards: list[Path], out: Path) -> None:
    """One unsharded journal holding every shard's records, in time order (ties: lower shard first)."""
    records = []
    for k, shard in enumerate(shards):
        mine = list(J.iter_records(shard))
        times = [rec["time"] for _, rec in mine]
        assert times == sorted(times), f"{shard}: records out of time order"
        records += [(rec["time"], k, i, kind, rec) for i, (kind, rec) in enumerate(mine)]
    with J.Journal(out, fsync="never") as w:
        for *_, kind, rec in sorted(records, key=lambda r: r[:3]):
            w.write(kind, rec)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> dict:
    """``root/lab/journal`` sharded in two (a third shard directory never written), each shard served by a real
    TaskServer with two simulated agents; shard 1 is stopped and restarted (its agents resume); a front's
    ``server.json`` in the journal directory. ``root/single/journal``: the same records unsharded. ``polled``:
    the tables of one incremental reader polled while the servers wrote."""
    root = tmp_path_factory.mktemp("sharded")
    jdir = root / "lab" / "journal"
    reader = readout.LabReader(root / "lab")
    reader.poll()  # before anything exists: empty tables, no error
    servers = {k: ServerThread(config(J.shard_dir(jdir, k))) for k in AGENTS}
    J.shard_dir(jdir, 2).mkdir()  # a shard that never started: read as an empty journal
    agents = {k: _agents(servers[k].endpoint, names, seed=10 * k) for k, names in AGENTS.items()}
    for k in AGENTS:
        for agent in agents[k]:
            agent.wait_for(5)
            reader.poll()
    for agent in agents[1]:
        agent.stop()
    servers[1].stop()
    servers[1] = ServerThread(config(J.shard_dir(jdir, 1)))  # restarted on its journal: sessions resume
    agents[1] = _agents(servers[1].endpoint, AGENTS[1], seed=30)
    for agent in agents[1]:
        agent.wait_for(3)
    reader.poll()
    for k in AGENTS:
        for agent in agents[k]:
            agent.stop()
        servers[k].stop()
    (jdir / "server.json").write_text(json.dumps({"endpoint": "tcp://front.example:5555", "pid": 4242}))
    (root / "single").mkdir()
    _merged_copy([J.shard_dir(jdir, k) for k in AGENTS], root / "single" / "journal")
    return {"root": root, "lab": root / "lab", "journal": jdir, "single": root / "single" / "journal",
            "polled": reader.poll()}


# ---------------------------------------------------------------------------------------------- vocabulary
def test_shard_dirs_are_named_and_ordered_by_number(tmp_path):
    assert J.shard_name(3) == "shard-3" and J.shard_dir(tmp_path, 10) == tmp_path / "shard-10"
    assert J.shard_index(tmp_path / "shard-12") == 12 and J.shard_index(tmp_path / "shard-x") is None
    for i in (0, 1, 2, 9, 10, 11):
        J.shard_dir(tmp_path, i).mkdir()
    (tmp_path / "shard-notes").mkdir()
    (tmp_path / "shard-5").write_text("a file, not a shard")
    assert [d.name for d in J.shard_dirs(tmp_path)] == ["shard-0", "shard-1", "shard-2", "shard-9", "shard-10",
                                                        "shard-11"]
    assert J.journal_dirs(tmp_path) == J.shard_dirs(tmp_path) and J.is_sharded(tmp_path)
    assert J.journal_dirs(tmp_path / "shard-0") == [tmp_path / "shard-0"] and not J.is_sharded(tmp_path / "shard-0")
    with pytest.raises(ValueError, match="index must be an int >= 0"):
        J.shard_name(-1)


def test_a_journal_of_its_own_beside_shards_reads_as_their_union(tmp_path):
    """A lab run unsharded, then sharded: the old records first (by time), then the shards'."""
    with J.Journal(tmp_path, fsync="never") as w:
        w.write(J.HELLO, {"time": 1.0, "agent": "old"})
    for k, t in ((1, 3.0), (0, 2.0)):
        with J.Journal(J.shard_dir(tmp_path, k), fsync="never") as w:
            w.write(J.HELLO, {"time": t, "agent": f"s{k}"})
    assert J.journal_dirs(tmp_path) == [tmp_path, tmp_path / "shard-0", tmp_path / "shard-1"]
    assert [r["agent"] for _, r in J.iter_records(tmp_path)] == ["old", "s0", "s1"]
    assert len(J.segments(tmp_path)) == 3


# ---------------------------------------------------------------------------------------------- journal
def test_every_agent_of_every_shard_is_read(lab):
    df = J.load(lab["journal"])
    assert sorted(df["agent"].unique()) == ["a0", "a1", "b0", "b1"]
    for k, names in AGENTS.items():
        shard = J.shard_dir(lab["journal"], k)
        for name in names:  # each agent exactly as its own shard holds it
            assert_frame_equal(J.load(lab["journal"], agent=name), J.load(shard, agent=name))
    assert len(J.segments(lab["journal"])) == len(J.segments(J.shard_dir(lab["journal"], 0))) + \
        len(J.segments(J.shard_dir(lab["journal"], 1)))


@pytest.mark.parametrize("loader", [J.load, J.load_batches, J.load_events, J.load_snapshots, J.load_sessions])
def test_tables_equal_those_of_one_journal(lab, loader):
    sharded, single = loader(lab["journal"]), loader(lab["single"])
    assert len(sharded)
    assert_frame_equal(sharded, single)


def test_lab_level_tables_are_in_time_order(lab):
    for loader in (J.load_events, J.load_sessions, J.load_batches):
        t = loader(lab["journal"])["time"].to_numpy()
        assert (t[1:] >= t[:-1]).all(), loader.__name__
    sessions = J.load_sessions(lab["journal"])
    assert sessions.groupby("agent")["epoch"].apply(list).to_dict() == {"a0": [1], "a1": [1], "b0": [1, 2],
                                                                         "b1": [1, 2]}
    events = J.load_events(lab["journal"])
    assert set(events.loc[events["event"] == "graduated", "agent"]) == {"a0", "a1", "b0", "b1"}


def test_resume_reads_every_shard(lab):
    restored = J.restore_sessions(lab["journal"])
    assert restored == J.restore_sessions(lab["single"])
    assert sorted(restored) == ["a0", "a1", "b0", "b1"]
    for k, names in AGENTS.items():
        own = J.restore_sessions(J.shard_dir(lab["journal"], k))
        assert sorted(own) == names and all(restored[n] == own[n] for n in names)
        for name in names:
            assert J.latest_state(lab["journal"], name) == own[name]["state"] is not None


def test_an_incremental_reader_picks_up_each_shard(lab):
    reader = J.JournalReader(lab["journal"], kinds=[J.BATCH])
    polled = reader.poll()
    assert reader.poll() == []
    assert [rec for _, rec in polled] == [rec for _, rec in J.iter_records(lab["single"], kinds=[J.BATCH])]
    sources = {src.name for src, _, _ in J.JournalReader(lab["journal"]).sourced_records()}
    assert sources == {"shard-0", "shard-1"}


# ---------------------------------------------------------------------------------------------- readout
def _tables_equal(a: readout.LabTables, b: readout.LabTables) -> None:
    for name in ("trials", "batches", "events", "sessions", "ends"):
        assert_frame_equal(getattr(a, name), getattr(b, name), obj=name)


def test_the_readout_sees_one_lab(lab):
    sharded, single = readout.read_lab(lab["lab"]), readout.read_lab(lab["single"])
    _tables_equal(sharded, single)
    assert readout.agent_names(sharded) == readout.agent_names(single)
    assert sorted(readout.agent_names(sharded)) == ["a0", "a1", "b0", "b1"]
    assert_frame_equal(readout.summary_rows(sharded), readout.summary_rows(single))
    assert sharded.closed is not None and sharded.opened is not None  # every shard has closed
    assert readout.require_journal(lab["journal"]).journal == lab["journal"]  # a bare sharded journal
    assert readout.lab_paths(lab["journal"]).root == lab["lab"]


def test_the_lab_summary_sees_every_shard(lab):
    from shaping.lab import summarize

    assert_frame_equal(summarize(lab["journal"]), summarize(lab["single"]))
    assert sorted(summarize(lab["journal"])["agent"]) == ["a0", "a1", "b0", "b1"]


def test_an_incremental_lab_reader_agrees_agent_by_agent(lab):
    """Polled while the servers wrote, shards merge poll by poll: each agent's rows are the one-pass reader's."""
    polled, whole = lab["polled"], readout.read_lab(lab["lab"])
    for name in ("a0", "a1", "b0", "b1"):
        for table in ("trials", "batches", "events"):
            a, b = getattr(polled, table), getattr(whole, table)
            assert_frame_equal(a[a["agent"] == name].reset_index(drop=True),
                               b[b["agent"] == name].reset_index(drop=True), obj=f"{table} of {name}")
        assert readout.recent_accuracy(polled, name) == readout.recent_accuracy(whole, name)


# ---------------------------------------------------------------------------------------------- status
def test_the_status_is_the_shards_merged(lab):
    from dashboards import data

    shard_status = [json.loads((J.shard_dir(lab["journal"], k) / "status.json").read_text()) for k in AGENTS]
    status = data.read_status(lab["lab"])
    assert status == readout.read_status(lab["journal"])
    assert sorted(s["agent"] for s in status["sessions"]) == ["a0", "a1", "b0", "b1"]
    assert status["endpoint"] == "tcp://front.example:5555" and status["pid"] == 4242  # the front's
    for key in ("trials", "batches", "messages", "errors"):
        assert status["stats"][key] == sum(s["stats"][key] for s in shard_status)
    assert status["time"] == min(s["time"] for s in shard_status)
    assert [s["shard"] for s in status["shards"]] == [0, 1]
    table = data.status_table(status, data.read_lab(lab["lab"]))
    trials = J.load(lab["journal"]).groupby("agent").size()
    assert table.set_index("agent")["trials"].to_dict() == trials.to_dict()
    assert (table["source"] == "server").all()
    assert readout.read_status(lab["single"]) is None  # no status file there


# ---------------------------------------------------------------------------------------------- report and sync
def test_the_report_shows_every_agent(lab):
    from dashboards.report import build_report

    sharded, single = build_report(lab["lab"]), build_report(lab["single"])
    assert sharded.figures == single.figures and sharded.tables == single.tables
    items = {it.name: it for _, its in sharded.sections for it in its if it.kind == "table"}
    others = {it.name: it for _, its in single.sections for it in its if it.kind == "table"}
    for name in items:
        if name != "status":  # from the shards' status files; the copy has none (derived from its journal)
            assert_frame_equal(items[name].table, others[name].table, obj=name)
    assert sorted(items["agents"].table["agent"]) == ["a0", "a1", "b0", "b1"]


def _runs(uri: str, experiment: str) -> dict[str, dict]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([exp.experiment_id], "tags.`skinnerbox.role` = 'agent'"):
        metrics = {key: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key),
                                                           key=lambda m: (m.step, m.timestamp))]
                   for key in run.data.metrics}
        out[run.data.tags["skinnerbox.agent"]] = {"params": run.data.params, "metrics": metrics}
    return out


def test_sync_pushes_every_shard_into_mlflow(lab, tmp_path):
    from shaping.tracking import sync

    uri_sharded, uri_single = f"sqlite:///{tmp_path / 'sharded.db'}", f"sqlite:///{tmp_path / 'single.db'}"
    assert cli.main(["sync", str(lab["lab"]), "--tracking-uri", uri_sharded, "--experiment", "shards"]) == 0
    sync(lab["single"], uri_single, "shards")
    sharded, single = _runs(uri_sharded, "shards"), _runs(uri_single, "shards")
    assert sorted(sharded) == ["a0", "a1", "b0", "b1"]
    assert sharded == single
    assert all(run["metrics"] for run in sharded.values())
