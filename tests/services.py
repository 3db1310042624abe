"""The system services some tests run against: a SLURM cluster and a PostgreSQL server (``.ci/services`` installs
and starts both, on this host), and a real ``mlflow server`` on PostgreSQL.

Tests that need one skip with the reason given here where it is missing (``slurm_reason``, ``postgres_reason``).
``SKINNERBOX_TEST_POSTGRES`` names another PostgreSQL server (a SQLAlchemy URL of a role that may create
databases); the default is the one ``.ci/services`` sets up.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_ENV = "SKINNERBOX_TEST_POSTGRES"
DEFAULT_POSTGRES = "postgresql+psycopg://skinnerbox:skinnerbox@127.0.0.1:5432/postgres"
#: node states (``sinfo -o %t``) in which the node takes jobs: idle, partly or fully allocated, completing
SLURM_UP_STATES = ("idle", "mix", "alloc", "comp")


# ---------------------------------------------------------------------------------------------- SLURM
@functools.lru_cache(maxsize=None)
def slurm_reason(timeout_s: float = 5.0) -> str | None:
    """Why the SLURM tests cannot run here, or None when they can: ``sbatch``, ``squeue``, ``scontrol`` and
    ``sinfo`` are on PATH and a node of the cluster answers idle, mixed or allocated within ``timeout_s``
    seconds (a node that slurmd just registered reads ``unk`` for a moment). Cached per process."""
    missing = [cmd for cmd in ("sbatch", "squeue", "scontrol", "sinfo") if shutil.which(cmd) is None]
    if missing:
        return f"SLURM is not installed here ({', '.join(missing)} not on PATH; .ci/services installs it)"
    deadline = time.monotonic() + timeout_s
    states: list[str] = []
    while True:
        try:
            done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=timeout_s)
            states = done.stdout.split()
            answer = done.stderr.strip() if done.returncode else ""
        except subprocess.TimeoutExpired:
            answer = f"sinfo gave no answer in {timeout_s:g} s"
        if any(s in SLURM_UP_STATES for s in states):
            return None
        if time.monotonic() >= deadline:
            seen = f"node states {states}" if states else (answer or "no node")
            return f"no SLURM node takes jobs here ({seen}; .ci/services starts a single-node cluster)"
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------- PostgreSQL
def _server_url() -> str:
    return os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES


def _conninfo(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as the libpq URI psycopg connects with."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@functools.lru_cache(maxsize=None)
def postgres_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can: psycopg is installed and the server
    (``$SKINNERBOX_TEST_POSTGRES``, else ``.ci/services``'s role on 127.0.0.1:5432) accepts a login within a
    few seconds. Cached per process."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install skinnerbox[postgres])"
    url = _server_url()
    try:
        with psycopg.connect(_conninfo(url), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"no PostgreSQL server accepts {url.split('@')[-1]} ({detail}; .ci/services starts one)"
    return None


def postgres_url() -> str | None:
    """The SQLAlchemy URL of the test PostgreSQL server (its maintenance database), or None where it is not
    reachable (see :func:`postgres_reason`)."""
    return None if postgres_reason() else _server_url()


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A database created for one test on the test PostgreSQL server, dropped after it (connections still open
    are ended). Skips the test where the server is not reachable.

    Yields:
        its SQLAlchemy URL, ``postgresql+psycopg://USER:PASSWORD@HOST:PORT/skinnerbox_test_<hex>``.
    """
    reason = postgres_reason()
    if reason:
        pytest.skip(reason)
    import psycopg
    from sqlalchemy.engine import make_url

    server = make_url(_server_url())
    name = f"skinnerbox_test_{uuid.uuid4().hex[:12]}"
    admin = _conninfo(_server_url())
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        _drop(admin, name)


def _drop(admin: str, name: str, timeout_s: float = 30.0) -> None:
    """Drop a test database, ending its connections. ``WITH (FORCE)`` may not end a session another role holds
    open (the test role is no superuser): then wait for the sessions to end, and leave a warning rather than
    fail a test over its clean-up."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.Error as err:
            if time.monotonic() > deadline:
                warnings.warn(f"test database {name} left behind: {err}", stacklevel=2)
                return
            time.sleep(0.5)


# ---------------------------------------------------------------------------------------------- mlflow server
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_command() -> str:
    """The ``mlflow`` command of the project's environment (``.venv/bin/mlflow``, else beside this Python)."""
    venv = ROOT / ".venv" / "bin" / "mlflow"
    return str(venv if venv.exists() else Path(sys.executable).with_name("mlflow"))


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, artifacts_dir: Path, port: int | None = None,
                  timeout_s: float = 180.0) -> Iterator[str]:
    """A real ``mlflow server`` on ``backend_store_uri`` serving artifacts from ``artifacts_dir``
    (``--serve-artifacts``), on a loopback port, one worker, no job runner; stopped (its whole process
    group) on exit. Its output goes to ``artifacts_dir/../mlflow-server.log``.

    Args:
        backend_store_uri: the store, e.g. a :func:`fresh_database` URL.
        artifacts_dir: where uploaded artifacts land (``<experiment id>/<run id>/artifacts/...``).
        port: the TCP port on 127.0.0.1 (None: a free one).
        timeout_s: how long the server may take to answer ``/health`` (it migrates a fresh database first:
            several seconds, tens on busy cores).

    Yields:
        its tracking URI, ``http://127.0.0.1:PORT``.

    Raises:
        RuntimeError: the server exited, or did not answer in ``timeout_s``; the message ends with its log.
    """
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    log_path = artifacts_dir.parent / "mlflow-server.log"
    port = free_port() if port is None else port
    url = f"http://127.0.0.1:{port}"
    cmd = [mlflow_command(), "server", "--backend-store-uri", backend_store_uri, "--serve-artifacts",
           "--artifacts-destination", str(artifacts_dir), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONWARNINGS": "ignore:starlette.middleware.wsgi is deprecated"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"mlflow server gave no /health in {timeout_s:g} s:\n"
                                   f"{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the process group ``proc`` leads; SIGKILL what is left of it once ``proc`` exited or after
    ``grace_s`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
