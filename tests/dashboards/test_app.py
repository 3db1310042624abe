"""The Streamlit app, driven headless with AppTest on a real lab run: every view renders, the agent
selector changes what is shown, and the numbers shown are those of the journal."""
from __future__ import annotations

import numpy as np
import pytest
from labsim import JournalWriter
from streamlit.testing.v1 import AppTest

from dashboards.launch import app_path
from shaping import journal

TIMEOUT_S = 120


def run_app(lab_dir, refresh_s: float = 0.0, **state) -> AppTest:
    at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT_S)
    at.session_state["lab_dir"] = str(lab_dir)
    at.session_state["refresh_s"] = refresh_s
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def metrics(container) -> dict[str, str]:
    return {m.label: m.value for m in container.metric}


def tab(at: AppTest, label: str):
    return next(t for t in at.tabs if t.label == label)


def kinds(container) -> list[str]:
    out = []

    def walk(node):
        for child in getattr(node, "children", {}).values():
            out.append(child.type)
            walk(child)

    walk(container)
    return out


@pytest.fixture(scope="module")
def at(lab):
    return run_app(lab["lab"])


def test_every_view_renders(at):
    assert [t.label for t in at.tabs] == ["Status", "Agent", "Compare", "Psychometrics", "Connectivity", "MLflow"]
    want = {"Status": {"vega_lite_chart", "dataframe"}, "Agent": {"image", "dataframe"},
            "Compare": {"image", "dataframe"}, "Psychometrics": {"image", "dataframe"},
            "Connectivity": {"image", "dataframe", "select_slider"}, "MLflow": {"dataframe"}}
    for label, needed in want.items():
        assert needed <= set(kinds(tab(at, label))), (label, kinds(tab(at, label)))
    assert not at.warning


def test_lab_numbers_equal_the_journal(at, lab):
    trials = journal.load(lab["lab"] / "journal")
    events = journal.load_events(lab["lab"] / "journal")
    top = metrics(at)
    assert top["Agents"] == str(trials["agent"].nunique())
    assert top["Trials, all agents"] == str(len(trials))
    assert top["Batches, all agents"] == str(trials.drop_duplicates(["agent", "batch"]).shape[0])
    assert top["Graduations, all agents"] == str((events["event"] == "graduated").sum())
    status = tab(at, "Status")
    assert metrics(status)["Trials/s"] == f"{sum(s['trials_per_s'] for s in lab['status']['sessions']):.1f}"
    table = status.dataframe[0].value
    assert table.set_index("agent")["trials"].to_dict() == {s["agent"]: s["trials"] for s in lab["status"]["sessions"]}


def expected_agent_numbers(lab, agent: str) -> dict[str, str]:
    """What the Agent view must show, computed here from the journal without dashboards.data or readout."""
    trials = journal.load(lab["lab"] / "journal")
    t = trials[trials["agent"] == agent]
    events = journal.load_events(lab["lab"] / "journal")
    e = events[events["agent"] == agent]
    batches = journal.load_batches(lab["lab"] / "journal")
    criterion = batches[batches["agent"] == agent]["policy_accuracy"].iloc[-1]
    stage = t["stage_index"].to_numpy()
    recent = (t["outcome"].to_numpy()[-64:] == "correct").mean()  # the server's window (labsim: 64), any stage
    return {"Stage": f"{t['stage'].iloc[-1]} ({stage[-1]})", "Trials": str(len(t)),
            "recent accuracy (last 64 trials)": f"{recent:.3f}",
            "criterion accuracy (policy window)":
                "—" if criterion is None or np.isnan(criterion) else f"{criterion:.3f}",
            "Graduations": str((e["event"] == "graduated").sum()),
            "Regressions": str((e["event"] == "regressed").sum()), "Reversals": str((e["event"] == "reversal").sum())}


def test_agent_numbers_equal_the_journal(at, lab):
    agent = at.selectbox(key="agent").value
    assert agent == lab["agents"][0]
    assert metrics(tab(at, "Agent")) == expected_agent_numbers(lab, agent)


def test_the_status_tab_and_the_agent_tab_show_one_recent_accuracy(at, lab):
    """The server's status.json (its window_accuracy), the Status table and the Agent tab: one number."""
    label = "recent accuracy (last 64 trials)"
    table = tab(at, "Status").dataframe[0].value.set_index("agent")
    for s in lab["status"]["sessions"]:
        assert table.loc[s["agent"], label] == pytest.approx(s["accuracy"])
    agent = at.selectbox(key="agent").value
    assert metrics(tab(at, "Agent"))[label] == f"{table.loc[agent, label]:.3f}"


def test_selecting_an_agent_changes_what_is_shown(lab):
    at = run_app(lab["lab"])
    before = metrics(tab(at, "Agent"))
    fits_before = tab(at, "Psychometrics").dataframe[0].value
    at.selectbox(key="agent").set_value("shaped-dale-s1").run()
    assert not at.exception
    after = metrics(tab(at, "Agent"))
    assert after != before and after == expected_agent_numbers(lab, "shaped-dale-s1")
    assert after["Regressions"] == "1"
    moves = tab(at, "Agent").dataframe[0].value
    assert moves["event"].tolist() == ["graduated", "regressed", "graduated", "graduated", "complete"]
    assert {"session_trials", "policy_trials", "criterion_accuracy"} <= set(moves.columns)  # which count is which
    at.selectbox(key="agent").set_value("unshaped-free-s0").run()
    fits = tab(at, "Psychometrics").dataframe[0].value
    assert fits["stage"].tolist() == ["final"] and len(fits_before) == 3  # one span per graduation / completion
    assert fits["span"].iloc[0].startswith("final: ") and "trials" in fits["span"].iloc[0]
    slider = tab(at, "Connectivity").select_slider
    assert len(slider) == 0  # one snapshot only: nothing to choose
    at.selectbox(key="agent").set_value("shaped-dale-s0").run()
    assert list(tab(at, "Connectivity").select_slider[0].options) == ["stage0_easy", "stage1_contrasts", "final"]
    changes = tab(at, "Connectivity").dataframe[0].value
    assert changes["tag"].tolist() == ["stage0_easy", "stage1_contrasts", "final"]


def test_compare_groups_and_spread(lab):
    at = run_app(lab["lab"])
    summary = tab(at, "Compare").dataframe[0].value
    row = summary[(summary["milestone"] == "complete") & (summary["condition"] == "shaped · Dale")].iloc[0]
    events = journal.load_events(lab["lab"] / "journal")
    done = events[(events["event"] == "complete") & events["agent"].str.startswith("shaped")]["session_trials"]
    done = done.to_numpy(float)  # trials to criterion: every trial the network trained on
    assert row["n"] == 2 and row["mean"] == pytest.approx(done.mean()) and row["sd"] == pytest.approx(done.std(ddof=1))
    at.selectbox(key="group_by").set_value("dale").run()
    summary = tab(at, "Compare").dataframe[0].value
    assert "dale" in summary.columns and set(summary["dale"]) == {"Dale", "free"}


def test_mlflow_view_lists_the_agent_runs(at, lab):
    runs = tab(at, "MLflow").dataframe[0].value
    assert runs["agent"].tolist() == lab["agents"]
    assert "metric.curriculum/accuracy_window" in runs.columns


def test_a_lab_that_has_not_started(tmp_path):
    at = run_app(tmp_path / "not-yet")
    assert any("waiting for the lab to start" in i.value for i in at.info)
    w = JournalWriter(tmp_path / "starting")
    try:
        at = run_app(tmp_path / "starting")  # a journal with no agent yet
        assert any("no agent has connected" in i.value for i in at.info)
        w.hello()
        at = run_app(tmp_path / "starting")  # an agent, no batch yet
        assert metrics(at)["Trials, all agents"] == "0"
        assert any("no scored batch yet" in i.value for i in tab(at, "Agent").info)
    finally:
        w.close()


def test_the_page_follows_a_growing_lab(tmp_path):
    w = JournalWriter(tmp_path / "growing", n=8)
    w.hello()
    try:
        for _ in range(2):
            w.scored()
        at = run_app(tmp_path / "growing", refresh_s=1.0)  # the live (self-refreshing) page
        assert metrics(at)["Trials, all agents"] == "16"
        for _ in range(3):
            w.scored()
        at.run()
        assert not at.exception
        assert metrics(at)["Trials, all agents"] == "40" and metrics(tab(at, "Agent"))["Trials"] == "40"
        with open(w.journal.segment, "ab") as f:  # a record being written: the page ignores it
            f.write(journal.RECORD_MAGIC + b"\x03\xff\xff")
        at.run()
        assert not at.exception and metrics(at)["Trials, all agents"] == "40"
    finally:
        w.close()
