"""A real TaskServer running its loop in a background thread, for tests in any folder (this one is on the path)."""
from __future__ import annotations

import threading
from typing import Any

from shaping.server import TaskServer


class ServerThread:
    """A real TaskServer running its loop in a background thread; a context manager that stops it."""

    def __init__(self, cfg: dict):
        self.server = TaskServer(cfg)
        self.endpoint = self.server.start()
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "server thread did not stop"

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
