"""Psychometric curves split by a task's ``psychometric_by`` (Mante et al. 2013, Fig. 2): a real TaskServer serves
ContextDependentDM to a NumPy observer that reports the cued modality's evidence; its journal, dashboard tables,
figures and MLflow artifacts must show a steep curve for the cued evidence and a flat one for the other, per
context."""
from __future__ import annotations

import numpy as np
import pytest
from labsim import free_port
from server_thread import ServerThread

from dashboards import data as lab_data
from shaping import figures, tracking
from shaping.client import TaskClient
from shaping.scoring import psychometric_axes
from shaping.server import attach_tracking
from shaping.tasks import ContextDependentDM, MultiSensoryIntegration, PerceptualDiscrimination

N_BATCHES = 24


def context_observer(batch, rng: np.random.Generator) -> np.ndarray:
    """Choose by the sign of the cued modality's summed input (context read from the cue channels)."""
    x = np.asarray(batch.x, dtype=float)
    context = x[..., 3:5].sum(axis=1).argmax(axis=1)
    evidence = np.take_along_axis(x[..., 1:3].sum(axis=1), context[:, None], axis=1)[:, 0]
    choice = (evidence + rng.normal(0.0, 1.0, len(evidence)) > 0).astype(int)
    y_hat = np.array(batch.y, dtype=np.float32)
    swap = choice != np.asarray(batch.params["choice"], dtype=int)
    y_hat[swap] = y_hat[swap][..., ::-1]
    return y_hat


@pytest.fixture(scope="module")
def cdm_lab(tmp_path_factory) -> dict:
    lab = tmp_path_factory.mktemp("cdm-lab")
    cfg = {"task": {"name": "ContextDependentDM", "dt": 20, "T": 1700, "N_batch": 64,
                    "coherence_motion": [0.02, 0.05, 0.15], "coherence_color": [0.02, 0.05, 0.15]},
           "curricula": {"fixed": {"kind": "fixed"}}, "seed": 3, "journal": str(lab / "journal"),
           "bind": f"tcp://127.0.0.1:{free_port()}", "fsync": "never"}
    parent = tracking.LabRun.start(tracking.default_tracking_uri(lab), "cdm-psychometrics", cfg)
    with ServerThread(cfg) as srv:  # hooks set before any agent connects
        tracker = attach_tracking(srv.server, {"tracking_uri": parent.tracking_uri, "run_id": parent.run_id})
        client = TaskClient(srv.endpoint, "observer", curriculum="fixed", timeout_s=20.0)
        run_id = client.hello().run["run_id"]
        rng = np.random.default_rng(0)
        for k, batch in enumerate(client.batches()):
            client.result(batch, context_observer(batch, rng))
            if k + 1 == N_BATCHES:
                break
        client.bye("done")
    tracker.close()
    parent.end()
    return {"tables": lab_data.read_lab(lab), "uri": tracking.default_tracking_uri(lab), "run_id": run_id}


def test_axes_come_from_the_task_and_its_spec():
    axes = psychometric_axes(ContextDependentDM)
    assert axes.evidence == ("coherence_motion", "coherence_color") and axes.by == "context"
    assert axes.label(1) == axes.label(1.0) == "colour context" and axes.label(7) == "context 7"
    assert psychometric_axes(ContextDependentDM(N_batch=4, seed=0).spec()) == axes
    old_spec = {k: v for k, v in ContextDependentDM(N_batch=4, seed=0).spec().items()
                if not k.startswith("psychometric")}  # journaled before the spec carried the split
    assert psychometric_axes(old_spec) == axes
    assert psychometric_axes(MultiSensoryIntegration).label(2) == "multisensory"
    assert psychometric_axes(PerceptualDiscrimination).by is None


def test_table_splits_each_evidence_by_context(cdm_lab):
    table = lab_data.psychometric_table(cdm_lab["tables"], "observer", n_trials=N_BATCHES * 64)
    assert len(table) == 4 and set(table["curve"]) == {"motion context", "colour context"}
    slope = table.set_index(["evidence", "curve"])["slope"]
    # the cued evidence decides the choice; the other one does not (Mante et al. 2013, Fig. 2)
    assert slope["coherence_motion", "motion context"] > 5 * abs(slope["coherence_motion", "colour context"])
    assert slope["coherence_color", "colour context"] > 5 * abs(slope["coherence_color", "motion context"])
    assert table["n"].sum() == 2 * N_BATCHES * 64  # a span as long as the run: every trial, once per evidence
    # by default a stage's span is its criterion window (the fixed policy's: 200 trials), stated in each row
    default = lab_data.psychometric_table(cdm_lab["tables"], "observer")
    assert (default.groupby("evidence")["n"].sum() == 200).all()
    assert (default["span"] == f"final: its last 200 trials (trials {N_BATCHES * 64 - 199:,}-{N_BATCHES * 64:,})").all()


def test_figure_has_a_panel_per_evidence_and_a_curve_per_context(cdm_lab):
    tables = cdm_lab["tables"]
    axes = lab_data.psychometric_axes(tables, "observer")
    fig = figures.psychometric_curve(tables.trials, axes.evidence, title="stage final", sides=axes.sides, by=axes.by,
                                labels=axes.labels)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        fits = [line.get_label() for line in ax.lines if not line.get_label().startswith("_")]
        assert [f.split(":")[0] for f in fits] == ["motion context", "colour context"]
    assert figures.to_png(fig)[:4] == b"\x89PNG"


def test_mlflow_gets_the_split_figure(cdm_lab):
    from mlflow import MlflowClient

    client = MlflowClient(cdm_lab["uri"])
    names = [a.path for a in client.list_artifacts(cdm_lab["run_id"], "curriculum/psychometric")]
    assert len(names) == 1 and names[0].endswith(".png")
