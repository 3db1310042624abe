"""Protocol 2: trials built beside the agent from what the server decides, scored on the server.

The trial stream and the journal must be the same, trial by trial, as when the server builds the trials; a
version 1 agent keeps working; a mismatch of versions or task code is refused with BUILD_MISMATCH; bad
outputs are refused without harming the session.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from loophelp import Raw, ServerThread
from loophelp import config as small_config

from shaping import journal, protocol
from shaping.client import AgentTrials, TaskClient
from shaping.protocol import ProtocolError
from shaping.tasks import catalog, make
from shaping.tasks.base import gather_window, mask_window, scatter_window
from shaping.tasks.build import fingerprint, versions

NAMES = catalog()["name"].tolist()


def config(journal, **overrides) -> dict:
    """The small test server's config with a 1 s heartbeat: a loaded machine stalling a thread for a second
    must not make a client give its session up (these tests do not wait on heartbeats)."""
    return small_config(journal, **{"heartbeat_interval_s": 1.0, **overrides})

# a shaped curriculum that exercises what the server decides: stages, a staircase, a stage that switches to a
# longer task, and bias correction with correction repeats and a side rule
SHAPED = {
    "kind": "bias",
    "repeat": {"max_per_batch": 4},
    "side": {"rule": "thresholded_linear", "window": 32, "threshold": 0.05},
    "policy": {
        "kind": "stages", "window": 32,
        "stages": [
            {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.6, "min_trials": 32}},
            {"name": "titrate", "knobs": {"coherence": {"staircase": {"start": 0.4, "down": 2, "step": 0.05,
                                                                      "bounds": [0.05, 1.0]}}},
             "graduate": {"min_trials": 48}},
            {"name": "long", "task": {"name": "PerceptualDiscrimination", "dt": 10, "T": 700, "N_batch": 16},
             "knobs": {"coherence": [0.1, 0.5]}, "graduate": {"min_trials": 48}},
        ]},
}


def noisy_answer(y: np.ndarray, batch_id: int, p_flip: float = 0.3) -> np.ndarray:
    """Outputs near the targets, with some trials' channels swapped, in steps of 1/64 (exact in float16 and
    in any order of summation): a deterministic function of the targets and the batch id."""
    rng = np.random.default_rng(batch_id)
    y_hat = np.array(y, dtype=np.float32)
    flip = rng.random(len(y_hat)) < p_flip
    y_hat[flip] = y_hat[flip][..., ::-1]
    y_hat += np.round(rng.normal(0, 0.2, y_hat.shape) * 64) / 64
    return y_hat.astype(np.float32)


def run_agent(endpoint: str, name: str, batches: int, curriculum: str | None = None, **kw) -> TaskClient:
    with TaskClient(endpoint, name, curriculum=curriculum, timeout_s=10, **kw) as c:
        c.hello()
        for _ in range(batches):
            b = c.get()
            score = c.result(b, noisy_answer(b.y, b.batch_id))
            assert score is not None
            if score.complete:
                break
    return c


def journal_tables(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = journal.load(path).drop(columns=["session", "time"]).reset_index(drop=True)
    events = journal.load_events(path)
    events = events.drop(columns=[c for c in ("session", "time") if c in events.columns]).reset_index(drop=True)
    return trials, events


def run_both(tmp_path, batches: int, **cfg) -> dict:
    out = {}
    for build in ("server", "agent"):
        with ServerThread(config(tmp_path / build, build=build, **cfg)) as st:
            c = run_agent(st.endpoint, "mouse", batches, **cfg.pop("_client", {}))
            out[build] = c
    return out


def test_the_journal_is_the_same_trial_by_trial_whoever_builds_the_trials(tmp_path):
    cfg = config(tmp_path, curricula={"shaped": SHAPED})
    for build in ("server", "agent"):
        with ServerThread({**cfg, "journal": str(tmp_path / build), "build": build}) as st:
            c = run_agent(st.endpoint, "mouse", 40)
            assert c.builds_trials == (build == "agent")
    (t_server, e_server), (t_agent, e_agent) = (journal_tables(tmp_path / b) for b in ("server", "agent"))
    assert len(t_server) >= 10 * 16 and c.complete  # the curriculum ran to its end
    pd.testing.assert_frame_equal(t_server, t_agent)
    pd.testing.assert_frame_equal(e_server, e_agent)
    # the run exercised what the server decides: graduations, a task switch, correction trials, stale batches
    assert {"easy", "titrate", "long"} <= set(t_agent["stage"])
    assert t_agent["correction"].any() and (t_agent["outcome"] != "correct").any()
    assert (t_agent["task"] == "PerceptualDiscrimination").all()
    hellos = [rec for _, rec in journal.iter_records(tmp_path / "agent", kinds=[journal.HELLO])]
    assert [(h["build"], h["version"]) for h in hellos] == [("agent", 2)]


@pytest.mark.parametrize("name", NAMES)
def test_every_task_scores_the_same_from_its_window_as_from_its_whole_outputs(name, tmp_path):
    task = make(name, N_batch=32, seed=3)
    batch = task.generate(batch_id=5)
    y_hat = noisy_answer(batch.y, 5)
    whole = task.score(batch.y, y_hat, batch.mask, batch.params)
    drawn = task.draw_for_scoring(32, None, 5)  # what the server holds: no trials for a task scored from params
    assert drawn.built == (not task.scores_without_trials)
    pd.testing.assert_frame_equal(drawn.params, batch.params)
    rows = task.window_rows(batch, y_hat)
    start, stop = task.scoring_window(batch)
    assert rows.shape == (int((stop - start).sum()), task.N_out)
    pd.testing.assert_frame_equal(task.score_rows(drawn, rows), whole)
    if task.scores_without_trials:  # the declared window is exactly where the mask is 1 on every output
        live = np.zeros(batch.mask.shape[:2], bool)
        for i, (a, b) in enumerate(zip(*task.response_window(batch.params))):
            live[i, a:b] = True
        assert (batch.mask[live] == 1).all() and (batch.mask[~live] == 0).all()


def test_every_task_round_trips_through_an_agent_building_its_trials(tmp_path):
    for name in NAMES:
        cfg = config(tmp_path / name, task={"name": name, "N_batch": 8}, curricula={"fixed": {"kind": "fixed"}},
                     build="agent")
        with ServerThread(cfg) as st, TaskClient(st.endpoint, "a", timeout_s=10) as c:
            b = c.get()
            assert c.builds_trials and b.built is not None
            score = c.result(b, b.y)
            assert score.accuracy == 1.0, name


def test_windows_gather_and_scatter_back():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 7, 3)).astype(np.float32)
    mask = np.zeros_like(a)
    for i, (s, e) in enumerate([(0, 7), (2, 5), (3, 3), (6, 7), (1, 2)]):
        mask[i, s:e, i % 3] = 1.0
    start, stop = mask_window(mask)
    assert start.tolist() == [0, 2, 0, 6, 1] and stop.tolist() == [7, 5, 0, 7, 2]
    rows = gather_window(a, start, stop)
    assert rows.shape == (7 + 3 + 0 + 1 + 1, 3)
    np.testing.assert_array_equal(rows[7:10], a[1, 2:5])
    back = np.zeros_like(a)
    scatter_window(back, rows, start, stop)
    np.testing.assert_array_equal(back * (mask.sum(-1, keepdims=True) > 0), a * (mask.sum(-1, keepdims=True) > 0))


WINDOWED = {"name": "DelayedDiscrimination", "N_batch": 16}  # its own choice rule reads its window: "window"


def test_what_comes_back_is_a_fraction_of_the_batch_and_float16_rows_are_scored(tmp_path):
    with ServerThread(config(tmp_path / "pd", build="agent")) as st, TaskClient(st.endpoint, "a", timeout_s=10) as c:
        b = c.get()  # PerceptualDiscrimination: scored from each trial's window means
        assert b.readout == "mean" and b.built_by.window_mean_outputs(b.built, b.y).shape == (16, 2)
        assert c.result(b, b.y).accuracy == 1.0
    cfg = config(tmp_path / "cdm", build="agent", task=WINDOWED, curricula={"fixed": {"kind": "fixed"}})
    with ServerThread(cfg) as st, TaskClient(st.endpoint, "a", timeout_s=10, outputs_dtype="float16") as c:
        b = c.get()
        assert b.readout == "window"
        rows = b.built_by.window_rows(b.built, b.y, np.float16)
        assert rows.nbytes < 0.3 * (b.x.nbytes + b.y.nbytes + b.mask.nbytes + b.y.nbytes)
        assert c.result(b, b.y).accuracy == 1.0


def hello(raw: Raw, agent: str, version: int = 2, **extra) -> protocol.Message:
    raw.send(protocol.encode("HELLO", {"agent": agent, **extra}, version=version))
    return raw.recv()


def test_a_version_1_agent_is_served_trials_built_by_the_server(tmp_path):
    with ServerThread(config(tmp_path, build="agent")) as st:
        raw = Raw(st.endpoint)
        try:
            w = hello(raw, "old", version=1, build="agent", versions=versions())
            assert w.type == "WELCOME" and w.version == 1 and "build" not in w.header
            raw.send(protocol.encode("GET", {}, version=1))
            b = raw.recv()
            assert b.type == "BATCH" and b.version == 1 and "build" not in b.header
            raw.send(protocol.encode("RESULT", {"batch": b.header["batch"], "epoch": b.header["epoch"]},
                                     {"y_hat": b.arrays["y"]}, version=1))
            s = raw.recv()
            assert s.type == "SCORE" and s.version == 1 and s.header["accuracy"] == 1.0
            raw.send(protocol.encode("GET", {"n": 10**6}, version=1))
            e = raw.recv()
            assert e.type == "ERROR" and e.version == 1  # errors, too, in the agent's version
        finally:
            raw.close()


def test_other_versions_or_task_code_are_refused_with_build_mismatch(tmp_path):
    with ServerThread(config(tmp_path, build="agent")) as st:
        raw = Raw(st.endpoint)
        try:
            e = hello(raw, "a", build="agent", versions={**versions(), "numpy": "1.0.0"})
            assert e.type == "ERROR" and e.header["name"] == "BUILD_MISMATCH"
            assert "numpy '1.0.0'" in e.header["detail"] and np.__version__ in e.header["detail"]
            w = hello(raw, "a", build="agent", versions=versions())
            assert w.header["build"] == "agent" and w.header["fingerprint"] == fingerprint(w.header["tasks"])
            raw.send_msg("GET", {"fingerprint": "0" * 32})
            e = raw.recv()
            assert e.header["name"] == "BUILD_MISMATCH" and "task code or versions differ" in e.header["detail"]
            raw.send_msg("GET", {})  # a GET without the fingerprint is no better
            assert raw.recv().header["name"] == "BUILD_MISMATCH"
            raw.send_msg("GET", {"fingerprint": w.header["fingerprint"]})
            b = raw.recv()
            assert b.type == "BATCH" and not b.arrays and b.header["build"]["seed"] > 0
        finally:
            raw.close()
    with pytest.raises(ProtocolError) as err:  # the agent itself notices first
        AgentTrials(w.header["tasks"], "f" * 32)
    assert err.value.name == "BUILD_MISMATCH" and "build = \"server\"" in err.value.detail
    with pytest.raises(ProtocolError, match="cannot be built here"):
        AgentTrials({"k": {"name": "NoSuchTask"}}, None)


@pytest.mark.parametrize("task", [None, WINDOWED], ids=["means", "window"])
def test_bad_outputs_of_an_agent_built_batch_are_refused_and_the_session_carries_on(tmp_path, task):
    own = {"task": task, "curricula": {"fixed": {"kind": "fixed"}}} if task else {}
    with ServerThread(config(tmp_path, build="agent", **own)) as st:
        raw = Raw(st.endpoint)
        try:
            w = hello(raw, "a", build="agent", versions=versions())
            fp = w.header["fingerprint"]
            assert w.header["outputs"] == "float32"
            raw.send_msg("GET", {"fingerprint": fp})
            b = raw.recv()
            trials = AgentTrials(w.header["tasks"], fp)
            built_by, built = trials.build(b.header)
            assert b.header["build"]["readout"] == built_by.readout == ("window" if task else "mean")
            if task:
                rows, what = built_by.window_rows(built, built.y), "scoring windows"
            else:
                rows, what = built_by.window_mean_outputs(built, built.y), "mean outputs over its window"
            key = {"batch": b.header["batch"], "epoch": b.header["epoch"]}
            for bad, name in [(built.y, "BAD_SHAPE"), (rows[:-1], "BAD_SHAPE"),
                              (np.full_like(rows, np.nan), "BAD_VALUE")]:
                e = raw.request("RESULT", key, {"y_hat": bad})
                assert e.type == "ERROR" and e.header["name"] == name, e.header
            assert what in raw.request("RESULT", key, {"y_hat": rows[:-1]}).header["detail"]
            s = raw.request("RESULT", key, {"y_hat": rows.astype(np.float16)})
            assert s.type == "SCORE" and s.header["accuracy"] == 1.0
            assert raw.request("RESULT", key, {"y_hat": rows}).header["name"] == "ALREADY_SCORED"
        finally:
            raw.close()
    assert len(journal.load(tmp_path)) == 16


def test_the_server_sets_how_outputs_travel(tmp_path):
    with ServerThread(config(tmp_path, build="agent", outputs="float16")) as st:
        with TaskClient(st.endpoint, "a", timeout_s=10) as c:
            b = c.get()
            assert c.outputs_dtype == np.float16 and c.result(b, b.y).accuracy == 1.0
        with TaskClient(st.endpoint, "b", timeout_s=10, outputs_dtype="float32") as c:  # the agent's own choice
            c.get()
            assert c.outputs_dtype == np.float32


@pytest.mark.parametrize("task", [{"name": "user_tasks:MyTask", "T": 500, "N_batch": 16},
                                  {"name": "user_tasks:Flash", "T": 500, "N_batch": 16}], ids=["per-step", "accuracy"])
def test_a_psychrnn_users_task_built_by_the_agent_journals_the_same_trials(task, tmp_path):
    """A user's task on PsychRNN's per-step path (NumPy's global RNG, built on the client's own thread) and one
    scored by its accuracy_function (every step travels): the same journal as when the server builds them."""
    for build in ("server", "agent"):
        cfg = config(tmp_path / build, task=task, curricula={"fixed": {"kind": "fixed"}}, build=build)
        with ServerThread(cfg) as st:
            c = run_agent(st.endpoint, "mouse", 6)
            assert c.builds_trials == (build == "agent")
    (t_server, _), (t_agent, _) = (journal_tables(tmp_path / b) for b in ("server", "agent"))
    assert len(t_server) == 6 * 16
    pd.testing.assert_frame_equal(t_server, t_agent)
    assert (t_agent["outcome"] != "correct").any() and (t_agent["outcome"] == "correct").any()
