"""The local launcher: every process a subprocess of the lab, in a session of its own (the default)."""
from __future__ import annotations

import signal
import subprocess
import time
from typing import Sequence

from ..procs import process_env
from .base import Launcher, Process


class LocalLauncher(Launcher):
    """Runs each process as a child of the lab (``start_new_session``: a Ctrl-C reaches only the lab, which
    then stops its children in order). Children stop by themselves if the lab dies (:func:`shaping.procs.lab_gone`).

    Args:
        task_path: folders put on each process's ``PYTHONPATH`` (a ``"module:Class"`` task's module).
    """

    name = "local"
    poll_interval_s = 0.5

    def __init__(self, task_path: Sequence = ()):
        self.task_path = list(task_path)

    def start(self, procs: Sequence[Process], env: dict | None = None) -> None:
        for proc in procs:
            proc.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(proc.log_path, "ab") as out:
                proc.handle = subprocess.Popen(proc.argv, stdout=out, stderr=subprocess.STDOUT,
                                               env={**process_env(proc.threads, self.task_path), **(env or {})},
                                               start_new_session=True)
            proc.where = f"pid {proc.handle.pid}"
            proc.mark_started()

    def poll(self, procs: Sequence[Process]) -> dict[str, int]:
        ended = {}
        for proc in procs:
            if proc.handle is not None and proc.running:
                code = proc.handle.poll()
                if code is not None:
                    ended[proc.name] = code
        return ended

    def stop(self, procs: Sequence[Process], grace_s: float) -> None:
        running = [p for p in procs if p.handle is not None and p.handle.poll() is None]
        for proc in running:
            _signal(proc.handle, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in running:
            try:
                proc.handle.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc.handle, signal.SIGKILL)
                try:
                    proc.handle.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for proc in procs:
            if proc.handle is not None and proc.handle.returncode is not None and proc.running:
                proc.mark_ended(proc.handle.returncode)

    @staticmethod
    def pid(proc: Process) -> int | None:
        return None if proc.handle is None else proc.handle.pid


def _signal(popen: subprocess.Popen, sig: int) -> None:
    if popen.poll() is None:
        try:
            popen.send_signal(sig)
        except ProcessLookupError:
            pass
