"""shaping.tracking's parent run as the MLflow UI shows it: the experiment's kind, the runs' descriptions and the
lab summary, against a real sqlite MLflow store."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from shaping import tracking
from shaping.tracking.names import NOTE_TAG, describe_agent, describe_curriculum, describe_lab, describe_model
from shaping.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

SHAPED = {"kind": "stages", "stages": [{"name": "easy"}, {"name": "mixed"}, {"name": "final"}]}
CONFIG = {"lab": {"name": "demo", "experiment": "demo-exp"}, "curricula": {"shaped": SHAPED,
                                                                           "control": {"kind": "fixed",
                                                                                       "stage": "final"}},
          "agents": [{"name": "shaped", "curriculum": "shaped", "model": "Basic", "N_rec": 50, "seed": 1},
                     {"name": "dale", "curriculum": "shaped", "N_rec": 50, "dale_ratio": 0.8, "autapses": False,
                      "regions": {"regions": {"sensory": 25, "decision": 25}}, "threads": 2}]}
SUMMARY = pd.DataFrame([
    {"agent": "shaped", "curriculum": "shaped", "trials": 2880, "graduations": 3,
     "trials_to_graduations": "512, 1024, 2880", "final_stage": "final", "final_accuracy": 0.91, "complete": True,
     "trials_to_complete": 2880, "restarts": 0, "exit": 0, "wall_s": 61.5},
    {"agent": "dale", "curriculum": "shaped", "trials": 4096, "graduations": 1, "trials_to_graduations": "768",
     "final_stage": "mixed", "final_accuracy": float("nan"), "complete": False, "trials_to_complete": None,
     "restarts": 1, "exit": 0, "wall_s": 70.0},
])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = tracking.default_tracking_uri(tmp_path_factory.mktemp("labrun-store"))
    tracking.ensure_experiment(uri, "tests")
    return uri


# ---------------------------------------------------------------------------------------------- descriptions
@pytest.mark.parametrize("spec, name, expected", [
    (SHAPED, "shaped", "curriculum shaped (stages: easy → mixed → final)"),
    (SHAPED, None, "curriculum (stages: easy → mixed → final)"),
    ({"kind": "staircase", "knob": "coherence"}, "stair", "curriculum stair (staircase on coherence)"),
    ({"kind": "curriculum", "tasks": [{}, {}]}, None, "curriculum (curriculum of 2 tasks)"),
    ({"kind": "fixed", "stage": "final"}, "control", "curriculum control (fixed: final)"),
    ({}, None, "curriculum"),
], ids=["stages", "unnamed", "staircase", "psychrnn", "fixed", "empty"])
def test_describe_curriculum(spec, name, expected):
    assert describe_curriculum(spec, name) == expected


@pytest.mark.parametrize("config, expected", [
    ({"model": "Basic", "N_rec": 50, "dale_ratio": None, "autapses": True, "rec_density": 1.0}, "N_rec 50"),
    (CONFIG["agents"][1], "N_rec 50, Dale 0.8, no autapses, 2 regions"),
    ({"model": "LSTM", "N_rec": 64, "rec_density": 0.25, "fixed": {"W_rec": 0.1}},
     "LSTM, N_rec 64, rec density 0.25, fixed synapses"),
    ({"N_rec": 12, "constraints": {"dale_ratio": 0.75, "regions": [{"name": "A"}, {"name": "B"}]}},
     "N_rec 12, Dale 0.75, 2 regions"),
], ids=["free", "dale-regions", "lstm-sparse", "nested-constraints"])
def test_describe_model_names_what_departs_from_a_free_network(config, expected):
    assert describe_model(config) == expected


def test_describe_lab_has_a_line_each():
    assert describe_lab(CONFIG).splitlines() == [
        "Lab **demo** (experiment demo-exp): 2 agents, 2 curricula.", "",
        "- agent shaped: curriculum shaped; N_rec 50",
        "- agent dale: curriculum shaped; N_rec 50, Dale 0.8, no autapses, 2 regions",
        "- curriculum shaped (stages: easy → mixed → final)",
        "- curriculum control (fixed: final)"]
    assert describe_lab({"synced_from": "/x"}) == ""
    assert describe_agent(None, {}) == "" and describe_agent("curriculum c", {"N_rec": 5}) == "curriculum c; N_rec 5"


# ---------------------------------------------------------------------------------------------- experiment kind
def test_the_experiment_is_marked_as_model_training(store):
    client = MlflowClient(tracking_uri=store)
    made = tracking.ensure_experiment(store, "kind-new")
    assert client.get_experiment(made).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    old = client.create_experiment("kind-old")  # made before the lab set the tag (or by another tool)
    guessed = client.create_experiment("kind-guessed", tags={EXPERIMENT_KIND_TAG: "genai_development_inferred"})
    chosen = client.create_experiment("kind-chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name in ("kind-old", "kind-guessed", "kind-chosen"):
        tracking.ensure_experiment(store, name)
    kinds = {eid: client.get_experiment(eid).tags[EXPERIMENT_KIND_TAG] for eid in (old, guessed, chosen)}
    assert kinds == {old: EXPERIMENT_KIND, guessed: EXPERIMENT_KIND, chosen: "genai_development"}  # a choice stays


# ---------------------------------------------------------------------------------------------- parent run
def test_the_parent_run_describes_the_lab_and_carries_its_summary(store):
    client = MlflowClient(tracking_uri=store)
    lab = tracking.LabRun.start(store, "tests", CONFIG)
    assert client.get_run(lab.run_id).data.tags[NOTE_TAG] == describe_lab(CONFIG)
    assert lab.log_summary(SUMMARY)
    run = client.get_run(lab.run_id)
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics["summary/shaped/trials_to_criterion"] == 2880 and "summary/shaped/trials_to_complete" not in metrics
    assert "summary/dale/trials_to_criterion" not in metrics and "summary/dale/final_accuracy" not in metrics
    assert {k: metrics[f"summary/dale/{k}"] for k in ("trials", "graduations", "restarts", "exit", "wall_s")} == \
        {"trials": 4096, "graduations": 1, "restarts": 1, "exit": 0, "wall_s": 70.0}
    assert tags["summary.shaped.outcome"] == "complete" and tags["summary.dale.outcome"] == "incomplete"
    assert tags["summary.shaped.trials_to_graduations"] == "512, 1024, 2880"
    assert tags["summary.dale.final_stage"] == "mixed" and tags["summary.dale.complete"] == "false"
    csv = client.download_artifacts(lab.run_id, "summary.csv")
    with open(csv) as f:
        pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(f.read())), pd.read_csv(io.StringIO(
            SUMMARY.to_csv(index=False))))
    note = tags[NOTE_TAG].split("\n\n")
    assert note[0] == "Lab **demo** (experiment demo-exp): 2 agents, 2 curricula."
    assert note[1].splitlines() == ["**Summary**",
                                    "- shaped: complete, criterion at 2,880 trials (2,880 trials trained)",
                                    "- dale: incomplete (4,096 trials trained)"]
    assert note[2] == describe_lab(CONFIG).split("\n\n")[1]

    resumed = tracking.LabRun.attach(store, lab.run_id)  # a resumed lab ends again: one summary, the new one
    later = SUMMARY.assign(outcome=["complete", "out_of_trials"], trials=[2880, 5000])
    assert resumed.log_summary(later)
    run = client.get_run(lab.run_id)
    note = run.data.tags[NOTE_TAG]
    assert note.count("**Summary**") == 1 and "- dale: out_of_trials (5,000 trials trained)" in note
    assert run.data.tags["summary.dale.outcome"] == "out_of_trials" and run.data.metrics["summary/dale/trials"] == 5000


def test_an_unreachable_store_logs_no_summary_and_raises_nothing():
    lab = tracking.LabRun.start("http://127.0.0.1:9", "tests", CONFIG)
    assert not lab.enabled and lab.log_summary(SUMMARY) is False


def test_summary_entries_skip_missing_values_and_read_an_outcome_column():
    metrics, tags = tracking.summary_entries(pd.DataFrame([
        {"agent": "a/b", "trials_to_criterion": np.int64(100), "trials_to_complete": 90, "outcome": "complete",
         "note": None}]))
    assert metrics == {"summary/a_b/trials_to_criterion": 100.0}
    assert tags == {"summary.a_b.outcome": "complete"}


# ---------------------------------------------------------------------------------------------- agent runs
def test_the_session_run_dict_carries_the_curriculum_line(store):
    lab = tracking.LabRun.start(store, "tests", CONFIG)
    tracker = tracking.CurriculumTracker(lab, background=False)
    run = tracker.on_session_start("shaped", SHAPED, {}, curriculum_name="shaped")
    assert run["description"] == "curriculum shaped (stages: easy → mixed → final)"
    assert {k: v for k, v in run.items() if k != "description"} == lab.child("shaped")
    assert tracker.on_session_start("other", SHAPED, {})["description"] == "curriculum (stages: easy → mixed → final)"


def test_an_agent_out_of_trials_is_not_merely_incomplete():
    from shaping.tracking.labrun import summary_outcome

    assert summary_outcome({"complete": True, "out_of_trials": False}) == "complete"
    assert summary_outcome({"complete": False, "out_of_trials": True}) == "out_of_trials"  # the control's budget
    assert summary_outcome({"complete": False, "out_of_trials": False}) == "incomplete"  # stopped (Ctrl-C)
    assert summary_outcome({"complete": False}) == "incomplete"
