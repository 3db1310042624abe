"""Where the MLflow store is, and MLflow's environment: no MLflow import here.

The default store is the embedded sqlite file ``<workdir>/mlflow.db`` (what ``make ui`` opens), with artifacts
in ``<workdir>/mlartifacts``; any tracking URI works (``$MLFLOW_TRACKING_URI`` comes before the default).
:func:`set_mlflow_environment` runs when :mod:`shaping.tracking` is imported, so before any of its modules
imports MLflow.
"""
from __future__ import annotations

import os
from pathlib import Path

#: Set, unless already set, before MLflow is imported: no telemetry, and a dead tracking server costs one
#: short timeout (seconds), not minutes of retries.
MLFLOW_ENVIRONMENT = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}

SQLITE_PREFIX = "sqlite:///"


def set_mlflow_environment() -> None:
    """Set each of :data:`MLFLOW_ENVIRONMENT` in ``os.environ`` unless the user set it already."""
    for key, value in MLFLOW_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def default_tracking_uri(workdir: str | os.PathLike | None = None) -> str:
    """``sqlite:///<absolute workdir>/mlflow.db``: the embedded store, no server to start.

    Args:
        workdir: the folder holding ``mlflow.db``; None: the current directory.
    """
    folder = Path(os.getcwd() if workdir is None else workdir).resolve()
    return f"{SQLITE_PREFIX}{(folder / 'mlflow.db').as_posix()}"


def resolve_tracking_uri(tracking_uri: str | None = None, workdir: str | os.PathLike | None = None) -> str:
    """``tracking_uri`` if given, else ``$MLFLOW_TRACKING_URI``, else :func:`default_tracking_uri` of
    ``workdir``."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(workdir)


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of an ``sqlite:///`` URI (None for other stores)."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return Path(tracking_uri[len(SQLITE_PREFIX):])


def default_artifact_root(tracking_uri: str) -> str | None:
    """``<folder of the sqlite file>/mlartifacts`` for an sqlite URI, None for other stores (a tracking
    server has its own artifact root)."""
    db = sqlite_path(tracking_uri)
    return None if db is None else str(db.resolve().parent / "mlartifacts")


def runs_page_url(ui_url: str, experiment_id: str) -> str:
    """The MLflow UI's page of an experiment's runs, e.g. ``http://127.0.0.1:5000/#/experiments/1/runs?
    workflowType=machine_learning``.

    MLflow 3.17's UI opens an experiment on the GenAI pages (traces) unless its sidebar switch says "Model
    training": a per-browser choice that overrides the experiment's ``mlflow.experimentKind`` tag. The
    ``workflowType`` parameter makes this link open the runs table whatever that choice is.

    Args:
        ui_url: the UI's address, e.g. ``http://127.0.0.1:5000`` (what ``make ui`` serves).
        experiment_id: the lab's experiment.
    """
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
