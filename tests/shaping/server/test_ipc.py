"""ipc:// endpoints: a task server on a Unix domain socket, reached by real clients (no TCP, no CURVE), restarted
on the same socket after kill -9, refused when another server listens there; the config's checks; a real lab."""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from loophelp import SIM_AGENT, AgentThread, ServerThread, config

from shaping import journal
from shaping import keys as curve_keys
from shaping.errors import ConfigError, InUseError
from shaping.server import ServerConfig, TaskServer, read_endpoint

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture
def short_dir() -> Path:
    """A folder with a short path (a socket path must fit in 107 bytes, and pytest's tmp paths can be long)."""
    d = Path(tempfile.mkdtemp(prefix="skb-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_a_server_on_ipc_scores_a_real_clients_batches_and_removes_its_socket(short_dir):
    sock = short_dir / "srv.sock"
    cfg = config(short_dir / "journal", bind=f"ipc://{sock}")
    assert not ServerConfig.from_dict(cfg).use_curve  # local: no keys asked for
    with ServerThread(cfg) as st:
        assert st.endpoint == f"ipc://{sock}"
        info = read_endpoint(short_dir / "journal")
        assert info["endpoint"] == f"ipc://{sock}" and info["curve"] is False
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600  # file permissions guard it: only this user
        agent = AgentThread(st.endpoint, "ipc-rat", curriculum="fixed", p_correct=1.0,
                            heartbeat_interval_s=0.2, timeout_s=10).start()
        agent.wait_for(5)
        agent.stop()
        assert all(s.accuracy == 1.0 for s in agent.scores[:5])  # answered with the target: every trial correct
    assert not sock.exists()  # removed on close (libzmq leaves a named ipc socket's file behind)
    assert not (short_dir / "journal" / "server.json").exists()
    df = journal.load(short_dir / "journal")
    assert len(df) >= 5 * 16 and (df["outcome"] == "correct").all()


def test_a_stale_socket_file_is_replaced_and_a_live_one_is_refused(short_dir):
    sock = short_dir / "srv.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:  # a killed server's file: nobody listens
        dead.bind(str(sock))
    assert sock.exists()
    with ServerThread(config(short_dir / "j1", bind=f"ipc://{sock}")) as st:
        agent = AgentThread(st.endpoint, "a", curriculum="fixed", heartbeat_interval_s=0.2, timeout_s=10).start()
        agent.wait_for(2)
        second = TaskServer(config(short_dir / "j2", bind=f"ipc://{sock}"))
        with pytest.raises(InUseError, match="another process is listening on"):
            second.start()
        agent.wait_for(len(agent.scores) + 2)  # the first server kept its socket (libzmq would have taken it)
        agent.stop()


def test_ipc_config_checks(tmp_path):
    long_path = "/tmp/" + "x" * (curve_keys.IPC_PATH_MAX_BYTES + 1)
    limit = curve_keys.IPC_PATH_MAX_BYTES
    with pytest.raises(ConfigError, match=rf"more than the {limit} a Unix domain socket allows; choose a shorter"):
        ServerConfig.from_dict(config(tmp_path / "j", bind=f"ipc://{long_path}"))
    with pytest.raises(ConfigError, match="names no socket file"):
        ServerConfig.from_dict(config(tmp_path / "j", bind="ipc://"))
    # a relative path is relative to the config's folder, like the journal
    toml = tmp_path / "server.toml"
    toml.write_text('journal = "journal"\nbind = "ipc://run/srv.sock"\n[task]\nname = "PerceptualDiscrimination"\n'
                    '[curricula.fixed]\nkind = "fixed"\n')
    cfg = ServerConfig.from_toml(toml)
    assert cfg.bind == f"ipc://{toml.parent.resolve() / 'run' / 'srv.sock'}" and not cfg.use_curve
    assert curve_keys.is_loopback("ipc:///tmp/x.sock") and curve_keys.is_loopback("ipc://@abstract")
    with pytest.raises(ConfigError, match="requires CurveZMQ keys"):  # CURVE on ipc when asked for: needs keys
        ServerConfig.from_dict(config(tmp_path / "j", bind="ipc:///tmp/x.sock", curve=True))
    assert curve_keys.ipc_path("ipc://*") is None and curve_keys.ipc_path("tcp://127.0.0.1:1") is None


SERVER_TOML = """
seed = 5
journal = "journal"
bind = "ipc://srv.sock"
heartbeat_interval_s = 0.2
expiry_s = 5.0

[task]
name = "PerceptualDiscrimination"
dt = 10
T = 500
N_batch = 16

[curricula.fixed]
kind = "fixed"
"""


@pytest.mark.procs
def test_a_server_killed_and_restarted_on_the_same_ipc_path_is_reached_again_by_the_same_client(short_dir):
    (short_dir / "server.toml").write_text(SERVER_TOML)
    sock, jdir = short_dir / "srv.sock", short_dir / "journal"
    endpoint = f"ipc://{sock}"

    def start_server() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "shaping.cli", "--log-level", "WARNING", "server",
                                 str(short_dir / "server.toml")], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while True:  # until this process (not a killed predecessor) has written its endpoint file
            info = read_endpoint(jdir, timeout_s=60) if jdir.exists() else {}
            if info.get("pid") == proc.pid:
                assert info["endpoint"] == endpoint  # the relative ipc path, taken relative to the config file
                return proc
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    log = short_dir / "agent.jsonl"

    def scores() -> list[dict]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [r for r in map(json.loads, (ln for ln in lines if ln.endswith("}"))) if "batch" in r]

    server = start_server()
    agent = subprocess.Popen([sys.executable, str(SIM_AGENT), endpoint, "mouse", "--log", str(log), "--curriculum",
                              "fixed", "--max-batches", "24", "--pause-s", "0.02"], env=ENV, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(scores()) < 6:
            assert agent.poll() is None, agent.communicate()[0]
            assert time.monotonic() < deadline, "no scores before the kill"
            time.sleep(0.02)
        server.kill()  # SIGKILL: the socket file stays behind, nobody listening on it
        server.wait()
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
        server = start_server()
        out, _ = agent.communicate(timeout=90)
        assert agent.returncode == 0, out
        assert len(scores()) == 24
        welcomes = [json.loads(ln) for ln in log.read_text().splitlines() if '"welcome"' in ln]
        assert len(welcomes) == 1  # one agent process: its client reconnected by itself
        hellos = journal.load_sessions(jdir)
        # one HELLO per connection: the restarted server is reached again (a slow restart may cost a second try)
        epochs = hellos["epoch"].tolist()
        assert len(epochs) >= 2 and epochs == list(range(1, len(epochs) + 1))
        assert hellos["resumed"].tolist() == [False] + [True] * (len(epochs) - 1)
        df = journal.load(jdir)
        assert not df.duplicated(["batch", "trial"]).any() and scores()[-1]["trials"] == len(df)
        assert np.all(np.diff(df.groupby("batch")["epoch"].first().to_numpy()) >= 0)
        server.terminate()
        out, _ = server.communicate(timeout=30)
        assert server.returncode == 0, out
        assert not sock.exists()
    finally:
        for proc in (server, agent):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
