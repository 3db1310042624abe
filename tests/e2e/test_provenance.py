"""MLflow provenance of a real lab, end to end (issue 6).

The short lab (``short_lab``: a task server and two TensorFlow agent processes writing one sqlite store) is
read back with ``MlflowClient`` and compared with what the lab itself holds: its config, its journal, its
checkpoints and weight files. A second, tiny lab runs with an unreachable tracking server; ``skinnerbox sync``
then fills a fresh store from its journal. Last, the command ``make ui`` runs serves the short lab's store.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from labcfg import lab_config
from mlflow import MlflowClient
from mlflow.entities import Run

from shaping import journal, policies, tasks
from shaping.lab import Lab, agent_entry, model_spec
from shaping.tracking import flatten_params, unflatten_params

pytestmark = [pytest.mark.procs, pytest.mark.tf]

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WEIGHT_KEYS = ("W_in", "W_rec", "W_out", "b_rec", "b_out", "init_state")
FIGURES = ("W_rec.png", "eigenspectrum.png", "W_in.png", "W_out.png")


# ---------------------------------------------------------------------------------------------- reading a store
@dataclass
class Store:
    """One lab's experiment as the store holds it."""

    client: MlflowClient
    experiment_id: str
    parent: Run
    children: dict[str, Run]  # agent name -> child run


def read_store(tracking_uri: str, experiment: str) -> Store:
    """The experiment ``experiment`` of ``tracking_uri``: it must hold exactly one parent run."""
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {tracking_uri}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = {r.data.tags.get("skinnerbox.agent", r.info.run_name): r for r in runs
                if "mlflow.parentRunId" in r.data.tags}
    return Store(client, exp.experiment_id, parents[0], children)


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> dict[str, int]:
    """Every artifact file of a run under ``path``: relative path -> size in bytes."""
    out = {}
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out.update(artifact_paths(client, run_id, info.path))
        else:
            out[info.path] = info.file_size
    return out


def download(client: MlflowClient, run_id: str, path: str, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dst)))


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """A metric's ``(step, value)`` pairs in step order."""
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def hello_specs(journal_dir: Path) -> dict[str, dict]:
    """The policy spec the server ran for each agent (its last HELLO record)."""
    return {rec["agent"]: rec["spec"] for _, rec in journal.iter_records(journal_dir, kinds=[journal.HELLO])}


def make_task(cfg: dict) -> tasks.Task:
    """The lab's task, as the server builds it from ``[task]`` (its ``spec()`` is what WELCOME carries)."""
    return tasks.make(cfg["task"]["name"], **{k: v for k, v in cfg["task"].items() if k != "name"})


def knob_metrics(knob: str, value) -> dict[str, float]:
    """The documented metrics of a knob setting, as drawn: the number itself, or the min and max of a list of
    choices or of a uniform range (never a mean)."""
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict):
        value = value["uniform"]
    if isinstance(value, list):
        return {f"knob/{knob}/min": float(min(value)), f"knob/{knob}/max": float(max(value))}
    return {f"knob/{knob}": float(value)}


# ---------------------------------------------------------------------------------------------- shared checks
def check_curriculum_metrics(client: MlflowClient, run_id: str, journal_dir: Path, agent: str) -> None:
    """Knob, stage and accuracy metrics of ``agent``'s run equal its journal, batch by batch (step = trials
    scored so far)."""
    batches = journal.load_batches(journal_dir)
    mine = batches[batches["agent"] == agent].reset_index(drop=True)
    assert len(mine), f"no journaled batches for {agent}"
    steps = mine["n"].cumsum().astype(int).tolist()
    knobs = [c[len("knob."):] for c in mine.columns if c.startswith("knob.")]
    assert {"coherence", "stim_noise"} <= set(knobs)
    for knob in knobs:
        want: dict[str, list] = {}
        for step, value in zip(steps, mine[f"knob.{knob}"]):
            for key, v in knob_metrics(knob, value).items():
                want.setdefault(key, []).append((step, v))
        assert want, f"{agent}: knob {knob} logs nothing"
        for key, expected in want.items():
            got = history(client, run_id, key)
            assert [s for s, _ in got] == [s for s, _ in expected], f"{agent}: {key} steps"
            np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-12,
                                       err_msg=f"{agent}: {key}")
    got = history(client, run_id, "curriculum/stage_index")
    assert got == list(zip(steps, mine["stage_index"].astype(float))), f"{agent}: stage_index"
    got = history(client, run_id, "curriculum/accuracy")
    assert [s for s, _ in got] == steps
    np.testing.assert_allclose([v for _, v in got], mine["accuracy"].astype(float), rtol=1e-12)
    # the policy's own accuracy (its graduation criterion's), whenever it keeps one (not before a new stage's
    # first counted batch)
    kept = mine["policy_accuracy"].notna().to_numpy()
    assert kept.sum() >= len(mine) // 2, f"{agent}: a stages policy keeps an accuracy"
    got = history(client, run_id, "curriculum/policy_accuracy")
    assert [s for s, _ in got] == [s for s, k in zip(steps, kept) if k]
    np.testing.assert_allclose([v for _, v in got], mine.loc[kept, "policy_accuracy"].astype(float), rtol=1e-12)
    events = journal.load_events(journal_dir)
    n_reversals = int(((events["agent"] == agent) & (events["event"] == "reversal")).sum()) if len(events) else 0
    assert history(client, run_id, "curriculum/reversals")[-1][1] == n_reversals


def check_events_table(client: MlflowClient, run_id: str, journal_dir: Path, agent: str, tmp: Path) -> None:
    """``curriculum/events.json`` holds the journal's events of ``agent`` (graduations among them)."""
    table = json.loads(download(client, run_id, "curriculum/events.json", tmp).read_text())
    logged = pd.DataFrame(table["data"], columns=table["columns"])
    events = journal.load_events(journal_dir)
    mine = events[events["agent"] == agent]
    assert (mine["event"] == "graduated").any(), "the lab should have graduated every agent at least once"
    key = ["event", "trial", "stage"]
    want = sorted(map(tuple, mine[key].astype({"trial": int}).to_numpy().tolist()))
    got = sorted(map(tuple, logged[key].astype({"trial": int}).to_numpy().tolist()))
    assert got == want
    grads = logged[logged["event"] == "graduated"]
    assert (grads["step"].astype(int) == grads["trial"].astype(int)).all()


def _missing_as_none(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns with every missing value as None (parquet gives None back where the journal has NaN)."""
    out = df.copy()
    for col in [c for c, dtype in out.dtypes.items() if pd.api.types.is_object_dtype(dtype)]:
        out[col] = out[col].where(out[col].notna(), None)
    return out


def check_trial_log(client: MlflowClient, run_id: str, journal_dir: Path, agent: str, tmp: Path) -> None:
    """``curriculum/trials.parquet`` equals the journal's trials of ``agent``; one psychometric figure per
    stage the agent trained in."""
    logged = pd.read_parquet(download(client, run_id, "curriculum/trials.parquet", tmp))
    trials = journal.load(journal_dir)
    mine = trials[trials["agent"] == agent].reset_index(drop=True)
    pd.testing.assert_frame_equal(_missing_as_none(logged), _missing_as_none(mine), check_categorical=False)
    arts = artifact_paths(client, run_id, "curriculum/psychometric")
    stages = mine.drop_duplicates("stage_index")[["stage_index", "stage"]]
    want = {f"curriculum/psychometric/{int(i):02d}_{name}.png" for i, name in stages.to_numpy()}
    assert set(arts) == want
    for path in want:
        assert download(client, run_id, path, tmp).read_bytes()[:8] == PNG_MAGIC, path


# ---------------------------------------------------------------------------------------------- the short lab
@pytest.fixture(scope="module")
def store(short_lab: Lab) -> Store:
    return read_store(short_lab.tracking_uri, short_lab.config["lab"]["experiment"])


def test_one_parent_run_per_lab_and_one_child_per_agent(short_lab, store, tmp_path):
    import mlflow

    parent = store.parent
    assert parent.info.run_name == "short" and parent.info.status == "FINISHED"
    assert parent.data.tags["skinnerbox.role"] == "lab"
    logged = json.loads(download(store.client, parent.info.run_id, "lab_config.json", tmp_path).read_text())
    assert logged == short_lab.config
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert parent.data.tags["mlflow.source.git.commit"] == head
    assert parent.data.tags["versions.mlflow"] == mlflow.__version__
    assert parent.data.tags["versions.numpy"] == np.__version__
    assert parent.data.tags["versions.pandas"] == pd.__version__

    assert set(store.children) == {"free", "dale"}
    sessions = journal.load_sessions(short_lab.journal_dir)
    for agent, run in store.children.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == agent and run.info.status == "FINISHED"
        # The server handed this run to the agent in WELCOME: every HELLO of the agent names it.
        runs = sessions.loc[sessions["agent"] == agent, "run"]
        assert len(runs) and all(r["run_id"] == run.info.run_id for r in runs)
        # ...and both wrote into it: the server the curriculum, the agent its model.
        assert "policy.kind" in run.data.params and "model.N_rec" in run.data.params
    # Three processes wrote one sqlite store at once; none skipped a call or gave up on the store.
    logs = sorted((short_lab.dir / "logs").glob("*.log"))
    assert {p.stem for p in logs} >= {"server", "free", "dale"}
    for log in logs:
        assert "MLflow tracking" not in log.read_text(errors="replace"), log.name


def test_curriculum_params_are_the_flattened_policy_spec(short_lab, store, tmp_path):
    specs = hello_specs(short_lab.journal_dir)
    task = make_task(short_lab.config)
    for agent, run in store.children.items():
        spec = specs[agent]
        # The spec the server ran is the lab config's curriculum, normalised (same seed).
        cur = short_lab.config["curricula"][agent_entry(short_lab.config, agent)["curriculum"]]
        assert policies.from_spec(cur, task, seed=spec["seed"]).get_config() == spec
        params = {k: v for k, v in run.data.params.items() if k.startswith("policy.")}
        assert params == flatten_params(spec, "policy")
        assert unflatten_params(params, "policy") == spec
        # Readable names, readable values.
        assert params["policy.stages.0.name"] == "easy"
        assert params["policy.stages.1.knobs.coherence"] == "[0.3, 0.5, 0.7]"
        assert params["policy.stages.0.graduate.min_trials"] == "128"
        whole = json.loads(download(store.client, run.info.run_id, "curriculum/policy.json", tmp_path / agent)
                           .read_text())
        assert whole == spec


def test_curriculum_metrics_equal_the_journal(short_lab, store):
    for agent, run in store.children.items():
        check_curriculum_metrics(store.client, run.info.run_id, short_lab.journal_dir, agent)
        # the agent's own training loss: one value per scored batch, at the curriculum metrics' steps
        loss = history(store.client, run.info.run_id, "train/loss")
        assert [s for s, _ in loss] == [s for s, _ in history(store.client, run.info.run_id, "curriculum/accuracy")]
        assert all(np.isfinite(v) and v >= 0 for _, v in loss) and loss[-1][1] < loss[0][1]
        # Not a constant: the knob moved when the agent graduated, from a fixed 0.7 to a set drawn from 0.3..0.7
        # (logged as what was drawn, never as its mean 0.5).
        assert {v for _, v in history(store.client, run.info.run_id, "knob/coherence")} == {0.7}
        assert {v for _, v in history(store.client, run.info.run_id, "knob/coherence/min")} == {0.3}
        assert {v for _, v in history(store.client, run.info.run_id, "knob/coherence/max")} == {0.7}
        assert {v for _, v in history(store.client, run.info.run_id, "curriculum/stage_index")} == {0.0, 1.0}


def test_events_table_trial_log_and_psychometric_figures(short_lab, store, tmp_path):
    for agent, run in store.children.items():
        check_events_table(store.client, run.info.run_id, short_lab.journal_dir, agent, tmp_path / agent)
        check_trial_log(store.client, run.info.run_id, short_lab.journal_dir, agent, tmp_path / agent)
        arts = artifact_paths(store.client, run.info.run_id, "curriculum")
        assert {"curriculum/timeline.png", "curriculum/curves.png", "curriculum/task.json"} <= set(arts)


def test_constraint_params_equal_the_lab_config(short_lab, store):
    cfg = short_lab.config
    for agent, run in store.children.items():
        entry = agent_entry(cfg, agent)
        p = run.data.params
        assert p["model.model"] == "Basic"
        assert int(p["model.N_rec"]) == entry["N_rec"]
        assert float(p["model.learning_rate"]) == entry["learning_rate"]
        assert int(p["model.seed"]) == entry["seed"]
        assert float(p["model.tau"]) == cfg["task"]["tau"] and float(p["model.dt"]) == cfg["task"]["dt"]
        assert p["model.transfer_function"] == "relu" and float(p["model.rec_noise"]) == 0.0
        assert p["model.optimizer.class_name"] == "Adam"
        assert json.loads(p["constraint.dale_ratio"]) == entry.get("dale_ratio")
        assert json.loads(p["constraint.autapses"]) == entry.get("autapses", True)
        constraint = unflatten_params(p, "constraint")
        assert constraint["regions"] == entry.get("regions")
        assert "constraint.density.rec_connectivity" in p
    dale = store.children["dale"].data.params
    assert dale["constraint.regions.connections"] == json.dumps(agent_entry(cfg, "dale")["regions"]["connections"])
    # The region spec sets the recurrent density: A->A, B->B full, A->B 0.6, B->A 0.3, no autapses.
    assert 0.4 < float(dale["constraint.density.rec_connectivity"]) < 0.8


def test_connectivity_artifacts_at_every_graduation_and_at_the_end(short_lab, store, tmp_path):
    from agents.weights import load_weights

    events = journal.load_events(short_lab.journal_dir)
    trials = journal.load(short_lab.journal_dir)
    for agent, run in store.children.items():
        rid = run.info.run_id
        arts = artifact_paths(store.client, rid)
        folders = {p.split("/")[1] for p in arts if p.startswith("connectivity/")}
        changes = events[(events["agent"] == agent) & events["event"].isin(["graduated", "regressed"])]
        assert "final" in folders and len(folders) == len(changes) + 1, folders
        for folder in folders:
            for fig in FIGURES:
                path = f"connectivity/{folder}/{fig}"
                assert path in arts, path
                assert download(store.client, rid, path, tmp_path / agent).read_bytes()[:8] == PNG_MAGIC
            npz = [p for p in arts if p.startswith(f"connectivity/{folder}/") and p.endswith(".npz")]
            assert len(npz) == 1, npz
            arrays, meta = load_weights(download(store.client, rid, npz[0], tmp_path / agent / folder))
            assert meta["config"]["N_rec"] == agent_entry(short_lab.config, agent)["N_rec"]
        assert "constraints/masks.npz" in arts and "model/config.json" in arts
        # Step images: W_rec at the first batch, at each graduation and at the end, keyed by trial count.
        steps = {int(p.split("+step+")[1].split("+")[0]) for p in arts
                 if p.startswith("images/W_rec+step+") and p.endswith(".png")}
        last = int((trials["agent"] == agent).sum())
        assert set(changes["session_trials"].astype(int)) | {last} <= steps
        radius = dict(history(store.client, rid, "connectivity/spectral_radius"))
        assert set(radius) == steps
        assert run.data.tags.get("mlflow.loggedImages") == "True"


def test_final_weights_file_reproduces_the_last_checkpoint(short_lab, store, tmp_path):
    from agents import Basic, build_model
    from agents.weights import load_weights, read_npz

    cfg = short_lab.config
    task = make_task(cfg)
    spec = task.spec()
    x = task.get_trial_batch()[0][:8]
    for agent, run in store.children.items():
        arts = artifact_paths(store.client, run.info.run_id, "connectivity/final")
        (npz,) = [p for p in arts if p.endswith(".npz")]
        path = download(store.client, run.info.run_id, npz, tmp_path / agent)
        # Logged unchanged: the very file the agent wrote.
        assert path.read_bytes() == (short_lab.dir / "weights" / f"{agent}.npz").read_bytes()
        ckpt = build_model(model_spec(agent_entry(cfg, agent)), spec)
        ckpt.load_checkpoint(short_lab.dir / "checkpoints" / f"{agent}.ckpt.npz")
        arrays, _ = load_weights(path)
        mine = ckpt.get_weights()
        for key in WEIGHT_KEYS:
            np.testing.assert_array_equal(arrays[key], mine[key], err_msg=f"{agent}: {key}")
        loaded = Basic({"load_weights_path": str(path)})
        out_file, states_file = loaded.test(x)
        out_ckpt, states_ckpt = ckpt.test(x)
        np.testing.assert_allclose(out_file, out_ckpt, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(states_file, states_ckpt, rtol=1e-5, atol=1e-6)
        # The masks artifact is the masks the agent trained under.
        masks = read_npz(download(store.client, run.info.run_id, "constraints/masks.npz", tmp_path / agent))
        want = ckpt.masks()
        assert set(masks) == set(want)
        for key, mask in want.items():
            np.testing.assert_array_equal(masks[key], mask, err_msg=f"{agent}: {key}")


def test_dale_agent_logged_w_rec_has_dale_column_signs(short_lab, store, tmp_path):
    from agents.weights import load_weights

    run = store.children["dale"]
    entry = agent_entry(short_lab.config, "dale")
    arts = artifact_paths(store.client, run.info.run_id, "connectivity")
    files = sorted(p for p in arts if p.endswith(".npz"))
    assert len(files) >= 2  # a graduation and the end
    for npz in files:
        arrays, _ = load_weights(download(store.client, run.info.run_id, npz, tmp_path / npz.split("/")[1]))
        w, sign = arrays["W_rec"], np.diag(arrays["Dale_rec"])
        exc, inh = sign > 0, sign < 0
        assert exc.sum() == math.floor(entry["dale_ratio"] * entry["N_rec"]) and exc.sum() + inh.sum() == w.shape[0]
        assert (w[:, exc] >= 0).all(), f"{npz}: an E column has a negative weight"
        assert (w[:, inh] <= 0).all(), f"{npz}: an I column has a positive weight"
        assert (w[:, exc] > 0).any() and (w[:, inh] < 0).any()  # not all zero
        assert (np.diag(w) == 0).all(), f"{npz}: autapses = false but W_rec has a nonzero diagonal"
        assert (w[arrays["rec_connectivity"] == 0] == 0).all(), f"{npz}: a masked synapse is nonzero"


# ---------------------------------------------------------------------------------------------- store down, sync later
TINY_CURRICULUM = {
    "kind": "stages", "window": 32,
    "stages": [
        {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.0, "min_trials": 64}},
        {"name": "final", "knobs": {"coherence": [0.5, 0.7]}, "graduate": {"accuracy": 0.0, "min_trials": 64}},
    ],
}


def test_unreachable_store_then_sync_fills_a_fresh_store(tmp_path, caplog):
    cfg = lab_config(
        lab={"name": "offline", "experiment": "offline-lab", "seed": 5, "max_restarts": 0},
        curricula={"tiny": TINY_CURRICULUM},
        agents=[{"name": "solo", "curriculum": "tiny", "N_rec": 16, "learning_rate": 0.005, "seed": 4}])
    lab = Lab(cfg, workdir=tmp_path / "lab", tracking_uri="http://127.0.0.1:9", progress=False, timeout_s=120)
    with caplog.at_level(logging.WARNING, logger="shaping.tracking"):
        summary = lab.run().set_index("agent")
    assert summary.loc["solo", "complete"] and summary.loc["solo", "exit"] == 0, summary
    assert summary.loc["solo", "graduations"] == 1
    warnings = [r for r in caplog.records if r.name == "shaping.tracking" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "is off for the rest of this process" in warnings[0].getMessage()
    assert lab.lab_run is not None and lab.lab_run.run_id is None
    assert (tmp_path / "lab" / "weights" / "solo.npz").exists()  # training went on

    uri = f"sqlite:///{tmp_path / 'synced' / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "shaping.cli", "sync", str(lab.dir), "--tracking-uri", uri]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 agent run(s)" in done.stdout

    synced = read_store(uri, "offline-lab")
    logged = json.loads(download(synced.client, synced.parent.info.run_id, "lab_config.json", tmp_path / "p")
                        .read_text())
    assert logged == lab.config
    assert set(synced.children) == {"solo"}
    run = synced.children["solo"]
    assert run.data.tags["mlflow.parentRunId"] == synced.parent.info.run_id
    spec = hello_specs(lab.journal_dir)["solo"]
    assert {k: v for k, v in run.data.params.items() if k.startswith("policy.")} == flatten_params(spec, "policy")
    check_curriculum_metrics(synced.client, run.info.run_id, lab.journal_dir, "solo")
    check_events_table(synced.client, run.info.run_id, lab.journal_dir, "solo", tmp_path / "e")
    check_trial_log(synced.client, run.info.run_id, lab.journal_dir, "solo", tmp_path / "t")

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert again.returncode == 0 and "already synced" in again.stdout, again.stdout + again.stderr[-2000:]
    assert len(read_store(uri, "offline-lab").children) == 1


# ---------------------------------------------------------------------------------------------- make ui
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ui_command(store_dir: Path, port: int) -> list[str]:
    """The ``mlflow server`` command ``make ui`` runs for a store in ``store_dir``, on ``port`` (the Makefile
    fixes 5000, which another process may hold). ``make -n`` prints it without installing anything."""
    text = subprocess.run(["make", "-s", "-n", "-o", ".venv/.installed", "ui", f"CURDIR={store_dir}"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in text.replace("\\\n", " ").splitlines() if "mlflow server" in ln)
    args = shlex.split(line)
    args[args.index("--port") + 1] = str(port)
    return args


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.slow  # 7 s on an idle machine, up to 27 s measured on 2 busy cores (mlflow server's start)
@pytest.mark.skipif(shutil.which("make") is None or not (ROOT / ".venv" / "bin" / "mlflow").exists(),
                    reason="make ui needs make and the project's .venv (make install)")
def test_make_ui_serves_the_lab_store(short_lab, store):
    store_dir = Path(short_lab.tracking_uri[len("sqlite:///"):]).parent
    port = _free_port()
    args = ui_command(store_dir, port)
    assert args[:2] == [".venv/bin/mlflow", "server"] and "--workers" in args and "127.0.0.1" in args
    assert args[args.index("--backend-store-uri") + 1] == short_lab.tracking_uri
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(base + "/")
                break
            except OSError:
                time.sleep(0.25)
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-3000:]
        assert status == 200 and b"<html" in body.lower()
        status, body = _get(f"{base}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=short-lab")
        assert status == 200 and json.loads(body)["experiment"]["experiment_id"] == store.experiment_id
        status, body = _get(f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={store.parent.info.run_id}")
        assert status == 200 and "lab_config.json" in {f["path"] for f in json.loads(body).get("files", [])}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
