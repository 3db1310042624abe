"""A whole lab from one config file: the task server and one process per agent, supervised.

One job: start, watch and stop the processes of one experiment. The lab starts the server
(``python -m shaping.cli server``) and one agent process per ``[[agents]]`` entry (``python -m agents``,
so this module never imports TensorFlow), shows a progress bar per agent (stage, trials, window accuracy, from
the server's ``status.json``), restarts an agent that crashes (at most ``max_restarts`` times; it resumes from its
checkpoint and the server's journal), stops everything cleanly on Ctrl-C, and prints a summary table.

A lab config (TOML; see ``examples/demo.toml``)::

    [lab]
    name = "demo"                  # also the MLflow experiment, unless `experiment` is given
    workdir = "labs/demo"          # journal/, checkpoints/, weights/, logs/, server.toml
    seed = 0
    max_restarts = 2
    tracking_uri = ""              # default: sqlite:///<cwd>/mlflow.db ("none" disables MLflow)

    [task]                         # a registered task and its constructor arguments
    name = "PerceptualDiscrimination"  # or "mytasks:MyTask": class MyTask of mytasks.py beside this file
    T = 1000

    [curricula.shaped]             # one policy spec per curriculum (docs/policies.md)
    kind = "stages"
    ...

    [[agents]]                     # one process each; every key but name/curriculum is the model spec
    name = "shaped"
    curriculum = "shaped"
    N_rec = 50
    learning_rate = 0.001

Every process gets ``OPENBLAS_NUM_THREADS=1`` and one TensorFlow thread (``threads`` per agent overrides it).
The directory of the config file is on ``PYTHONPATH`` for every process, and on ``sys.path`` while the config
is validated, so a task of one's own is named ``"module:Class"`` with ``module.py`` beside the TOML file.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import pandas as pd

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:  # the server imports this module
    from .server import ServerConfig

log = logging.getLogger(__name__)

AGENT_KEYS = ("name", "curriculum", "checkpoint_every", "threads", "device", "max_batches")
SECTIONS = ("lab", "task", "curricula", "agents", "server")
REFUSED = 2  # an agent's exit status for a refusal no restart changes (its checkpoint belongs to another session)
LAB_KEYS = ("name", "experiment", "workdir", "seed", "max_restarts", "tracking_uri", "client_name")
# every ServerConfig field but those the lab sets itself (task, curricula, journal, seed)
SERVER_KEYS = ("default_curriculum", "bind", "credit", "heartbeat_interval_s", "expiry_s", "window_trials", "keys",
               "curve", "fsync", "fsync_interval_s", "limits", "send_hwm")


def load_config(path: str | os.PathLike) -> dict:
    """Read a lab config file (TOML) and validate it (``ValueError`` naming the field)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"lab config {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"lab config {path} is not valid TOML: {err}") from None
    return validate_config(cfg, source=str(path), task_path=[path.resolve().parent])


@contextlib.contextmanager
def _on_sys_path(dirs: Sequence[str | os.PathLike]) -> Iterator[None]:
    """Put ``dirs`` first on ``sys.path`` for the duration (a user task module is imported from there)."""
    added = [d for d in dict.fromkeys(str(Path(d).resolve()) for d in dirs) if d not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            if d in sys.path:
                sys.path.remove(d)


def validate_config(cfg: Mapping[str, Any], source: str = "lab config",
                    task_path: Sequence[str | os.PathLike] = ()) -> dict:
    """Check a lab config's structure and build its task and curricula once, so errors surface before any
    process starts.

    Args:
        cfg: the lab config as plain data.
        source: where it came from, for error messages.
        task_path: directories put on ``sys.path`` while the config is checked, so that a ``"module:Class"``
            task (``[task]`` or a stage's) finds ``module.py`` there (:func:`load_config` passes the TOML file's
            directory).
            The working directory is searched too, as the ``python -m`` processes a lab starts do.
    """
    with _on_sys_path([*task_path, Path.cwd()]):  # the task's and stage tasks' "module:Class" modules
        return _validate_config(cfg, source, task_path)


def _validate_config(cfg: Mapping[str, Any], source: str, task_path: Sequence[str | os.PathLike]) -> dict:
    from . import policies, tasks
    from .protocol import ProtocolError, check_agent_name
    from .server import ServerConfig

    cfg = json.loads(json.dumps(cfg))  # plain data, and a private copy
    for key in ("task", "curricula", "agents"):
        if key not in cfg:
            raise ValueError(f"{source}: missing [{key}] section")
    _known(source, "the lab file", cfg, SECTIONS, "section")
    lab = cfg.setdefault("lab", {})
    _known(source, "[lab]", lab, LAB_KEYS)
    lab.setdefault("name", Path(source).stem if source != "lab config" else "lab")
    lab.setdefault("experiment", lab["name"])
    lab.setdefault("workdir", f"labs/{lab['name']}")
    lab.setdefault("seed", 0)
    lab.setdefault("max_restarts", 2)
    for key in ("seed", "max_restarts"):
        if not isinstance(lab[key], int) or isinstance(lab[key], bool) or lab[key] < 0:
            raise ValueError(f"{source}: lab.{key} = {lab[key]!r} must be a non-negative integer")
    for key in ("name", "experiment", "workdir", "tracking_uri", "client_name"):
        if key in lab and not isinstance(lab[key], str):
            raise ValueError(f"{source}: lab.{key} = {lab[key]!r} must be a string")
    if not isinstance(cfg["task"], Mapping):
        raise ValueError(f"{source}: [task] must be a table with a name, got {cfg['task']!r}")
    task_spec = dict(cfg["task"])
    if not isinstance(task_spec.get("name"), str):
        raise ValueError(f"{source}: task.name must name a registered task or 'module:Class', got "
                         f"{task_spec.get('name')!r}")
    kwargs = {k: v for k, v in task_spec.items() if k != "name"}
    try:
        task = tasks.make(task_spec["name"], **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: [task]: {err}") from None
    if not isinstance(cfg["curricula"], Mapping) or not cfg["curricula"]:
        raise ValueError(f"{source}: [curricula] must hold at least one named policy spec")
    for name, spec in cfg["curricula"].items():
        try:
            policies.from_spec(spec, task, seed=0)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: curricula.{name}: {err}") from None
    server = cfg.get("server", {})
    _known(source, "[server]", server, SERVER_KEYS)
    try:  # the server's own checks (bind off loopback needs keys, ...), before anything starts
        ServerConfig.from_dict({**server, "task": task_spec, "curricula": cfg["curricula"], "journal": "journal"},
                               base_dir=Path(task_path[0]) if task_path else Path.cwd())
    except ValueError as err:
        raise ValueError(f"{source}: [server]: {err}") from None
    agents = cfg["agents"]
    if not isinstance(agents, list) or not agents:
        raise ValueError(f"{source}: [[agents]] must list at least one agent")
    seen = set()
    for i, agent in enumerate(agents):
        if not isinstance(agent, Mapping):
            raise ValueError(f"{source}: agents[{i}] must be a table ([[agents]]), got {agent!r}")
        name = agent.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{source}: agents[{i}].name must be a non-empty string")
        try:
            check_agent_name(name)
        except ProtocolError as err:
            raise ValueError(f"{source}: agents[{i}].name: {err.detail}") from None
        if name in seen:
            raise ValueError(f"{source}: agents[{i}].name = {name!r} is used twice")
        seen.add(name)
        cur = agent.get("curriculum")
        if cur is not None and cur not in cfg["curricula"]:
            raise ValueError(f"{source}: agents[{i}].curriculum = {cur!r} is not one of the curricula: "
                             f"{', '.join(cfg['curricula'])}")
    return cfg


def _known(source: str, where: str, table: Any, keys: Sequence[str], what: str = "key") -> None:
    if not isinstance(table, Mapping):
        raise ValueError(f"{source}: {where} must be a table, got {table!r}")
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise ValueError(f"{source}: {where}: unknown {what}(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(keys)}")


def agent_entry(cfg: Mapping[str, Any], name: str) -> dict:
    """The ``[[agents]]`` entry called ``name``."""
    for agent in cfg["agents"]:
        if agent["name"] == name:
            return dict(agent)
    raise ValueError(f"no agent named {name!r} in the lab config; agents: "
                     f"{', '.join(a['name'] for a in cfg['agents'])}")


def model_spec(entry: Mapping[str, Any]) -> dict:
    """The model settings of an agent entry (every key that is not about the process)."""
    return {k: v for k, v in entry.items() if k not in AGENT_KEYS}


def default_tracking_uri(cwd: str | os.PathLike | None = None) -> str:
    """``sqlite:///<absolute cwd>/mlflow.db``: the embedded store ``make ui`` opens."""
    return f"sqlite:///{Path(cwd or os.getcwd()).resolve() / 'mlflow.db'}"


AGENT_STOP_GRACE_S = 60.0  # an agent stopped by the lab has this long to checkpoint and leave (then SIGKILL)
SERVER_STOP_GRACE_S = 30.0  # the same for the server, once the agents are gone
LAB_PID_ENV = "SKINNERBOX_LAB_PID"
LAB_LOCK = "lab.lock"  # held by a running lab: the same lab run again refuses before changing anything


def lab_gone() -> bool:
    """True in a process a lab started once that lab has died (its children run in sessions of their own, so
    neither a closed terminal nor a killed lab reaches them: they stop themselves, as on SIGTERM)."""
    pid = os.environ.get(LAB_PID_ENV)
    return bool(pid) and os.getppid() != int(pid)


def process_env(threads: int = 1, task_path: Sequence[str | os.PathLike] = ()) -> dict:
    """Environment for a lab process: one BLAS thread, quiet TensorFlow, MLflow telemetry off; the package
    root and ``task_path`` (where a ``"module:Class"`` task's module lives) on ``PYTHONPATH``."""
    env = dict(os.environ)
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "2",
                "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1", LAB_PID_ENV: str(os.getpid())})
    root = str(Path(__file__).resolve().parents[1])
    extra = [str(Path(d).resolve()) for d in task_path]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, *extra, env.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class _Proc:
    name: str
    args: list
    log_path: Path
    popen: subprocess.Popen | None = None
    restarts: int = 0
    started: float = 0.0
    ended: float | None = None
    returncode: int | None = None
    wall_s: float = 0.0
    done: bool = False

    def start(self, env: dict) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        out.close()
        self.started = time.monotonic()

    def poll(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass

    def wait(self, timeout_s: float) -> int | None:
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None


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
        if isinstance(self.config, (str, os.PathLike)):
            self.config_path = Path(self.config).resolve()
            self.config = load_config(self.config_path)
        else:
            self.config = validate_config(self.config)
            self.config_path = None
        # where a "module:Class" task's module is found, in every process the lab starts
        self.task_path = [self.config_path.parent] if self.config_path is not None else []
        lab = self.config["lab"]
        self.dir = Path(self.workdir or lab["workdir"]).resolve()
        uri = self.tracking_uri or lab.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") \
            or default_tracking_uri()
        lab["tracking_uri"] = uri  # the store run with, in lab.json: `skinnerbox sync` goes there too
        self.tracking_uri = None if uri == "none" else uri
        self.server: _Proc | None = None
        self.endpoint: str | None = None
        self.lab_run = None
        self._stop = False
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ paths
    @property
    def journal_dir(self) -> Path:
        return self.dir / "journal"

    def _server_dict(self) -> dict:
        """What the server process is given (``server_config.json``)."""
        lab = self.config["lab"]
        server = {"task": self.config["task"], "curricula": self.config["curricula"], "seed": lab["seed"],
                  "journal": str(self.journal_dir)}
        server.update(self.config.get("server", {}))
        if server.get("keys"):  # relative to the lab file, like the task module (the server reads from its own dir)
            base = self.config_path.parent if self.config_path is not None else Path.cwd()
            server["keys"] = str((base / server["keys"]).resolve())
        if self.lab_run is not None and self.lab_run.run_id is not None:
            server["tracking"] = {"tracking_uri": self.lab_run.tracking_uri, "run_id": self.lab_run.run_id}
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

            self.lab_run = LabRun.start(self.tracking_uri, self.config["lab"]["experiment"], self.config,
                                        run_name=self.config["lab"]["name"])
        server_cfg = self._write_configs()
        self.server = _Proc("server", [sys.executable, "-m", "shaping.cli", "server", str(server_cfg)],
                            self.dir / "logs" / "server.log")
        self.server.start(self._env())
        self.endpoint = self._wait_endpoint(self.journal_dir / "server.json")
        keys = served.keys if served.use_curve else None
        for entry in self.config["agents"]:
            args = [sys.executable, "-m", "agents", "--server", self.endpoint, "--name", entry["name"],
                    "--config", str(self.dir / "lab.json"), "--workdir", str(self.dir)]
            if keys:  # a server other machines reach takes only CURVE agents, its own lab's included
                args += ["--keys", keys, "--client-name", self.config["lab"].get("client_name", "client")]
            proc = _Proc(entry["name"], args, self.dir / "logs" / f"{entry['name']}.log")
            proc.start(self._env(int(entry.get("threads", 1))))
            self.agents[entry["name"]] = proc

    def _claim(self) -> "ServerConfig":
        """Check, before any side effect, that the lab may start, and hold its lock (``lab.lock``) until
        :meth:`stop`: ``JournalLocked`` when this lab, or a task server on its journal, is running already;
        ``shaping.server.ConfigChanged`` when the config would resume a journaled session under another
        curriculum or task. Returns the server's config."""
        from .journal import LOCK_FILE, JournalLocked, hold_lock, lock_holder
        from .server import ServerConfig, check_resume

        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = hold_lock(self.dir / LAB_LOCK, f"lab {self.dir} is already running",
                                  "stop it (Ctrl-C where it runs) before running it again, or use another workdir")
        try:
            holder = lock_holder(self.journal_dir / LOCK_FILE)
            if holder is not None:
                raise JournalLocked(f"journal {self.journal_dir} is in use by a task server (pid {holder}); stop "
                                    "it before running this lab, or use another workdir")
            served = ServerConfig.from_dict(self._server_dict())
            with _on_sys_path([*self.task_path, Path.cwd()]):  # a "module:Class" task's module
                check_resume(served)
        except BaseException:
            self._release()
            raise
        return served

    def _release(self) -> None:
        """Let go of the lab's lock (another run of the lab may start)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _env(self, threads: int = 1) -> dict:
        """The environment of the lab's processes (see :func:`process_env`)."""
        return process_env(threads, self.task_path)

    def _wait_endpoint(self, path: Path, timeout_s: float = 60.0) -> str:
        """The endpoint in the ``server.json`` written by the server just started (one left by an earlier
        server, e.g. a killed one, names another pid and is not read)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                info = json.loads(path.read_text())
                if info.get("pid") == self.server.popen.pid:
                    return info["endpoint"]
            except (OSError, ValueError, KeyError):
                pass
            code = self.server.poll()
            if code is not None:
                raise RuntimeError(f"the task server exited with status {code} before binding; see "
                                   f"{self.server.log_path}:\n{_tail(self.server.log_path)}")
            time.sleep(0.05)
        raise RuntimeError(f"the task server did not bind within {timeout_s:.0f} s; see {self.server.log_path}")

    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def supervise(self) -> None:
        """Wait for every agent, restarting crashed ones, updating progress bars."""
        bars = self._bars()
        started = time.monotonic()
        max_restarts = int(self.config["lab"]["max_restarts"])
        try:
            while not self._stop:
                for name, proc in self.agents.items():
                    if proc.done:
                        continue
                    code = proc.poll()
                    if code is None:
                        continue
                    proc.wall_s += time.monotonic() - proc.started
                    proc.returncode = code
                    if code == 0:
                        proc.done = True
                    elif code == REFUSED:  # a restart would be refused the same way
                        proc.done = True
                        log.error("agent %s refused to run (status %d); not restarting it. Last lines of %s:\n%s",
                                  name, code, proc.log_path, _tail(proc.log_path))
                    elif proc.restarts < max_restarts:
                        proc.restarts += 1
                        log.warning("agent %s exited with status %s; restart %d of %d", name, code,
                                    proc.restarts, max_restarts)
                        proc.start(self._env(int(agent_entry(self.config, name).get("threads", 1))))
                    else:
                        proc.done = True
                        log.error("agent %s failed %d times; giving up. Last lines of %s:\n%s", name,
                                  proc.restarts + 1, proc.log_path, _tail(proc.log_path))
                if self.server.poll() is not None and not self._restart_server(max_restarts):
                    break
                self._update_bars(bars)
                if all(p.done for p in self.agents.values()):
                    break
                if self.timeout_s is not None and time.monotonic() - started > self.timeout_s:
                    log.warning("lab timeout (%.0f s): stopping", self.timeout_s)
                    break
                time.sleep(0.5)
            self._update_bars(bars)
        finally:
            for bar in bars.values():
                bar.close()

    def _restart_server(self, max_restarts: int) -> bool:
        """Restart a crashed server on its journal and endpoint (agents reconnect by themselves)."""
        code = self.server.poll()
        if self.server.restarts >= max_restarts:
            log.error("the task server exited (status %s) %d times; giving up. Last lines of %s:\n%s", code,
                      self.server.restarts + 1, self.server.log_path, _tail(self.server.log_path))
            return False
        self.server.restarts += 1
        log.warning("the task server exited (status %s); restarting it on its journal (%d of %d)", code,
                    self.server.restarts, max_restarts)
        if "--bind" not in self.server.args:
            self.server.args += ["--bind", self.endpoint]
        self.server.start(self._env())
        return True

    def stop(self) -> None:
        """SIGTERM every agent (each checkpoints), then the server (it flushes its journal); exit codes kept."""
        for proc in self.agents.values():
            proc.signal(signal.SIGTERM)
        for proc in self.agents.values():
            if proc.popen is not None and proc.wait(AGENT_STOP_GRACE_S) is None:
                proc.signal(signal.SIGKILL)
                proc.wait(5)
            if proc.popen is not None and not proc.done:
                proc.wall_s += time.monotonic() - proc.started
                proc.returncode = proc.popen.returncode
                proc.done = True
        if self.server is not None:
            self.server.signal(signal.SIGTERM)
            if self.server.wait(SERVER_STOP_GRACE_S) is None:
                self.server.signal(signal.SIGKILL)
                self.server.wait(5)
        if self.lab_run is not None:
            self._log_summary()
            self.lab_run.end("FINISHED" if all(p.returncode == 0 for p in self.agents.values()) else "FAILED")
        self._release()

    def _log_summary(self) -> None:
        if self.lab_run.run_id is None:
            return
        try:
            self.lab_run.client.log_text(self.lab_run.run_id, self.summary().to_csv(index=False), "summary.csv")
        except Exception as err:  # the store being down never fails the lab; the journal has everything
            log.warning("could not log the lab summary to MLflow: %s", err)

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
        """The server's latest ``status.json`` (empty before it writes one)."""
        try:
            return json.loads((self.journal_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def _bars(self) -> dict:
        if not self.progress:
            return {}
        from tqdm import tqdm

        return {name: tqdm(total=None, desc=f"{name:>12}", unit="trial", position=i, leave=True,
                           dynamic_ncols=True, disable=None)  # None: no bars when not on a terminal
                for i, name in enumerate(self.agents)}

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
        return summarize(self.journal_dir, self.config, {n: p for n, p in self.agents.items()})


def summarize(journal_dir: str | os.PathLike, config: Mapping[str, Any] | None = None,
              procs: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The lab's summary table from its journal (one row per agent). ``trials_to_graduations`` and
    ``trials_to_complete`` count the trials the network trained on until then (the session's cumulative count,
    ``session_trials``, stale trials included; the policy's own count leaves them out)."""
    from . import journal

    try:
        trials = journal.load(journal_dir)
        events = journal.load_events(journal_dir)
    except (OSError, ValueError):
        trials, events = pd.DataFrame(), pd.DataFrame()
    names = [a["name"] for a in config["agents"]] if config else sorted(trials.get("agent", pd.Series()).unique())
    rows = []
    for name in names:
        t = trials[trials["agent"] == name] if len(trials) else trials
        e = events[events["agent"] == name] if len(events) and "agent" in events else pd.DataFrame()
        grads = e[e["event"] == "graduated"] if len(e) else e
        last = t.tail(200)
        row = {
            "agent": name,
            "curriculum": (agent_entry(config, name).get("curriculum") if config else None),
            "trials": int(len(t)),
            "graduations": int(len(grads)),
            "trials_to_graduations": ", ".join(str(int(v)) for v in grads["session_trials"]) if len(grads) else "",
            "final_stage": t["stage"].iloc[-1] if len(t) else None,
            "final_accuracy": float((last["outcome"] == "correct").mean()) if len(last) else float("nan"),
            "complete": bool(len(e) and (e["event"] == "complete").any()),
        }
        done = e[e["event"] == "complete"] if len(e) else e
        row["trials_to_complete"] = int(done["session_trials"].iloc[0]) if len(done) else None
        if procs and name in procs:
            row["restarts"] = procs[name].restarts
            row["exit"] = procs[name].returncode
            row["wall_s"] = round(procs[name].wall_s, 1)
        rows.append(row)
    return pd.DataFrame(rows)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

