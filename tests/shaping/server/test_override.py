"""Operator overrides (PROTOCOL.md, "Operator overrides") on a live loopback server: an experimenter moves an
agent's stage or a knob; the change is journaled before OVERRIDDEN, survives a restart, and bad overrides are
refused precisely while the other agents carry on."""
from __future__ import annotations

import json

import pytest
from loophelp import AgentThread, Raw, ServerThread, config, free_port

from dashboards.data import read_lab, stage_changes
from shaping import journal
from shaping.cli import main as cli
from shaping.client import override
from shaping.protocol import ProtocolError
from shaping.server import TaskServer

pytestmark = pytest.mark.timeout(60)


def hello(raw: Raw, agent: str = "a1", curriculum: str = "shaped") -> None:
    assert raw.request("HELLO", {"agent": agent, "curriculum": curriculum}).type == "WELCOME"


def test_a_stage_override_is_journaled_before_the_reply_and_voids_batches_in_flight(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        raw = Raw(st.endpoint)
        hello(raw)
        first = raw.request("GET")
        s = raw.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": first.arrays["y"]})
        assert s.type == "SCORE" and s.header["stage"] == "easy"
        in_flight = raw.request("GET")
        assert in_flight.header["stage"] == "easy"

        reply = override(st.endpoint, "a1", stage="hard", note="skip ahead: a pre-trained network")
        assert (reply["stage"], reply["stage_index"], reply["trials"]) == ("hard", 2, 16)
        assert reply["knobs"]["coherence"] == 0.1 and not reply["complete"]
        (ev,) = reply["events"]
        assert ev["event"] == "override" and ev["note"] == "skip ahead: a pre-trained network"
        assert (ev["from_stage"], ev["to_stage"]) == ("easy", "hard")
        # In the journal before the reply: read while the server still runs.
        events = journal.load_events(tmp_path)
        row = events[events["event"] == "override"].iloc[0]
        assert (row["agent"], row["batch"], row["to_stage"], row["note"]) == \
            ("a1", 0, "hard", "skip ahead: a pre-trained network")

        # The batch drawn under "easy" is still scored and journaled, but as stale (not counted).
        s = raw.request("RESULT", {"batch": 1, "epoch": 1}, {"y_hat": in_flight.arrays["y"]})
        assert s.type == "SCORE" and s.header["stage"] == "hard"
        trials = journal.load(tmp_path)
        assert trials.groupby("batch")["stale"].all().to_dict() == {0: False, 1: True}
        nxt = raw.request("GET")
        assert (nxt.header["stage"], nxt.header["knobs"]["coherence"]) == ("hard", 0.1)
        raw.close()


def test_a_knob_override_holds_until_the_stage_changes_and_keeps_batches_counted(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        raw = Raw(st.endpoint)
        hello(raw)
        in_flight = raw.request("GET")
        reply = override(st.endpoint, "a1", knob="coherence", value=0.9)
        assert reply["stage"] == "easy" and reply["knobs"]["coherence"] == 0.9
        (ev,) = reply["events"]
        assert (ev["knob"], ev["old"], ev["new"]) == ("coherence", 0.7, 0.9) and "note" not in ev
        s = raw.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": in_flight.arrays["y"]})
        assert s.type == "SCORE" and s.header["knobs"]["coherence"] == 0.9
        assert not journal.load(tmp_path)["stale"].any()
        assert raw.request("GET").header["knobs"]["coherence"] == 0.9
        reply = override(st.endpoint, "a1", stage=1)  # by index; a new stage drops the knob override
        assert (reply["stage"], reply["knobs"]["coherence"]) == ("medium", 0.3)
        raw_operator = Raw(st.endpoint)
        moved = raw_operator.request("OVERRIDE", {"agent": "a1", "stage": None, "stage_index": 2})  # nil: absent
        assert moved.type == "OVERRIDDEN" and moved.header["stage"] == "hard"
        raw_operator.close()
        raw.close()


def test_a_staircased_knob_keeps_the_operators_level_past_the_batches_in_flight(tmp_path):
    stair = {"kind": "staircase", "knob": "coherence", "start": 0.5, "step": 0.05}
    with ServerThread(config(tmp_path, curricula={"stair": stair})) as st:
        raw = Raw(st.endpoint)
        hello(raw, curriculum="stair")
        in_flight = raw.request("GET")  # drawn at 0.5
        assert override(st.endpoint, "a1", knob="coherence", value=0.9)["knobs"]["coherence"] == 0.9
        s = raw.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": in_flight.arrays["y"]})  # all correct
        assert s.header["knobs"]["coherence"] == 0.9  # the batch drawn at 0.5 did not step the staircase back
        nxt = raw.request("GET")
        s = raw.request("RESULT", {"batch": 1, "epoch": 1}, {"y_hat": nxt.arrays["y"]})
        assert s.header["knobs"]["coherence"] == pytest.approx(0.5)  # 16 correct: 8 harder steps from 0.9
        raw.close()


def test_bad_overrides_are_refused_precisely_and_change_nothing_while_others_are_served(tmp_path):
    with ServerThread(config(tmp_path)) as st:
        agent = AgentThread(st.endpoint, "busy", curriculum="shaped", p_correct=0.5, timeout_s=5).start()
        agent.wait_for(2)
        state = st.server.sessions["busy"].policy.state()

        def refused(**kw) -> ProtocolError:
            with pytest.raises(ProtocolError) as err:
                override(st.endpoint, **kw)
            return err.value

        err = refused(agent="nobody", stage="hard")
        assert err.name == "UNKNOWN_AGENT" and "'nobody'" in err.detail and "busy" in err.detail
        err = refused(agent="busy", stage="expert")
        assert err.name == "BAD_VALUE" and "'expert'" in err.detail and "'easy', 'medium', 'hard'" in err.detail
        err = refused(agent="busy", stage=7)
        assert err.name == "BAD_VALUE" and "0..2" in err.detail
        err = refused(agent="busy", knob="coherence", value=5.0)
        assert err.name == "BAD_VALUE" and "coherence" in err.detail and "5.0" in err.detail
        err = refused(agent="busy", knob="loudness", value=1)
        assert err.name == "BAD_VALUE" and "loudness" in err.detail

        err = refused(agent="busy", knob="coherence", value={"uniform": [0.9, 0.1]})
        assert err.name == "BAD_VALUE" and "low must be <= its high" in err.detail

        raw = Raw(st.endpoint)  # what the client cannot send, a raw peer can
        both = raw.request("OVERRIDE", {"agent": "busy", "stage": "hard", "knob": "coherence", "value": 0.5})
        assert both.header["name"] == "BAD_HEADER" and "exactly one" in both.header["detail"]
        no_value = raw.request("OVERRIDE", {"agent": "busy", "knob": "coherence"})
        assert no_value.header["name"] == "BAD_HEADER" and "lacks 'value'" in no_value.header["detail"]
        raw.close()
        with pytest.raises(ValueError, match="either stage or knob"):
            override(st.endpoint, "busy")

        n = len(agent.scores)
        agent.wait_for(n + 3)  # still served
        agent.stop()
        session = st.server.sessions["busy"]
        assert session.policy.state()["overrides"] == state["overrides"] == {}
        assert "override" not in set(journal.load_events(tmp_path).get("event", []))


def test_an_override_survives_a_server_restart(tmp_path):
    cfg = config(tmp_path, bind=f"tcp://127.0.0.1:{free_port()}")
    with ServerThread(cfg) as st:
        raw = Raw(st.endpoint)
        hello(raw)
        b = raw.request("GET")
        raw.request("RESULT", {"batch": 0, "epoch": 1}, {"y_hat": b.arrays["y"]})
        override(st.endpoint, "a1", stage="medium")
        override(st.endpoint, "a1", knob="coherence", value=[0.2, 0.4])
        raw.close()
    restarted = TaskServer(cfg)
    restarted.start()
    try:
        s = restarted.sessions["a1"]
        assert s.conditions["stage"] == "medium" and s.conditions["knobs"]["coherence"] == [0.2, 0.4]
        assert s.next_batch == 1 and s.trials == 16  # the override records do not count as batches
    finally:
        restarted.close()


def test_the_cli_overrides_a_running_lab_and_reports_refusals(tmp_path, capsys):
    journal_dir = tmp_path / "journal"
    with ServerThread(config(journal_dir)) as st:
        raw = Raw(st.endpoint)
        hello(raw)
        assert cli(["override", str(tmp_path), "a1", "--knob", "coherence={\"uniform\": [0.4, 0.6]}",
                    "--note", "probe"]) == 0
        out = capsys.readouterr().out
        assert "a1: stage 'easy' (index 0) after 0 trials" in out and "coherence={'uniform': [0.4, 0.6]}" in out
        assert cli(["override", str(tmp_path), "a1", "--stage", "2"]) == 0
        assert "stage 'hard' (index 2)" in capsys.readouterr().out
        assert cli(["override", str(tmp_path), "a1", "--knob", "coherence=3"]) == 1
        assert "refused: BAD_VALUE" in capsys.readouterr().err
        assert cli(["override", str(tmp_path), "a1", "--knob", "coherence"]) == 2
        assert "expected NAME=VALUE" in capsys.readouterr().err
        raw.close()
    assert cli(["override", str(tmp_path), "a1", "--stage", "easy"]) == 2  # no server running
    assert "no task server is running" in capsys.readouterr().err
    events = journal.load_events(journal_dir)
    overrides = events[events["event"] == "override"]
    assert overrides["note"].tolist()[0] == "probe" and len(overrides) == 2
    assert json.loads(json.dumps(overrides["batch"].tolist())) == [-1, -1]
    moves = stage_changes(read_lab(tmp_path), "a1")  # the dashboard's stage timeline shows the stage override
    assert moves[["event", "to_stage"]].values.tolist() == [["override", "hard"]]
