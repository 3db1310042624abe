"""The same lab started again while it runs (a second terminal, a rerun) is refused and changes nothing.

The running lab keeps its lab.json, server_config.json, journal/server.json and MLflow parent run, and goes on
training; the refusal is an error naming the running lab, before any side effect.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from labcfg import lab_config
from labthread import wait_for
from test_lab import _to_toml

from shaping import journal
from shaping.lab import Lab

pytestmark = [pytest.mark.procs, pytest.mark.tf]

ROOT = Path(__file__).resolve().parents[2]


def _endless() -> dict:
    """One small agent on a curriculum that never completes by itself."""
    cfg = lab_config()
    cfg["lab"] = {"name": "twice", "seed": 3, "max_restarts": 0}
    cfg["curricula"]["shaped"]["stages"][0]["graduate"]["min_trials"] = 10**6
    cfg["curricula"]["shaped"]["max_trials"] = 10**7
    cfg["agents"] = [dict(cfg["agents"][0], N_rec=8)]
    return cfg


def _trials(lab_dir: Path) -> int:
    try:
        return sum(s["trials"] for s in json.loads((lab_dir / "journal" / "status.json").read_text())["sessions"])
    except (OSError, ValueError, KeyError):
        return 0


def _footprint(lab_dir: Path, store: Path) -> dict:
    """What a second lab must not touch: the files the first wrote and its MLflow parent runs."""
    files = {name: ((lab_dir / name).read_bytes(), (lab_dir / name).stat().st_mtime_ns)
             for name in ("lab.json", "server_config.json", "journal/server.json")}
    with sqlite3.connect(store) as db:
        parents = db.execute("select count(*) from tags where key = 'skinnerbox.role' and value = 'lab'").fetchone()
    return {**files, "parent runs": parents[0]}


def test_a_lab_started_again_while_it_runs_is_refused_and_changes_nothing(tmp_path):
    toml, lab_dir, store = tmp_path / "twice.toml", tmp_path / "lab", tmp_path / "mlflow.db"
    toml.write_text(_to_toml(_endless()))
    cmd = [sys.executable, "-m", "shaping.cli", "lab", str(toml), "--workdir", str(lab_dir), "--tracking-uri",
           f"sqlite:///{store}", "--no-progress"]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _trials(lab_dir) > 0 or first.poll() is not None, 120, "the first lab to train")
        before = _footprint(lab_dir, store)
        second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"lab {lab_dir} is already running (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert _footprint(lab_dir, store) == before
        trained = _trials(lab_dir)
        wait_for(lambda: _trials(lab_dir) > trained, 60, "the first lab to go on training")
    finally:
        first.send_signal(signal.SIGINT)
        out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out[-3000:]
    assert [kind for kind, _ in journal.iter_records(lab_dir / "journal")][-1] == journal.CLOSE


def test_a_lab_whose_journal_a_server_holds_is_refused_and_changes_nothing(tmp_path):
    lab = Lab(_endless(), workdir=tmp_path / "lab", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
              progress=False)
    with journal.Journal(lab.journal_dir):  # a task server (`skinnerbox server`) runs on the lab's journal
        with pytest.raises(journal.JournalLocked, match=r"journal .* is in use by a task server \(pid \d+\)"):
            lab.run()
    assert sorted(p.name for p in lab.dir.iterdir()) == ["journal", "lab.lock"]
    assert not (tmp_path / "mlflow.db").exists()
    lab._claim()  # the server gone, the lab may run (its lock was let go when it refused)
    lab._release()


def test_an_agent_that_refuses_its_session_is_not_restarted(tmp_path):
    """An agent whose checkpoint belongs to another session exits with REFUSED; the lab does not restart it
    max_restarts times (each restart would be refused the same way)."""
    import shutil

    from shaping.lab import REFUSED

    cfg = lab_config(agents=[lab_config()["agents"][0]])
    cfg["curricula"]["shaped"]["stages"] = cfg["curricula"]["shaped"]["stages"][:1]
    Lab(cfg, workdir=tmp_path / "lab", tracking_uri="none", progress=False, timeout_s=240).run()
    assert (tmp_path / "lab" / "checkpoints" / "free.ckpt.npz").exists()
    shutil.rmtree(tmp_path / "lab" / "journal")  # the sessions are gone; the trained network is not
    lab = Lab(cfg, workdir=tmp_path / "lab", tracking_uri="none", progress=False, timeout_s=240)
    lab.run()
    row = lab.summary().set_index("agent").loc["free"]
    assert row["exit"] == REFUSED and row["restarts"] == 0 and not row["complete"]
    assert "holds a network trained in an earlier session" in (tmp_path / "lab" / "logs" / "free.log").read_text()
