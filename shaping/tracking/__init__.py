"""MLflow provenance, server side: the lab's parent run and each agent's curriculum.

One MLflow experiment per lab, one parent run per lab session, one child run per agent. The lab creates the
parent run (:class:`LabRun`); the task server's :class:`CurriculumTracker` creates each agent's child run at its
HELLO and writes its curriculum there; the agent (:class:`agents.tracking.AgentTracker`) writes its model,
constraints and connectivity into the same run. The package, by concern:

- :mod:`~shaping.tracking.uris`: where the store is (:func:`default_tracking_uri`, :func:`resolve_tracking_uri`,
  :func:`default_artifact_root`) and MLflow's environment. No MLflow import.
- :mod:`~shaping.tracking.names`: params, knob values and run descriptions as plain data
  (:func:`flatten_params`, :func:`unflatten_params`, :func:`plain`, :func:`safe_name`, :func:`knob_scalar`,
  :func:`describe_labels`, ``describe_*``). No MLflow import.
- :mod:`~shaping.tracking.store`: store plumbing: the experiment (:func:`ensure_experiment`, marked as model
  training for MLflow 3's UI), the sqlite store lock, retries, :class:`StoreGuard` (the failure policy),
  :class:`BackgroundWriter`, batched ``log_batch`` writes.
- :mod:`~shaping.tracking.labrun`: :class:`LabRun`, the parent run (config, provenance, description, summary).
- :mod:`~shaping.tracking.curriculum`: :class:`CurriculumTracker`, the server's curriculum hooks: what each
  agent's run holds (params, metrics, events, trial log, figures; listed in that module's docstring).
- :mod:`~shaping.tracking.journalsync`: :func:`sync`, the runs rebuilt from the journal afterwards.

Nothing here may stop training: the first store failure (unreachable server, unwritable file) logs a single
warning (logger ``shaping.tracking``) and turns tracking off for the process; :func:`sync` rebuilds the runs
from the journal afterwards.

Importing this package imports neither MLflow nor TensorFlow: each name below is loaded from its module on
first use (``from shaping.tracking import LabRun`` imports MLflow; ``from shaping.tracking import
flatten_params`` does not). Importing it sets, unless already set: ``MLFLOW_DISABLE_TELEMETRY=true``,
``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT=5`` (seconds), so that a dead server
costs one short timeout, not minutes of retries (:data:`~shaping.tracking.uris.MLFLOW_ENVIRONMENT`).
"""
from __future__ import annotations

import importlib
from typing import Any

from .uris import set_mlflow_environment

set_mlflow_environment()  # before any module of this package imports MLflow

# the package's names, by module; each is loaded on first access
_MODULES: dict[str, tuple[str, ...]] = {
    "uris": ("default_tracking_uri", "resolve_tracking_uri", "default_artifact_root", "sqlite_path",
             "runs_page_url", "set_mlflow_environment", "MLFLOW_ENVIRONMENT"),
    "names": ("MAX_PARAM_VALUE_CHARS", "MAX_KEY_CHARS", "NOTE_TAG", "safe_name", "plain", "flatten_params",
              "unflatten_params", "now_ms", "knob_scalar", "describe_curriculum", "describe_model",
              "describe_agent", "describe_lab", "describe_labels"),
    "store": ("MAX_METRICS_PER_BATCH", "MAX_PARAMS_PER_BATCH", "PACKAGES", "EXPERIMENT_KIND_TAG", "EXPERIMENT_KIND",
              "store_lock", "ensure_experiment", "SYNC_HINT", "StoreGuard", "BackgroundWriter", "log_params_batched",
              "log_metrics_batched", "provenance_tags", "MlflowClient", "Metric", "Param", "MlflowException"),
    "labrun": ("LabRun", "CRITERION_COLUMNS", "summary_entries"),
    "curriculum": ("CurriculumTracker", "CURRICULUM_ENDS", "STAGE_EVENTS", "JournalTables", "BATCH_KEYS",
                   "KNOB_PREFIX"),
    "journalsync": ("sync", "sync_frames"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_EXPORTS)  # built from _MODULES, so the two cannot drift


def __getattr__(name: str) -> Any:
    """Load ``name`` from its module on first access (PEP 562), so that importing the package is cheap."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | set(_MODULES))
