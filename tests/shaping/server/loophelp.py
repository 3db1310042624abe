"""Helpers for the server tests: an in-process server thread, a raw DEALER, simulated NumPy agents."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from server_thread import ServerThread  # noqa: F401  (re-exported: the server tests import it from here)

from shaping import protocol
from shaping.client import TaskClient

HERE = Path(__file__).resolve().parent
SIM_AGENT = HERE / "sim_agent.py"

# 50 time steps, small batches: cheap enough for many tests on one core.
SMALL_TASK = {"name": "PerceptualDiscrimination", "dt": 10, "T": 500, "N_batch": 16}

STAGES = {
    "kind": "stages",
    "window": 48,
    "stages": [
        {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.7, "min_trials": 48}},
        {"name": "medium", "knobs": {"coherence": 0.3}, "graduate": {"accuracy": 0.7, "min_trials": 48}},
        {"name": "hard", "knobs": {"coherence": 0.1}, "graduate": {"accuracy": 0.7, "min_trials": 48}},
    ],
}


def config(journal: Path | str, **overrides: Any) -> dict:
    base = {"task": dict(SMALL_TASK), "curricula": {"fixed": {"kind": "fixed"}, "shaped": STAGES},
            "seed": 7, "journal": str(journal), "heartbeat_interval_s": 0.2, "expiry_s": 5.0}
    base.update(overrides)
    return base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Raw:
    """A bare DEALER: sends any frames, receives decoded replies (HEARTBEATs skipped)."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def send(self, frames: list) -> None:
        self.sock.send_multipart(frames)

    def send_msg(self, command: str, header: dict | None = None, arrays: dict | None = None) -> None:
        self.send(protocol.encode(command, header, arrays))

    def recv(self, timeout_s: float = 5.0, skip_heartbeats: bool = True) -> protocol.Message:
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                raise TimeoutError("no reply from the server")
            msg = protocol.decode(self.sock.recv_multipart())
            if msg.type != "HEARTBEAT" or not skip_heartbeats:
                return msg

    def request(self, command: str, header: dict | None = None, arrays: dict | None = None,
                timeout_s: float = 5.0) -> protocol.Message:
        self.send_msg(command, header, arrays)
        return self.recv(timeout_s)

    def silent(self, timeout_s: float = 0.3) -> bool:
        """True if nothing but heartbeats arrives within ``timeout_s``."""
        try:
            self.recv(timeout_s)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.sock.close(0)


def answer(batch_y: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Outputs that choose the target on ``correct`` trials and the other channel elsewhere."""
    y_hat = np.array(batch_y, dtype=np.float32)
    wrong = ~correct
    y_hat[wrong] = y_hat[wrong][..., ::-1]
    return y_hat


class AgentThread:
    """A simulated agent (TaskClient in a thread) answering correctly with probability ``p_correct``."""

    def __init__(self, endpoint: str, name: str, curriculum: str | None = None, p_correct: float = 0.9,
                 pause_s: float = 0.0, seed: int = 0, **client_kw: Any):
        self.client = TaskClient(endpoint, name, curriculum=curriculum, **client_kw)
        self.p_correct = p_correct
        self.pause_s = pause_s
        self.rng = np.random.default_rng(seed)
        self.scores: list = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "AgentThread":
        self.client.hello()
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            for batch in self.client.batches():
                if self._stop.is_set():
                    break
                correct = self.rng.random(len(batch)) < self.p_correct
                score = self.client.result(batch, answer(batch.y, correct))
                if score is not None:
                    self.scores.append(score)
                if self.pause_s:
                    time.sleep(self.pause_s)
        except BaseException as err:  # reported by the test
            self.error = err

    def wait_for(self, n_scores: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.scores) < n_scores:
            if self.error is not None:
                raise AssertionError(f"agent failed: {self.error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"agent made {len(self.scores)} of {n_scores} scores in {timeout_s} s")
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.client.close()
