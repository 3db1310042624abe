"""CurveZMQ: key generation, authorised agents served, plaintext and unknown keys refused."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import zmq
from loophelp import ServerThread, config

from shaping import keys as curve_keys
from shaping.cli import main
from shaping.client import TaskClient
from shaping.server import ServerConfig, read_endpoint

pytestmark = [pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE"),
              pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    assert main(["keys", str(d), "--client", "lab1", "--client", "lab2"]) == 0
    return d


@pytest.fixture(scope="module")
def curve_server(keys, tmp_path_factory):
    st = ServerThread(config(tmp_path_factory.mktemp("journal"), keys=str(keys), curve=True))
    yield st
    st.stop()


def test_keys_layout_and_permissions(keys):
    for path in ("server.key", "server.key_secret", "clients/lab1.key_secret", "clients/lab2.key",
                 "authorized_clients/lab1.key", "authorized_clients/lab2.key"):
        assert (keys / path).is_file(), path
    assert not (keys / "authorized_clients" / "lab1.key_secret").exists()
    assert stat.S_IMODE(os.stat(keys / "clients" / "lab1.key_secret").st_mode) == 0o600
    public, secret = curve_keys.client_keys(keys, "lab1")
    assert len(public) == len(secret) == 40
    with pytest.raises(FileExistsError, match="--force"):
        curve_keys.generate_keys(keys, clients=["lab1"])
    with pytest.raises(ValueError, match="client name 'a b'"):
        curve_keys.generate_keys(keys, clients=["a b"])


def test_authorised_agent_is_served(curve_server, keys):
    info = read_endpoint(curve_server.server.config.journal)
    assert info["curve"] and info["server_public_key"] == curve_keys.server_keys(keys)[0].decode()
    c = TaskClient(curve_server.endpoint, "secure", keys=keys, client_name="lab2", timeout_s=5)
    b = c.get()
    assert c.result(b, b.y).accuracy == 1.0
    c.close()
    c = TaskClient(curve_server.endpoint, "secure2", server_key=info["server_public_key"],
                   client_secret_file=keys / "clients" / "lab1.key_secret", timeout_s=5)
    assert c.hello().agent == "secure2"
    c.close()


def test_plaintext_agent_is_refused(curve_server):
    c = TaskClient(curve_server.endpoint, "plain", heartbeat_interval_s=0.1, timeout_s=0.8,
                   reconnect_initial_s=0.05)
    with pytest.raises(ConnectionError, match="no WELCOME"):
        c.hello()
    c.close()
    assert "plain" not in curve_server.server.sessions


def test_unauthorised_key_is_refused(curve_server, keys, tmp_path):
    curve_keys.generate_keys(tmp_path, clients=["stranger"])  # a valid key pair the server never authorised
    c = TaskClient(curve_server.endpoint, "stranger", server_key=keys / "server.key",
                   client_secret_file=tmp_path / "clients" / "stranger.key_secret", heartbeat_interval_s=0.1,
                   timeout_s=0.8, reconnect_initial_s=0.05)
    with pytest.raises(ConnectionError, match="no WELCOME"):
        c.hello()
    c.close()
    assert "stranger" not in curve_server.server.sessions


def test_non_loopback_needs_keys_and_is_loopback_rules(keys, tmp_path):
    with pytest.raises(ValueError, match="requires CurveZMQ keys"):
        ServerConfig.from_dict(config(tmp_path, bind="tcp://*:0"))
    assert ServerConfig.from_dict(config(tmp_path, bind="tcp://0.0.0.0:0", keys=str(keys))).use_curve
    for ep in ("tcp://127.0.0.1:5", "tcp://127.3.0.1:5", "tcp://localhost:5", "tcp://[::1]:5", "ipc:///tmp/x",
               "inproc://x"):
        assert curve_keys.is_loopback(ep), ep
    for ep in ("tcp://0.0.0.0:5", "tcp://*:5", "tcp://10.0.0.2:5", "tcp://eth0:5", "tcp://host.lab:5",
               "udp://127.0.0.1:5"):
        assert not curve_keys.is_loopback(ep), ep


@pytest.mark.procs
def test_server_off_loopback_without_keys_refuses_to_start(tmp_path):
    (tmp_path / "s.toml").write_text('bind = "tcp://0.0.0.0:0"\n[task]\nname = "PerceptualDiscrimination"\n'
                                     '[curricula.c]\nkind = "fixed"\n')
    run = subprocess.run([sys.executable, "-m", "shaping.cli", "server", str(tmp_path / "s.toml")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "requires CurveZMQ keys" in run.stderr and "skinnerbox keys" in run.stderr


def test_an_operator_override_needs_the_keys_of_a_curve_server(curve_server, keys, capsys):
    c = TaskClient(curve_server.endpoint, "overridden", keys=keys, client_name="lab1", timeout_s=5)
    c.hello()
    journal = curve_server.server.config.journal
    assert main(["override", journal, "overridden", "--knob", "coherence=0.5"]) == 2  # at once, not a timeout
    assert "takes only CurveZMQ connections: give --keys" in capsys.readouterr().err
    assert main(["override", journal, "overridden", "--knob", "coherence=0.5", "--keys", str(keys),
                 "--client-name", "lab2"]) == 0
    assert "coherence=0.5" in capsys.readouterr().out
    c.close()
