"""shaping.tracking: the lab's parent run and the curriculum, against a real sqlite MLflow store."""
import io
import json
import logging
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from shaping import journal, tracking
from shaping.tasks.perceptual import PerceptualDiscrimination

REPO = Path(__file__).resolve().parents[2]
SPEC = {"kind": "stages", "window": 100,
        "stages": [{"name": "easy", "knobs": {"coherence": [0.5, 0.7]}, "criterion": {"accuracy": 0.8}},
                   {"name": "staircase", "knobs": {"coherence": 0.4}, "rule": "2-down/1-up"}]}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the test session's tracking modules (MLflow's migrations cost seconds)."""
    uri = tracking.default_tracking_uri(tmp_path_factory.getbasetemp() / "mlflow-store")
    tracking.ensure_experiment(uri, "tests")
    return uri


@pytest.fixture
def client(store):
    return MlflowClient(tracking_uri=store)


def artifact_paths(client, run_id, path=None):
    out = []
    for f in client.list_artifacts(run_id, path):
        out.extend(artifact_paths(client, run_id, f.path) if f.is_dir else [f.path])
    return out


def load_png(client, run_id, path, tmp_path):
    local = client.download_artifacts(run_id, path, str(tmp_path))
    data = Path(local).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        im.verify()


def play(tracker, agent, n_batches=10, seed=0):
    """Drive the hooks as the server would: stage 0 (a list-valued knob) for 4 batches, a graduation, then a
    staircase on a scalar knob with two reversals. Returns what was fed."""
    task = PerceptualDiscrimination(N_batch=64, T=300, seed=seed)
    rng = np.random.default_rng(seed)
    fed, logs, n = [], [], 0
    for b in range(n_batches):
        stage = 0 if b < 4 else 1
        knobs = dict(SPEC["stages"][stage]["knobs"])
        if stage == 1:
            knobs["coherence"] = [0.4, 0.3, 0.2, 0.3, 0.2, 0.1][b - 4]
        batch = task.generate(64, knobs=knobs, batch_id=b)
        y_hat = batch.y + rng.normal(0, 0.4 + 0.1 * b, batch.y.shape).astype(np.float32)
        scored = task.score(batch.y, y_hat, batch.mask, batch.params)
        scored.insert(0, "batch", b)
        scored["stage"], scored["stage_index"] = SPEC["stages"][stage]["name"], stage
        n += len(scored)
        events = []
        if b == 3:
            events.append({"event": "graduated", "trial": n, "stage": "easy", "stage_index": 0,
                           "accuracy": 0.81, "rule": {"accuracy": 0.8, "window": 100}})
        if b in (6, 8):
            events.append({"event": "reversal", "trial": n, "stage": "staircase", "stage_index": 1,
                           "accuracy": None, "rule": "2-down/1-up"})
        conditions = {"stage": scored["stage"][0], "stage_index": stage, "knobs": knobs}
        policy_accuracy = None if b == 0 else 0.5 + 0.03 * b  # a policy keeps none before its first batch
        tracker.on_scored(agent, scored, events, conditions, n, policy_accuracy=policy_accuracy)
        fed.append({"step": n, "scored": scored, "events": events, "knobs": knobs, "stage": stage,
                    "policy_accuracy": policy_accuracy})
        logs.append(scored)
    return fed, pd.concat(logs, ignore_index=True)


# ---------------------------------------------------------------------------------------------- helpers
def test_default_uri_is_absolute_sqlite(tmp_path):
    uri = tracking.default_tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert tracking.default_artifact_root(uri) == str(tmp_path.resolve() / "mlartifacts")
    assert tracking.default_artifact_root("http://127.0.0.1:5000") is None


def test_flatten_params_reads_well_and_round_trips():
    params = tracking.flatten_params(SPEC, "policy")
    assert params["policy.kind"] == "stages"
    assert params["policy.stages.0.knobs.coherence"] == "[0.5, 0.7]"
    assert params["policy.stages.1.knobs.coherence"] == "0.4"
    assert params["policy.stages.0.criterion.accuracy"] == "0.8"
    assert tracking.unflatten_params({**params, "other.x": "1"}, "policy") == SPEC


def test_flatten_params_truncates_long_values_and_cleans_keys():
    params = tracking.flatten_params({"weights": list(range(5000)), "odd key!": None, "fn": np.tanh,
                                      "x": np.float32(0.5), "nested": {"a": {}}}, "model")
    value = params["model.weights"]
    assert len(value) == tracking.MAX_PARAM_VALUE_CHARS and value.endswith("chars]")
    assert params["model.odd key_"] == "null"
    assert params["model.fn"] == "numpy.tanh"
    assert params["model.x"] == "0.5"
    assert params["model.nested.a"] == "{}"


@pytest.mark.parametrize("value, expected", [(0.3, 0.3), ([0.1, 0.3], 0.2), ({"uniform": [0, 1]}, 0.5),
                                             (True, 1.0), ("easy", None), ([], None)])
def test_knob_scalar(value, expected):
    assert tracking.knob_scalar(value) == expected


# ---------------------------------------------------------------------------------------------- lab run
def test_lab_run_has_config_provenance_and_children(store, client, tmp_path):
    config = {"experiment": "tests", "agents": [{"name": "a1", "N_rec": 50}], "seed": 3}
    lab = tracking.LabRun.start(store, "tests", config, run_name="lab-1")
    assert lab.enabled
    parent = client.get_run(lab.run_id)
    assert parent.info.run_name == "lab-1"
    tags = parent.data.tags
    assert tags["versions.numpy"] == np.__version__ and tags["versions.mlflow"]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:
        assert tags["mlflow.source.git.commit"] == commit.stdout.strip() == tags["skinnerbox.git_commit"]
    local = client.download_artifacts(lab.run_id, "lab_config.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == config

    run = lab.child("a1")
    assert run == lab.child("a1")  # one child per agent
    assert set(run) == {"tracking_uri", "experiment_id", "run_id", "parent_run_id", "run_name"}
    json.dumps(run)
    child = client.get_run(run["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == lab.run_id
    assert child.info.run_name == "a1" and run["experiment_id"] == parent.info.experiment_id
    again = tracking.LabRun.attach(store, lab.run_id)  # a resumed lab finds the same child
    assert again.child("a1")["run_id"] == run["run_id"]
    assert again.child("a2")["run_id"] != run["run_id"]
    lab.end()
    assert client.get_run(lab.run_id).info.status == "FINISHED"


# ---------------------------------------------------------------------------------------------- curriculum
@pytest.fixture(scope="module")
def played(store):
    """One lab, one agent through 10 batches, flushed and ended."""
    lab = tracking.LabRun.start(store, "tests", {"lab": "played"})
    tracker = tracking.CurriculumTracker(lab, window_trials=100, flush_interval_s=3600, flush_metrics=10_000)
    client = lab.client
    calls = []
    log_batch = client.log_batch
    client.log_batch = lambda *a, **k: (calls.append(len(k.get("metrics", ()))), log_batch(*a, **k))[1]
    task_spec = PerceptualDiscrimination(N_batch=64, T=300, seed=0).spec()
    run = tracker.on_session_start("a1", SPEC, task_spec)
    fed, log = play(tracker, "a1")
    tracker.on_session_end("a1", log)
    assert tracker.flush(timeout_s=120)
    return {"run": run, "fed": fed, "log": log, "calls": calls, "task_spec": task_spec, "lab": lab}


def test_curriculum_params_are_the_flattened_specs(played, client, tmp_path):
    params = client.get_run(played["run"]["run_id"]).data.params
    policy = {k: v for k, v in params.items() if k.startswith("policy.")}
    assert policy == tracking.flatten_params(SPEC, "policy")
    assert params["task.task"] == "PerceptualDiscrimination" and params["task.N_batch"] == "64"
    local = client.download_artifacts(played["run"]["run_id"], "curriculum/policy.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == SPEC


def test_metric_histories_equal_what_was_fed(played, client):
    run_id, fed = played["run"]["run_id"], played["fed"]
    steps = [f["step"] for f in fed]

    def history(key):
        h = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        return [m.step for m in h], [m.value for m in h]

    # a knob as drawn: a set of choices as its min and max, a fixed value as itself (never a mean)
    choices = [f for f in fed if isinstance(f["knobs"]["coherence"], list)]
    fixed = [f for f in fed if not isinstance(f["knobs"]["coherence"], list)]
    assert len(choices) == 4 and len(fixed) == 6
    assert history("knob/coherence") == ([f["step"] for f in fixed], [f["knobs"]["coherence"] for f in fixed])
    assert history("knob/coherence/min") == ([f["step"] for f in choices], [0.5] * 4)
    assert history("knob/coherence/max") == ([f["step"] for f in choices], [0.7] * 4)
    assert history("curriculum/stage_index") == (steps, [float(f["stage"]) for f in fed])
    assert history("curriculum/reversals")[1] == [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    acc = [float((f["scored"].outcome == "correct").mean()) for f in fed]
    assert history("curriculum/accuracy") == (steps, pytest.approx(acc))
    window, expected = [], []
    for f in fed:  # the recent accuracy: the last 100 trials, across stages
        window = (window + (f["scored"].outcome == "correct").tolist())[-100:]
        expected.append(np.mean(window))
    assert history("curriculum/accuracy_window")[1] == pytest.approx(expected)
    assert history("curriculum/policy_accuracy") == (steps[1:], pytest.approx([f["policy_accuracy"] for f in fed[1:]]))


def test_metrics_are_written_in_batches(played):
    # 10 batches × 5 metrics, + the knob (min and max in the 4 batches of choices, the value in the 6 others),
    # + policy_accuracy from the second batch: buffered until an event or the end, never one call per value
    metric_calls = [n for n in played["calls"] if n]
    assert sum(metric_calls) == 10 * 5 + 4 * 2 + 6 + 9
    assert len(metric_calls) <= 4  # graduation, two reversals, end


def test_events_table_trial_log_and_figures(played, client, tmp_path):
    run_id = played["run"]["run_id"]
    paths = artifact_paths(client, run_id)
    local = client.download_artifacts(run_id, "curriculum/events.json", str(tmp_path))
    table = json.loads(Path(local).read_text())
    events = pd.DataFrame(table["data"], columns=table["columns"])
    assert events["event"].tolist() == ["graduated", "reversal", "reversal"]
    assert events["trial"].tolist() == [256, 448, 576] and events["step"].tolist() == [256, 448, 576]
    assert json.loads(events["rule"][0]) == {"accuracy": 0.8, "window": 100}

    local = client.download_artifacts(run_id, "curriculum/trials.parquet", str(tmp_path))
    log = pd.read_parquet(local)
    pd.testing.assert_frame_equal(log, played["log"], check_dtype=False)

    for name in ("psychometric/00_easy.png", "psychometric/01_staircase.png", "timeline.png", "curves.png"):
        assert f"curriculum/{name}" in paths
        load_png(client, run_id, f"curriculum/{name}", tmp_path)
    assert client.get_run(run_id).info.status == "FINISHED"


def test_an_operator_override_is_in_the_events_table_at_its_trial_count(store, client, tmp_path):
    lab = tracking.LabRun.start(store, "tests", {"lab": "override"})
    tracker = tracking.CurriculumTracker(lab, flush_interval_s=3600)
    run = tracker.on_session_start("a1", SPEC, PerceptualDiscrimination(N_batch=64, T=300).spec())
    play(tracker, "a1", n_batches=2)
    tracker.on_override("a1", [{"event": "override", "trial": 128, "stage": "staircase", "stage_index": 1,
                                "from_stage": "easy", "to_stage": "staircase", "rule": "manual set_stage(1)",
                                "note": "moved by hand"}], 128)
    assert tracker.flush(timeout_s=60)
    local = client.download_artifacts(run["run_id"], "curriculum/events.json", str(tmp_path))
    table = json.loads(Path(local).read_text())
    events = pd.DataFrame(table["data"], columns=table["columns"])
    assert events[["event", "step", "to_stage", "note"]].values.tolist() == \
        [["override", 128, "staircase", "moved by hand"]]


def test_hooks_are_cheap(store):
    """The server's cost per on_scored stays far below a training step (measured, not mocked)."""
    lab = tracking.LabRun.start(store, "tests", {"lab": "timing"})
    tracker = tracking.CurriculumTracker(lab, flush_interval_s=3600, flush_metrics=10_000)
    tracker.on_session_start("fast", SPEC, {})
    scored = pd.DataFrame({"outcome": ["correct", "error"] * 64, "stage_index": 0})
    conditions = {"stage": "easy", "stage_index": 0, "knobs": {"coherence": [0.5, 0.7], "stim_noise": 0.1}}
    t0 = time.perf_counter()
    for b in range(200):
        tracker.on_scored("fast", scored, [], conditions, (b + 1) * 128)
    per_batch_ms = (time.perf_counter() - t0) / 200 * 1e3
    assert tracker.flush(timeout_s=60)
    assert len(lab.client.get_metric_history(tracker.lab.child("fast")["run_id"], "knob/coherence/max")) == 200
    assert per_batch_ms < 5, f"on_scored took {per_batch_ms:.2f} ms per batch"


# ---------------------------------------------------------------------------------------------- failures
def test_unreachable_store_is_a_no_op_with_one_warning(caplog):
    caplog.set_level(logging.WARNING)
    t0 = time.monotonic()
    lab = tracking.LabRun.start("http://127.0.0.1:9", "tests", {"lab": "offline"})
    tracker = tracking.CurriculumTracker(lab)
    run = tracker.on_session_start("a1", SPEC, {})
    assert run["run_id"] is None and run["tracking_uri"] == "http://127.0.0.1:9"
    fed, log = play(tracker, "a1", n_batches=5)
    tracker.on_session_end("a1", log)
    assert tracker.flush(timeout_s=10)
    lab.end()
    assert time.monotonic() - t0 < 10
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "http://127.0.0.1:9" in warnings[0].getMessage()
    assert not lab.enabled and not tracker.enabled


def test_store_lost_mid_session_warns_once_and_stops(store, tmp_path, caplog):
    shutil.copyfile(store[len("sqlite:///"):], tmp_path / "mlflow.db")  # a store of its own, migrated
    uri = tracking.default_tracking_uri(tmp_path)
    lab = tracking.LabRun.start(uri, "tests", {"lab": "lost"})
    tracker = tracking.CurriculumTracker(lab, flush_interval_s=3600, flush_metrics=1)
    tracker.on_session_start("a1", SPEC, {})
    assert tracker.flush(timeout_s=60) and lab.enabled
    (tmp_path / "mlflow.db").unlink()  # the store disappears under a running lab
    (tmp_path / "mlflow.db").mkdir()
    caplog.set_level(logging.WARNING)
    play(tracker, "a1", n_batches=4)
    assert tracker.flush(timeout_s=60)
    ours = [r for r in caplog.records if r.name == "shaping.tracking" and r.levelno >= logging.WARNING]
    assert len(ours) == 1 and not lab.enabled


def test_a_bad_call_is_skipped_without_turning_tracking_off(store, client, caplog):
    lab = tracking.LabRun.start(store, "tests", {"lab": "changed spec"})
    tracker = tracking.CurriculumTracker(lab, background=False)
    run = tracker.on_session_start("a1", {"kind": "stages"}, {})
    caplog.set_level(logging.WARNING)
    tracker.on_session_start("a1", {"kind": "staircase"}, {})  # MLflow refuses to change a param
    assert lab.enabled and len([r for r in caplog.records if "failed and was skipped" in r.getMessage()]) == 1
    tracker.on_scored("a1", pd.DataFrame({"outcome": ["correct"]}), [], {"stage_index": 0}, 1)
    tracker.flush()
    assert client.get_metric_history(run["run_id"], "curriculum/accuracy")[0].value == 1.0


# ---------------------------------------------------------------------------------------------- processes
WRITER = textwrap.dedent("""
    import sys, time
    from shaping import tracking
    from mlflow import MlflowClient
    from mlflow.entities import Metric
    uri, worker = sys.argv[1:]
    eid = tracking.ensure_experiment(uri, "race")  # three processes create one new store and experiment
    client = MlflowClient(tracking_uri=uri)
    guard = tracking.StoreGuard(uri)
    own = client.create_run(eid, run_name="w" + worker).info.run_id
    with tracking.store_lock(uri):  # the first one in creates the run all three share
        found = client.search_runs([eid], "attributes.run_name = 'shared'")
        shared = found[0].info.run_id if found else client.create_run(eid, run_name="shared").info.run_id
    while len(client.search_runs([eid])) < 4:  # barrier: write only once all three are up
        time.sleep(0.05)
    for k in range(8):
        metrics = [Metric("w" + worker, float(k * 125 + i), tracking.now_ms(), k * 125 + i) for i in range(125)]
        guard.run("shared", tracking.log_metrics_batched, client, shared, metrics)
        guard.run("own", tracking.log_metrics_batched, client, own, metrics)
    sys.exit(0 if guard.enabled else 1)
""")


@pytest.mark.procs
def test_three_processes_write_one_store_at_once(tmp_path):
    uri = tracking.default_tracking_uri(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, uri, str(w)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for w in range(3)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    client = MlflowClient(tracking_uri=uri)
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs([client.get_experiment_by_name("race")
                                                                       .experiment_id])}
    assert sorted(runs) == ["shared", "w0", "w1", "w2"]
    for w in range(3):
        for run in ("shared", f"w{w}"):
            history = client.get_metric_history(runs[run], f"w{w}")
            assert sorted(m.step for m in history) == list(range(1000))
            assert all(m.value == m.step for m in history)


# ---------------------------------------------------------------------------------------------- sync
def write_journal(path, agents=("a1", "a2")):
    """A real journal (shaping.journal) of two agents, batches interleaved as a server writes them."""
    task = PerceptualDiscrimination(N_batch=32, T=300, seed=0)
    rng = np.random.default_rng(0)
    with journal.Journal(path, fsync="never") as j:
        for agent in agents:
            j.write(journal.HELLO, {"agent": agent, "session": f"{agent}-s1", "curriculum": "stages",
                                    "spec": SPEC, "task": {"name": "PerceptualDiscrimination", "T": 300},
                                    "epoch": 0, "resumed": False, "time": time.time(), "seed": 0, "info": {},
                                    "run": {}})
        for b in range(6):
            for agent in agents:
                stage = int(b >= 3)
                knobs = {"coherence": [0.5, 0.7] if stage == 0 else 0.4 - 0.1 * (b - 3), "stim_noise": 0.1}
                batch = task.generate(32, knobs=knobs, batch_id=b)
                y_hat = batch.y + rng.normal(0, 0.5, batch.y.shape).astype(np.float32)
                scored = task.score(batch.y, y_hat, batch.mask, batch.params)
                events = [{"event": "graduated", "trial": 96, "stage": "easy", "stage_index": 0}] \
                    if b == 2 else []
                j.append_batch(agent=agent, session=f"{agent}-s1", batch=b, epoch=0,
                               task="PerceptualDiscrimination", stage=SPEC["stages"][stage]["name"],
                               stage_index=stage, knobs=knobs, scored=scored, events=events,
                               state={"trials": 32 * (b + 1)}, policy_accuracy=None if b == 0 else 0.1 * b)


def test_sync_rebuilds_the_runs_from_a_journal(store, client, tmp_path):
    write_journal(tmp_path / "journal")
    result = tracking.sync(tmp_path / "journal", store, "synced", lab_config={"lab": "synced"})
    assert not result["skipped"] and set(result["runs"]) == {"a1", "a2"}
    batches = journal.load_batches(tmp_path / "journal")
    for agent, run in result["runs"].items():
        r = client.get_run(run["run_id"])
        assert r.data.tags["mlflow.parentRunId"] == result["parent_run_id"]
        assert {k: v for k, v in r.data.params.items() if k.startswith("policy.")} == \
            tracking.flatten_params(SPEC, "policy")
        assert r.data.params["task.name"] == "PerceptualDiscrimination"
        assert r.data.tags["mlflow.note.content"] == "curriculum stages (stages: easy → staircase)"  # HELLO's name
        mine = batches[batches.agent == agent]
        history = sorted(client.get_metric_history(run["run_id"], "knob/coherence"), key=lambda m: m.step)
        assert [m.step for m in history] == list(32 * np.arange(4, 7))  # the staircase's fixed values
        assert [m.value for m in history] == pytest.approx(list(mine["knob.coherence"][3:]))
        history = sorted(client.get_metric_history(run["run_id"], "knob/coherence/max"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(32, 0.7), (64, 0.7), (96, 0.7)]  # the choices [0.5, 0.7]
        acc = sorted(client.get_metric_history(run["run_id"], "curriculum/accuracy"), key=lambda m: m.step)
        assert [m.value for m in acc] == pytest.approx(mine["accuracy"].tolist())
        pacc = sorted(client.get_metric_history(run["run_id"], "curriculum/policy_accuracy"), key=lambda m: m.step)
        assert [(m.step, m.value) for m in pacc] == [(32 * (b + 1), pytest.approx(0.1 * b)) for b in range(1, 6)]
        paths = artifact_paths(client, run["run_id"])
        assert {"curriculum/trials.parquet", "curriculum/events.json", "curriculum/psychometric/00_easy.png",
                "curriculum/psychometric/01_staircase.png"} <= set(paths)
    again = tracking.sync(tmp_path / "journal", store, "synced")
    assert again["skipped"] and again["parent_run_id"] == result["parent_run_id"]


def test_sync_keeps_an_override_made_before_the_first_scored_batch(store, client, tmp_path):
    from server_thread import ServerThread

    from shaping.client import TaskClient, override

    cfg = {"task": {"name": "PerceptualDiscrimination", "T": 300, "N_batch": 16}, "seed": 0,
           "curricula": {"s": {"kind": "stages", "stages": [{"name": "easy", "knobs": {}},
                                                            {"name": "staircase", "knobs": {}}]}},
           "journal": str(tmp_path / "journal")}
    with ServerThread(cfg) as srv, TaskClient(srv.endpoint, "a1") as agent:
        agent.hello()
        override(srv.endpoint, "a1", stage="staircase", note="skip ahead")  # nothing scored yet: batch -1
        batch = agent.get()
        agent.result(batch, batch.y)
    run_id = tracking.sync(tmp_path / "journal", store, "synced-override")["runs"]["a1"]["run_id"]
    local = client.download_artifacts(run_id, "curriculum/events.json", str(tmp_path))
    table = json.loads(Path(local).read_text())
    events = pd.DataFrame(table["data"], columns=table["columns"])
    assert events[["event", "to_stage", "note"]].values.tolist()[0] == ["override", "staircase", "skip ahead"]


def test_a_closed_writer_lists_the_writes_it_refuses(tmp_path):
    """After close() gave up (abandon), a write submitted later (a hook held during a journal replay) was
    refused without a word; it is listed with the dropped ones."""
    writer = tracking.BackgroundWriter(tracking.StoreGuard(f"sqlite:///{tmp_path / 'mlflow.db'}"))
    ran = []
    writer.submit("log curriculum metrics", ran.append, 1)
    assert writer.drain(10) and ran == [1] and not writer.closed
    writer.abandon()
    writer.submit("log trial log and figures", ran.append, 2)
    assert writer.closed and ran == [1] and writer.dropped == ["log trial log and figures"]
