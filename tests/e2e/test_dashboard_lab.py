"""The dashboard and the static report on a real lab run (TensorFlow agents, MLflow store)."""
from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from streamlit.testing.v1 import AppTest

from dashboards.launch import app_path
from shaping import journal

pytestmark = [pytest.mark.procs, pytest.mark.tf]
ROOT = Path(__file__).resolve().parents[2]


def test_report_holds_every_figure_and_is_logged_to_the_parent_run(short_lab):
    out = short_lab.dir / "report" / "report.html"
    proc = subprocess.run([sys.executable, "-m", "shaping.cli", "report", str(short_lab.dir), "--out", str(out),
                           "--tracking-uri", short_lab.tracking_uri], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = out.read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) >= 6
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    for agent in ("free", "dale"):
        assert agent in html
    per_agent = journal.load(short_lab.journal_dir).groupby("agent").size()
    for agent, n_trials in per_agent.items():  # the agents table counts every journaled trial
        row = rf"<td>{agent}</td>(?:(?!</tr>).)*<td>({n_trials}|{n_trials:,})</td>"  # in the agent's own row
        assert re.search(row, html, re.S), (agent, n_trials)
    client = MlflowClient(short_lab.tracking_uri)
    parent = short_lab.lab_run.run_id
    listed = [a.path for a in client.list_artifacts(parent, "report")]
    assert any(p.endswith(".html") for p in listed), listed


def test_app_renders_every_view_of_the_real_lab(short_lab):
    at = AppTest.from_file(str(app_path()), default_timeout=120)
    at.session_state["lab_dir"] = str(short_lab.dir)
    at.session_state["tracking_uri"] = short_lab.tracking_uri
    at.session_state["refresh_s"] = 0.0
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.tabs) >= 5
    agents = at.selectbox(key="agent")
    assert set(agents.options) == {"free", "dale"}
    agents.set_value("dale").run()
    assert not at.exception, [e.value for e in at.exception]
