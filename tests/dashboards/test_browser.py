"""The running dashboard in a real headless browser (Debian's chromium + chromedriver, driven by Selenium):
the charts appear, no view shows an error, and a screenshot is saved."""
from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import pytest
from browser import chrome
from labsim import expected_sweep, free_port

from dashboards.launch import app_command

pytestmark = pytest.mark.slow

TABS = "[data-testid='stTab'], [role='tab']"  # a tab header (div in Streamlit 1.5x+, button before)
PANELS = ("[data-testid='stTabPanel']", "[role='tabpanel']")  # a tab's body


@pytest.fixture
def server(lab, tmp_path):
    """The dashboard served by `streamlit run` on a free loopback port; yields its URL."""
    yield from serve(lab["lab"], tmp_path)


@pytest.fixture
def sweep_server(sweep_lab, tmp_path):
    """The dashboard of the swept lab (see labsim.SWEEP_LAB); yields its URL."""
    yield from serve(sweep_lab["lab"], tmp_path)


def serve(lab_dir, tmp_path):
    """Serve the dashboard of ``lab_dir`` with `streamlit run` on a free loopback port; yields its URL."""
    port = free_port()
    log = open(tmp_path / "streamlit.log", "w")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen(app_command(lab_dir, port=port, refresh_s=0), stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError(f"streamlit did not start: {(tmp_path / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_dashboard_in_a_headless_browser(server, tmp_path):
    driver = chrome("1400,1800")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        driver.set_page_load_timeout(60)
        driver.get(server)
        wait = WebDriverWait(driver, 90, poll_frequency=0.5)
        css = driver.find_elements
        # the Status tab's live chart (Vega-Lite) is drawn...
        wait.until(lambda d: css(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart'] canvas, "
                                                  "[data-testid='stVegaLiteChart'] svg"))
        # ...then each tab's figures (PNG images) load
        for label in ("Agent", "Compare", "Psychometrics", "Connectivity"):
            button = next(b for b in css(By.CSS_SELECTOR, TABS) if b.text.strip() == label)
            button.click()
            wait.until(lambda d: any(img.is_displayed() and d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                for img in css(By.CSS_SELECTOR, "[data-testid='stImage'] img, [data-testid='stFullScreenFrame'] img")))
        assert not css(By.CSS_SELECTOR, "[data-testid='stException']")
        assert not css(By.CSS_SELECTOR, "[data-testid='stAlertContentError']")
        next(b for b in css(By.CSS_SELECTOR, TABS) if b.text.strip() == "Agent").click()
        time.sleep(1.0)
        shot = tmp_path / "dashboard.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        driver.quit()


def test_the_report_stays_inside_the_page(lab, tmp_path):
    """The report's wide tables (the MLflow runs: one column per param and metric) scroll inside their own box:
    the page is no wider than the window (it was 7,815 px for the demo)."""
    from selenium.webdriver.common.by import By

    from dashboards.report import write_report

    path = write_report(lab["lab"], tmp_path / "report.html")
    driver = chrome("1400,1800")
    try:
        driver.set_page_load_timeout(60)
        driver.get(path.as_uri())
        width = driver.execute_script("return window.innerWidth")
        page = driver.execute_script("return Math.max(document.body.scrollWidth, "
                                     "document.documentElement.scrollWidth)")
        assert page <= width + 2, f"the report is {page} px wide in a {width} px window"
        runs = driver.find_element(By.ID, "table-mlflow-runs")
        box = runs.find_element(By.XPATH, "..")
        # the runs table is wider than the page, and its box scrolls it
        assert driver.execute_script("return arguments[0].scrollWidth", runs) > width
        assert driver.execute_script("return arguments[0].clientWidth", box) < width
        assert driver.execute_script("return getComputedStyle(arguments[0]).overflowX", box) == "auto"
    finally:
        driver.quit()


def test_the_sweep_tab_in_a_headless_browser(sweep_server, sweep_lab, tmp_path):
    """A swept lab's dashboard has a Sweep tab: its table (the sweep's factors and values) and figure show."""
    driver = chrome("1400,1800")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        driver.set_page_load_timeout(60)
        driver.get(sweep_server)
        wait = WebDriverWait(driver, 90, poll_frequency=0.5)
        css = driver.find_elements
        wait.until(lambda d: any(b.text.strip() == "Sweep" for b in css(By.CSS_SELECTOR, TABS)))
        labels = [b.text.strip() for b in css(By.CSS_SELECTOR, TABS)]
        assert labels.index("Sweep") == labels.index("Compare") + 1
        next(b for b in css(By.CSS_SELECTOR, TABS) if b.text.strip() == "Sweep").click()

        def shown(inner: str) -> list:
            """The displayed elements ``inner`` of the open tab."""
            found = css(By.CSS_SELECTOR, ", ".join(f"{p}:not([hidden]) {inner}" for p in PANELS))
            return [e for e in found if e.is_displayed()]

        wait.until(lambda d: any(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                                  img) for img in shown("[data-testid='stImage'] img")))
        grids = shown("[data-testid='stDataFrame']")
        assert len(grids) == 2  # the sweep table and the swept agents

        def table_rows():  # the grid draws on a canvas; its cells are also in an accessible table, row by row
            return driver.execute_script("return Array.from(arguments[0].querySelectorAll('tr')).map(r => "
                                         "Array.from(r.querySelectorAll('td, th')).map(c => c.textContent.trim()))",
                                         grids[0])

        rows = wait.until(lambda d: (lambda r: r if len(r) > 1 and len(r[0]) >= 7 else None)(table_rows()))
        header = rows[0][-7:]
        assert header == ["factor", "value", "agents", "reached", "median", "q1", "q3"], rows[:2]
        got = {(r[-7], r[-6]): (int(r[-5]), int(r[-4])) for r in rows[1:] if len(r) >= 7}
        assert got == {g: (w["agents"], w["reached"]) for g, w in expected_sweep(sweep_lab).items()}
        assert not css(By.CSS_SELECTOR, "[data-testid='stException']")
        assert not css(By.CSS_SELECTOR, "[data-testid='stAlertContentError']")
        shot = tmp_path / "sweep.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")
    finally:
        driver.quit()
