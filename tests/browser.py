"""Headless Chromium for the browser tests (Debian's chromium and chromium-driver, driven by Selenium).

``.ci/run`` installs both; where they are missing and apt-get cannot install them (no root), the test skips with
the reason.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run")


def ensure_chromium() -> str:
    """Path of the chromium binary, installing Debian's chromium and chromium-driver when missing."""
    binary = shutil.which("chromium")
    if binary and CHROMEDRIVER.exists():
        return binary
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium/chromium-driver missing and apt-get is not usable here (needs root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium",
                                        "chromium-driver"]):
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as err:
            pytest.skip(f"could not install chromium: {' '.join(cmd)} failed ({err})")
        if done.returncode != 0:
            pytest.skip(f"could not install chromium: {' '.join(cmd)} exited {done.returncode}: "
                        f"{done.stderr[-500:]}")
    binary = shutil.which("chromium")
    if not binary or not CHROMEDRIVER.exists():
        pytest.skip("apt-get installed chromium but chromium or /usr/bin/chromedriver is still missing")
    return binary


def chrome(window: str = "1400,1800") -> Any:
    """A headless Chrome WebDriver (quit it when done), in a window of ``window`` (``"width,height"`` px)."""
    binary = ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROME_FLAGS, f"--window-size={window}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
