"""Shared test settings: one BLAS/TF thread per process, quiet TensorFlow, MLflow telemetry off."""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pytest


def _has_gpu() -> bool:
    try:
        from agents._tf import tf
    except ImportError:
        return False
    return bool(tf.config.list_physical_devices("GPU"))


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _has_gpu():
        skip = pytest.mark.skip(reason="needs a GPU (none visible to TensorFlow)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
