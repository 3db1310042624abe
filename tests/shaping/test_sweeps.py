"""Sweeps: an ``[[agents]]`` table with ``[agents.sweep]`` expands into plain agents while the lab file is checked
(deterministic names, factors and group kept in lab.json), each mistake is a ConfigError naming
``agents[i].sweep.<key>``, and the summary groups agents by factor (trials to criterion: median, quartiles, how
many reached it), read from a journal written by the real journal writer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shaping import errors, protocol, readout
from shaping import journal as journal_io
from shaping.labfile import AgentEntry, LabFile, expand_sweep, sweep_value_name

CURRICULA = {"fixed": {"kind": "fixed"}, "staircase": {"kind": "staircase", "knob": "coherence", "start": 0.5}}
BASE = {"lab": {"name": "sw", "seed": 1}, "task": {"name": "PerceptualDiscrimination", "T": 400, "N_batch": 16},
        "curricula": CURRICULA}


def lab_with(*agents: dict) -> dict:
    return {**BASE, "agents": list(agents)}


def error_of(*agents: dict) -> str:
    with pytest.raises(errors.ConfigError) as info:
        LabFile.from_dict(lab_with(*agents), source="sweep.toml")
    return str(info.value)


# ---------------------------------------------------------------------------------------------- expansion
def test_forty_agents_from_one_toml_table(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text("""
[task]
name = "PerceptualDiscrimination"
T = 400

[curricula.fixed]
kind = "fixed"

[curricula.staircase]
kind = "staircase"
knob = "coherence"
start = 0.5

[[agents]]
name = "net"
N_rec = 16
learning_rate = 0.003

[agents.sweep]
curriculum = ["fixed", "staircase"]
dale_ratio = [0.8, 0.0]
seed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]

[[agents]]
name = "solo"
N_rec = 16
""")
    lab = LabFile.load(path)
    assert len(lab.agents) == 41 and len({a.name for a in lab.agents}) == 41
    first, eleventh, last = lab.agents[0], lab.agents[10], lab.agents[39]
    assert first.name == "net-curriculum=fixed-dale_ratio=0.8-seed=0"  # the last key varies fastest
    assert eleventh.name == "net-curriculum=fixed-dale_ratio=0.0-seed=0"
    assert last.name == "net-curriculum=staircase-dale_ratio=0.0-seed=9"
    assert (last.curriculum, last.model) == ("staircase", {"N_rec": 16, "learning_rate": 0.003, "dale_ratio": 0.0,
                                                           "seed": 9})
    assert last.factors == {"curriculum": "staircase", "dale_ratio": 0.0, "seed": 9} and last.group == "net"
    solo = lab.agents[40]
    assert (solo.name, solo.factors, solo.group) == ("solo", {}, None)
    assert sum(a.curriculum == "fixed" for a in lab.agents[:40]) == 20
    assert list(lab.factors()) == [a.name for a in lab.agents[:40]]  # plain agents have no factors


def test_lab_json_round_trips_as_plain_agents(tmp_path):
    lab = LabFile.from_dict(lab_with({"name": "net", "N_rec": 8, "sweep": {"seed": [1, 2], "learning_rate": [
        0.001, 0.01]}}))
    data = lab.to_dict()
    assert all("sweep" not in a for a in data["agents"])
    assert data["agents"][1]["factors"] == {"seed": 1, "learning_rate": 0.01}
    (tmp_path / "lab.json").write_text(json.dumps(data))
    again = LabFile.load(tmp_path / "lab.json")  # an entry with factors and no sweep reads as itself
    assert again.to_dict() == {**data, "lab": again.to_dict()["lab"]} and again.agents == lab.agents
    # an agent process re-reads lab.json by name
    config = again.agent_config("net-seed=2-learning_rate=0.001", "tcp://127.0.0.1:1")
    assert (config.model, config.name) == ({"N_rec": 8, "seed": 2, "learning_rate": 0.001},
                                           "net-seed=2-learning_rate=0.001")


def test_zip_reads_the_lists_side_by_side():
    lab = LabFile.from_dict(lab_with({"name": "z", "sweep": {"mode": "zip", "seed": [1, 1, 2],
                                                             "N_rec": [8, 16, 8]}}))
    assert [a.name for a in lab.agents] == ["z-seed=1-N_rec=8", "z-seed=1-N_rec=16", "z-seed=2-N_rec=8"]
    assert [a.factors for a in lab.agents][1] == {"seed": 1, "N_rec": 16}


def test_process_keys_may_be_swept():
    lab = LabFile.from_dict(lab_with({"name": "p", "sweep": {"threads": [1, 2], "checkpoint_every": [5]}}))
    assert [(a.name, a.threads, a.checkpoint_every, a.model) for a in lab.agents] == [
        ("p-threads=1-checkpoint_every=5", 1, 5, {}), ("p-threads=2-checkpoint_every=5", 2, 5, {})]


@pytest.mark.parametrize("value, position, word", [
    (3, 7, "3"), (-2, 0, "-2"), (0.8, 1, "0.8"), (1e-05, 0, "1e-05"), (0.1 + 0.2, 0, "0.30000000000000004"),
    (True, 4, "true"), (False, 4, "false"), ("shaped", 2, "shaped"), ("two words", 2, "2"), ("a=b", 5, "5"),
    ({"n": 2}, 1, "1"), ([1, 2], 0, "0"), (float("inf"), 3, "inf"), (1e20, 3, "3"),  # '1e+20': '+' is not safe
])
def test_how_a_value_is_named(value, position, word):
    assert sweep_value_name(value, position) == word


def test_a_value_that_is_not_a_name_is_named_by_its_position():
    regions = [{"A": 8}, {"A": 4, "B": 4}]
    lab = LabFile.from_dict(lab_with({"name": "r", "sweep": {"regions": regions, "autapses": [False]}}))
    assert [a.name for a in lab.agents] == ["r-regions=0-autapses=false", "r-regions=1-autapses=false"]
    assert lab.agents[1].model["regions"] == {"A": 4, "B": 4} and lab.agents[1].factors["regions"] == regions[1]
    assert lab.agents[0].model["regions"] is not lab.agents[0].factors["regions"]  # no shared tables


def test_names_are_valid_agent_names_with_an_equals_sign():
    protocol.check_agent_name("net-seed=3-dale_ratio=0.8")
    with pytest.raises(protocol.ProtocolError, match=r"\[A-Za-z0-9_.=-\]"):
        protocol.check_agent_name("net seed")
    text = (Path(protocol.__file__).parent / "PROTOCOL.md").read_text()
    assert "`[A-Za-z0-9_.=-]`" in text


def test_a_table_without_a_sweep_is_itself():
    table = {"name": "x", "N_rec": 4}
    assert expand_sweep(table) == [table]
    assert AgentEntry.from_dict(table).factors == {} and AgentEntry.from_dict(table).group is None


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("sweep, message", [
    ({"seed": []}, r"agents\[0\]\.sweep\.seed is an empty list"),
    ({"seed": 3}, r"agents\[0\]\.sweep\.seed = 3 must be a list"),
    ({"seed": {"a": 1}}, r"agents\[0\]\.sweep\.seed = \{'a': 1\} must be a list"),
    ({"N_rec": [4, 8]}, r"agents\[0\]\.sweep\.N_rec is also set in the table \(agents\[0\]\.N_rec = 8\)"),
    ({"mode": "zip", "seed": [1, 2], "dale_ratio": [0.8]},
     r"agents\[0\]\.sweep\.dale_ratio has 1 values and seed has 2: mode = 'zip'"),
    ({"mode": "grid", "seed": [1]}, r"agents\[0\]\.sweep\.mode = 'grid' must be 'product'"),
    ({"seed": [1, 2, 1]}, r"agents\[0\]\.sweep\.seed: 1 and 1 \(positions 0 and 2\)"),
    ({"mode": "zip", "seed": [1, 1], "learning_rate": [0.1, 0.1]},
     r"agents\[0\]\.sweep: the values at positions 0 and 1 of the zipped lists are both named "
     r"'net-seed=1-learning_rate=0\.1'"),
    ({"launcher": [{"partition": "a"}]}, r"agents\[0\]\.sweep\.launcher: 'launcher' cannot be swept"),
    ({"name": ["a", "b"]}, r"agents\[0\]\.sweep\.name: 'name' cannot be swept"),
    ({"mode": "product"}, r"agents\[0\]\.sweep sweeps no key"),
    ([1, 2], r"agents\[0\]\.sweep = \[1, 2\] must be a table of lists"),
    ({"curriculum": ["fixed", "shapd"]}, r"agents\[0\]\.sweep\.curriculum = 'shapd' is not one of the curricula"),
    ({"threads": [1, 0]}, r"agents\[0\]\.sweep\.threads = 0 must be an integer >= 1 \(agent 'net-threads=0'\)"),
])
def test_sweep_mistakes_name_the_key(sweep, message):
    assert error_of({"name": "net", "N_rec": 8, "sweep": sweep}).startswith("sweep.toml: ")
    with pytest.raises(errors.ConfigError, match=message):
        LabFile.from_dict(lab_with({"name": "net", "N_rec": 8, "sweep": sweep}))


def test_a_name_taken_by_another_agent_is_an_error():
    assert "agents[1].sweep: the agent name 'net-seed=1' is used twice (also by agents[0])" in error_of(
        {"name": "net-seed=1"}, {"name": "net", "sweep": {"seed": [1, 2]}})
    assert "agents[1]: the agent name 'net-seed=2' is used twice (also by agents[0].sweep)" in error_of(
        {"name": "net", "sweep": {"seed": [1, 2]}}, {"name": "net-seed=2"})
    assert "agents[1].name = 'a' is used twice" in error_of({"name": "a"}, {"name": "a"})  # as before sweeps


def test_names_over_the_protocol_limit_ask_for_a_shorter_entry_name():
    entry = "a_rather_long_entry_name_for_a_sweep"
    message = error_of({"name": entry, "sweep": {"learning_rate": [0.001, 0.0003], "dale_ratio": [0.8]}})
    limit = protocol.LIMITS.max_name_bytes
    longest = f"{entry}-learning_rate=0.0003-dale_ratio=0.8"
    assert len(longest) > limit
    assert (f"agents[0].sweep: the agent name {longest!r} is {len(longest)} bytes, over the protocol's {limit}"
            in message)
    assert f"shorten the entry name {entry!r} (by at least {len(longest) - limit} characters)" in message


def test_factors_and_group_belong_to_the_sweep():
    assert "agents[0].factors is set by its sweep" in error_of({"name": "n", "factors": {}, "sweep": {"seed": [1]}})
    assert "agents[0].factors = [1] must be a table" in error_of({"name": "n", "factors": [1]})
    assert "agents[0].group = 3 must be the name" in error_of({"name": "n", "group": 3})


# ---------------------------------------------------------------------------------------------- the summary
# trials to criterion (session_trials) of each agent of a 2-curriculum x 3-seed sweep; None: never reached
REACHED = {("fixed", 0): 8, ("fixed", 1): 16, ("fixed", 2): None,
           ("staircase", 0): 4, ("staircase", 1): 12, ("staircase", 2): 20}


def write_journal(path: Path, lab: LabFile) -> None:
    """A journal as a server writes it: OPEN, a HELLO per agent, then 4-trial batches until each agent's
    criterion (a ``complete`` event) or 24 trials (``out_of_trials``)."""
    j = journal_io.Journal(path, fsync="never")
    clock = iter(range(1000, 10**6))
    j.write(journal_io.OPEN, {"time": next(clock), "pid": 1, "seed": 0, "config": {"window_trials": 8}})
    for a in lab.agents:
        j.write(journal_io.HELLO, {"time": next(clock), "agent": a.name, "session": f"{a.name}-s",
                                   "curriculum": a.curriculum, "spec": CURRICULA[a.curriculum or "fixed"],
                                   "task": {"name": "PerceptualDiscrimination"}, "seed": 0, "epoch": 1,
                                   "resumed": False, "info": {"model": a.model}, "run": {}})
    for a in lab.agents:
        goal = REACHED.get((a.factors.get("curriculum"), a.factors.get("seed")), 12 if not a.factors else None)
        for batch, trials in enumerate(range(4, (goal or 24) + 1, 4)):
            scored = pd.DataFrame({"trial": np.arange(4), "outcome": ["correct"] * 4, "choice": [0, 1, 0, 1],
                                   "target": [0, 1, 0, 1], "coherence": 0.5, "correction": False, "stale": False})
            end = trials == (goal or 24)
            event = {"event": "complete" if goal else "out_of_trials", "trial": trials, "session_trials": trials,
                     "stage": "s", "stage_index": 0, "accuracy": 1.0, "rule": "test"}
            j.append_batch(agent=a.name, session=f"{a.name}-s", batch=batch, epoch=1,
                           task="PerceptualDiscrimination", stage="s", stage_index=0, knobs={"coherence": 0.5},
                           scored=scored, events=[event] if end else [], state={}, time_s=next(clock))
    j.close()


@pytest.fixture
def swept(tmp_path) -> tuple[LabFile, pd.DataFrame, Path]:
    lab = LabFile.from_dict(lab_with({"name": "net", "N_rec": 8, "sweep": {"curriculum": ["fixed", "staircase"],
                                                                           "seed": [0, 1, 2]}},
                                     {"name": "solo", "curriculum": "fixed"}))
    write_journal(tmp_path / "journal", lab)
    tables = readout.read_lab(tmp_path / "journal")
    return lab, readout.summary_rows(tables, [a.name for a in lab.agents], factors=lab.factors()), tmp_path / "journal"


def test_the_summary_has_a_column_per_factor(swept):
    lab, summary, journal = swept
    assert list(summary.columns[:4]) == ["agent", "curriculum", "shaped", "seed"]  # curriculum is its own column
    assert summary["seed"].tolist() == [0, 1, 2, 0, 1, 2, None]
    assert summary["trials_to_complete"].tolist()[:6] == [8, 16, pd.NA, 4, 12, 20]
    plain = readout.summary_rows(readout.read_lab(journal), [a.name for a in lab.agents])  # as before sweeps
    assert list(plain.columns) == [c for c in summary.columns if c != "seed"]
    pd.testing.assert_frame_equal(plain, summary.drop(columns="seed"))


def test_the_sweep_summary_by_hand(swept):
    lab, summary, _ = swept
    table = readout.sweep_summary(summary, lab.factors())
    assert list(table.columns) == readout.SWEEP_COLUMNS
    got = {(r["factor"], r["value"]): r for r in table.to_dict("records")}
    assert list(got) == [("curriculum", "fixed"), ("curriculum", "staircase"), ("seed", 0), ("seed", 1),
                         ("seed", 2)]
    expect = {("curriculum", "fixed"): (3, 2, 12, 10, 14), ("curriculum", "staircase"): (3, 3, 12, 8, 16),
              ("seed", 0): (2, 2, 6, 5, 7), ("seed", 1): (2, 2, 14, 13, 15), ("seed", 2): (2, 1, 20, 20, 20)}
    for key, (agents, reached, median, q1, q3) in expect.items():
        r = got[key]
        assert (r["agents"], r["reached"]) == (agents, reached), key
        assert (r["median"], r["q1"], r["q3"]) == pytest.approx((median, q1, q3)), key


def test_a_group_where_none_reached_has_no_quartiles():
    summary = pd.DataFrame({"agent": ["a", "b", "c", "d"], "complete": [False, False, True, True],
                            "trials_to_complete": pd.array([None, None, 100, 300], dtype="Int64")})
    factors = {"a": {"dale": True, "regions": {"A": 4}}, "b": {"dale": True, "regions": {"A": 4}},
               "c": {"dale": 1, "regions": {"A": 2}}, "d": {"dale": 1.0, "regions": {"A": 2}},
               "gone": {"dale": True}}  # not in the summary: left out
    table = readout.sweep_summary(summary, factors)
    assert table[["factor", "agents", "reached"]].values.tolist() == [
        ["dale", 2, 0], ["dale", 1, 1], ["dale", 1, 1], ["regions", 2, 0], ["regions", 2, 2]]
    values = list(table["value"])[:3]  # 1, 1.0 and True are three values, each kept as it was written
    assert [(type(v), v) for v in values] == [(bool, True), (int, 1), (float, 1.0)]
    assert table.loc[0, ["median", "q1", "q3"]].isna().all()
    assert table.loc[4, ["median", "q1", "q3"]].tolist() == [200.0, 150.0, 250.0]
    assert table.loc[4, "value"] == {"A": 2}
    empty = readout.sweep_summary(summary, {})
    assert list(empty.columns) == readout.SWEEP_COLUMNS and not len(empty)
