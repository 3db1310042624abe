"""The task client an agent uses: a DEALER that hides framing, credit, heartbeats and reconnection.

NumPy (and pandas) only, so it runs anywhere; the TF agent drives it as::

    client = TaskClient("tcp://127.0.0.1:5555", "a1", curriculum="shaped")
    welcome = client.hello()                      # task spec: welcome.task["N_in"], ["N_out"], ["dt"], ...
    for batch in client.batches():                # keeps `credit` batches in flight; ends when complete
        y_hat = train_step(batch.x, batch.y, batch.mask)   # (n, N_steps, N_out) outputs of that step
        score = client.result(batch, y_hat)       # the server's scoring; None if the batch was lost
        if score is not None and score.complete:
            break
    client.bye()

Liveness follows ZeroMQ's Paranoid Pirate (RFC 6): while it waits for the server the client sends HEARTBEAT
every interval; after 3 silent intervals it closes its socket, opens a new one and says HELLO again (same
agent name: the session resumes), backing off from 0.1 s to 5 s, and gives up with ``ConnectionError`` after
``timeout_s`` without an answer. It resynchronises the same way when a reply has not come within the
server's ``expiry_s``. Batches in flight when it reconnects are void: :meth:`result` on one returns None (the
server never scores an answer against a batch of another epoch). A BYE from the server (``shutdown``,
``replaced``) raises :class:`ServerClosed` from the next call that has to wait for the server.

Arrays received are read-only views of the message buffers (no copy).

Protocol 2: the client offers to build its trials (``build=True``); when the server agrees (``[server] build =
"agent"``), each BATCH carries what the server decided instead of the trials, the client builds the batch with
the same task code (:class:`AgentTrials`; ``batch.x``, ``y``, ``mask`` and ``params`` as before)
and :meth:`TaskClient.result` sends only the outputs in each trial's scoring window.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd
import zmq

from . import keys as curve_keys
from . import protocol
from .protocol import ProtocolError
from .tasks.build import fingerprint, make_task
from .tasks.build import versions as build_versions

log = logging.getLogger(__name__)

MAX_INTERNAL_ERRORS = 5  # INTERNAL errors in a row, with no batch or score between them, before giving up


class ServerClosed(ConnectionError):
    """The server said BYE (``reason``: ``"shutdown"``, ``"replaced"``, ...), or the client gave up waiting."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"the task server closed the session: {reason}")


@dataclass
class Welcome:
    """The server's WELCOME (see PROTOCOL.md for each field)."""

    session: str
    agent: str
    curriculum: str
    resumed: bool
    epoch: int
    trials: int
    batches: int
    stage: str
    stage_index: int
    knobs: dict
    complete: bool
    task: dict
    credit: int
    heartbeat_interval_s: float
    expiry_s: float
    limits: dict
    run: dict

    @classmethod
    def from_header(cls, header: Mapping[str, Any]) -> "Welcome":
        return cls(**{k: header[k] for k in cls.__dataclass_fields__})


@dataclass
class RemoteBatch:
    """A batch of trials from the server.

    Attributes:
        batch_id: its id in the session's stream. epoch: the connection epoch it belongs to.
        x: inputs ``(n, N_steps, N_in)`` float32. y: targets ``(n, N_steps, N_out)``. mask: same shape.
        task, stage, stage_index, knobs: what it was drawn from and under.
        param_arrays: numeric trial parameters by name, ``(n,)`` each; ``params`` gives them all as a table.
        built: the whole batch (``shaping.tasks.Batch``) when this agent built it (protocol 2), else None;
            built_by: the task that built it.
    """

    batch_id: int
    epoch: int
    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    task: str
    stage: str
    stage_index: int
    knobs: dict
    param_arrays: dict = field(default_factory=dict)
    param_lists: dict = field(default_factory=dict)
    built: Any = None
    built_by: Any = None
    building: Any = None  # a Future of (task, batch) until get() hands the batch out
    readout: str | None = None  # built here: what the RESULT carries, "mean" or "window" (the server's BATCH says)

    def __len__(self) -> int:
        return self.x.shape[0]

    def finish_building(self) -> "RemoteBatch":
        """Wait for a batch being built here (a background thread builds each as it arrives); itself."""
        if self.building is not None:
            self.built_by, self.built = self.building.result()
            self.x, self.y, self.mask = self.built.x, self.built.y, self.built.mask
            self.building = None
        return self

    @property
    def params(self) -> pd.DataFrame:
        """Trial parameters, one row per trial."""
        if self.built is not None:
            return self.built.params
        return pd.DataFrame({**self.param_arrays, **self.param_lists})


@dataclass
class Score:
    """The server's SCORE for one batch.

    Attributes:
        batch_id, n, correct, accuracy: this batch (accuracy = correct / n).
        window_accuracy: over the server's recent-trial window; policy_accuracy: the policy's own window.
        trials, batches: session totals. stage, stage_index, knobs: for the next batch.
        events: policy events this batch caused. complete: the curriculum is complete (stop).
        outcome: ``(n,)`` int8, 0 correct / 1 error / 2 no response. choice, target: ``(n,)`` int32.
    """

    batch_id: int
    n: int
    correct: int
    accuracy: float
    window_accuracy: float | None
    policy_accuracy: float | None
    trials: int
    batches: int
    stage: str
    stage_index: int
    knobs: dict
    events: list
    complete: bool
    outcome: np.ndarray
    choice: np.ndarray
    target: np.ndarray


class AgentTrials:
    """An agent's side of protocol 2: builds each batch the server decides, from the tasks of its WELCOME.

    Args:
        tasks: key -> task config (WELCOME's ``tasks``).
        expected: the server's fingerprint (WELCOME's ``fingerprint``).

    Raises:
        ProtocolError: ``BUILD_MISMATCH`` when a task cannot be built here or this side's fingerprint differs
            from the server's (what differs is named where it can be: the versions).

    Attributes:
        fingerprint: this side's fingerprint (sent in every GET).
    """

    def __init__(self, tasks: Mapping[str, Mapping[str, Any]], expected: str | None):
        self.configs = {str(k): dict(v) for k, v in tasks.items()}
        try:
            self.fingerprint = fingerprint(self.configs)
        except ValueError as err:
            raise ProtocolError("BUILD_MISMATCH", f"{err}; make the task importable beside the agent (the same "
                                                  "task_path) or set [server] build = \"server\"") from None
        if expected is not None and self.fingerprint != expected:
            raise ProtocolError("BUILD_MISMATCH", f"this agent would build its trials otherwise than the server "
                                                  f"(fingerprint {self.fingerprint}, the server's {expected}): "
                                                  f"the task code or configs differ ({build_versions()} here); "
                                                  "install the same skinnerbox and task modules on both sides, or "
                                                  "set [server] build = \"server\"")
        self._tasks: dict[tuple[str, int], Any] = {}

    @classmethod
    def for_welcome(cls, welcome: Mapping[str, Any]) -> "AgentTrials":
        """The builder a WELCOME with ``build = "agent"`` describes."""
        return cls(welcome.get("tasks") or {}, welcome.get("fingerprint"))

    def task(self, key: str, seed: int) -> Any:
        """The task of config ``key`` seeded with ``seed`` (built once)."""
        task = self._tasks.get((key, seed))
        if task is None:
            if key not in self.configs:
                raise ProtocolError("BAD_VALUE", f"BATCH names task {key!r}, which the WELCOME did not list "
                                                 f"(tasks: {', '.join(self.configs)})")
            task = self._tasks[(key, seed)] = make_task(self.configs[key], seed)
        return task

    def build(self, header: Mapping[str, Any]) -> tuple[Any, Any]:
        """``(task, batch)``: the batch a BATCH header with ``build`` describes (``shaping.tasks.Batch``), the same
        trials the server's task stream holds for that batch id, stage, knobs and repeats, and its task."""
        b = header["build"]
        task = self.task(str(b["task"]), int(b["seed"]))
        return task, task.generate(n=int(header["n"]), knobs=header["knobs"], batch_id=int(header["batch"]),
                                   repeat=b.get("repeat") or None)


class TaskClient:
    """An agent's connection to a task server.

    Args:
        endpoint: the server's endpoint, e.g. ``tcp://127.0.0.1:5555`` or ``ipc:///path/server.sock``; or a sharded
            lab's front, whose REDIRECT the client follows to the shard holding its session (and returns to at
            every reconnection).
        agent: the agent's name (its session key; reconnecting under it resumes the session).
        curriculum: which of the server's curricula to follow (None: the server's default).
        info: model and constraint settings, journaled by the server and handed to its tracking hooks.
        credit: the most batches to keep in flight (default: what the server allows).
        n: trials per batch (default: the task's ``N_batch``).
        heartbeat_interval_s: heartbeat interval until the server's WELCOME sets it (s).
        timeout_s: give up (``ConnectionError``) after this long without any answer from the server (s).
        reconnect_initial_s, reconnect_max_s: Paranoid Pirate back-off bounds (s).
        keys: a CurveZMQ keys directory (``skinnerbox keys``) holding ``server.key`` and
            ``clients/<client_name>.key_secret``; needed for a server off loopback.
        client_name: which client key pair of ``keys`` to use.
        server_key, client_secret_file: alternatively, the server's public key (Z85 or a ``server.key`` path)
            and this client's ``.key_secret`` file.
        context: ZeroMQ context (default: a private one).
        give_up: called while waiting for the server; when it returns True the wait ends with
            :class:`ServerClosed` (an agent a lab started gives up once that lab is gone).
        build: offer to build this agent's trials here from what the server decides (protocol 2; the server's
            ``build`` setting decides): the server then sends a few hundred bytes per batch instead of the trials,
            and this client answers with the outputs in each trial's scoring window only.
        outputs_dtype: ``"float32"`` or ``"float16"``: how the outputs of batches built here travel (float16
            halves the bytes; scoring reads them as float32); None: as the server's WELCOME says.
        find_server: called at each reconnection for the server's current endpoint (None: keep the last one):
            a server that moved (a SLURM job requeued onto another node) is found again from its
            ``server.json``. With it, a server's BYE on shutdown is not the end: the client waits up to
            ``timeout_s`` for the server to come back, then raises ``ConnectionError``.
    """

    def __init__(self, endpoint: str, agent: str, *, curriculum: str | None = None,
                 info: Mapping[str, Any] | None = None, credit: int | None = None, n: int | None = None,
                 heartbeat_interval_s: float = 1.0, timeout_s: float = 60.0, reconnect_initial_s: float = 0.1,
                 reconnect_max_s: float = 5.0, keys: str | os.PathLike | None = None,
                 client_name: str = "client", server_key: str | bytes | os.PathLike | None = None,
                 client_secret_file: str | os.PathLike | None = None, context: zmq.Context | None = None,
                 give_up: Callable[[], bool] | None = None, find_server: Callable[[], str | None] | None = None,
                 build: bool = True, outputs_dtype: str | None = None):
        protocol.check_agent_name(agent)
        if outputs_dtype not in (None, "float32", "float16"):
            raise ValueError(f"TaskClient: outputs_dtype must be 'float32' or 'float16', got {outputs_dtype!r}")
        for name, val in (("heartbeat_interval_s", heartbeat_interval_s), ("timeout_s", timeout_s),
                          ("reconnect_initial_s", reconnect_initial_s), ("reconnect_max_s", reconnect_max_s)):
            if not val > 0:
                raise ValueError(f"TaskClient: {name} must be a positive number of seconds, got {val!r}")
        if credit is not None and (not isinstance(credit, int) or credit < 1):
            raise ValueError(f"TaskClient: credit must be a positive integer, got {credit!r}")
        if n is not None and (not isinstance(n, int) or n < 1):
            raise ValueError(f"TaskClient: n must be a positive number of trials, got {n!r}")
        self.endpoint = endpoint
        self._find_server = find_server
        self.agent = agent
        self.curriculum = curriculum
        self.info = dict(info or {})
        self.n = n
        self._credit_wanted = credit
        self.heartbeat_interval_s = float(heartbeat_interval_s)
        self.timeout_s = float(timeout_s)
        self.reconnect_initial_s = float(reconnect_initial_s)
        self.reconnect_max_s = float(reconnect_max_s)
        self._curve = self._curve_keys(keys, client_name, server_key, client_secret_file)
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.limits = protocol.LIMITS
        self.welcome: Welcome | None = None
        self.session: str | None = None
        self.epoch = 0
        self.complete = False
        self.reconnects = 0  # HELLOs sent after the first WELCOME
        self._socket: zmq.Socket | None = None
        self._poller = zmq.Poller()
        self._seq = itertools.count(1)
        self._pending: dict[int, tuple[str, int | None]] = {}
        self._queue: deque[RemoteBatch] = deque()
        self._in_flight: set[int] = set()
        self._gets = 0  # GETs sent and not answered
        # Keyed by (epoch, batch id): a restarted server issues the ids of unscored batches again.
        self._scores: dict[tuple[int, int], Score | None] = {}
        self._answered: set[tuple[int, int]] = set()  # RESULT sent, score not yet collected by score()
        self._give_up = give_up
        self._need_hello = False
        self._internal_in_a_row = 0  # INTERNAL errors since the last BATCH or SCORE
        self._bye: str | None = None  # the reason of a BYE from the server
        self._server_left = False  # it said BYE (shutdown) and find_server will find it again
        self._closed = False
        self._last_heard = time.monotonic()
        self._last_sent = 0.0
        self.build = bool(build)
        self._outputs_wanted = outputs_dtype
        self.outputs_dtype = np.dtype(outputs_dtype or "float32")
        self._builder: AgentTrials | None = None  # when the server lets this agent build its trials
        self._built: dict[tuple[int, int], RemoteBatch] = {}  # built here, no RESULT sent yet
        self._build_pool: ThreadPoolExecutor | None = None
        # Behind a sharded lab's front (PROTOCOL.md, "Shards and the front"): where the session lives.
        self.shard: int | None = None  # the shard holding the session (None: a single server, or the front)
        self.shard_endpoint: str | None = None  # that shard's endpoint, the socket's peer while shard is set
        self.max_redirects = 4  # REDIRECTs in a row with no WELCOME (and no pause) before giving up: a loop
        self._redirect: tuple[str, int] | None = None  # a REDIRECT to follow with the next HELLO: (endpoint, shard)
        self._redirects = 0  # REDIRECTs followed in a row

    @property
    def builds_trials(self) -> bool:
        """True when this session's trials are built here (the server's WELCOME said so)."""
        return self._builder is not None

    @staticmethod
    def _curve_keys(keys: Any, client_name: str, server_key: Any, client_secret_file: Any) -> dict | None:
        if keys is not None:
            server_public = curve_keys.server_public_key(keys)
            public, secret = curve_keys.client_keys(keys, client_name)
        elif server_key is not None or client_secret_file is not None:
            if server_key is None or client_secret_file is None:
                raise ValueError("TaskClient: CURVE needs both server_key and client_secret_file (or keys=DIR)")
            if isinstance(server_key, (str, bytes)) and len(server_key) == 40 and not os.path.exists(server_key):
                server_public = server_key.encode() if isinstance(server_key, str) else server_key
            else:
                server_public = curve_keys.server_public_key(server_key)
            public, secret = curve_keys.client_keys(client_secret_file)
        else:
            return None
        return {"server": server_public, "public": public, "secret": secret}

    # ------------------------------------------------------------------ public API
    @property
    def credit(self) -> int:
        """Batches this client keeps in flight."""
        allowed = self.welcome.credit if self.welcome else 1
        return min(allowed, self._credit_wanted) if self._credit_wanted else allowed

    @property
    def task_spec(self) -> dict:
        """The task spec from WELCOME (``N_in``, ``N_out``, ``dt``, ``tau``, ``T``, ``N_steps``, ...)."""
        if self.welcome is None:
            raise RuntimeError("TaskClient: call hello() first")
        return self.welcome.task

    def hello(self) -> Welcome:
        """Open (or resume) the agent's session; retries with back-off until ``timeout_s``."""
        if self._closed:
            raise RuntimeError("TaskClient: closed")
        self._handshake(new_socket=self._socket is None)
        return self.welcome

    def get(self) -> RemoteBatch:
        """The next batch (asks for more so that ``credit`` batches stay in flight)."""
        self._ensure_session()
        self._pump(lambda: bool(self._queue), top_up=True)
        batch = self._queue.popleft()
        if not self.complete:
            self._top_up()  # prefetch the next one while the caller trains on this one
        return batch.finish_building()

    def batches(self) -> Iterator[RemoteBatch]:
        """Batches until the server says the curriculum is complete."""
        self._ensure_session()
        while not self.complete:
            yield self.get()

    __iter__ = batches

    def result(self, batch: RemoteBatch | int, y_hat: np.ndarray, wait: bool = True) -> Score | None:
        """Send the agent's outputs for a batch and (``wait=True``) return the server's :class:`Score`.

        Args:
            batch: the batch (or its id).
            y_hat: outputs ``(n, N_steps, N_out)``; cast to float32.
            wait: wait for the SCORE; with False the score is kept for :meth:`scores`.

        Returns:
            The score, or None when the server did not score the batch (it was void after a reconnect,
            expired, or already scored) or ``wait`` is False.
        """
        key = self._key(batch)
        self._answered.add(key)
        if key[0] != self.epoch or key[1] not in self._in_flight:
            log.warning("%s: batch %d is not in flight (void after a reconnect?); result dropped", self.agent,
                        key[1])
            self._scores[key] = None
        else:
            mine = self._built.pop(key, None)
            if mine is not None:  # built here: the server reads the outputs in each trial's scoring window only
                mine.finish_building()
                if mine.readout == "mean":  # the task's choice rule reads each trial's window means alone
                    out = mine.built_by.window_mean_outputs(mine.built, y_hat)
                else:
                    out = mine.built_by.window_rows(mine.built, y_hat, self.outputs_dtype)
            else:
                out = np.ascontiguousarray(y_hat, dtype=np.float32)
            seq = self._send("RESULT", {"batch": key[1], "epoch": self.epoch}, {"y_hat": out})
            self._pending[seq] = ("RESULT", key[1])
            if not self.complete:
                # Ask for the next batch right behind this RESULT: the server scores in order, so the batch
                # `credit` places on is drawn after exactly this one's score, whenever the scores arrive here.
                self._top_up()
        return self.score(batch) if wait else None

    def score(self, batch: RemoteBatch | int) -> Score | None:
        """Wait for the :class:`Score` of a batch whose RESULT was sent with ``wait=False`` (at once if it has
        arrived already); None when the server did not score it (void after a reconnect, expired or already
        scored: it issues those trials again).

        Raises:
            ValueError: no RESULT was sent for this batch (or its score was collected already).
        """
        key = self._key(batch)
        if key not in self._answered:
            if key[0] != self.epoch:
                return None  # a batch of an ended epoch: void
            raise ValueError(f"TaskClient.score: no RESULT is waiting for a score for batch {key[1]} "
                             f"(epoch {key[0]})")
        epoch, bid = key
        self._pump(lambda: key in self._scores or self.epoch != epoch or bid not in self._in_flight)
        self._answered.discard(key)
        return self._scores.pop(key, None)

    def scores(self) -> list[Score]:
        """Scores received for results sent with ``wait=False`` (and not yet collected by :meth:`score`)."""
        self._poll_once(0)
        out = [s for s in self._scores.values() if s is not None]
        # collected, or void (an ended epoch never scores)
        self._answered = {k for k in self._answered if k not in self._scores and k[0] == self.epoch}
        self._scores.clear()
        return out

    def _key(self, batch: RemoteBatch | int) -> tuple[int, int]:
        """``(epoch, batch id)``: a batch id alone means one of the current epoch."""
        if isinstance(batch, RemoteBatch):
            return batch.epoch, batch.batch_id
        return self.epoch, int(batch)

    def heartbeat(self) -> None:
        """Read whatever arrived and send a HEARTBEAT if one is due (call it inside very long steps)."""
        self._poll_once(0)
        if self._bye is not None:
            raise ServerClosed(self._bye)
        if time.monotonic() - self._last_sent >= self.heartbeat_interval_s:
            self._send("HEARTBEAT")

    def bye(self, reason: str = "done") -> None:
        """Leave: the server voids this agent's in-flight batches (the session stays, for a later resume)."""
        if self._socket is not None and not self._closed:
            try:
                self._send("BYE", {"reason": reason})
            except zmq.ZMQError:
                pass
            self._socket.close(linger=1000)
            self._socket = None
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._build_pool is not None:
            self._build_pool.shutdown(wait=False, cancel_futures=True)
        if self._own_context:
            self.context.term()

    def __enter__(self) -> "TaskClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.bye()
        else:
            self.close()

    # ------------------------------------------------------------------ sockets

    def _open_socket(self) -> None:
        """A new socket to the server: to the shard a REDIRECT named, else to ``endpoint`` (a single server or
        a sharded lab's front; ``find_server`` may have moved it)."""
        if self._socket is not None:
            self._poller.unregister(self._socket)
            self._socket.close(linger=0)
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        ivl_ms = int(self.heartbeat_interval_s * 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, protocol.LIVENESS * ivl_ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, protocol.LIVENESS * ivl_ms)
        sock.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        if self._curve is not None:
            sock.curve_serverkey = self._curve["server"]
            sock.curve_publickey = self._curve["public"]
            sock.curve_secretkey = self._curve["secret"]
        redirect, self._redirect = self._redirect, None
        if redirect is not None:  # the front's answer: the session lives on this shard
            self.shard_endpoint, self.shard = redirect
            log.info("%s: the lab's front at %s sends it to shard %d at %s", self.agent, self.endpoint, self.shard,
                     self.shard_endpoint)
        else:  # the server, or the front (every reconnection of a sharded session starts there again)
            moved = self._find_server() if self._find_server is not None and self._socket is not None else None
            if moved and moved != self.endpoint:
                log.warning("%s: the task server moved from %s to %s", self.agent, self.endpoint, moved)
                self.endpoint = moved
            self.shard = self.shard_endpoint = None
        sock.connect(self.shard_endpoint or self.endpoint)
        self._socket = sock
        self._poller.register(sock, zmq.POLLIN)

    def _send(self, command: str, header: Mapping[str, Any] | None = None,
              arrays: Mapping[str, Any] | None = None) -> int:
        seq = next(self._seq)
        head = dict(header or {})
        head["seq"] = seq
        try:
            self._socket.send_multipart(protocol.encode(command, head, arrays), zmq.NOBLOCK, copy=False)
        except zmq.Again:  # no connected server (down, or it refused our handshake): silence will tell
            log.debug("%s: %s not sent: no server connected", self.agent, command)
        self._last_sent = time.monotonic()
        return seq

    # ------------------------------------------------------------------ session
    def _ensure_session(self) -> None:
        if self._closed:
            raise RuntimeError("TaskClient: closed")
        if self.welcome is None:
            self.hello()

    def _handshake(self, new_socket: bool) -> None:
        """Say HELLO until WELCOME, reopening the socket with back-off when the server stays silent."""
        deadline = time.monotonic() + self.timeout_s
        backoff = self.reconnect_initial_s
        while True:
            if self.welcome is not None:
                self.reconnects += 1
            # a HELLO after a REDIRECT goes to that shard; any other HELLO of a sharded session asks the front again
            if new_socket or self._socket is None or self._redirect is not None or self.shard is not None:
                self._open_socket()
            self._need_hello = False
            self._bye = None
            header = {"agent": self.agent, "curriculum": self.curriculum, "info": self.info}
            if self.build:
                header.update(build="agent", versions=build_versions())
            if self.session is not None:
                header["resume"] = self.session
            epoch_before = self.epoch
            self._send("HELLO", header)
            self._last_heard = time.monotonic()
            if self._pump(lambda: self.epoch != epoch_before, handshake=True):
                self._redirects = 0
                return
            if self._redirect is not None:  # the front named the shard holding the session: HELLO there now
                self._redirects += 1
                if self._redirects > self.max_redirects:
                    raise ConnectionError(
                        f"TaskClient {self.agent}: redirected {self._redirects} times in a row without a WELCOME "
                        f"(last to shard {self._redirect[1]} at {self._redirect[0]}, from {self.endpoint}): the "
                        "front and its shards disagree on where the session lives (does a shard's server.json "
                        "name a front?)")
                new_socket = True
                continue
            self._redirects = 0
            if time.monotonic() > deadline:
                raise ConnectionError(f"TaskClient {self.agent}: no WELCOME from the task server at "
                                      f"{self.endpoint} within timeout_s = {self.timeout_s} s")
            if self._give_up is not None and self._give_up():
                raise ServerClosed("gave up waiting (give_up)")
            log.warning("%s: no answer from %s; reconnecting in %.1f s", self.agent, self.endpoint, backoff)
            time.sleep(backoff)
            backoff = min(2 * backoff, self.reconnect_max_s)
            new_socket = True

    def _on_welcome(self, header: dict) -> None:
        welcome = Welcome.from_header(header)
        if self.welcome is not None and self._in_flight:
            log.info("%s: reconnected (epoch %d); %d batch(es) in flight are void", self.agent, welcome.epoch,
                     len(self._in_flight))
        self._in_flight.clear()  # void: score() of one of them returns None (its epoch has ended)
        self._queue.clear()
        self._pending.clear()
        self._gets = 0
        self._builder = None
        self._built.clear()
        if header.get("build") == "agent":
            self._builder = AgentTrials.for_welcome(header)
            served = header.get("outputs") if header.get("outputs") in ("float32", "float16") else "float32"
            self.outputs_dtype = np.dtype(self._outputs_wanted or served)
        self.welcome = welcome
        self.session = welcome.session
        self.epoch = welcome.epoch
        self.complete = welcome.complete
        self.heartbeat_interval_s = float(welcome.heartbeat_interval_s)
        try:
            self.limits = protocol.Limits.from_dict(welcome.limits)
        except ValueError as err:
            log.warning("%s: ignoring the server's limits (%s)", self.agent, err)

    # ------------------------------------------------------------------ receiving
    def _top_up(self) -> None:
        """Send GETs until ``credit`` batches are unanswered or asked for (a batch whose RESULT is sent no
        longer counts: the server frees its credit when it scores it, before it reads the next GET)."""
        if self._need_hello or self.welcome is None:
            return
        answered = {b for e, b in self._answered if e == self.epoch}
        header = {"n": self.n} if self.n else {}
        if self._builder is not None:
            header["fingerprint"] = self._builder.fingerprint
        while len(self._in_flight - answered) + self._gets < self.credit:
            seq = self._send("GET", header)
            self._pending[seq] = ("GET", None)
            self._gets += 1

    def _pump(self, done: Callable[[], bool], top_up: bool = False, handshake: bool = False) -> bool:
        """Receive and dispatch until ``done()``. Outside a handshake, reconnects on silence and re-HELLOs
        on NO_SESSION. In a handshake, returns False on silence (the caller backs off)."""
        silence_s = protocol.LIVENESS * self.heartbeat_interval_s
        # A reply lost on the way (e.g. dropped at a full queue) would leave us waiting among heartbeats
        # forever: after expiry_s without it, resynchronise with a new HELLO.
        reply_by = time.monotonic() + (self.welcome.expiry_s if self.welcome else self.timeout_s)
        while not done():
            if self._bye is not None:
                raise ServerClosed(self._bye)
            if self._give_up is not None and self._give_up():
                raise ServerClosed("gave up waiting (give_up)")
            if self._need_hello and not handshake:
                left, self._server_left = self._server_left, False
                self._handshake(new_socket=left)
                continue
            if top_up:
                self._top_up()
            if not self._poll_once(int(self.heartbeat_interval_s * 1000 / 2)):
                now = time.monotonic()
                if now - self._last_heard > silence_s:
                    if handshake:
                        return False
                    log.warning("%s: task server silent for %.1f s; reconnecting", self.agent,
                                now - self._last_heard)
                    self._handshake(new_socket=True)
                    continue
            if self._need_hello and handshake:
                return False
            if not handshake and time.monotonic() > reply_by:
                log.warning("%s: no reply within expiry_s; resynchronising", self.agent)
                self._handshake(new_socket=True)
                reply_by = time.monotonic() + self.welcome.expiry_s
                continue
            if time.monotonic() - self._last_sent >= self.heartbeat_interval_s:
                self._send("HEARTBEAT")
        return True

    def _poll_once(self, timeout_ms: int) -> bool:
        if self._socket is None:
            return False
        if not self._poller.poll(timeout_ms):
            return False
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return True
            self._last_heard = time.monotonic()
            self._dispatch(frames)

    def _dispatch(self, frames: list) -> None:
        msg = protocol.decode(frames, self.limits)
        h = msg.header
        request = self._pending.pop(msg.seq, None) if msg.seq is not None else None
        if msg.type == "WELCOME":
            self._on_welcome(h)
        elif msg.type == "BATCH":
            self._internal_in_a_row = 0
            self._gets = max(0, self._gets - 1)
            if h["epoch"] != self.epoch:
                return
            a = msg.arrays
            self._in_flight.add(h["batch"])
            if "build" in h:
                if self._builder is None:
                    raise ProtocolError("UNEXPECTED", f"batch {h['batch']} is to be built by the agent, but the "
                                                      "server's WELCOME did not say so")
                if self._build_pool is None:
                    # one thread builds each batch as it arrives, while the caller trains on the one before
                    # (NumPy's array work and the generators' fills run outside the GIL, as TensorFlow's ops do)
                    self._build_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"trials-{self.agent}")
                remote = RemoteBatch(h["batch"], h["epoch"], None, None, None, h["task"], h["stage"],
                                     h["stage_index"], h["knobs"], building=self._build_pool.submit(self._builder.build,
                                                                                                    dict(h)),
                                     readout=h["build"].get("readout") or "window")
                self._built[(self.epoch, h["batch"])] = remote
                self._queue.append(remote)
                return
            params = {k[len(protocol.PARAM_PREFIX):]: v for k, v in a.items() if k.startswith(protocol.PARAM_PREFIX)}
            self._queue.append(RemoteBatch(h["batch"], h["epoch"], a["x"], a["y"], a["mask"], h["task"],
                                           h["stage"], h["stage_index"], h["knobs"], params,
                                           h.get("params") or {}))
        elif msg.type == "SCORE":
            self._internal_in_a_row = 0
            bid = h["batch"]
            self._in_flight.discard(bid)
            self.complete = bool(h["complete"])
            a = msg.arrays
            self._scores[(self.epoch, bid)] = Score(
                bid, h["n"], h["correct"], h["accuracy"], h["window_accuracy"], h["policy_accuracy"], h["trials"],
                h["batches"], h["stage"], h["stage_index"], h["knobs"], h["events"], self.complete, a["outcome"],
                a["choice"], a["target"])
        elif msg.type == "ERROR":
            self._on_error(h, request)
        elif msg.type == "REDIRECT":  # a sharded lab's front: the session lives on the shard it names
            if h["agent"] != self.agent:
                log.warning("%s: ignoring a REDIRECT for agent %r", self.agent, h["agent"])
                return
            self._redirect = (h["endpoint"], int(h["shard"]))
            self._need_hello = True  # the handshake follows it (a HELLO to that shard)
        elif msg.type == "BYE":  # raised by _pump once what arrived before it has been handed out
            reason = h.get("reason", "bye")
            if reason == "shutdown" and self._find_server is not None:
                # a server that comes back (restarted by its lab, or a requeued job) is found again: wait for it
                log.warning("%s: the task server is shutting down; waiting up to %.0f s for it to come back",
                            self.agent, self.timeout_s)
                self._server_left = True
                self._need_hello = True
            else:
                self._bye = reason
                log.warning("%s: server said BYE (%s)", self.agent, self._bye)
        elif msg.type != "HEARTBEAT":
            raise ProtocolError("UNEXPECTED", f"the server sent {msg.type}, which only agents send")

    def _on_error(self, h: dict, request: tuple[str, int | None] | None) -> None:
        err = ProtocolError(h["code"], h["detail"], h.get("batch"))
        kind, bid = request if request else (None, h.get("batch"))
        if err.action == protocol.RETRY:
            log.warning("%s: %s", self.agent, err)
            if kind == "GET" or err.name == "NO_CREDIT":
                self._gets = max(0, self._gets - 1)
            if bid is not None and err.name in ("UNKNOWN_BATCH", "ALREADY_SCORED"):
                self._in_flight.discard(bid)
                self._scores.setdefault((self.epoch, bid), None)
            return
        if err.name == "INTERNAL":
            self._internal_in_a_row += 1
            if self._internal_in_a_row >= MAX_INTERNAL_ERRORS:  # the same failure at every try: a server bug
                raise ProtocolError(err.code, f"{err.detail} (the server failed {self._internal_in_a_row} times in "
                                              f"a row, with no batch or score in between: giving up)", err.batch)
        if err.action == protocol.RECONNECT:
            log.warning("%s: %s; saying HELLO again", self.agent, err)
            if err.name != "NO_SESSION":
                time.sleep(self.reconnect_initial_s)
            self._need_hello = True
            return
        raise err


# ---------------------------------------------------------------------------------------------- operators
_NO_VALUE = object()


def override(endpoint: str, agent: str, *, stage: str | int | None = None, knob: str | None = None,
             value: Any = _NO_VALUE, note: str | None = None, timeout_s: float = 10.0,
             keys: str | os.PathLike | None = None, client_name: str = "client",
             server_key: str | bytes | os.PathLike | None = None,
             client_secret_file: str | os.PathLike | None = None) -> dict:
    """Move a running agent's curriculum by hand (PROTOCOL.md, "Operator overrides"): one OVERRIDE on a
    connection of its own, journaled by the server before it answers.

    Args:
        endpoint: the server's endpoint (a lab's is in ``LAB_DIR/journal/server.json``); a sharded lab's front
            answers with a REDIRECT to the shard holding the agent, which is followed once.
        agent: the agent whose curriculum to move.
        stage: move to this stage, by name or index (0 = first); resumes a completed curriculum.
        knob, value: or set this knob of the current stage (until the stage changes) to ``value``: a number,
            a list of choices or ``{"uniform": [lo, hi]}``.
        note: the reason, journaled with the event (a lab notebook line).
        timeout_s: give up (``TimeoutError``) after this long without an answer (s).
        keys, client_name, server_key, client_secret_file: CurveZMQ credentials, as for :class:`TaskClient`.

    Returns:
        The server's OVERRIDDEN header: ``agent, trials, stage, stage_index, knobs, events, complete``.

    Raises:
        ProtocolError: the server refused it (``UNKNOWN_AGENT``, ``BAD_VALUE``, ...), with its reason.
    """
    if (stage is None) == (knob is None):
        raise ValueError("override: give either stage or knob (with value), not both or neither")
    header: dict[str, Any] = {"agent": agent, "seq": 1}
    if knob is not None:
        if value is _NO_VALUE:
            raise ValueError(f"override: knob {knob!r} needs a value")
        header.update(knob=knob, value=value)
    elif isinstance(stage, (int, np.integer)) and not isinstance(stage, bool):
        header["stage_index"] = int(stage)
    else:
        header["stage"] = str(stage)
    if note:
        header["note"] = str(note)
    curve = TaskClient._curve_keys(keys, client_name, server_key, client_secret_file)
    deadline = time.monotonic() + timeout_s
    context = zmq.Context()

    def ask(target: str) -> protocol.Message:
        sock = context.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            if curve is not None:
                sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (curve["server"], curve["public"],
                                                                                    curve["secret"])
            sock.connect(target)
            sock.send_multipart(protocol.encode("OVERRIDE", header))
            if not sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                raise TimeoutError(f"override: no answer from {target} within {timeout_s} s")
            return protocol.decode(sock.recv_multipart())
        finally:
            sock.close(0)

    try:
        msg = ask(endpoint)
        if msg.type == "REDIRECT":  # a sharded lab's front: the agent's session lives on the shard it names
            msg = ask(msg.header["endpoint"])
        if msg.type == "ERROR":
            raise ProtocolError(msg.header["code"], msg.header["detail"])
        if msg.type != "OVERRIDDEN":
            raise ProtocolError("UNEXPECTED", f"override: the server answered {msg.type}, not OVERRIDDEN")
        return {k: v for k, v in msg.header.items() if k != "seq"}
    finally:
        context.term()
