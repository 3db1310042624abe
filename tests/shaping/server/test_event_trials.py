"""Events carry the session's trial count, and every figure, table and run places them there.

A policy counts only the trials it is told (stale ones, prefetched under a stage the agent has left, are not);
metrics, progress tables and figures count every trial the session scored. A real server on loopback, a
curriculum that bounces between two stages (so stale trials pile up) and the MLflow curriculum tracker on an
sqlite store: the events journaled, sent in SCORE and drawn must all sit on the cumulative axis, and the agent
runs end with their ``curriculum.outcome``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loophelp import AgentThread, ServerThread, config

from shaping import figures, journal, tracking
from shaping.lab import summarize
from shaping.server import attach_tracking

pytestmark = pytest.mark.timeout(120)

# Easy for one counted batch, then final until the window (all of one batch) is below 100 %: back to easy.
BOUNCE = {"kind": "stages", "window": 16, "max_trials": 320, "regress": {"accuracy": 1.0, "min_dwell": 16},
          "stages": [{"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"min_trials": 16}},
                     {"name": "final", "knobs": {"coherence": 0.1}}]}
ONE_STAGE = {"kind": "stages", "window": 16, "stages": [{"name": "only", "graduate": {"min_trials": 32}}]}
CREDIT = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Three agents: one bounces until max_trials runs out, one meets its criterion, one quits early."""
    root = tmp_path_factory.mktemp("event_trials")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    parent = tracking.LabRun.start(uri, "event-trials", {"test": True})
    drawn = []  # what curriculum/timeline.png is drawn from: (x axis, events)
    draw = figures.stage_timeline

    def recording(trial, stage_index, events=None, stage_names=None):
        drawn.append((np.asarray(trial, dtype=float), events))
        return draw(trial, stage_index, events, stage_names)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "stage_timeline", recording)
        cfg = config(root / "journal", curricula={"bounce": BOUNCE, "one": ONE_STAGE, "fixed": {"kind": "fixed"}},
                     credit=CREDIT)
        with ServerThread(cfg) as st:
            attach_tracking(st.server, {"tracking_uri": uri, "run_id": parent.run_id})
            agents = {name: AgentThread(st.endpoint, name, curriculum, p_correct=0.5, seed=i).start()
                      for i, (name, curriculum) in enumerate([("bouncer", "bounce"), ("finisher", "one"),
                                                              ("quitter", "fixed")])}
            agents["quitter"].wait_for(4)
            agents["quitter"]._stop.set()
            for name, agent in agents.items():
                agent.thread.join(60)
                assert agent.error is None and agent.client.complete == (name != "quitter"), name
                agent.client.bye("done")  # as an agent process leaves: its run ends now
    client = tracking.MlflowClient(uri)
    runs = {r.data.tags["skinnerbox.agent"]: r for r in client.search_runs(
        [parent.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.run_id}'")}
    return {"journal": root / "journal", "root": root, "agents": agents, "runs": runs, "drawn": drawn}


def cumulative(batches, agent):
    """``(session, batch) -> the agent's cumulative trial count at that batch's end``."""
    b = batches[batches["agent"] == agent]
    return dict(zip(zip(b["session"], b["batch"]), b["n"].cumsum()))


def test_journaled_and_scored_events_carry_the_cumulative_count(lab):
    events, batches = journal.load_events(lab["journal"]), journal.load_batches(lab["journal"])
    mine = events[events["agent"] == "bouncer"]
    ends = cumulative(batches, "bouncer")
    assert mine["session_trials"].tolist() == [ends[k] for k in zip(mine["session"], mine["batch"])]
    stale = journal.load(lab["journal"], agent="bouncer")["stale"].astype(bool).sum()
    assert stale > 100 and (mine["session_trials"] > mine["trial"]).any()  # the two counts do differ here
    assert mine["session_trials"].iloc[-1] - mine["trial"].iloc[-1] <= stale
    scored = [(ev["event"], ev["session_trials"]) for s in lab["agents"]["bouncer"].scores for ev in s.events]
    assert scored == list(zip(mine["event"], mine["session_trials"]))


def test_dashboard_markers_sit_on_the_stage_line(lab):
    from dashboards import data as lab_data

    tables = lab_data.read_lab(lab["journal"])
    progress = lab_data.agent_progress(tables, "bouncer")
    moves = lab_data.stage_changes(tables, "bouncer")
    assert len(moves) > 10 and moves["event"].iloc[-1] == "out_of_trials"
    rows = {int(t): i for i, t in enumerate(progress["trials"])}
    for move in moves[moves["event"].isin(["graduated", "regressed"])].to_dict("records"):
        at = rows[int(move["trial"])]  # a marker is at the end of the batch that moved the stage...
        assert progress["stage"].iloc[at] == move["from_stage"]
        later = progress["stage"].iloc[at + 1:at + 1 + CREDIT].tolist()
        # ...and the line steps within the batches already drawn then (unless the curriculum ended first)
        assert move["to_stage"] in later or at >= len(progress) - CREDIT
    assert moves["trial"].iloc[-1] <= progress["trials"].iloc[-1]
    assert (moves["policy_trial"] < moves["trial"]).any()
    grads = lab_data.graduations(tables).set_index(["agent", "milestone"])["trial"]
    assert grads[("bouncer", "graduated easy")] == moves["trial"].iloc[0]


def test_the_lab_summary_counts_the_trials_trained_on(lab):
    events = journal.load_events(lab["journal"])
    summary = summarize(lab["journal"]).set_index("agent")
    grads = events[(events["agent"] == "bouncer") & (events["event"] == "graduated")]
    assert summary.loc["bouncer", "trials_to_graduations"] == ", ".join(map(str, grads["session_trials"]))
    done = events[(events["agent"] == "finisher") & (events["event"] == "complete")]
    assert summary.loc["finisher", "trials_to_complete"] == done["session_trials"].iloc[0]


def test_the_mlflow_timeline_draws_events_on_its_own_axis(lab):
    for x, events in lab["drawn"]:
        if events is not None and len(events):
            assert set(events["trial"].astype(float)) <= set(x)
            assert (events["trial"] == events["session_trials"]).all()
    assert any(events is not None and len(events) > 10 for _, events in lab["drawn"])


@pytest.mark.parametrize("agent, outcome, status", [("bouncer", "out_of_trials", "FINISHED"),
                                                    ("finisher", "complete", "FINISHED"),
                                                    ("quitter", "stopped", "KILLED")])
def test_a_run_says_how_its_curriculum_ended(lab, agent, outcome, status):
    run = lab["runs"][agent]
    assert run.data.tags.get("curriculum.outcome") == outcome
    assert run.info.status == status


def test_events_of_older_journals_get_the_count_from_the_batches(tmp_path):
    from dashboards import data as lab_data

    with journal.Journal(tmp_path / "journal") as jr:
        for batch, events in enumerate([[], [{"event": "graduated", "trial": 16, "from_stage": "a"}]]):
            jr.append_batch(agent="old", session="s", batch=batch, epoch=1, task="T", stage="a", stage_index=0,
                            knobs={}, scored=_scored(16), events=events, state={"trials": 16 * (batch + 1)})
        jr.append_override(agent="old", session="s", batch=1, trials=32, events=[{"event": "override"}],
                           state={"trials": 32})
    assert journal.load_events(tmp_path / "journal")["session_trials"].tolist() == [32, 32]
    moves = lab_data.stage_changes(lab_data.read_lab(tmp_path / "journal"), "old").iloc[0]
    assert (moves["event"], moves["trial"], moves["policy_trial"]) == ("graduated", 32, 16)


def _scored(n: int) -> pd.DataFrame:
    return pd.DataFrame({"trial": np.arange(n), "outcome": ["correct"] * n, "choice": np.zeros(n, int),
                         "target": np.zeros(n, int), "stale": np.zeros(n, bool)})


def test_session_trials_and_the_outcome_are_documented():
    root = Path(__file__).resolve().parents[3]
    assert "session_trials" in (root / "shaping" / "PROTOCOL.md").read_text()
    assert "curriculum.outcome" in (root / "docs" / "labs.md").read_text()


def test_a_spent_budget_journaled_as_complete_reads_as_out_of_trials():
    """Journals written before the out_of_trials event called a spent max_trials "complete"; read back, it is
    not a completion (summaries and comparisons would count a control that never learned)."""
    events = [{"event": "complete", "trial": 640, "rule": "max_trials: 640 trials >= 640"},
              {"event": "complete", "trial": 900, "rule": "stages[2].graduate: accuracy 0.9 >= 0.8"}]
    rec = {"agent": "a", "session": "s", "batch": 9, "time": 0.0, "n": 64, "events": json.dumps(events)}
    rows = journal.event_rows(journal.BATCH, rec, {})
    assert [r["event"] for r in rows] == ["out_of_trials", "complete"]
