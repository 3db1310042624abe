"""The shard assignment and the shards' bind endpoints (shaping.shards): stable across processes and releases,
spread evenly, checked at the boundary."""
from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shaping.shards import shard_bind, shard_of

ROOT = Path(__file__).resolve().parents[2]

# Fixed values: a change here moves every journaled agent of every sharded lab to another shard.
KNOWN = {("free", 4): 3, ("dale", 4): 3, ("net-seed=1", 4): 0, ("net-seed=2", 4): 1, ("shaped-seed=3", 4): 1,
         ("net-seed=1", 2): 0, ("net-seed=2", 2): 1}


@pytest.mark.parametrize("agent, shards", sorted(KNOWN))
def test_the_assignment_is_a_fixed_function_of_name_and_count(agent, shards):
    assert shard_of(agent, shards) == KNOWN[agent, shards]


def test_every_process_agrees_whatever_its_hash_seed():
    code = "from shaping.shards import shard_of; print([shard_of(a, k) for a, k in %r])" % sorted(KNOWN)
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")}
    assert outs == {f"{[KNOWN[key] for key in sorted(KNOWN)]}\n"}


def test_agents_spread_evenly_and_one_shard_takes_all():
    counts = collections.Counter(shard_of(f"agent-{i}", 4) for i in range(4000))
    assert sorted(counts) == [0, 1, 2, 3] and all(850 < n < 1150 for n in counts.values()), counts
    assert {shard_of(f"agent-{i}", 1) for i in range(100)} == {0}


@pytest.mark.parametrize("shards", [0, -1, 1.0, True, "2", None])
def test_a_bad_count_is_refused_naming_it(shards):
    with pytest.raises(ValueError, match=rf"shards must be an integer >= 1, got {shards!r}"):
        shard_of("a", shards)


@pytest.mark.parametrize("bind, shard, expected", [
    ("tcp://127.0.0.1:5555", 1, "tcp://127.0.0.1:0"),
    ("tcp://127.0.0.1:0", 0, "tcp://127.0.0.1:0"),
    ("tcp://0.0.0.0:5555", 2, "tcp://0.0.0.0:0"),
    ("tcp://*:5555", 0, "tcp://*:0"),
    ("tcp://[::1]:5555", 3, "tcp://[::1]:0"),
    ("ipc:///tmp/lab.sock", 1, "ipc:///tmp/lab.sock.shard-1"),
    ("ipc://*", 1, "ipc://*"),
    ("inproc://lab", 1, "inproc://lab"),
])
def test_a_shard_binds_the_fronts_host_on_a_free_port_or_an_ipc_path_of_its_own(bind, shard, expected):
    assert shard_bind(bind, shard) == expected


def test_a_shard_refuses_an_agent_that_belongs_to_another_shard(tmp_path):
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "tests" / "shaping" / "server"))
    from loophelp import Raw, ServerThread, config

    with ServerThread(config(tmp_path, shards=2, shard=0)) as st:
        raw = Raw(st.endpoint)
        try:
            mine, theirs = "net-seed=1", "net-seed=2"  # shards 0 and 1 of 2 (KNOWN above)
            e = raw.request("HELLO", {"agent": theirs})
            assert e.type == "ERROR" and e.header["name"] == "BAD_VALUE"
            assert "belongs to shard 1 of 2" in e.header["detail"] and "front" in e.header["detail"]
            assert raw.request("HELLO", {"agent": mine}).type == "WELCOME"
        finally:
            raw.close()
    assert set(st.server.sessions) == {"net-seed=1"}
