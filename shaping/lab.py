"""A whole lab from one config file: the task server and one process per agent, supervised.

One job: start, watch and stop the processes of one experiment. The lab starts the server
(``python -m shaping.cli server``) and one agent process per ``[[agents]]`` entry (``python -m agents``,
so this module never imports TensorFlow), shows a progress bar per agent (stage, trials, window accuracy, from
the server's ``status.json``), restarts an agent that crashes (at most ``max_restarts`` times; it resumes from its
checkpoint and the server's journal), stops everything cleanly on Ctrl-C, and prints a summary table.

With ``[server] shards = K > 1`` the server is K processes (``server --shard I``, each journaling into
``journal/shard-I``) behind a front (``server --front``) on the lab's endpoint, which tells each agent where its
session lives (:mod:`shaping.server.front`); the lab starts, restarts and stops each of them like the server.

The lab file (TOML; see ``examples/demo.toml``) is read and checked by :class:`shaping.labfile.LabFile`, the
only parser of lab files; the process contract (exit statuses, stop grace periods, environment) is
:mod:`shaping.procs`. Every process gets ``OPENBLAS_NUM_THREADS=1`` and one TensorFlow thread (``threads`` per
agent overrides it). The directory of the lab file is on ``PYTHONPATH`` for every process, and on ``sys.path``
while the file is checked, so a task of one's own is named ``"module:Class"`` with ``module.py`` beside it.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .errors import ConfigError, ServerNotStarted
from .journal import shard_dir, shard_dirs
from .labfile import AGENT_KEYS, LAB_KEYS, SECTIONS, SERVER_KEYS, LabFile, on_sys_path
from .launchers import Launcher, LocalLauncher, Process, SlurmLauncher
from .procs import (
    AGENT_STOP_GRACE_S,
    ENDPOINT_FILE,
    LAB_LOCK,
    REFUSED,
    SERVER_STOP_GRACE_S,
    current_endpoint,
    process_env,
    reachable_endpoint,
)
from .tracking.uris import default_tracking_uri

log = logging.getLogger(__name__)

__all__ = ["AGENT_KEYS", "LAB_KEYS", "REFUSED", "SECTIONS", "SERVER_KEYS", "Lab", "agent_entry", "load_config",
           "model_spec", "process_env", "summarize", "validate_config"]


# The plain-data views of a lab file, for scripts and tests written against them (LabFile is the parser).
def load_config(path: str | os.PathLike) -> dict:
    """Read and check a lab file; its tables as plain data with every default filled in
    (:class:`~shaping.errors.ConfigError` naming the field)."""
    return LabFile.load(path).to_dict()


def validate_config(cfg: Mapping[str, Any], source: str = "lab config",
                    task_path: list[str | os.PathLike] | tuple = ()) -> dict:
    """Check a lab config given as plain data (see :meth:`shaping.labfile.LabFile.from_dict`); returns it with
    every default filled in."""
    return LabFile.from_dict(cfg, source=source, task_path=task_path).to_dict()


def agent_entry(cfg: Mapping[str, Any], name: str) -> dict:
    """The ``[[agents]]`` entry called ``name`` of a plain-data lab config."""
    for agent in cfg["agents"]:
        if agent["name"] == name:
            return dict(agent)
    raise ConfigError(f"no agent named {name!r} in the lab config; agents: "
                      f"{', '.join(a['name'] for a in cfg['agents'])}")


def model_spec(entry: Mapping[str, Any]) -> dict:
    """The model settings of an agent entry (every key that is not about the process)."""
    return {k: v for k, v in entry.items() if k not in AGENT_KEYS}


@dataclass
class Lab:
    """One experiment: the server and its agents (see the module docstring).

    Args:
        config: a validated lab config (:func:`load_config`) or a path to one.
        workdir: overrides ``lab.workdir``.
        tracking_uri: overrides ``lab.tracking_uri``; ``"none"`` disables MLflow.
        progress: show progress bars (tqdm).
        timeout_s: stop the lab after this long (None: when every agent is done).
    """

    config: Any
    workdir: str | os.PathLike | None = None
    tracking_uri: str | None = None
    progress: bool = True
    timeout_s: float | None = None
    agents: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.config, LabFile):
            self.labfile = self.config
        elif isinstance(self.config, (str, os.PathLike)):
            self.labfile = LabFile.load(self.config)
        else:
            self.labfile = LabFile.from_dict(self.config)
        # where a "module:Class" task's module is found, in every process the lab starts
        self.task_path = [Path(p) for p in self.labfile.task_path]
        lab = self.labfile.lab
        self.dir = Path(self.workdir or lab.workdir).resolve()
        uri = self.tracking_uri or lab.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
        lab.tracking_uri = uri  # the store run with, in lab.json: `skinnerbox sync` goes there too
        self.config = self.labfile.to_dict()  # plain data, as written to lab.json
        self.tracking_uri = None if uri == "none" else uri
        self.server: Process | None = None  # the process on the lab's endpoint: the server, or a sharded lab's front
        self.shards: list[Process] = []  # a sharded lab's shards (server processes behind the front), by index
        self.endpoint: str | None = None
        self.launcher = self._make_launcher()
        self.server_launcher = (self.launcher if self.labfile.lab.launcher == "slurm"
                                and self.labfile.slurm_options().server == "job" else LocalLauncher(self.task_path))
        self.lab_run = None
        self._stop = False
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ paths
    @property
    def journal_dir(self) -> Path:
        return self.dir / "journal"

    @property
    def servers(self) -> list[Process]:
        """The server's processes: the server, or a sharded lab's front and shards."""
        return [p for p in (self.server, *self.shards) if p is not None]

    def _endpoint_file(self, proc: Process) -> Path:
        """Where ``proc`` (a server process) writes its endpoint: a shard in its own journal directory."""
        index = self._shard_index(proc)
        return self.journal_dir / ENDPOINT_FILE if index is None else shard_dir(self.journal_dir, index) / ENDPOINT_FILE

    def _shard_index(self, proc: Process) -> int | None:
        """The index of ``proc`` among the shards, or None for another process."""
        return next((i for i, p in enumerate(self.shards) if p is proc), None)

    def _server_dict(self) -> dict:
        """What the server process is given (``server_config.json``)."""
        tracking = None
        if self.lab_run is not None and self.lab_run.run_id is not None:
            tracking = {"tracking_uri": self.lab_run.tracking_uri, "run_id": self.lab_run.run_id}
        server = self.labfile.server_dict(str(self.journal_dir), tracking)
        if server.get("shards", 1) > 1 and server.get("seed") is None:
            # each agent's trials derive from (server seed, agent name): every shard must draw from the same seed
            server["seed"] = secrets.randbits(63)
        return server

    def _write_configs(self) -> Path:
        """The lab config as run (the agents read their entries from it) and the server's own config."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "lab.json").write_text(json.dumps(self.config, indent=2))
        path = self.dir / "server_config.json"
        path.write_text(json.dumps(self._server_dict(), indent=2))
        return path

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Start the MLflow parent run, the server and every agent, once :meth:`_claim` found the lab free to
        run (a lab that may not start changes nothing)."""
        served = self._claim()
        if self.tracking_uri is not None:
            from .tracking import LabRun

            self.lab_run = LabRun.start(self.tracking_uri, self.labfile.lab.experiment, self.config,
                                        run_name=self.labfile.lab.name)
        server_cfg = self._write_configs()
        serve = [sys.executable, "-m", "shaping.cli", "server", str(server_cfg)]
        logs = self.dir / "logs"
        if served.shards > 1:
            self.shards = [Process(f"server-{i}", [*serve, "--shard", str(i)], logs / f"server-{i}.log", role="server")
                           for i in range(served.shards)]
            self.server = Process("front", [*serve, "--front"], logs / "front.log", role="server")
        else:
            self.server = Process("server", serve, logs / "server.log", role="server")
        for proc in self.servers:
            self._endpoint_file(proc).unlink(missing_ok=True)  # a killed server's; the locks say none runs
        self.server_launcher.start(self.servers, {})
        for proc in self.shards:  # agents that arrive before their shard are told to come back: spare them that
            self._wait_endpoint(self._endpoint_file(proc), proc=proc)
        self.endpoint = self._wait_endpoint(self.journal_dir / ENDPOINT_FILE)
        keys = served.keys if served.use_curve else None
        for i, pack in enumerate(self.labfile.packs()):
            entry, members = pack[0], [e.name for e in pack]
            name = entry.name if len(pack) == 1 else f"pack-{i}"  # one process: one network, or a pack
            args = [sys.executable, "-m", "agents", "--server", self.endpoint, "--name", ",".join(members),
                    "--config", str(self.dir / "lab.json"), "--workdir", str(self.dir),
                    "--server-file", str(self.journal_dir / ENDPOINT_FILE)]
            if keys:  # a server other machines reach takes only CURVE agents, its own lab's included
                args += ["--keys", keys, "--client-name", self.labfile.lab.client_name]
            if name in self.agents:
                raise ConfigError(f"agent {name!r} has the name of a pack of this lab; rename it")
            self.agents[name] = Process(name, args, self.dir / "logs" / f"{name}.log", threads=entry.threads,
                                        members=members)
        log.info("starting %d agent(s) in %d process(es): %s", len(self.labfile.agents), len(self.agents),
                 self.launcher.describe())
        self.launcher.start(list(self.agents.values()), {})

    def _make_launcher(self) -> Launcher:
        """The launcher of ``[lab] launcher``: subprocesses here, or SLURM jobs (``[launcher.slurm]``)."""
        if self.labfile.lab.launcher == "slurm":
            def options(proc: Process) -> Any:  # the server's job takes the lab's own [launcher.slurm]
                return self.labfile.slurm_options(proc.members[0] if proc.role == "agent" else None)

            return SlurmLauncher(self.dir / "slurm", options, job_name=self.labfile.lab.name,
                                 task_path=self.task_path)
        return LocalLauncher(self.task_path)

    def _claim(self) -> Any:
        """Check, before any side effect, that the lab may start, and hold its lock (``lab.lock``) until
        :meth:`stop`: ``JournalLocked`` when this lab, or a task server on its journal, is running already;
        :class:`~shaping.errors.ConfigChanged` when the config would resume a journaled session under another
        curriculum or task. Returns the server's :class:`~shaping.labfile.ServerConfig`."""
        from .journal import LOCK_FILE, JournalLocked, hold_lock, lock_holder
        from .server.front import check_shards

        self.launcher.check()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = hold_lock(self.dir / LAB_LOCK, f"lab {self.dir} is already running",
                                  "stop it (Ctrl-C where it runs) before running it again, or use another workdir")
        try:
            # jobs of an earlier run of this lab that was killed (its server's job would hold the journal)
            self.launcher.cancel_leftovers()
            for journal_dir in (self.journal_dir, *shard_dirs(self.journal_dir)):  # a server, a front, shards
                holder = lock_holder(journal_dir / LOCK_FILE)
                if holder is not None:
                    raise JournalLocked(f"journal {journal_dir} is in use by a task server (pid {holder}); stop "
                                        "it before running this lab, or use another workdir")
            served = self.labfile.server_config(str(self.journal_dir))
            with on_sys_path([*self.task_path, Path.cwd()]):  # a "module:Class" task's module
                check_shards(served)  # every journaled session resumes where the config's shards look for it
        except BaseException:
            self._release()
            raise
        return served

    def _release(self) -> None:
        """Let go of the lab's lock (another run of the lab may start)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _wait_endpoint(self, path: Path, timeout_s: float | None = None, proc: Process | None = None) -> str:
        """The endpoint in the ``server.json`` written by the server process ``proc`` just started (default: the
        server, or the front; an older file was removed before it started), as the agents reach it. A server
        that is a SLURM job may wait in the queue first: ``timeout_s`` defaults to the job's time limit then,
        60 s here."""
        proc = proc or self.server
        if timeout_s is None:
            local = isinstance(self.server_launcher, LocalLauncher)
            timeout_s = 60.0 if local else 60.0 * self.labfile.slurm_options().timeout_min
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                return reachable_endpoint(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError):
                pass
            code = self.server_launcher.poll([proc]).get(proc.name)
            if code is not None:
                raise ServerNotStarted(f"the {_what(proc)} exited with status {code} before binding; see "
                                       f"{proc.log_path}:\n{_tail(proc.log_path)}")
            if self._stop:
                raise ServerNotStarted(f"the lab was stopped while its {_what(proc)} was starting")
            time.sleep(0.05 if isinstance(self.server_launcher, LocalLauncher) else 1.0)
        raise ServerNotStarted(f"the {_what(proc)} did not bind within {timeout_s:.0f} s; see {proc.log_path}")

    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def supervise(self) -> None:
        """Wait for every agent, restarting crashed ones, updating progress bars."""
        bars = self._bars()
        started = time.monotonic()
        max_restarts = self.labfile.lab.max_restarts
        try:
            while not self._stop:
                pending = [p for p in self.agents.values() if not p.done]
                for name, code in self.launcher.poll(pending).items():
                    self._ended(self.agents[name], code, max_restarts)
                ended = self.server_launcher.poll(self.servers)
                given_up = False
                for proc in self.servers:
                    if proc.name in ended:
                        proc.mark_ended(ended[proc.name])
                        given_up = given_up or not self._restart_server(max_restarts, proc)
                if given_up:
                    break
                # a server job the scheduler requeued binds anew (perhaps on another node): follow it
                self.endpoint = current_endpoint(self.journal_dir / ENDPOINT_FILE) or self.endpoint
                self._update_bars(bars)
                if all(p.done for p in self.agents.values()):
                    break
                if self.timeout_s is not None and time.monotonic() - started > self.timeout_s:
                    log.warning("lab timeout (%.0f s): stopping", self.timeout_s)
                    break
                self._pause(self.launcher.poll_interval_s)
            self._update_bars(bars)
        finally:
            for bar in bars.values():
                bar.close()

    def _pause(self, seconds: float) -> None:
        """Sleep between polls, waking early when a stop is asked for."""
        deadline = time.monotonic() + seconds
        while not self._stop and time.monotonic() < deadline:
            time.sleep(min(0.1, seconds))

    def _ended(self, proc: Process, code: int, max_restarts: int) -> None:
        """An agent's process ended with ``code``: done, refused, or restarted (at most ``max_restarts``)."""
        proc.mark_ended(code)
        if code == 0:
            proc.done = True
        elif code == REFUSED:  # a restart would be refused the same way
            proc.done = True
            log.error("agent %s refused to run (status %d); not restarting it. Last lines of %s:\n%s",
                      proc.name, code, proc.log_path, _tail(proc.log_path))
        elif proc.restarts < max_restarts:
            proc.restarts += 1
            log.warning("agent %s (%s) exited with status %s; restart %d of %d", proc.name, proc.where, code,
                        proc.restarts, max_restarts)
            self.launcher.start([proc], {})
        else:
            proc.done = True
            log.error("agent %s failed %d times; giving up. Last lines of %s:\n%s", proc.name,
                      proc.restarts + 1, proc.log_path, _tail(proc.log_path))

    def _restart_server(self, max_restarts: int, proc: Process | None = None) -> bool:
        """Restart a crashed server process (default: the server, or the front) on its journal; agents reconnect
        by themselves. The server and the front keep the lab's endpoint; a shard binds a new port, which the
        front reads from its ``server.json`` (removed here, so the front tells agents to wait meanwhile)."""
        proc = proc or self.server
        code, what = proc.returncode, _what(proc)
        if proc.restarts >= max_restarts:
            log.error("the %s exited (status %s) %d times; giving up. Last lines of %s:\n%s", what, code,
                      proc.restarts + 1, proc.log_path, _tail(proc.log_path))
            return False
        proc.restarts += 1
        log.warning("the %s exited (status %s); restarting it on its journal (%d of %d)", what, code,
                    proc.restarts, max_restarts)
        if isinstance(self.server_launcher, LocalLauncher):
            if self._shard_index(proc) is not None:
                self._endpoint_file(proc).unlink(missing_ok=True)  # a killed shard's: no agent is sent there
            elif "--bind" not in proc.argv:  # the same endpoint: the agents reconnect to it
                proc.argv += ["--bind", self.endpoint]
            self.server_launcher.start([proc], {})
        else:  # a job may land on another node: it binds as configured, the agents find it in server.json
            self._endpoint_file(proc).unlink(missing_ok=True)
            self.server_launcher.start([proc], {})
            if proc is self.server:
                self.endpoint = self._wait_endpoint(self.journal_dir / ENDPOINT_FILE)
        return True

    def stop(self) -> None:
        """Stop every agent (SIGTERM, or ``scancel`` for SLURM jobs: each checkpoints), then the server (it
        flushes its journal); exit codes kept."""
        agents = list(self.agents.values())
        self.launcher.stop(agents, AGENT_STOP_GRACE_S)
        for proc in agents:
            if proc.handle is not None:
                proc.done = True
        servers = [p for p in self.servers if p.handle is not None]
        if servers:
            self.server_launcher.stop(servers, SERVER_STOP_GRACE_S)
        if self.lab_run is not None:
            self._log_summary()
            self.lab_run.end("FINISHED" if all(p.returncode == 0 for p in self.agents.values()) else "FAILED")
        self._release()

    def _log_summary(self) -> None:
        """The summary on the lab's parent run (metrics, tags, ``summary.csv``, the description); a store that is
        down never fails the lab, the journal has everything."""
        try:
            summary = self.summary()
        except Exception as err:  # a journal the readout cannot read: the lab's own log says why
            log.warning("could not build the lab summary for MLflow: %s", err)
            return
        self.lab_run.log_summary(summary)

    def run(self) -> pd.DataFrame:
        """Start, supervise and stop the lab; returns the summary table."""
        stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: the terminal or ssh session closed
        old = {sig: signal.signal(sig, self.request_stop) for sig in stops}
        try:
            self.start()
            self.supervise()
        finally:
            self.stop()
            for sig, handler in old.items():
                signal.signal(sig, handler)
        return self.summary()

    # ------------------------------------------------------------------ progress and summary
    def status(self) -> dict:
        """The server's latest ``status.json``, a sharded lab's shards' merged (empty before one is written)."""
        from .readout import read_status

        return read_status(self.journal_dir) or {}

    def _bars(self) -> dict:
        if not self.progress:
            return {}
        from tqdm import tqdm

        return {name: tqdm(total=None, desc=f"{name:>12}", unit="trial", position=i, leave=True,
                           dynamic_ncols=True, disable=None)  # None: no bars when not on a terminal
                for i, name in enumerate(self.networks())}

    def _update_bars(self, bars: dict) -> None:
        if not bars:
            return
        sessions = {s["agent"]: s for s in self.status().get("sessions", [])}
        for name, bar in bars.items():
            s = sessions.get(name)
            if s is None:
                continue
            bar.n = int(s.get("trials", 0))
            acc = s.get("accuracy")
            bar.set_postfix_str(f"stage {s.get('stage')} | acc {acc:.2f}" if acc is not None
                                else f"stage {s.get('stage')}", refresh=False)
            bar.refresh()

    def summary(self) -> pd.DataFrame:
        """Per agent: curriculum, trials to each graduation, final stage and accuracy, restarts, wall time."""
        return summarize(self.journal_dir, self.config, self.networks())

    def networks(self) -> dict[str, Process]:
        """Every network of the lab and the process that trains it (its own, or its pack's)."""
        return {name: proc for proc in self.agents.values() for name in (proc.members or [proc.name])}


def summarize(journal_dir: str | os.PathLike, config: Mapping[str, Any] | None = None,
              procs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The lab's summary table from its journal: :func:`shaping.readout.summary_rows` (one row per agent:
    trials to each graduation and to criterion on the ``session_trials`` axis, stale trials included; the
    ``recent_accuracy`` of the server's window and the ``criterion_accuracy`` of the policy's), then
    ``restarts, exit, wall_s`` for the processes in ``procs``. ``attrs["verdict"]`` is the one line comparing the
    shaped agents with their controls (None without both); ``attrs["sweep"]``, for a lab with sweeps, trials to
    criterion grouped by sweep factor (:func:`shaping.readout.sweep_summary`)."""
    from .readout import read_lab, summary_rows, sweep_summary

    tables = read_lab(journal_dir)
    names = [a["name"] for a in config["agents"]] if config else None
    curricula = {a["name"]: a.get("curriculum") for a in config["agents"]} if config else None
    specs = dict(config.get("curricula") or {}) if config else None
    factors = {a["name"]: a["factors"] for a in config["agents"] if a.get("factors")} if config else {}
    out = summary_rows(tables, names, curricula, specs, factors=factors or None)
    if factors:
        out.attrs["sweep"] = sweep_summary(out, factors)
        out.attrs["factors"] = factors
    if procs:
        # restarts: by the lab after a crash, and by the scheduler (a SLURM requeue after preemption or walltime)
        for key, get in (("restarts", lambda p: p.restarts + getattr(p, "requeues", 0)),
                         ("exit", lambda p: p.returncode), ("wall_s", lambda p: round(p.wall_s, 1))):
            out[key] = [get(procs[n]) if n in procs else None for n in out["agent"]]
    return out


def _what(proc: Process) -> str:
    """A server process in messages: ``task server``, ``front`` or ``task server shard I``."""
    if proc.name == "front":
        return "front"
    return "task " + proc.name.replace("-", " shard ")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

