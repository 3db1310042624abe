"""The task server's loop: one ZeroMQ ROUTER, every message decoded, dispatched to its session, journaled and
answered (see the package docstring for the invariants), plus the hooks that log to MLflow (:func:`attach_tracking`)
and the process entry point (:func:`serve`)."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import zmq

from .. import journal, protocol
from .. import keys as curve_keys
from ..errors import ConfigChanged, ConfigError
from ..labfile import ServerConfig
from ..procs import ENDPOINT_FILE, SERVER_STOP_GRACE_S, STATUS_FILE, lab_gone
from ..protocol import ProtocolError
from .binding import BoundRouter, bind_router
from .resume import resume_session
from .sessions import InFlight, Session, _make_task, _plain_knobs, agent_seed

log = logging.getLogger("shaping.server")

STATUS_INTERVAL_S = 1.0  # how often STATUS_FILE is rewritten (s)
_DRAIN = 64  # messages handled per poll before timers run again
_ZERO_COPY_BYTES = 65536  # messages at least this big are sent without copying


class TaskServer:
    """The task server (see the module docstring).

    Args:
        config: a :class:`ServerConfig` or a dict of its fields.
        context: a ZeroMQ context to use (default: a private one, terminated on stop).

    Attributes:
        endpoint: the bound endpoint (after :meth:`start`), e.g. ``tcp://127.0.0.1:40123``.
        sessions: agent name -> :class:`Session`.
        stats: counters: ``trials``, ``batches``, ``messages``, ``errors``, ``cpu_s`` (CPU time of the
            loop's thread), ``process_cpu_s`` (of the whole process, ZeroMQ I/O threads included), ``wall_s``.
        on_session_start, on_scored, on_override, on_session_end, on_stop: hooks (None or a callable).
    """

    def __init__(self, config: ServerConfig | Mapping[str, Any], context: zmq.Context | None = None):
        self.config = config if isinstance(config, ServerConfig) else ServerConfig.from_dict(config)
        self.limits = self.config.protocol_limits
        self.seed = self.config.seed if self.config.seed is not None else \
            int(np.random.SeedSequence().entropy % (2**63))
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.endpoint: str | None = None
        self.sessions: dict[str, Session] = {}
        self._by_identity: dict[bytes, Session] = {}
        self.journal: journal.Journal | None = None
        self.socket: zmq.Socket | None = None
        self._bound: BoundRouter | None = None
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self.fatal: BaseException | None = None
        self.stats = {"trials": 0, "batches": 0, "messages": 0, "errors": 0, "cpu_s": 0.0, "process_cpu_s": 0.0,
                      "wall_s": 0.0}
        self.on_session_start: Callable | None = None
        self.on_scored: Callable | None = None
        self.on_override: Callable | None = None
        self.on_session_end: Callable | None = None
        self.on_stop: Callable | None = None
        self._hook_failed: set[str] = set()
        self._next_tick = 0.0
        self._next_status = 0.0
        self._status_prev: dict[str, tuple[float, int]] = {}
        self._handlers = {"HELLO": self._hello, "GET": self._get, "RESULT": self._result,
                          "HEARTBEAT": self._heartbeat, "BYE": self._bye, "OVERRIDE": self._override}
        self._check_curricula()

    def _check_curricula(self) -> None:
        """Build every curriculum once on a throwaway task, so a bad spec fails at start, naming it."""
        from ..policies import from_spec

        try:
            task = _make_task(self.config.task, 0)
        except (TypeError, ValueError) as err:  # an unknown task or a bad argument: the user's config
            raise ConfigError(f"server config: task: {err}") from None
        try:
            task.spec()  # what WELCOME carries: a task that cannot describe itself fails now, not at every HELLO
        except (TypeError, ValueError) as err:
            raise ConfigError(f"server config: task: {err}") from None
        self._check_batch_size(task, task.N_batch, "task")
        for name, spec in self.config.curricula.items():
            try:
                policy = from_spec(dict(spec), task, seed=0)
            except (TypeError, ValueError, KeyError) as err:
                raise ConfigError(f"server config: curricula.{name}: {err}") from None
            for stage, stage_spec in policy.stage_tasks().items():  # an agent's sizes cannot change mid-run
                other = _make_task(stage_spec, 0)
                if (other.N_in, other.N_out) != (task.N_in, task.N_out):
                    raise ConfigError(f"server config: curricula.{name}: stage {stage!r} runs {type(other).__name__} "
                                     f"with N_in={other.N_in}, N_out={other.N_out}; the task has N_in={task.N_in}, "
                                     f"N_out={task.N_out} (an agent's input and output sizes cannot change)")
                # a GET without n draws the session's N_batch trials, whatever task the stage runs
                self._check_batch_size(other, task.N_batch, f"curricula.{name} stage {stage!r}")

    def _check_batch_size(self, task: Any, n: int, where: str) -> None:
        fits = self._max_trials(task)
        if n > fits:
            raise ConfigError(f"server config: {where}: batches of N_batch = {n} trials of {type(task).__name__} "
                             f"({task.N_steps} steps) would exceed the protocol limits (max_array_bytes = "
                             f"{self.limits.max_array_bytes}); at most {fits} fit")

    def _max_trials(self, task: Any) -> int:
        """The most trials of ``task`` one BATCH may carry within the limits the server advertises."""
        per_trial = 4 * task.N_steps * max(task.N_in, task.N_out)  # float32 bytes of the largest array per trial
        total = 4 * task.N_steps * (task.N_in + 2 * task.N_out) + 8 * 64  # x, y, mask and up to 64 parameters
        return min(self.limits.max_array_bytes // per_trial, self.limits.max_message_bytes // total,
                   self.limits.max_trials)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Open the journal, restore its sessions, bind the socket; returns the bound endpoint."""
        if self._started:
            return self.endpoint
        cfg = self.config
        self.journal = journal.Journal(cfg.journal, fsync=cfg.fsync, fsync_interval_s=cfg.fsync_interval_s)
        try:
            self._restore()
            self.journal.write(journal.OPEN, {"time": time.time(), "pid": os.getpid(), "seed": self.seed,
                                        "config": json.loads(journal.dumps(cfg.to_dict()))})
            self.socket = self._bind()
        except BaseException:
            self.journal.close()
            raise
        self._write_endpoint()
        self._started = True
        log.info("task server on %s (journal %s, %d session(s) restored, seed %d)", self.endpoint, cfg.journal,
                 len(self.sessions), self.seed)
        return self.endpoint

    def _bind(self) -> zmq.Socket:
        self._bound = bind_router(self.config, self.context)
        self.endpoint = self._bound.endpoint
        return self._bound.socket

    def _write_endpoint(self) -> None:
        info = {"endpoint": self.endpoint, "pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "curve": self.config.use_curve}
        if self.config.use_curve:
            info["server_public_key"] = curve_keys.server_keys(self.config.keys)[0].decode()
        path = Path(self.config.journal) / ENDPOINT_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, path)

    def _restore(self) -> None:
        """Rebuild every journaled session from the config; :class:`ConfigChanged` (changing nothing) when the
        config would give one of them another curriculum or task than it ran."""
        restored, changes = [], []
        for agent, entry in journal.restore_sessions(self.config.journal).items():
            hello = entry.get("hello")
            if hello is None:
                log.warning("journal has batches of agent %r but no HELLO record; skipping it", agent)
                continue
            s, change = resume_session(self.config, hello)
            if s is None:  # its curriculum left the config, presumably with the agent: kept as journaled
                log.warning("%s; its session is kept as journaled", change)
                s = Session(agent, hello["session"], hello["curriculum"], hello["spec"], hello["task"],
                            hello["seed"], self.config.window_trials)
                restored.append((s, hello, entry))
            elif change:
                changes.append(change)
            else:
                restored.append((s, hello, entry))
        if changes:
            raise ConfigChanged(self.config.journal, changes)
        for s, hello, entry in restored:
            s.epoch = int(hello["epoch"])
            s.run = dict(hello.get("run") or {})
            s.info = dict(hello.get("info") or {})
            if entry["state"] is not None:
                s.restore(entry["state"], entry["last_batch"])
            self.sessions[s.agent] = s
            log.info("restored %r", s)

    def run(self) -> None:
        """Serve until :meth:`stop` is called (from another thread or a signal handler), then shut down."""
        self.start()
        cpu0, pcpu0, wall0 = time.thread_time(), time.process_time(), time.perf_counter()
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        timeout_ms = max(10, min(100, int(self.config.heartbeat_interval_s * 250)))
        try:
            while not self._stop.is_set():
                if poller.poll(timeout_ms):
                    self._drain()
                now = time.monotonic()
                if now >= self._next_tick:
                    self._tick(now)
        finally:
            self.stats["cpu_s"] += time.thread_time() - cpu0
            self.stats["process_cpu_s"] += time.process_time() - pcpu0
            self.stats["wall_s"] += time.perf_counter() - wall0
            self.close()

    def stop(self) -> None:
        """Ask the loop to finish (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self, reason: str = "shutdown") -> None:
        """Tell connected agents (BYE), flush and close the journal, close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.socket is not None:
            for s in self.sessions.values():
                if s.connected and s.identity is not None:
                    self._send(s, protocol.encode("BYE", {"reason": reason}, version=s.version))
                    self._call_hook("on_session_end", s, reason)
        if self._started:
            self.write_status()
        if self.journal is not None:
            try:
                self.journal.write(journal.CLOSE, {"time": time.time(), "reason": reason,
                                             "stats": {k: v for k, v in self.stats.items()}})
            except Exception:  # the journal may be the reason we are closing
                log.exception("could not write the journal's close record")
            self.journal.close()
        if self.socket is not None:
            self.socket.close(linger=1000)
        if self._bound is not None:
            self._bound.release()
        if self.journal is not None and self.endpoint:
            try:
                (Path(self.config.journal) / ENDPOINT_FILE).unlink()
            except FileNotFoundError:
                pass
        self._call_hook("on_stop", self)
        if self._own_context:
            self.context.term()
        log.info("task server stopped (%s): %d trials in %d batches", reason, self.stats["trials"],
                 self.stats["batches"])

    def __enter__(self) -> "TaskServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        if not self._closed:
            self.close()

    # ------------------------------------------------------------------ the loop
    def _drain(self) -> None:
        sock = self.socket
        for _ in range(_DRAIN):
            try:
                msg = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.stats["messages"] += 1
            self._handle(msg[0].bytes, msg[1:])
            if self.fatal is not None:
                self.stop()
                return

    def _handle(self, identity: bytes, frames: list) -> None:
        seq = None
        session = self._by_identity.get(identity)
        version = session.version if session is not None else protocol.signed_version(frames)
        if session is not None:
            session.last_heard = time.monotonic()
            session.connected = True
        try:
            msg = protocol.decode(frames, self.limits)
            seq, version = msg.seq, msg.version
            if msg.type not in self._handlers:
                raise ProtocolError("UNEXPECTED", f"{msg.type} is sent by servers only; agents send "
                                                  f"{', '.join(sorted(protocol.AGENT_COMMANDS))} (operators "
                                                  f"{', '.join(sorted(protocol.OPERATOR_COMMANDS))})")
            if self._stop.is_set() and msg.type not in ("BYE", "HEARTBEAT"):
                raise ProtocolError("SHUTTING_DOWN", "the server is stopping")
            self._handlers[msg.type](identity, session, msg)
        except ProtocolError as err:
            self.stats["errors"] += 1
            who = session.agent if session is not None else f"connection {identity.hex()}"
            log.warning("%s: %s", who, err)
            seq = err.seq if seq is None else seq
            self._send_to(identity, protocol.error_frames(err.code, err.detail, seq=seq, batch=err.batch,
                                                          version=version), session)
        except OSError as err:  # the journal could not be written: nothing more can be acknowledged
            self.fatal = err
            log.critical("journal write failed, stopping: %s", err)
            self._send_to(identity, protocol.error_frames("INTERNAL", f"server journal failed: {err}", seq=seq,
                                                          version=version), session)
        except Exception as err:
            self.stats["errors"] += 1
            log.exception("internal error handling a message from %s",
                          session.agent if session is not None else identity.hex())
            self._send_to(identity, protocol.error_frames("INTERNAL", f"{type(err).__name__}: {err}", seq=seq,
                                                          version=version), session)

    def _tick(self, now: float) -> None:
        cfg = self.config
        self._next_tick = now + cfg.heartbeat_interval_s / 4
        if lab_gone():
            log.warning("the lab that started this server is gone: stopping")
            self.stop()
        beats: dict[int, list] = {}
        for s in self.sessions.values():
            if not s.connected:
                continue
            if now - s.last_heard > cfg.expiry_s:
                n = s.void_in_flight("expired")
                s.connected = False
                log.warning("%s silent for %.1f s: %d in-flight batch(es) expired", s.agent, now - s.last_heard, n)
                self._call_hook("on_session_end", s, "expired")
                continue
            if now - s.last_sent >= cfg.heartbeat_interval_s:
                if s.version not in beats:
                    beats[s.version] = protocol.encode("HEARTBEAT", version=s.version)
                self._send(s, beats[s.version])
        self.journal.maybe_sync(now)
        if now >= self._next_status:
            self._next_status = now + STATUS_INTERVAL_S
            self.write_status(now)

    def status(self, now: float | None = None) -> dict:
        """What the server is doing: per session stage, trials, window accuracy, batches in flight and the
        trial rate since the previous call (trials/s)."""
        now = time.monotonic() if now is None else now
        sessions = []
        for s in self.sessions.values():
            t0, n0 = self._status_prev.get(s.agent, (now, s.trials))
            rate = (s.trials - n0) / (now - t0) if now > t0 else 0.0
            self._status_prev[s.agent] = (now, s.trials)
            sessions.append({"agent": s.agent, "curriculum": s.curriculum, "stage": s.conditions["stage"],
                             "stage_index": int(s.conditions["stage_index"]), "trials": s.trials,
                             "batches": s.batches, "in_flight": len(s.in_flight),
                             "accuracy": s.window_accuracy, "trials_per_s": round(rate, 1),
                             "connected": s.connected, "complete": bool(s.policy.complete)})
        return {"time": time.time(), "endpoint": self.endpoint, "pid": os.getpid(),
                "stats": {k: self.stats[k] for k in ("trials", "batches", "messages", "errors")},
                "sessions": sessions}

    def write_status(self, now: float | None = None) -> None:
        """Rewrite ``<journal>/status.json`` atomically (readers never see half a file)."""
        path = Path(self.config.journal) / STATUS_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(self.status(now), default=_float_or_none))
            os.replace(tmp, path)
        except OSError as err:  # a full disk must not stop the server; the journal is what matters
            log.warning("could not write %s: %s", path, err)

    # ------------------------------------------------------------------ sending
    def _send(self, session: Session, frames: list) -> bool:
        if session.identity is None:
            return False
        return self._send_to(session.identity, frames, session)

    def _send_to(self, identity: bytes, frames: list, session: Session | None = None) -> bool:
        # Zero-copy sends cost pyzmq a tracked Frame per part: worth it for big arrays (a batch's x, y, mask),
        # several times slower than copying for a SCORE or a header-only BATCH.
        copy = sum(protocol.frame_nbytes(f) for f in frames) < _ZERO_COPY_BYTES
        try:
            self.socket.send_multipart([identity, *frames], zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            log.warning("%s: send queue full (send_hwm=%d); message dropped",
                        session.agent if session else identity.hex(), self.config.send_hwm)
            return False
        except zmq.ZMQError as err:
            if err.errno == zmq.EHOSTUNREACH:
                if session is not None and session.identity == identity:
                    session.connected = False
                log.info("%s: peer gone; message dropped", session.agent if session else identity.hex())
            else:
                log.warning("%s: send failed (%s); message dropped", session.agent if session else identity.hex(),
                            err)
            return False
        if session is not None:
            session.last_sent = time.monotonic()
        return True

    # ------------------------------------------------------------------ hooks
    def _call_hook(self, name: str, *args: Any) -> Any:
        hook = getattr(self, name)
        if hook is None:
            return None
        try:
            return hook(*args)
        except Exception:
            if name not in self._hook_failed:
                self._hook_failed.add(name)
                log.warning("hook %s failed (further failures of it are logged at debug level)", name,
                            exc_info=True)
            else:
                log.debug("hook %s failed again", name, exc_info=True)
            return None

    # ------------------------------------------------------------------ commands
    def _require(self, session: Session | None, command: str) -> Session:
        if session is None:
            raise ProtocolError("NO_SESSION", f"{command} before HELLO on this connection (or the session was "
                                              "taken over, or the server restarted): send HELLO")
        return session

    def _hello(self, identity: bytes, session: Session | None, msg: protocol.Message) -> None:
        h = msg.header
        agent = h["agent"]
        protocol.check_agent_name(agent, self.limits)
        if self.config.shard is not None:
            from ..shards import shard_of

            owner = shard_of(agent, self.config.shards)
            if owner != self.config.shard:  # a second session in another shard's journal would split the agent
                raise ProtocolError("BAD_VALUE", f"agent {agent!r} belongs to shard {owner} of {self.config.shards}, "
                                                 f"not to this one ({self.config.shard}): connect through the lab's "
                                                 "front, which sends each agent to its shard")
        wanted = h.get("curriculum")
        s = self.sessions.get(agent)
        if s is not None:
            if wanted is not None and wanted != s.curriculum:
                raise ProtocolError("CONFLICT", f"agent {agent!r} already follows curriculum {s.curriculum!r}, "
                                                f"not {wanted!r}; use another agent name")
            resumed = True
        else:
            name = wanted if wanted is not None else self.config.default_curriculum
            if name not in self.config.curricula:
                raise ProtocolError("UNKNOWN_CURRICULUM", f"curriculum {name!r} is not served here; curricula: "
                                                          f"{', '.join(self.config.curricula)}")
            s = Session(agent, f"{agent}-{uuid.uuid4().hex[:12]}", name, dict(self.config.curricula[name]),
                        self.config.task, agent_seed(self.seed, agent), self.config.window_trials)
            resumed = False
        if session is not None and session is not s:  # this connection changes agent name
            self._unbind(session)
        build = self._build_mode(agent, h, msg.version)
        if s.identity is not None and s.identity != identity:
            self._send(s, protocol.encode("BYE", {"reason": "replaced"}, version=s.version))
            log.warning("%s: a new connection takes over the session", agent)
            self._unbind(s)
        voided = s.void_in_flight("epoch ended")
        s.version, s.build = msg.version, build
        tasks = s.build_tasks() if build == "agent" else None
        s.fingerprint = self._fingerprint(tasks) if tasks else None
        s.epoch += 1
        s.info = dict(h.get("info") or s.info)
        if "resume" in h and h["resume"] not in (None, s.session_id):
            log.info("%s asked to resume session %r; continuing %r", agent, h["resume"], s.session_id)
        extra = self._call_hook("on_session_start", s)
        if isinstance(extra, Mapping):
            s.run.update(extra)
        self.journal.write(journal.HELLO, {
            "time": time.time(), "agent": agent, "session": s.session_id, "curriculum": s.curriculum,
            "spec": s.spec, "task": s.task_config, "task_spec": _plain_knobs(s.task.spec()), "seed": s.seed,
            "epoch": s.epoch, "resumed": resumed, "version": s.version, "build": s.build,
            "info": s.info, "run": s.run})
        self.sessions[agent] = s
        s.identity = identity
        s.connected = True
        s.last_heard = time.monotonic()
        self._by_identity[identity] = s
        header = {"session": s.session_id, "agent": agent, "curriculum": s.curriculum, "resumed": resumed,
                  "epoch": s.epoch, "trials": s.trials, "batches": s.batches, **s.welcome_stage(),
                  "complete": bool(s.policy.complete), "task": _plain_knobs(s.task.spec()),
                  "credit": self.config.credit, "heartbeat_interval_s": float(self.config.heartbeat_interval_s),
                  "expiry_s": float(self.config.expiry_s), "limits": self.limits.to_dict(), "run": s.run}
        if s.version >= 2:
            header["build"] = s.build
        if tasks:
            header.update(tasks=tasks, fingerprint=s.fingerprint, outputs=self.config.outputs)
        if msg.seq is not None:
            header["seq"] = msg.seq
        self._send(s, protocol.encode("WELCOME", header, version=s.version))
        log.info("%s %s session %s (epoch %d, %d trials, stage %r, protocol %d, trials built by the %s%s)", agent,
                 "resumed" if resumed else "opened", s.session_id, s.epoch, s.trials, s.conditions["stage"],
                 s.version, s.build, f", {voided} in-flight batch(es) void" if voided else "")

    def _build_mode(self, agent: str, hello: Mapping[str, Any], version: int) -> str:
        """Who builds an agent's trials: ``"agent"`` when this server is configured so and the agent offers to
        (protocol 2) with the same versions as here; BUILD_MISMATCH when the versions differ."""
        if self.config.build != "agent":
            return "server"
        if version < 2 or hello.get("build") != "agent":
            log.info("%s does not build its own trials (protocol %d%s): they are built here", agent, version,
                     "; upgrade skinnerbox on the agent to build them there" if version < 2 else "")
            return "server"
        from ..tasks.build import versions

        theirs, ours = dict(hello.get("versions") or {}), versions()
        differ = [f"{k} {theirs.get(k)!r} (the server has {v!r})" for k, v in ours.items() if theirs.get(k) != v]
        if differ:
            raise ProtocolError("BUILD_MISMATCH", f"agent {agent!r} would build its trials with {', '.join(differ)}; "
                                                  "install the same versions beside the agent and the server, or "
                                                  "set [server] build = \"server\"")
        return "agent"

    def _fingerprint(self, tasks: Mapping[str, Any]) -> str:
        from ..tasks.build import fingerprint

        try:
            return fingerprint(tasks)
        except ValueError as err:  # the config was checked at start; a task that cannot be built now is a bug
            raise RuntimeError(f"cannot fingerprint the session's tasks: {err}") from None

    def _unbind(self, s: Session) -> None:
        if s.identity is not None:
            self._by_identity.pop(s.identity, None)
        s.identity = None
        s.connected = False

    def _get(self, identity: bytes, session: Session | None, msg: protocol.Message) -> None:
        s = self._require(session, "GET")
        n = msg.header.get("n", s.task.N_batch)
        if not 1 <= n <= self.limits.max_trials:
            raise ProtocolError("BAD_VALUE", f"GET n = {n}; expected 1 to max_trials = {self.limits.max_trials}")
        cond = s.conditions
        task = s.task_for(cond)
        self._check_size(task, n)
        if len(s.in_flight) >= self.config.credit:
            raise ProtocolError("NO_CREDIT", f"{len(s.in_flight)} batch(es) already in flight "
                                             f"({sorted(s.in_flight)}); the credit is {self.config.credit}: send "
                                             "a RESULT first")
        bid = s.next_batch
        repeat = cond.get("repeat") or None
        header = {"batch": bid, "epoch": s.epoch, "n": n, "task": type(task).__name__,
                  "stage": str(cond["stage"]), "stage_index": int(cond["stage_index"])}
        arrays: dict[str, Any] = {}
        if s.build == "agent":
            if msg.header.get("fingerprint") != s.fingerprint:
                raise ProtocolError("BUILD_MISMATCH", f"GET fingerprint {msg.header.get('fingerprint')!r}; the trials "
                                                      f"this server scores are built by {s.fingerprint!r}: the "
                                                      "agent's task code or versions differ from the server's")
            # decided here, built by the agent: only what scoring needs (the params and each trial's window)
            batch = task.draw_for_scoring(n, cond["knobs"], bid, repeat)
            window = task.scoring_window(batch)
            flight = InFlight(batch, task, cond, s.epoch, time.monotonic(), s.stage_visit, window,
                              int((window[1] - window[0]).sum()), task.readout)
            from ..tasks.build import task_key

            header["build"] = {"task": task_key(s.task_config_for(cond)), "seed": s.seed,
                               "repeat": json.loads(journal.dumps(repeat)) if repeat else None,
                               "readout": task.readout}
        else:
            batch = task.generate(n=n, knobs=cond["knobs"], batch_id=bid, repeat=repeat)
            flight = InFlight(batch, task, cond, s.epoch, time.monotonic(), s.stage_visit)
            arrays = {"x": batch.x, "y": batch.y, "mask": batch.mask}
            obj_params = {}
            for col in batch.params.columns:
                values = batch.params[col].to_numpy()
                if values.dtype.kind in "biuf":
                    arrays[protocol.PARAM_PREFIX + col] = values
                else:
                    obj_params[col] = [v.tolist() if isinstance(v, np.ndarray) else v for v in values.tolist()]
            if obj_params:
                header["params"] = obj_params
        s.next_batch += 1
        s.in_flight[bid] = flight
        header["knobs"] = _plain_knobs(batch.knobs)
        if msg.seq is not None:
            header["seq"] = msg.seq
        self._send(s, protocol.encode("BATCH", header, arrays, version=s.version))
        # The two columns every scored trial carries, added now while the agent trains: score() copies the
        # params' columns, so the RESULT -> SCORE path the agent waits on inserts none (about 0.3 ms per batch).
        # (A batch the agent builds gets them in score_rows' table, which costs nothing.)
        if s.build == "agent":
            return
        if "correction" not in batch.params.columns:
            batch.params["correction"] = False
        batch.params["stale"] = False

    def _check_size(self, task: Any, n: int) -> None:
        """Refuse a batch of ``task`` whose arrays would break the limits the server advertised (the agent could
        not decode it), naming the largest ``n`` that fits."""
        fits = self._max_trials(task)
        if n > fits:
            raise ProtocolError("BAD_VALUE", f"GET n = {n}: a batch of {n} trials of {type(task).__name__} "
                                             f"({task.N_steps} steps) would exceed the limits (max_array_bytes = "
                                             f"{self.limits.max_array_bytes}); ask for at most {fits}")

    def _result(self, identity: bytes, session: Session | None, msg: protocol.Message) -> None:
        s = self._require(session, "RESULT")
        bid, epoch = msg.header["batch"], msg.header["epoch"]
        if epoch != s.epoch:
            raise ProtocolError("UNKNOWN_BATCH", f"RESULT for batch {bid} of epoch {epoch}; the session is in "
                                                 f"epoch {s.epoch} (batches of earlier epochs are void)", bid)
        f = s.in_flight.get(bid)
        if f is None:
            if bid in s.scored_ids:
                raise ProtocolError("ALREADY_SCORED", f"batch {bid} was already scored", bid)
            if bid in s.void_ids:
                raise ProtocolError("UNKNOWN_BATCH", f"batch {bid} is void ({s.void_ids[bid]})", bid)
            raise ProtocolError("UNKNOWN_BATCH", f"batch {bid} was never sent in epoch {s.epoch} (in flight: "
                                                 f"{sorted(s.in_flight)})", bid)
        y_hat = np.asarray(msg.arrays["y_hat"], dtype=np.float32)  # float16 is summed far faster once converted
        if f.readout == "mean":  # built by the agent: each trial's mean outputs over its response window
            expected, what = (len(f.batch), f.task.N_out), "(n, N_out), each trial's mean outputs over its window"
        elif f.readout == "window":  # built by the agent: the outputs in each trial's scoring window
            expected, what = (f.rows, f.task.N_out), "(rows, N_out), the steps of the trials' scoring windows"
        else:
            expected, what = f.batch.y.shape, "(n, N_steps, N_out)"
        if y_hat.shape != expected:
            raise ProtocolError("BAD_SHAPE", f"y_hat of batch {bid} has shape {y_hat.shape}; expected {what} = "
                                             f"{expected}", bid)
        if not np.isfinite(y_hat).all():
            raise ProtocolError("BAD_VALUE", f"y_hat of batch {bid} holds non-finite values (NaN or inf); "
                                             "outputs must be finite", bid)
        stale = f.stage_visit != s.stage_visit or bool(s.policy.complete)
        if f.readout == "mean":
            scored = f.task.score_means(f.batch, y_hat, extra={"correction": False, "stale": stale})
        elif f.readout == "window":
            scored = f.task.score_rows(f.batch, y_hat, f.window, extra={"correction": False, "stale": stale})
        else:
            scored = f.task.score(f.batch.y, y_hat, f.batch.mask, f.batch.params)
        if "correction" not in scored.columns:  # a task whose score() drops trial parameters
            scored["correction"] = False
        if "stale" not in scored.columns or (stale and not scored["stale"].all()):
            scored["stale"] = stale
        # A batch drawn (prefetched) under a stage the agent has since left, or answered after completion, is
        # journaled, not counted.
        from ..policies import tell  # loaded with the first session; policies import tasks

        events = [] if stale else tell(s.policy, scored, f.conditions)
        codes = _outcome_codes(scored["outcome"])
        n = len(codes)
        correct = int(np.count_nonzero(codes == 0))
        del s.in_flight[bid]
        s.scored_ids.add(bid)
        s.last_scored = bid
        s.trials += n
        events = _at_session_trials(events, s.trials)
        s.batches += 1
        s.record(codes)
        stage_before = int(s.conditions["stage_index"])
        s.conditions = s.policy.conditions()
        if int(s.conditions["stage_index"]) != stage_before:
            s.stage_visit += 1
        s.policy_accuracy = policy_accuracy = _float_or_none(s.policy.accuracy)
        self.journal.append_batch(agent=s.agent, session=s.session_id, batch=bid, epoch=f.epoch,
                                  task=type(f.task).__name__, stage=str(f.conditions["stage"]),
                                  stage_index=int(f.conditions["stage_index"]), knobs=f.batch.knobs,
                                  scored=scored, events=events, state=s.state(), policy_accuracy=policy_accuracy)
        self.stats["trials"] += n
        self.stats["batches"] += 1
        header = {"batch": bid, "n": n, "correct": correct, "accuracy": correct / n if n else 0.0,
                  "window_accuracy": s.window_accuracy, "policy_accuracy": policy_accuracy,
                  "trials": s.trials, "batches": s.batches, **s.welcome_stage(), "events": events,
                  "complete": bool(s.policy.complete)}
        if msg.seq is not None:
            header["seq"] = msg.seq
        arrays = {"outcome": codes, "choice": scored["choice"].to_numpy().astype(np.int32),
                  "target": scored["target"].to_numpy().astype(np.int32)}
        self._send(s, protocol.encode("SCORE", header, arrays, version=s.version))
        for ev in events:
            log.info("%s: %s", s.agent, _describe(ev))
        self._call_hook("on_scored", s, scored, events, f.conditions)

    def _override(self, identity: bytes, session: Session | None, msg: protocol.Message) -> None:
        h = msg.header
        agent = h["agent"]
        s = self.sessions.get(agent)
        if s is None:
            raise ProtocolError("UNKNOWN_AGENT", f"OVERRIDE names agent {agent!r}, which has no session here; "
                                                 f"agents: {', '.join(sorted(self.sessions)) or 'none yet'}")
        given = [k for k in ("stage", "stage_index", "knob") if h.get(k) is not None]
        if len(given) != 1:
            raise ProtocolError("BAD_HEADER", "OVERRIDE needs exactly one of 'stage', 'stage_index' or 'knob' "
                                              f"(with 'value'); got {given or 'none'}")
        if given == ["knob"] and "value" not in h:
            raise ProtocolError("BAD_HEADER", f"OVERRIDE of knob {h['knob']!r} lacks 'value'")
        try:
            if given == ["knob"]:
                events = s.policy.set_knob(h["knob"], h["value"])
            else:
                events = s.policy.set_stage(h["stage"] if h.get("stage") is not None else h["stage_index"])
        except NotImplementedError as err:
            raise ProtocolError("BAD_VALUE", f"agent {agent!r} (curriculum {s.curriculum!r}): {err}") from None
        except (ValueError, TypeError, KeyError, IndexError) as err:
            detail = err.args[0] if isinstance(err, KeyError) and err.args else err  # KeyError quotes its text
            raise ProtocolError("BAD_VALUE", f"agent {agent!r} (curriculum {s.curriculum!r}): {detail}") from None
        if h.get("note"):
            for ev in events:
                ev["note"] = h["note"]
        events = _at_session_trials(events, s.trials)
        s.conditions = s.policy.conditions()
        if given != ["knob"]:
            s.stage_visit += 1  # batches in flight were drawn under the stage being left: stale
        self.journal.append_override(agent=agent, session=s.session_id, batch=s.last_scored, trials=s.trials,
                                     events=events, state=s.state())
        header = {"agent": agent, "trials": s.trials, **s.welcome_stage(), "events": json.loads(journal.dumps(events)),
                  "complete": bool(s.policy.complete)}
        if msg.seq is not None:
            header["seq"] = msg.seq
        self._send_to(identity, protocol.encode("OVERRIDDEN", header, version=msg.version))
        log.warning("%s: operator override: %s", agent, "; ".join(_describe(e) for e in events))
        self._call_hook("on_override", s, events)

    def _heartbeat(self, identity: bytes, session: Session | None, msg: protocol.Message) -> None:
        self._require(session, "HEARTBEAT")

    def _bye(self, identity: bytes, session: Session | None, msg: protocol.Message) -> None:
        if session is None:
            return
        reason = msg.header.get("reason", "bye")
        n = session.void_in_flight("agent said BYE")
        self._unbind(session)
        self.journal.write(journal.END, {"time": time.time(), "agent": session.agent, "session": session.session_id,
                                   "reason": reason, "void": n})
        log.info("%s said BYE (%s)", session.agent, reason)
        self._call_hook("on_session_end", session, reason)


def _outcome_codes(outcome: Any) -> np.ndarray:
    """The protocol's outcome codes ``(n,)`` int8 of a scored table's ``outcome`` column."""
    if isinstance(outcome, pd.Series) and isinstance(outcome.dtype, pd.CategoricalDtype) \
            and tuple(outcome.cat.categories) == tuple(protocol.OUTCOME_CODES):
        return outcome.cat.codes.to_numpy(dtype=np.int8)  # Task.score's own: the codes as they are
    outcome = np.asarray(outcome, dtype=object)
    codes = np.full(len(outcome), -1, dtype=np.int8)
    for label, code in protocol.OUTCOME_CODES.items():
        codes[outcome == label] = code
    return codes


def _at_session_trials(events: list[dict], trials: int) -> list[dict]:
    """``events`` with ``session_trials``: the session's cumulative trial count when they fired (stale trials
    included, unlike the policy's ``trial``), the x axis of every metric and figure."""
    return [{**ev, "session_trials": int(trials)} for ev in events]


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _describe(event: Mapping[str, Any]) -> str:
    parts = [str(event.get("event"))]
    for key in ("stage", "from_stage", "to_stage", "knob", "old", "new", "rule", "note"):
        if key in event:
            parts.append(f"{key}={event[key]}")
    return " ".join(parts)


def attach_tracking(server: TaskServer, tracking: Mapping[str, Any]) -> Any:
    """Log every session's curriculum to MLflow: a child run of the lab's parent run per agent.

    Args:
        tracking: ``{"tracking_uri", "run_id"}`` of the lab's parent run (what :class:`shaping.lab.Lab` writes).

    Returns:
        The :class:`shaping.tracking.CurriculumTracker`, closed when the server stops.
    """
    from ..tracking import CurriculumTracker, LabRun  # mlflow is slow to import

    tracker = CurriculumTracker(LabRun.attach(tracking["tracking_uri"], tracking["run_id"]),
                                window_trials=server.config.window_trials)

    def session_end(s: Session, reason: str) -> None:
        if reason in ("replaced", "expired"):
            return  # the agent is coming back (or may): its run stays open
        path, agent = server.config.journal, s.agent
        # Read on the tracker's writer thread, not here: a big journal would stall every other agent.
        tracker.on_session_end(agent, lambda: journal.load(path, agent=agent),
                               status="FINISHED" if s.policy.complete else "KILLED")

    def journal_of(agent: str) -> Callable[[], tuple]:
        path = server.config.journal
        return lambda: (journal.load(path, agent=agent), journal.load_batches(path), journal.load_events(path),
                        journal.load_sessions(path))

    # A session this process resumes (a restarted server) is replayed from the journal on the writer thread.
    server.on_session_start = lambda s: tracker.on_session_start(s.agent, s.spec, s.task.spec(), trials=s.trials,
                                                                 journal=journal_of(s.agent),
                                                                 curriculum_name=s.curriculum)
    server.on_scored = lambda s, scored, events, cond: tracker.on_scored(
        s.agent, scored, events, cond, s.trials, policy_accuracy=s.policy_accuracy)
    server.on_override = lambda s, events: tracker.on_override(s.agent, events, s.trials)
    server.on_session_end = session_end
    server.on_stop = lambda _server: tracker.close(SERVER_STOP_GRACE_S * 2 / 3)  # before the lab's SIGKILL
    return tracker


def run_until_signalled(runner: Any) -> None:
    """``runner.run()`` with SIGINT and SIGTERM calling ``runner.stop()`` (a server or a front), the previous
    handlers put back afterwards."""
    previous = {}

    def _on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        runner.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, _on_signal)
    try:
        runner.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(config: ServerConfig | Mapping[str, Any], tracking: Mapping[str, Any] | None = None) -> int:
    """Run a server in this process until SIGINT/SIGTERM; returns the exit status (0 on a clean stop).

    ``tracking`` (``{"tracking_uri", "run_id"}`` of a lab's parent run) logs the curricula to MLflow."""
    server = TaskServer(config)
    if tracking:
        attach_tracking(server, tracking)
    run_until_signalled(server)
    return 1 if server.fatal is not None else 0
