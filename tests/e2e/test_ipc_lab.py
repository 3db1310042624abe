"""A lab whose server binds ``ipc://``: its TensorFlow agent reaches it over a Unix domain socket (no TCP, no
CURVE keys), trains to the end of its curriculum, and the socket file is gone once the lab has stopped."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from labcfg import lab_config

from shaping import journal
from shaping.lab import Lab

pytestmark = [pytest.mark.procs, pytest.mark.tf, pytest.mark.timeout(300)]


def test_a_lab_served_over_ipc_trains_its_agent():
    short = Path(tempfile.mkdtemp(prefix="skb-", dir="/tmp"))  # a socket path must fit in 107 bytes
    try:
        sock = short / "lab.sock"
        cfg = lab_config(lab={"name": "ipc", "seed": 3, "max_restarts": 0},
                         server={"bind": f"ipc://{sock}"},
                         curricula={"fixed": {"kind": "fixed", "max_trials": 96}},
                         agents=[{"name": "free", "curriculum": "fixed", "N_rec": 8, "seed": 1}])
        lab = Lab(cfg, workdir=short / "lab", tracking_uri="none", progress=False, timeout_s=240)
        summary = lab.run()
        assert lab.endpoint == f"ipc://{sock}"
        assert summary.set_index("agent").loc["free", "exit"] == 0
        df = journal.load(short / "lab" / "journal")
        assert len(df) >= 96 and set(df["agent"]) == {"free"}
        hello = journal.load_sessions(short / "lab" / "journal").iloc[0]
        assert hello["agent"] == "free" and not hello["resumed"]
        assert not sock.exists()
    finally:
        shutil.rmtree(short, ignore_errors=True)
