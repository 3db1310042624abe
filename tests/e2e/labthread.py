"""Running a real lab in a thread while a test acts on it, and waiting on what the lab does (never on sleeps)."""
from __future__ import annotations

import threading
import time

from shaping.lab import Lab


def run_in_thread(lab: Lab) -> threading.Thread:
    """Start, supervise and stop ``lab`` in a daemon thread (signal handlers stay with the main thread)."""

    def target():
        lab.start()
        try:
            lab.supervise()
        finally:
            lab.stop()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def wait_for(predicate, timeout_s: float, what: str, thread: threading.Thread | None = None):
    """Poll ``predicate`` until it returns something true (returned); AssertionError after ``timeout_s`` (s), or
    at once when ``thread`` (the lab's) has ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if thread is not None and not thread.is_alive():
            raise AssertionError(f"the lab ended while waiting for {what}")
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
