"""The front of a sharded lab: one public endpoint that tells each agent which task server holds its session.

A lab with ``[server] shards = K`` runs K ordinary task servers (shards), each journaling into ``J/shard-<i>``
(:func:`shaping.journal.shard_dir`) on an endpoint of its own, and this front on the lab's public ``bind``.
The front holds no session and never carries a batch or a result:

- ``HELLO`` and ``OVERRIDE`` (protocol 2) get ``REDIRECT``: the endpoint of shard :func:`shaping.shards.shard_of`
  (agent, K), read from that shard's ``server.json`` at each request, so a shard restarted on a new port is
  found at once. While that shard is down (no ``server.json``, or its process is gone) the answer is
  ``ERROR SHUTTING_DOWN``: the agent says HELLO again after a pause.
- A protocol 1 request gets ``BAD_VERSION`` (sharded labs need protocol 2); ``GET`` and ``RESULT`` get
  ``NO_SESSION`` (say HELLO); ``HEARTBEAT`` and ``BYE`` nothing; a malformed message its ERROR, as the server
  answers it. Every reply is signed with the request's version.

Files: the front writes ``J/server.json`` (the format a server writes, plus ``shards``: agents' ``--server-file``
and the lab find the public endpoint there), holds ``J/journal.lock`` while it runs, and rewrites ``J/status.json``
every second with the shards' status files merged (:func:`shaping.readout.read_status`), for readers of that file.

Like the server, it binds loopback by default and takes only CURVE peers elsewhere (the shards use the same key
pair), stops on SIGTERM/SIGINT and when the lab that started it is gone.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import zmq

from .. import journal, protocol
from .. import keys as curve_keys
from ..errors import ConfigError
from ..labfile import ServerConfig
from ..procs import ENDPOINT_FILE, STATUS_FILE, lab_gone, reachable_endpoint
from ..protocol import ProtocolError
from ..shards import shard_of
from .binding import BoundRouter, bind_router
from .loop import STATUS_INTERVAL_S, run_until_signalled
from .resume import check_resume

log = logging.getLogger("shaping.server.front")

__all__ = ["Front", "check_shards", "serve_front"]

_DRAIN = 64  # messages handled per poll before timers run again


class Front:
    """The front of a sharded lab (see the module docstring).

    Args:
        config: the lab's server config (``shards`` > 1, ``journal`` the lab's journal directory ``J``,
            ``bind`` the public endpoint), a :class:`ServerConfig` or a dict of its fields.
        context: a ZeroMQ context to use (default: a private one, terminated on stop).

    Attributes:
        endpoint: the bound public endpoint (after :meth:`start`).
        shards: the number of shards K.
        stats: counters: ``messages``, ``redirects``, ``errors``.
    """

    def __init__(self, config: ServerConfig | Mapping[str, Any], context: zmq.Context | None = None):
        self.config = config if isinstance(config, ServerConfig) else ServerConfig.from_dict(config)
        self.shards = self.config.shards
        self.limits = self.config.protocol_limits
        self.dir = Path(self.config.journal)
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.endpoint: str | None = None
        self.socket: zmq.Socket | None = None
        self._bound: BoundRouter | None = None
        self._lock_fd: int | None = None
        self._host = socket.gethostname()
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self._next_tick = 0.0
        self._next_status = 0.0
        self.stats = {"messages": 0, "redirects": 0, "errors": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Hold ``J/journal.lock``, bind the public socket, write ``J/server.json``; returns the endpoint."""
        if self._started:
            return self.endpoint
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = journal.hold_lock(self.dir / journal.LOCK_FILE, f"journal {self.dir} is in use by another "
                                          "front or task server", "stop it before starting this front")
        try:
            # the server's own bind (loopback by default, CURVE elsewhere, the same socket options)
            self._bound = bind_router(self.config, self.context)
            self.socket, self.endpoint = self._bound.socket, self._bound.endpoint
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise
        self._write_endpoint()
        self._started = True
        log.info("front of %d shard(s) on %s (journal %s)", self.shards, self.endpoint, self.dir)
        return self.endpoint

    def _write_endpoint(self) -> None:
        info = {"endpoint": self.endpoint, "pid": os.getpid(), "host": self._host, "started": time.time(),
                "curve": self.config.use_curve, "shards": self.shards}
        if self.config.use_curve:
            info["server_public_key"] = curve_keys.server_keys(self.config.keys)[0].decode()
        _write_json(self.dir / ENDPOINT_FILE, info)

    def run(self) -> None:
        """Serve until :meth:`stop` is called (another thread, a signal handler, the lab gone), then close."""
        self.start()
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(100):
                    self._drain()
                now = time.monotonic()
                if now >= self._next_tick:
                    self._tick(now)
        finally:
            self.close()

    def stop(self) -> None:
        """Ask the loop to finish (thread- and signal-safe)."""
        self._stop.set()

    def close(self) -> None:
        """Write the last merged status, remove ``server.json``, close the socket, release the lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self.write_status()
            (self.dir / ENDPOINT_FILE).unlink(missing_ok=True)
        if self.socket is not None:
            self.socket.close(linger=0)
        if self._bound is not None:
            self._bound.release()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._own_context:
            self.context.term()
        log.info("front stopped: %d redirect(s), %d error(s)", self.stats["redirects"], self.stats["errors"])

    def __enter__(self) -> "Front":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        self.close()

    # ------------------------------------------------------------------ shards
    def shard_endpoint(self, shard: int) -> str | None:
        """The endpoint at which shard ``shard`` serves now, as agents reach it, or None while it is down: no
        ``server.json`` (starting, or stopped cleanly) or, on this host, its process is gone (killed)."""
        try:
            info = json.loads((journal.shard_dir(self.dir, shard) / ENDPOINT_FILE).read_text())
            endpoint = reachable_endpoint(info)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if info.get("host") == self._host and not _alive(info.get("pid")):
            return None
        return endpoint

    # ------------------------------------------------------------------ the loop
    def _drain(self) -> None:
        for _ in range(_DRAIN):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.stats["messages"] += 1
            self._handle(frames[0].bytes, frames[1:])

    def _handle(self, identity: bytes, frames: list) -> None:
        version, seq = protocol.signed_version(frames), None
        try:
            msg = protocol.decode(frames, self.limits)
            version, seq = msg.version, msg.seq
            reply = self._answer(msg)
        except ProtocolError as err:
            self.stats["errors"] += 1
            log.warning("connection %s: %s", identity.hex(), err)
            reply = protocol.error_frames(err.code, err.detail, seq=err.seq if seq is None else seq,
                                          version=version)
        except Exception as err:  # a bug here must not stop the lab's front door
            self.stats["errors"] += 1
            log.exception("internal error handling a message from %s", identity.hex())
            reply = protocol.error_frames("INTERNAL", f"{type(err).__name__}: {err}", seq=seq, version=version)
        if reply is not None:
            self._send_to(identity, reply)

    def _answer(self, msg: protocol.Message) -> list | None:
        """The reply to one decoded message (None: no reply); ProtocolError for an ERROR reply."""
        if msg.type in ("HEARTBEAT", "BYE"):
            return None
        if msg.version < 2:
            raise ProtocolError("BAD_VERSION", f"this is the front of a sharded lab ({self.shards} task servers "
                                               f"behind one address), and sharded labs need protocol version 2; "
                                               f"this {msg.type} is version {msg.version}: upgrade skinnerbox on "
                                               "the agent")
        if msg.type in ("HELLO", "OVERRIDE"):
            agent = msg.header["agent"]
            protocol.check_agent_name(agent, self.limits)
            shard = shard_of(agent, self.shards)
            endpoint = self.shard_endpoint(shard)
            if endpoint is None:
                raise ProtocolError("SHUTTING_DOWN", f"shard {shard} of {self.shards}, which holds agent "
                                                     f"{agent!r}, is not serving now (starting or restarting): "
                                                     f"send {msg.type} to this front again shortly")
            header: dict[str, Any] = {"endpoint": endpoint, "shard": shard, "agent": agent}
            if msg.seq is not None:
                header["seq"] = msg.seq
            self.stats["redirects"] += 1
            log.info("%s (%s): shard %d at %s", agent, msg.type, shard, endpoint)
            return protocol.encode("REDIRECT", header, version=msg.version)
        if msg.type in protocol.AGENT_COMMANDS:
            raise ProtocolError("NO_SESSION", f"{msg.type} to the lab's front, which holds no session: say HELLO "
                                              "here and it tells you which task server holds yours")
        raise ProtocolError("UNEXPECTED", f"{msg.type} is sent by servers only; this is the lab's front: agents "
                                          "send HELLO (operators OVERRIDE) and are redirected to their server")

    def _send_to(self, identity: bytes, frames: list) -> None:
        try:
            self.socket.send_multipart([identity, *frames], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("connection %s: send queue full; reply dropped", identity.hex())
        except zmq.ZMQError as err:  # EHOSTUNREACH (ROUTER_MANDATORY): the peer left before its answer
            log.info("connection %s: reply dropped (%s)", identity.hex(), err)

    def _tick(self, now: float) -> None:
        self._next_tick = now + 0.25
        if lab_gone():
            log.warning("the lab that started this front is gone: stopping")
            self.stop()
        if now >= self._next_status:
            self._next_status = now + STATUS_INTERVAL_S
            self.write_status()

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        """The shards' ``status.json`` files merged as every reader merges them
        (:func:`shaping.readout.read_status`), with the front's own counters (``front``)."""
        from ..readout import read_status  # pandas: loaded once the front serves

        merged = read_status(self.dir) or {"time": time.time(), "endpoint": self.endpoint, "pid": os.getpid(),
                                           "stats": {}, "sessions": [], "shards": []}
        return {**merged, "front": dict(self.stats)}

    def write_status(self) -> None:
        """Rewrite ``J/status.json`` atomically with :meth:`status`."""
        try:
            _write_json(self.dir / STATUS_FILE, self.status())
        except OSError as err:  # a full disk must not stop the front
            log.warning("could not write %s: %s", self.dir / STATUS_FILE, err)


def _alive(pid: Any) -> bool:
    """False when no process ``pid`` exists on this host (a killed shard that left its ``server.json``)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return True  # nothing to judge by: trust the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def check_shards(config: ServerConfig) -> None:
    """Refuse, before anything starts, a journal whose sessions the config's shards would not find: an agent
    journaled in another journal directory than the one ``shards`` assigns it (``shards`` changed since the lab
    ran: it would start a new session from scratch), or a session each shard would resume under another
    curriculum or task (:func:`check_resume`, shard by shard).

    Args:
        config: the lab's server config; ``journal`` is the lab's journal directory ``J``.

    Raises:
        ConfigError: naming each misplaced agent, where it is journaled and where ``shards`` puts it.
        ConfigChanged: a resumed session's curriculum or task would change.
    """
    root = Path(config.journal)
    k = config.shards
    wanted = [journal.shard_dir(root, i) for i in range(k)] if k > 1 else [root]
    if k == 1 and not journal.shard_dirs(root):  # one server, one journal: nothing can be elsewhere
        check_resume(config)
        return
    where = {}  # journal directory -> the agents journaled there
    own = sorted(root.glob(journal.SEGMENT_GLOB)) if root.is_dir() else []
    if own:
        where[root] = {rec["agent"] for seg in own for _, rec in journal.iter_records(seg, kinds=[journal.HELLO])}
    for d in journal.shard_dirs(root):
        where[d] = {rec["agent"] for _, rec in journal.iter_records(d, kinds=[journal.HELLO])}
    moved = []
    for d, agents in where.items():
        for agent in sorted(agents):
            home = wanted[shard_of(agent, k)]
            if Path(d) != home:
                moved.append(f"agent {agent!r} is journaled in {d}, but [server] shards = {k} serves it from {home}")
    if moved:
        raise ConfigError(f"journal {root} was written with another number of shards: its agents would start new "
                          "sessions from scratch:\n  " + "\n  ".join(moved) + "\nKeep [server] shards as it was "
                          "to resume, or use a new lab directory (or journal) for the new number.")
    for d in wanted:
        check_resume(replace(config, journal=str(d)))


def serve_front(config: ServerConfig | Mapping[str, Any]) -> int:
    """Run a front in this process until SIGINT/SIGTERM (or its lab is gone); returns the exit status (0)."""
    run_until_signalled(Front(config))
    return 0
