"""shaping.tracking is a package split by concern: importing it, and its helpers that need no MLflow, does not
import MLflow; every name the single module had still imports from the package."""
from __future__ import annotations

import json
import subprocess
import sys

# Names the module shaping/tracking.py had before the split, imported across the repository and by users.
OLD_NAMES = (
    "MAX_PARAM_VALUE_CHARS", "MAX_KEY_CHARS", "MAX_METRICS_PER_BATCH", "MAX_PARAMS_PER_BATCH", "PACKAGES",
    "default_tracking_uri", "resolve_tracking_uri", "default_artifact_root", "ensure_experiment", "SYNC_HINT",
    "StoreGuard", "BackgroundWriter", "describe_labels", "safe_name", "plain", "flatten_params", "unflatten_params",
    "log_params_batched", "log_metrics_batched", "now_ms", "provenance_tags", "LabRun", "knob_scalar",
    "CURRICULUM_ENDS", "STAGE_EVENTS", "JournalTables", "CurriculumTracker", "BATCH_KEYS", "KNOB_PREFIX",
    "sync_frames", "sync", "MlflowClient",
)
MLFLOW_FREE = ("default_tracking_uri", "resolve_tracking_uri", "default_artifact_root", "runs_page_url",
               "flatten_params", "unflatten_params", "plain", "safe_name", "describe_labels", "knob_scalar",
               "describe_curriculum", "describe_model", "describe_agent", "describe_lab", "now_ms",
               "MAX_PARAM_VALUE_CHARS")

SCRIPT = f"""
import json, os, sys
loaded = lambda: sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow."))[:5]
import shaping.tracking
from shaping.tracking import {", ".join(MLFLOW_FREE)}
import shaping.tracking.names, shaping.tracking.uris
flatten_params({{"a": [1, 2]}}, "p"); knob_scalar([0.1, 0.3]); default_tracking_uri("."); plain(object())
before = loaded()
telemetry = os.environ.get("MLFLOW_DISABLE_TELEMETRY")
from shaping.tracking import {", ".join(OLD_NAMES)}
import shaping.tracking as T
print(json.dumps({{"before": before, "after": loaded(), "telemetry": telemetry,
                  "sync": callable(T.sync) and T.sync.__name__ == "sync",
                  "missing": [n for n in {OLD_NAMES!r} if not hasattr(T, n)]}}))
"""


def test_importing_the_package_and_its_plain_helpers_leaves_mlflow_unloaded():
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1"}  # no MLFLOW_*: the package sets its own
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["before"] == [], f"shaping.tracking's MLflow-free helpers imported MLflow: {report['before']}"
    assert report["telemetry"] == "true"  # set on import, before any MLflow import
    assert "mlflow" in report["after"]  # the check above can see MLflow once it is loaded
    assert report["sync"] and report["missing"] == []


def test_every_name_is_listed_once_and_resolves():
    import shaping.tracking as T

    assert set(T.__all__) >= set(OLD_NAMES) | set(MLFLOW_FREE)
    for name in T.__all__:
        assert getattr(T, name) is not None, name
    assert T.store.ensure_experiment is T.ensure_experiment and T.labrun.LabRun is T.LabRun
