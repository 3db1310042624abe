"""The MLflow UI that `make ui` serves, in a real headless browser (Debian's chromium + chromedriver, driven by
Selenium), on a small lab's runs: the lab's experiment opens on its runs table (not on MLflow 3's GenAI traces
pages), the parent run and both agent runs are listed, the descriptions show; `make ui` itself starts one server
process and no job workers, and prints no warning.

MLflow 3.17's UI decides an experiment's landing page from its sidebar switch ("GenAI" / "Model training", one
choice per browser, GenAI until changed), not from the experiment's ``mlflow.experimentKind`` tag that the lab
sets (and that earlier 3.x versions read). So the browser test follows the two ways a user gets to the runs: the
link :func:`shaping.tracking.runs_page_url` gives, in a fresh browser, and the experiment list once "Model
training" is chosen.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from browser import chrome
from mlflow import MlflowClient

from agents.tracking import AgentTracker
from shaping import tracking
from shaping.tracking.names import NOTE_TAG
from shaping.tracking.store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

pytestmark = [pytest.mark.slow, pytest.mark.procs]

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT, PARENT = "ui-lab", "ui-lab-session"
SHAPED = {"kind": "stages", "stages": [{"name": "easy", "knobs": {"coherence": 0.7}},
                                       {"name": "mixed", "knobs": {"coherence": [0.3, 0.7]}},
                                       {"name": "final", "knobs": {"coherence": [0.1, 0.3, 0.5, 0.7]}}]}
AGENTS = {"shaped": {"N_rec": 50}, "dale": {"N_rec": 50, "dale_ratio": 0.8, "autapses": False,
                                            "regions": {"regions": {"sensory": 25, "decision": 25}}}}
LAB_CONFIG = {"lab": {"name": EXPERIMENT}, "curricula": {"shaped": SHAPED},
              "agents": [{"name": name, "curriculum": "shaped", **model} for name, model in AGENTS.items()]}
SUMMARY = pd.DataFrame([
    {"agent": "shaped", "curriculum": "shaped", "trials": 2880, "graduations": 3, "final_accuracy": 0.9,
     "complete": True, "trials_to_complete": 2880},
    {"agent": "dale", "curriculum": "shaped", "trials": 4096, "graduations": 1, "final_accuracy": 0.7,
     "complete": False, "trials_to_complete": None},
])
CURRICULUM_LINE = "curriculum shaped (stages: easy → mixed → final)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> dict:
    """A small lab's runs in an sqlite store, written as a lab writes them: the parent run (LabRun), one run
    per agent from the server's hooks (CurriculumTracker) completed by the agent (AgentTracker), the summary."""
    root = tmp_path_factory.mktemp("mlflow_ui")
    uri = tracking.default_tracking_uri(root)
    parent = tracking.LabRun.start(uri, EXPERIMENT, LAB_CONFIG, run_name=PARENT)
    assert parent.enabled
    tracker = tracking.CurriculumTracker(parent, background=False)
    runs = {}
    for name, model in AGENTS.items():
        runs[name] = tracker.on_session_start(name, SHAPED, {}, curriculum_name="shaped")
        agent = AgentTracker(runs[name], background=False)
        agent.log_model_config({"model": "Basic", **model})
        tracker.on_session_end(name, None)
    assert parent.log_summary(SUMMARY)
    parent.end()
    return {"root": root, "uri": uri, "experiment_id": parent.experiment_id, "parent": parent.run_id,
            "runs": {name: run["run_id"] for name, run in runs.items()}}


def descendants(pid: int) -> list[tuple[int, str]]:
    """``(pid, command line)`` of every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        out.append((p, cmd))
        todo.extend(children.get(p, []))
    return out


@pytest.fixture(scope="module")
def ui(lab):
    """`make ui` (the repository's Makefile target) on the lab's store, on a free loopback port; yields its URL,
    process and output once uvicorn says it serves and /health answers."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    port = free_port()
    cmd = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "-o", "install", "ui",
           f"VENV={REPO / '.venv'}", f"UI_PORT={port}"]
    proc = subprocess.Popen(cmd, cwd=lab["root"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: stopped as one below
    lines: list[str] = []
    serving = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "Uvicorn running on" in line:
                serving.set()
        serving.set()  # the output ended: make exited

    threading.Thread(target=read, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    try:
        assert serving.wait(180) and proc.poll() is None, f"`make ui` did not start: {''.join(lines)[-3000:]}"
        with urllib.request.urlopen(f"{url}/health", timeout=10) as r:
            assert r.status == 200 and r.read().strip() == b"OK"
        yield {"url": url, "proc": proc, "lines": lines}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def test_make_ui_runs_one_server_and_no_job_workers_and_prints_no_warning(ui):
    procs = [cmd for _, cmd in descendants(ui["proc"].pid)]
    assert not [cmd for cmd in procs if "huey" in cmd or "_job_runner" in cmd], procs
    # the `mlflow server` command and its one uvicorn worker (make's shell execs the first)
    assert len(procs) == 2 and sum("mlflow server" in c for c in procs) == sum("uvicorn" in c for c in procs) == 1, \
        procs
    output = "".join(ui["lines"])
    assert "warning" not in output.lower() and "deprecat" not in output.lower(), output


def test_the_store_holds_the_kind_the_summary_and_the_descriptions(lab):
    client = MlflowClient(tracking_uri=lab["uri"])
    experiment = client.get_experiment(lab["experiment_id"])
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    parent = client.get_run(lab["parent"])
    assert parent.data.metrics["summary/shaped/trials_to_criterion"] == 2880
    assert "summary/dale/trials_to_criterion" not in parent.data.metrics  # never reached
    assert parent.data.metrics["summary/dale/trials"] == 4096
    assert parent.data.tags["summary.shaped.outcome"] == "complete"
    assert parent.data.tags["summary.dale.outcome"] == "incomplete"
    note = parent.data.tags[NOTE_TAG].splitlines()
    assert note[:5] == [f"Lab **{EXPERIMENT}**: 2 agents, 1 curriculum.", "", "**Summary**",
                        "- shaped: complete, criterion at 2,880 trials (2,880 trials trained)",
                        "- dale: incomplete (4,096 trials trained)"]
    assert "- agent shaped: curriculum shaped; N_rec 50" in note
    assert "- agent dale: curriculum shaped; N_rec 50, Dale 0.8, no autapses, 2 regions" in note
    assert f"- {CURRICULUM_LINE}" in note
    assert client.get_run(lab["runs"]["shaped"]).data.tags[NOTE_TAG] == f"{CURRICULUM_LINE}; N_rec 50"
    assert client.get_run(lab["runs"]["dale"]).data.tags[NOTE_TAG] == \
        f"{CURRICULUM_LINE}; N_rec 50, Dale 0.8, no autapses, 2 regions"


def test_the_experiment_opens_on_its_runs_in_a_browser(ui, lab, tmp_path):
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chrome("1400,1000")
    waiter = WebDriverWait(driver, 90, poll_frequency=0.25)

    def text() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    def wait(condition, what: str = "") -> None:
        """Wait for ``condition``; on timeout, fail saying where the browser is and what it shows."""
        try:
            waiter.until(condition)
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what or condition} at {driver.current_url}; the page "
                                 f"shows: {text()[:1500]!r}") from None

    def shows_runs() -> bool:
        """On the experiment's runs table, not a GenAI page, with the parent run listed."""
        url = driver.current_url
        return f"/experiments/{lab['experiment_id']}/runs" in url and "workflowType=genai" not in url \
            and PARENT in text()

    def expand_parent() -> None:
        """Show the agents' runs, listed under the parent's row (the UI keeps a row open once opened)."""
        if not all(name in text() for name in AGENTS):
            cell = driver.find_element(By.XPATH, f"//a[normalize-space()='{PARENT}']/ancestor::*[@role='gridcell']")
            cell.find_element(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']").click()
        wait(lambda d: all(name in text() for name in AGENTS), "the agents' runs under the parent")

    try:
        driver.set_page_load_timeout(60)
        # 1. the link to the lab's runs, in a fresh browser (its stored choice is MLflow's default, GenAI)
        driver.get(tracking.runs_page_url(ui["url"], lab["experiment_id"]))
        wait(lambda d: shows_runs(), "the runs table")
        expand_parent()
        assert "Traces" not in [e.text for e in driver.find_elements(By.CSS_SELECTOR, "h1, h2")]

        # 2. the experiment list: choose "Model training" (MLflow 3.17's per-browser switch), click the lab
        driver.get(f"{ui['url']}/#/experiments")
        wait(lambda d: d.find_elements(By.LINK_TEXT, EXPERIMENT), "the experiment list")
        switch = driver.find_elements(By.XPATH, "//*[normalize-space(text())='Model training']")
        if switch:  # absent in MLflow versions without the switch, where the experiment's tag decides
            switch[0].click()
            wait(lambda d: d.execute_script("return window.localStorage.getItem('mlflow.workflowType_v1')")
                 == '"machine_learning"', "the switch to store its choice")
            driver.get(f"{ui['url']}/#/experiments")
            wait(lambda d: d.find_elements(By.LINK_TEXT, EXPERIMENT), "the experiment list")

        def click_experiment(d) -> bool:  # the list re-renders as it loads: click until the page changes
            if f"/experiments/{lab['experiment_id']}" in d.current_url:
                return True
            with contextlib.suppress(WebDriverException):
                d.find_element(By.LINK_TEXT, EXPERIMENT).click()
            return False

        wait(click_experiment, "a click on the experiment to open it")
        wait(lambda d: shows_runs(), "the runs table")
        expand_parent()
        shot = tmp_path / "mlflow_runs.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

        # 3. the descriptions, on the parent's and an agent's run page
        driver.get(f"{ui['url']}/#/experiments/{lab['experiment_id']}/runs/{lab['parent']}")
        wait(lambda d: "2 agents, 1 curriculum" in text())
        assert "shaped: complete, criterion at 2,880 trials" in text()
        driver.get(f"{ui['url']}/#/experiments/{lab['experiment_id']}/runs/{lab['runs']['dale']}")
        wait(lambda d: "N_rec 50, Dale 0.8, no autapses, 2 regions" in text())
        print(f"screenshot: {shot}")
    finally:
        driver.quit()
