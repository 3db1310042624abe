"""The process contract: what the lab, the task server and the agents agree on without importing each other.

- **Exit statuses.** ``0``: done (curriculum complete, or stopped cleanly); :data:`REFUSED` (2): the process
  refused to run and a restart would be refused the same way (a checkpoint of another session, a bad config),
  so a supervisor does not restart it; anything else is a crash, restarted up to the lab's ``max_restarts``.
- **Stopping.** SIGTERM (or SIGINT) asks for a clean stop: an agent checkpoints and says BYE within
  :data:`AGENT_STOP_GRACE_S`, the server flushes its journal within :data:`SERVER_STOP_GRACE_S`; after that the
  lab sends SIGKILL (the journal loses nothing it acknowledged).
- **Orphans.** Every process a lab starts has :data:`LAB_PID_ENV` set and runs in a session of its own; it
  stops by itself, as on SIGTERM, once :func:`lab_gone` says the lab died.
- **Files in the journal directory.** The server writes :data:`ENDPOINT_FILE` (its endpoint, pid, CURVE key)
  when it has bound and :data:`STATUS_FILE` every second; :func:`read_endpoint` waits for the first. With
  shards, each shard's server writes both in its own ``shard-N`` journal and the front writes
  :data:`ENDPOINT_FILE` in the lab's journal directory; :func:`shaping.readout.read_status` merges the shards'
  status files into one.
- **Environment.** :func:`process_env`: one BLAS thread, quiet TensorFlow, MLflow telemetry off, the package
  root and the lab file's folder on ``PYTHONPATH`` (a ``"module:Class"`` task is importable everywhere).

NumPy-free and import-free: every process imports it at start-up.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

REFUSED = 2  # exit status of a refusal no restart changes
AGENT_STOP_GRACE_S = 60.0  # an agent stopped by the lab has this long to checkpoint and leave (then SIGKILL)
SERVER_STOP_GRACE_S = 30.0  # the same for the server, once the agents are gone
LAB_PID_ENV = "SKINNERBOX_LAB_PID"
LAB_LOCK = "lab.lock"  # held by a running lab: the same lab run again refuses before changing anything
ENDPOINT_FILE = "server.json"  # in the journal directory: written once the server has bound
STATUS_FILE = "status.json"  # in the journal directory: rewritten atomically every second by the server


def lab_gone() -> bool:
    """True in a process a lab started once that lab has died (its children run in sessions of their own, so
    neither a closed terminal nor a killed lab reaches them: they stop themselves, as on SIGTERM)."""
    pid = os.environ.get(LAB_PID_ENV)
    return bool(pid) and os.getppid() != int(pid)


def process_env(threads: int = 1, task_path: Sequence[str | os.PathLike] = ()) -> dict:
    """Environment for a lab process: one BLAS thread, ``threads`` OpenMP/TensorFlow threads, quiet
    TensorFlow, MLflow telemetry off; the package root and ``task_path`` (where a ``"module:Class"`` task's
    module lives) on ``PYTHONPATH``."""
    env = dict(os.environ)
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2",
                "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1", LAB_PID_ENV: str(os.getpid())})
    root = str(Path(__file__).resolve().parents[1])
    extra = [str(Path(d).resolve()) for d in task_path]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, *extra, env.get("PYTHONPATH", "")) if p)
    return env


def reachable_endpoint(info: dict) -> str:
    """The endpoint other machines connect to, from a server's :data:`ENDPOINT_FILE`: a server bound on every
    interface (``tcp://0.0.0.0:5555``) is reached through its host's name."""
    endpoint = info["endpoint"]
    for wildcard in ("//0.0.0.0:", "//*:", "//[::]:"):
        if wildcard in endpoint and info.get("host"):
            return endpoint.replace(wildcard, f"//{info['host']}:")
    return endpoint


def current_endpoint(path: str | os.PathLike) -> str | None:
    """The endpoint in a server's :data:`ENDPOINT_FILE` at ``path`` as other machines reach it, or None while
    there is none (the server is restarting, or has not bound yet)."""
    try:
        return reachable_endpoint(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError):
        return None


def read_endpoint(journal: str | os.PathLike, timeout_s: float = 10.0) -> dict:
    """Wait for a server to write its endpoint file in ``journal`` and return it (``endpoint``, ``pid``,
    ``curve``, ``server_public_key``...). ``TimeoutError`` after ``timeout_s`` (s)."""
    path = Path(journal) / ENDPOINT_FILE
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no task server endpoint at {path} after {timeout_s} s") from None
            time.sleep(0.02)
