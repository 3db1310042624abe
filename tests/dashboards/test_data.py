"""dashboards.data: every table against an independent computation from the journal of a real lab run."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from labsim import JournalWriter

from dashboards import data as lab_data
from shaping import journal


@pytest.fixture(scope="module")
def tables(lab):
    return lab_data.read_lab(lab["lab"])


@pytest.fixture(scope="module")
def trials(lab):
    return journal.load(lab["lab"] / "journal")


@pytest.fixture(scope="module")
def events(lab):
    return journal.load_events(lab["lab"] / "journal")


def test_the_lab_run_has_what_the_views_need(lab, tables, events):
    """The fixture itself: several agents, graduations, a regression, reversals, completions."""
    assert lab_data.agent_names(tables) == lab["agents"]
    kinds = events["event"].value_counts()
    assert kinds["graduated"] >= 3 and kinds["regressed"] >= 1 and kinds["reversal"] >= 4
    assert kinds["complete"] == len(lab["agents"])
    assert len(tables.trials) > 4000


def test_tables_equal_the_journal_loaders(lab, tables, trials):
    pd.testing.assert_frame_equal(tables.trials, trials)
    batches = journal.load_batches(lab["lab"] / "journal")
    common = [c for c in batches.columns if c != "accuracy"]
    pd.testing.assert_frame_equal(tables.batches[common].reset_index(drop=True), batches[common])
    assert np.allclose(tables.batches["accuracy"], batches["accuracy"])
    assert len(tables.events) == len(journal.load_events(lab["lab"] / "journal"))
    assert list(tables.sessions["agent"]) == list(journal.load_sessions(lab["lab"] / "journal")["agent"])
    assert tables.opened is not None and tables.closed is not None


def test_lab_paths_accept_the_journal_directory(lab):
    a, b = lab_data.lab_paths(lab["lab"]), lab_data.lab_paths(lab["lab"] / "journal")
    assert a == b and a.weights == lab["lab"] / "weights"


def test_progress_matches_an_independent_count(tables, trials):
    assert tables.window_trials == 64  # labsim's server runs with window_trials = 64 (its OPEN record says so)
    for agent in lab_data.agent_names(tables):
        t = trials[trials["agent"] == agent]
        p = lab_data.agent_progress(tables, agent)
        sizes = t.groupby("batch", sort=False).size().to_numpy()
        assert p["trials"].tolist() == np.cumsum(sizes).tolist()
        # recent accuracy after each batch, by hand: the last 64 trials up to its end, whatever their stage
        correct = (t["outcome"].to_numpy() == "correct")
        want = [correct[max(0, end - 64):end].mean() for end in np.cumsum(sizes)]
        np.testing.assert_allclose(p["recent_accuracy"], want)
        assert p["stage"].iloc[-1] == t["stage"].iloc[-1]


def test_progress_carries_the_policys_own_accuracy(lab, tables):
    batches = journal.load_batches(lab["lab"] / "journal")
    for agent in lab_data.agent_names(tables):
        got = lab_data.agent_progress(tables, agent)["criterion_accuracy"].to_numpy(dtype=float)
        want = batches[batches["agent"] == agent]["policy_accuracy"].to_numpy(dtype=float)
        np.testing.assert_allclose(got, want)  # NaN where the policy keeps none, in both
        assert np.isfinite(want).sum() > len(want) // 2
        assert ((want[np.isfinite(want)] >= 0) & (want[np.isfinite(want)] <= 1)).all()


def test_knobs_are_shown_as_drawn_never_as_a_mean(tables):
    p = lab_data.agent_progress(tables, "shaped-dale-s0")
    easy = p[p["stage"] == "easy"]
    assert (easy["knob.coherence"] == "0.7").all() and (easy["knob_min.coherence"] == 0.7).all()
    assert (easy["knob_max.coherence"] == 0.7).all()
    contrasts = p[p["stage"] == "contrasts"]  # a list of choices: the set, min and max
    assert (contrasts["knob.coherence"] == "{0.05, 0.1, 0.2, 0.4, 0.7}").all()
    assert (contrasts["knob_min.coherence"] == 0.05).all() and (contrasts["knob_max.coherence"] == 0.7).all()
    titrate = p[p["stage"] == "titrate"]  # a staircase: its current level, one value per batch
    assert titrate["knob_min.coherence"].nunique() > 3
    assert (titrate["knob_min.coherence"] == titrate["knob_max.coherence"]).all()


def test_the_stage_line_steps_under_each_move_marker(tables):
    for agent in lab_data.agent_names(tables):
        p = lab_data.agent_progress(tables, agent)
        moves = lab_data.stage_changes(tables, agent)
        stage = p["policy_stage_index"].to_numpy()
        steps = p["trials"].to_numpy()[:-1][np.diff(stage) != 0]  # where the timeline's step is drawn
        moved = moves[moves["event"].isin(["graduated", "regressed"])]
        assert steps.tolist() == moved["trial"].tolist()
        assert moved["stage_index"].tolist() == stage[1:][np.diff(stage) != 0].tolist()


def test_stage_changes_and_reversals_equal_the_events(tables, events):
    for agent in lab_data.agent_names(tables):
        e = events[events["agent"] == agent]
        moves = lab_data.stage_changes(tables, agent)
        assert moves["trial"].tolist() == e[e["event"].isin(lab_data.MOVE_EVENTS)]["session_trials"].tolist()
        assert moves["policy_trial"].tolist() == e[e["event"].isin(lab_data.MOVE_EVENTS)]["trial"].tolist()
        r = lab_data.reversals(tables, agent)
        assert r["level"].tolist() == e[e["event"] == "reversal"]["level"].tolist()
        assert r["reversals"].tolist() == list(range(1, len(r) + 1))


def test_conditions_from_hello_info(tables):
    c = lab_data.agent_conditions(tables).set_index("agent")
    assert c.loc["shaped-dale-s0", "condition"] == "shaped · Dale"
    assert c.loc["shaped-dale-s1", "seed"] == 1
    assert c.loc["unshaped-free-s0", "condition"] == "unshaped · free"
    # a model table without dale_ratio (a lab config that leaves it out) is the default: no Dale
    info = [{"model": {k: v for k, v in (i.get("model") or {}).items() if k != "dale_ratio"}}
            if a == "unshaped-free-s0" else i for a, i in zip(tables.sessions["agent"], tables.sessions["info"])]
    left_out = lab_data.agent_conditions(dataclasses.replace(tables, sessions=tables.sessions.assign(info=info)))
    assert left_out.set_index("agent").loc["unshaped-free-s0", "dale"] == "free"
    # ... but not when Dale can come from elsewhere (per-region ratios): then it is unknown, not "free"
    info = [{"model": {"N_rec": 24, "regions": [{"name": "A", "N": 24, "dale_ratio": 0.8}]}}
            if a == "shaped-dale-s0" else i for a, i in zip(tables.sessions["agent"], tables.sessions["info"])]
    regions = lab_data.agent_conditions(dataclasses.replace(tables, sessions=tables.sessions.assign(info=info)))
    assert regions.set_index("agent").loc["shaped-dale-s0", "dale"] == "?"


def test_graduations_are_first_times_and_the_spread_is_over_seeds(tables, events):
    g = lab_data.graduations(tables)
    s1 = g[g["agent"] == "shaped-dale-s1"].set_index("milestone")["trial"]
    e = events[(events["agent"] == "shaped-dale-s1") & (events["event"] == "graduated")]
    assert s1["graduated easy"] == e[e["from_stage"] == "easy"]["session_trials"].iloc[0]  # before its regression
    assert (e["from_stage"] == "easy").sum() == 2
    assert s1["complete"] == events[(events["agent"] == "shaped-dale-s1") &
                                    (events["event"] == "complete")]["session_trials"].iloc[0]
    summary = lab_data.graduation_summary(g).set_index(["milestone", "condition"])
    both = g[(g["condition"] == "shaped · Dale") & (g["milestone"] == "complete")]["trial"].to_numpy(float)
    row = summary.loc[("complete", "shaped · Dale")]
    assert row["n"] == 2 and row["mean"] == pytest.approx(both.mean())
    assert row["sd"] == pytest.approx(both.std(ddof=1))
    assert np.isnan(summary.loc[("complete", "unshaped · free"), "sd"])
    assert list(summary.index.get_level_values(0))[-1] == "complete"  # milestones in curriculum order


def test_psychometric_fit_recovers_a_known_logistic():
    rng = np.random.default_rng(1)
    n = 6000
    coherence = rng.choice([0.05, 0.1, 0.2, 0.4], n)
    target = rng.integers(0, 2, n)
    signed = coherence * np.where(target == 1, 1, -1)
    p1 = 1 / (1 + np.exp(-(0.3 + 8.0 * signed)))
    choice = (rng.random(n) < p1).astype(int)
    choice[:50] = -1  # no responses are left out of the fit but counted
    fit = lab_data.psychometric_fit(pd.DataFrame({"coherence": coherence, "target": target, "choice": choice}),
                             "coherence")
    assert fit["n"] == n and fit["n_no_response"] == 50
    assert fit["slope"] == pytest.approx(8.0, rel=0.15)
    assert fit["pse"] == pytest.approx(-0.3 / 8.0, abs=0.02)


def test_psychometric_fits_are_over_stated_spans(tables, trials, events):
    assert lab_data.evidence_knob(tables, "shaped-dale-s0") == "coherence"
    for agent in lab_data.agent_names(tables):
        t = trials[trials["agent"] == agent].reset_index(drop=True)
        e = events[(events["agent"] == agent) & events["event"].isin(["graduated", "complete"])]
        table = lab_data.psychometric_table(tables, agent)
        ends = table.drop_duplicates("span")["span_stop"].tolist()
        count = np.arange(1, len(t) + 1)
        for ev in e.to_dict("records"):  # a span ends at each graduation and completion: its last trial there
            stage = ev["from_stage"] if ev["event"] == "graduated" else ev["stage"]
            at = np.flatnonzero((t["stage"] == stage).to_numpy() & (count <= ev["session_trials"]))
            assert at[-1] + 1 in ends
        assert (table["n"] <= 128).all()  # the criterion window (labsim's curricula), never a pooled stage
        assert table["span"].str.contains("trials").all() and table["span"].nunique() == len(ends)
    shaped = lab_data.psychometric_table(tables, "shaped-dale-s0").set_index("stage")
    # "easy" runs one coherence (two signed levels): no curve, and the row says why
    assert shaped.loc["easy", "levels"] == 2 and np.isnan(shaped.loc["easy", "slope"])
    assert "no fit: 2 evidence levels" in shaped.loc["easy", "note"]
    assert shaped.loc["contrasts", "slope"] > 1 and shaped.loc["contrasts", "note"] == ""


def test_weight_files_are_ordered_and_dated(lab, tables, events):
    files = lab_data.weight_files(lab["lab"], tables=tables)
    for agent, paths in lab["weights"].items():
        f = files[files["agent"] == agent]
        assert [p.name for p in f["path"]] == [p.name for p in paths]
        assert f["tag"].iloc[-1] == "final"
        assert f["trial"].iloc[-1] == tables.batches[tables.batches["agent"] == agent]["trials"].iloc[-1]
    easy = files[(files["agent"] == "shaped-dale-s1") & (files["tag"] == "stage0_easy")]["trial"].iloc[0]
    left = events[(events["agent"] == "shaped-dale-s1") & (events["from_stage"] == "easy")]["session_trials"]
    assert easy == left.iloc[-1]  # the file was overwritten when the agent left "easy" the second time


def test_connectivity_follows_psychrnn_conventions(lab):
    c = lab_data.load_connectivity(lab["weights"]["shaped-dale-s0"][-1])
    from agents.weights import load_weights

    raw, _ = load_weights(lab["weights"]["shaped-dale-s0"][-1])
    sign = np.diag(raw["Dale_rec"])
    assert np.array_equal(c.dale_sign, sign)
    assert (c.W_rec[:, sign > 0] >= 0).all() and (c.W_rec[:, sign < 0] <= 0).all()  # Dale: presynaptic columns
    assert np.array_equal(c.W_rec == 0, (raw["rec_connectivity"] == 0) | (raw["W_rec"] == 0))
    assert c.spectral_radius == pytest.approx(np.max(np.abs(np.linalg.eigvals(raw["W_rec"] * raw["rec_connectivity"]))))
    ordered = sign[c.order]
    labels = np.asarray(c.region_labels)[c.order]
    for region in dict.fromkeys(labels):  # within each region, E before I
        s = ordered[labels == region]
        assert (np.diff(s) <= 0).all()
    free = lab_data.load_connectivity(lab["weights"]["unshaped-free-s0"][-1])
    assert free.dale_sign is None and (free.W_rec < 0).any() and (free.W_rec > 0).any()


def test_connectivity_changes_by_hand(lab):
    snaps = [lab_data.load_connectivity(p) for p in lab["weights"]["shaped-dale-s1"]]
    ch = lab_data.connectivity_changes(snaps, ["a", "b", "c"], [1, 2, 3])
    w0, w1 = snaps[0].W_rec, snaps[1].W_rec
    assert np.isnan(ch["rel_change"].iloc[0])
    assert ch["rel_change"].iloc[1] == pytest.approx(np.linalg.norm(w1 - w0) / np.linalg.norm(w0))
    assert ch["ei_ratio"].iloc[1] == pytest.approx(w1[w1 > 0].sum() / -w1[w1 < 0].sum())
    assert ch["spectral_radius"].tolist() == [s.spectral_radius for s in snaps]


def test_status_from_the_server_file_and_from_the_journal(lab, tables, tmp_path):
    status = lab_data.read_status(lab["lab"])
    assert status == json.loads((lab["lab"] / "journal" / "status.json").read_text())
    t = lab_data.status_table(status, tables, now=status["time"] + 2.0)
    assert (t["source"] == "server").all() and t["age_s"].tolist() == [2.0] * len(t)
    assert t.set_index("agent")["trials"].to_dict() == {s["agent"]: s["trials"] for s in status["sessions"]}
    derived = lab_data.status_table(None, tables).set_index("agent")
    counts = tables.trials.groupby("agent").size()
    assert derived["trials"].to_dict() == counts.to_dict()
    assert not derived["connected"].any()  # the server closed the journal
    assert (derived["trials_per_s"] > 0).all()
    # a half-written or foreign status file is not a status
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "status.json").write_text('{"time": 1, "sess')
    assert lab_data.read_status(tmp_path) is None
    assert lab_data.server_info(lab["lab"], tables)["running"] is False


def test_an_empty_or_missing_lab_gives_empty_tables(tmp_path):
    t = lab_data.read_lab(tmp_path / "nothing")
    assert t.empty and lab_data.agent_names(t) == [] and len(t.trials) == 0
    assert lab_data.agent_summary(t).empty and lab_data.graduations(t).empty
    assert lab_data.graduation_summary(lab_data.graduations(t)).empty
    assert lab_data.status_table(None, t).empty and lab_data.weight_files(tmp_path, tables=t).empty
    assert lab_data.read_status(tmp_path) is None and lab_data.evidence_knob(t) is None


def test_a_journal_with_sessions_but_no_batches(tmp_path):
    w = JournalWriter(tmp_path)
    w.hello()
    try:
        t = lab_data.read_lab(tmp_path)
        assert t.empty and lab_data.agent_names(t) == ["a1"]
        assert lab_data.agent_progress(t, "a1").empty and lab_data.psychometric_table(t, "a1").empty
        s = lab_data.status_table(None, t)
        assert s["trials"].tolist() == [0] and s["connected"].tolist() == [True]
        assert lab_data.agent_summary(t)["trials"].tolist() == [0]
    finally:
        w.close()


def test_the_reader_follows_a_growing_journal_and_skips_a_torn_tail(tmp_path):
    w = JournalWriter(tmp_path, n=8)
    w.hello()
    reader = lab_data.LabReader(tmp_path)
    try:
        for _ in range(3):
            w.scored()
        assert len(reader.poll().trials) == 24
        seg = w.journal.segment
        good = seg.stat().st_size
        w.scored()
        data = seg.read_bytes()
        # simulate a reader arriving mid-write: keep the new record's first half only
        copy = tmp_path / "copy"
        shutil.copytree(tmp_path / "journal", copy / "journal", ignore=shutil.ignore_patterns("*.lock"))
        (copy / "journal" / seg.name).write_bytes(data[: good + (len(data) - good) // 2])
        torn = lab_data.LabReader(copy)
        assert len(torn.poll().trials) == 24
        (copy / "journal" / seg.name).write_bytes(data)  # the write completes
        assert len(torn.poll().trials) == 32
        assert len(reader.poll().trials) == 32
        p = lab_data.agent_progress(reader.poll(), "a1")
        assert p["trials"].tolist() == [8, 16, 24, 32]
    finally:
        w.close()


def test_mlflow_runs_are_the_journaled_ones(lab, tables):
    uri = lab_data.tracking_uri_of(tables)
    assert uri == lab["tracking_uri"] and lab_data.parent_run_id_of(tables) == lab["parent_run_id"]
    runs = lab_data.load_runs(uri, lab_data.run_ids_of(tables))
    assert runs["agent"].tolist() == lab["agents"]
    assert (runs["parent_run_id"] == lab["parent_run_id"]).all()
    by_parent = lab_data.load_runs(uri, parent_run_id=lab["parent_run_id"])
    assert sorted(by_parent["run_id"]) == sorted(runs["run_id"])
    # MLflow's curriculum/accuracy_window is the recent accuracy: the server's window (64), across stages
    for agent, rid in lab_data.run_ids_of(tables).items():
        hist = lab_data.metric_history(uri, rid, "curriculum/accuracy_window")
        p = lab_data.agent_progress(tables, agent)
        assert hist["step"].tolist() == p["trials"].tolist()
        np.testing.assert_allclose(hist["value"], p["recent_accuracy"])


def test_conditions_fall_back_on_mlflow_params_then_weight_files(lab, tables):
    runs = lab_data.load_runs(lab_data.tracking_uri_of(tables), lab_data.run_ids_of(tables))
    assert runs.set_index("agent")["param.constraint.dale_ratio"].to_dict() == {
        "shaped-dale-s0": "0.8", "shaped-dale-s1": "0.8", "unshaped-free-s0": "null"}
    bare = dataclasses.replace(tables, sessions=tables.sessions.assign(info=[{}] * len(tables.sessions)))
    unknown = lab_data.agent_conditions(bare)
    assert (unknown["dale"] == "?").all()
    from_runs = lab_data.agent_conditions(bare, runs=runs).set_index("agent")
    assert from_runs["condition"].to_dict() == {"shaped-dale-s0": "shaped · Dale", "shaped-dale-s1": "shaped · Dale",
                                                "unshaped-free-s0": "unshaped · free"}
    assert from_runs.loc["shaped-dale-s1", "seed"] == 1
    weights = lab_data.weight_files(lab["lab"], tables=tables)
    from_files = lab_data.agent_conditions(bare, weights=weights).set_index("agent")
    assert from_files["dale"].to_dict() == from_runs["dale"].to_dict()


def test_a_missing_sqlite_store_is_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert lab_data.load_runs(uri, {"a": "0" * 32}).empty
    assert lab_data.metric_history(uri, "0" * 32, "x").empty
    assert not (tmp_path / "mlflow.db").exists()


def test_connectivity_carries_the_files_time_constants(lab, tmp_path):
    from shaping.weights import load_weights, save_weights

    arrays, meta = load_weights(lab["weights"]["shaped-dale-s0"][-1])
    assert lab_data.load_connectivity(lab["weights"]["shaped-dale-s0"][-1]).tau is None  # no train_tau: none
    n = len(arrays["W_rec"])
    tau = np.linspace(10.0, 45.0, n).astype(np.float32)
    path = save_weights(tmp_path / "tau.npz", {**arrays, "tau": tau},
                        {**meta, "config": {**meta["config"], "dt": 5.0, "train_tau": True}})
    c = lab_data.load_connectivity(path)
    assert c.dt == 5.0 and np.array_equal(c.tau, tau) and np.allclose(c.tau_steps, tau / 5.0)
    no_dt = save_weights(tmp_path / "nodt.npz", {**arrays, "tau": tau}, {"config": {}})
    assert lab_data.load_connectivity(no_dt).tau_steps is None  # steps need dt
