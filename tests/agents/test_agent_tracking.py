"""agents.tracking: constraint settings and learned connectivity in the agent's child run (real sqlite
store)."""
import io
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from agents.tracking import AgentTracker, split_config
from shaping import figures, tracking


class Initializer:
    """Stands for a Keras-style object: logged through its get_config."""

    def __init__(self, spectral_radius):
        self.spectral_radius = spectral_radius

    def get_config(self):
        return {"spectral_radius": self.spectral_radius}


CONFIG = {
    "kind": "rate_rnn", "N_in": 2, "N_rec": 12, "N_out": 2, "dt": 10, "tau": 100, "rec_noise": 0.05,
    "transfer_function": np.tanh, "seed": 7, "loss": "mean_squared_error", "optimizer": "adam",
    "learning_rate": 0.001, "initializer": Initializer(1.1), "regularizers": {"L2_rec": 0.01},
    "dale_ratio": 0.75, "autapses": False,
    "constraints": {"regions": [{"name": "A", "N": 6}, {"name": "B", "N": 6}], "p_connect": {"A>B": 0.2},
                    "fixed_fraction": 0.1},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The lab run, in one sqlite store for the test session's tracking modules (migrations cost seconds)."""
    uri = tracking.default_tracking_uri(tmp_path_factory.getbasetemp() / "mlflow-store")
    lab = tracking.LabRun.start(uri, "agents", {"lab": "agent tests"})
    return lab


@pytest.fixture
def child(run, request):
    return run.child(request.node.name[:60])


def artifact_paths(client, run_id, path=None):
    out = []
    for f in client.list_artifacts(run_id, path):
        out.extend(artifact_paths(client, run_id, f.path) if f.is_dir else [f.path])
    return out


def valid_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        im.verify()


def dale_weights(seed, N_rec=12, N_in=2, N_out=2):
    rng = np.random.default_rng(seed)
    sign = np.where(np.arange(N_rec) % 4 == 3, -1.0, 1.0)  # 3 E : 1 I, interleaved
    return {"W_in": rng.normal(size=(N_rec, N_in)).astype(np.float32),
            "W_rec": rng.normal(size=(N_rec, N_rec)).astype(np.float32),
            "W_out": rng.normal(size=(N_out, N_rec)).astype(np.float32),
            "b_rec": np.zeros(N_rec, np.float32), "b_out": np.zeros(N_out, np.float32),
            "init_state": rng.normal(size=(1, N_rec)).astype(np.float32),
            "Dale_rec": np.diag(sign).astype(np.float32), "dale_ratio": 0.75}, sign


def test_split_config_puts_constraints_apart():
    model, constraint = split_config(CONFIG)
    assert set(constraint) == {"dale_ratio", "autapses", "regions", "p_connect", "fixed_fraction"}
    assert "N_rec" in model and "constraints" not in model


def test_model_config_and_masks_become_params_and_artifacts(child, tmp_path):
    tracker = AgentTracker(child)
    tracker.log_model_config(CONFIG)
    masks = {"rec_connectivity": (np.arange(144).reshape(12, 12) % 3 == 0).astype(np.float32),
             "W_rec_fixed": np.eye(12, dtype=bool), "Dale_rec": np.diag(np.r_[np.ones(9), -np.ones(3)])}
    tracker.log_masks(masks)
    assert tracker.flush(timeout_s=60)
    client = MlflowClient(tracking_uri=child["tracking_uri"])
    params = client.get_run(child["run_id"]).data.params
    expected = {"model.kind": "rate_rnn", "model.N_rec": "12", "model.tau": "100", "model.dt": "10",
                "model.rec_noise": "0.05", "model.transfer_function": "numpy.tanh", "model.seed": "7",
                "model.loss": "mean_squared_error", "model.optimizer": "adam", "model.learning_rate": "0.001",
                "model.initializer.class_name": "Initializer",
                "model.initializer.config.spectral_radius": "1.1", "model.regularizers.L2_rec": "0.01",
                "constraint.dale_ratio": "0.75", "constraint.autapses": "false",
                "constraint.regions.0.name": "A", "constraint.regions.1.N": "6",
                "constraint.p_connect.A_B": "0.2", "constraint.fixed_fraction": "0.1",
                "constraint.density.rec_connectivity": f"{masks['rec_connectivity'].mean():.6g}",
                "constraint.density.W_rec_fixed": f"{1 / 12:.6g}"}
    assert {k: params.get(k) for k in expected} == expected
    assert "constraint.density.Dale_rec" not in params  # a diagonal sign matrix has no meaningful density
    assert tracking.unflatten_params(params, "constraint")["regions"] == CONFIG["constraints"]["regions"]
    local = client.download_artifacts(child["run_id"], "constraints/masks.npz", str(tmp_path))
    with np.load(local) as saved:
        assert set(saved.files) == set(masks)
        for k, v in masks.items():
            np.testing.assert_array_equal(saved[k], v)
    local = client.download_artifacts(child["run_id"], "model/config.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["initializer"] == {"class_name": "Initializer",
                                                                  "config": {"spectral_radius": 1.1}}


def test_the_run_description_is_the_curriculum_line_and_the_constraints(child):
    run = {**child, "description": "curriculum shaped (stages: easy → final)"}  # as the server's WELCOME has it
    tracker = AgentTracker(run, background=False)
    assert tracker.describe(CONFIG) == "curriculum shaped (stages: easy → final); N_rec 12, Dale 0.75, no autapses, " \
        "2 regions"
    tracker.log_model_config(CONFIG)
    client = MlflowClient(tracking_uri=child["tracking_uri"])
    assert client.get_run(child["run_id"]).data.tags["mlflow.note.content"] == tracker.describe(CONFIG)
    assert AgentTracker(child).describe({"N_rec": 8}) == "N_rec 8"  # a server that sent no curriculum line


def test_connectivity_snapshots_by_graduation_and_step(child, tmp_path):
    tracker = AgentTracker(child)
    weights_path = tmp_path / "agent.weights.npz"
    first, sign = dale_weights(1)
    np.savez(weights_path, **first)
    regions = ["A"] * 6 + ["B"] * 6
    tracker.log_connectivity(weights_path, first, region_labels=regions, step=640, tag="graduation_01",
                             input_names=["evidence0", "evidence1"], output_names=["choice0", "choice1"])
    between, _ = dale_weights(3)
    tracker.log_connectivity(None, between, region_labels=regions, step=960, tag=None)  # image and metric only
    second, _ = dale_weights(2)
    np.savez(weights_path, **second)  # the agent overwrites its file at once: the snapshot must not change
    tracker.log_connectivity(weights_path, second, dale_sign=sign, region_labels=regions, step=1280,
                             tag="final")
    assert tracker.flush(timeout_s=120)

    client = MlflowClient(tracking_uri=child["tracking_uri"])
    paths = set(artifact_paths(client, child["run_id"]))
    assert {p.split("/")[1] for p in paths if p.startswith("connectivity/")} == {"graduation_01", "final"}
    for tag, weights in (("graduation_01", first), ("final", second)):
        folder = f"connectivity/{tag}"
        assert {f"{folder}/{n}" for n in ("agent.weights.npz", "W_rec.png", "eigenspectrum.png", "W_in.png",
                                          "W_out.png")} <= paths
        local = client.download_artifacts(child["run_id"], folder, str(tmp_path / tag))
        with np.load(Path(local, "agent.weights.npz")) as saved:
            for key, value in weights.items():
                np.testing.assert_array_equal(saved[key], value)
            # the logged file, read as PsychRNN reads it, gives Dale-signed presynaptic columns
            w_rec = figures.effective_weights(dict(saved))["W_rec"]
        assert np.all(w_rec[:, sign > 0] >= 0) and np.all(w_rec[:, sign < 0] <= 0)
        for name in ("W_rec.png", "eigenspectrum.png", "W_in.png", "W_out.png"):
            valid_png(Path(local, name))

    images = [p for p in paths if p.startswith("images/W_rec+step+") and p.endswith(".png")]
    assert sorted(int(p.split("+")[2]) for p in images) == [640, 960, 1280]
    radius = sorted(client.get_metric_history(child["run_id"], "connectivity/spectral_radius"),
                    key=lambda m: m.step)
    expected = [np.max(np.abs(np.linalg.eigvals(figures.effective_weights(w)["W_rec"])))
                for w in (first, between, second)]
    assert [m.step for m in radius] == [640, 960, 1280]
    assert [m.value for m in radius] == pytest.approx(expected)


def test_agent_and_server_write_one_run_at_once(run, child):
    """The server's curriculum and the agent's metrics land in the same run concurrently."""
    server = tracking.CurriculumTracker(run, flush_interval_s=0.01, flush_metrics=1)
    server.on_session_start(child["run_name"], {"kind": "fixed"}, {})
    agent = AgentTracker(child, flush_interval_s=0.01, flush_metrics=1)

    def agent_loop():
        for i in range(40):
            agent.log_metrics({"train/loss": 1.0 / (i + 1)}, step=(i + 1) * 10)

    thread = threading.Thread(target=agent_loop)
    thread.start()
    for i in range(40):
        server.on_scored(child["run_name"], pd.DataFrame({"outcome": ["correct", "error"] * 5}), [],
                         {"stage_index": 0, "knobs": {"coherence": 0.5}}, (i + 1) * 10)
    thread.join()
    assert server.flush(timeout_s=60) and agent.flush(timeout_s=60)
    client = MlflowClient(tracking_uri=child["tracking_uri"])
    assert len(client.get_metric_history(child["run_id"], "train/loss")) == 40
    assert len(client.get_metric_history(child["run_id"], "knob/coherence")) == 40


def test_without_a_run_nothing_is_logged_and_nothing_fails(caplog, tmp_path):
    caplog.set_level(logging.WARNING)
    for run in (None, {"tracking_uri": "sqlite:///nowhere.db", "run_id": None}):
        tracker = AgentTracker(run)
        assert not tracker.enabled
        tracker.log_model_config(CONFIG)
        tracker.log_masks({"m": np.ones((2, 2))})
        tracker.log_connectivity(None, dale_weights(0)[0], step=1)
        tracker.log_metrics({"loss": 1.0}, step=1)
        assert tracker.flush()
    assert not caplog.records and not Path("nowhere.db").exists()


def test_unreachable_store_warns_once_and_training_goes_on(caplog, tmp_path):
    caplog.set_level(logging.WARNING)
    run = {"tracking_uri": "http://127.0.0.1:9", "run_id": "0" * 32, "experiment_id": "1"}
    t0 = time.monotonic()
    tracker = AgentTracker(run, flush_metrics=1)
    tracker.log_model_config(CONFIG)
    tracker.log_masks({"m": np.ones((2, 2))})
    weights, _ = dale_weights(0)
    np.savez(tmp_path / "w.npz", **weights)
    tracker.log_connectivity(tmp_path / "w.npz", weights, step=10)
    for step in range(5):
        tracker.log_metrics({"loss": 1.0}, step=step)
    assert tracker.flush(timeout_s=30)
    assert time.monotonic() - t0 < 10 and not tracker.enabled
    ours = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(ours) == 1 and "http://127.0.0.1:9" in ours[0].getMessage()
