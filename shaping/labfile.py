"""The lab file: its schema as typed dataclasses, and the only parser of lab and server config files.

A lab file (TOML, or the ``lab.json`` a running lab writes) has six tables::

    [lab]                          # LabSection: name, experiment, workdir, seed, max_restarts, tracking_uri,
    name = "demo"                  #             client_name, launcher
    [task]                         # a registered task (or "module:Class") and its constructor arguments
    name = "PerceptualDiscrimination"
    [curricula.shaped]             # one policy spec per curriculum (docs/policies.md)
    kind = "stages"
    [server]                       # ServerConfig's keys but task, curricula, journal and seed (the lab sets them)
    window_trials = 200
    [[agents]]                     # AgentEntry: name, curriculum and the process keys; every other key is the
    name = "shaped"                #             model spec (agents.build_model)
    N_rec = 50
    [agents.sweep]                 # optional: one agent per combination (expand_sweep), shaped-seed=0, ...
    seed = [0, 1, 2]
    [launcher.slurm]               # SlurmOptions, read when lab.launcher = "slurm"; [agents.launcher] overrides
    partition = "gpu"

:meth:`LabFile.load` reads and checks a file once, building its task and every curriculum so that errors surface
before any process starts (each a :class:`~shaping.errors.ConfigError` naming the file, the key and the value);
:meth:`LabFile.server_config` and :meth:`LabFile.agent_config` derive what the task server and one agent
process run. A task named ``"module:Class"`` is imported with the lab file's folder (and the working directory)
on ``sys.path`` for the duration only (:func:`on_sys_path`); the processes a lab starts get the same folders on
``PYTHONPATH`` (:func:`shaping.procs.process_env`).

A sweep is expanded while the file is checked: :attr:`LabFile.agents` holds one plain entry per agent (each with
its ``factors`` and ``group``), so the ``lab.json`` a lab writes, the agent processes that re-read it by name and
every summary see plain agents.

The key lists (:data:`LAB_KEYS`, :data:`AGENT_KEYS`, :data:`SERVER_KEYS`, :data:`SLURM_KEYS`) are derived from the
dataclasses' fields, so the schema, its checks and its documentation cannot drift apart.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from . import journal, protocol
from . import keys as curve_keys
from .errors import ConfigError, UnknownKeyError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SECTIONS = ("lab", "task", "curricula", "agents", "server", "launcher")
LAUNCHERS = ("local", "slurm")  # [lab] launcher: how agent processes are started
LAUNCHER_TABLES = ("slurm",)  # the tables of [launcher], one per launcher that has settings
SWEEP_MODES = ("product", "zip")  # [agents.sweep] mode: every combination, or the lists side by side


# ---------------------------------------------------------------------------------------------- reading
def read_file(path: str | os.PathLike) -> dict:
    """A config file as plain data: JSON when it ends in ``.json``, TOML otherwise.

    Raises:
        ConfigError: the file is missing or does not parse (the message names the file and the error).
    """
    path = Path(path)
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, not a file") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"config file {path} is not valid {kind}: {err}") from None


@contextlib.contextmanager
def on_sys_path(dirs: Sequence[str | os.PathLike]) -> Iterator[None]:
    """Put ``dirs`` first on ``sys.path`` for the duration (a user task module is imported from there)."""
    added = [d for d in dict.fromkeys(str(Path(d).resolve()) for d in dirs) if d not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for d in added:
            if d in sys.path:
                sys.path.remove(d)


def check_known(where: str, table: Any, keys: Sequence[str], what: str = "key") -> None:
    """Raise :class:`~shaping.errors.UnknownKeyError` when ``table`` holds a key not in ``keys``."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table, got {table!r}")
    unknown = set(table) - set(keys)
    if unknown:
        raise UnknownKeyError(where, unknown, keys, what)


# ---------------------------------------------------------------------------------------------- server
LIVENESS = protocol.LIVENESS


BUILD_MODES = ("server", "agent")  # where trials are built (ServerConfig.build)
OUTPUT_DTYPES = ("float32", "float16")  # how agents that build their trials send outputs (ServerConfig.outputs)


@dataclass
class ServerConfig:
    """What a task server runs (the ``[server]`` table of a lab file with the lab's task and curricula, or a
    server config file's top-level keys).

    Args:
        task: ``{"name": registered task, **constructor kwargs}`` (the seed is set per agent).
        curricula: ``{name: policy spec}`` (see :func:`shaping.policies.from_spec`).
        default_curriculum: the curriculum of agents whose HELLO names none (default: the first one).
        seed: server seed; each agent's task and policy seeds derive from (seed, agent name). None: fresh
            entropy (logged and journaled per session).
        journal: journal directory.
        bind: ZeroMQ endpoint; port 0 (or ``*``) picks a free one. Non-loopback addresses need ``keys``;
            ``ipc://PATH`` (a Unix socket for agents on this host, PATH relative to the config's folder) does not.
        credit: batches an agent may have in flight (3: one training, one being scored, one generated).
        heartbeat_interval_s: application and ZMTP heartbeat interval (s).
        expiry_s: silence after which an agent's in-flight batches expire (s); longer than a training step.
        window_trials: trials in the recent-accuracy window (reported as ``window_accuracy``; the same window
            every view of the lab shows, see :mod:`shaping.readout`).
        keys: CurveZMQ keys directory (``skinnerbox keys DIR``); required off loopback.
        curve: use CURVE even on loopback (needs ``keys``).
        fsync: journal durability, ``"always"``, ``"interval"`` or ``"never"``.
        fsync_interval_s: the longest a journal record stays unsynced under ``"interval"`` (s).
        limits: overrides of the protocol limits (``shaping.protocol.Limits``).
        send_hwm: messages queued per agent before sends to it fail (ZeroMQ high-water mark).
        build: where trials are built: ``"server"`` (every batch generated here and sent whole) or ``"agent"``
            (protocol 2: the server decides and scores each batch, an agent that can builds it beside itself
            from the same task code; see PROTOCOL.md).
        outputs: with ``build = "agent"``, how agents send their outputs back: ``"float32"`` or ``"float16"``
            (half the bytes; scores a network whose two best outputs differ by less than float16 resolves,
            about 1e-3, differently).
        shards: server processes sharing the lab's sessions behind one address (a front tells each agent
            which shard holds its session); 1 is a single server.
        shard: which of the ``shards`` this process is (set by the lab or ``--shard``; None: not a shard). A
            shard refuses agents :func:`shaping.shards.shard_of` places on another.
    """

    task: dict
    curricula: dict
    default_curriculum: str | None = None
    seed: int | None = None
    journal: str = "journal"
    bind: str = "tcp://127.0.0.1:0"
    credit: int = 3
    heartbeat_interval_s: float = 1.0
    expiry_s: float = 60.0
    window_trials: int = 200
    keys: str | None = None
    curve: bool = False
    fsync: str = "interval"
    fsync_interval_s: float = 1.0
    limits: dict = field(default_factory=dict)
    send_hwm: int = 1000
    build: str = "server"
    outputs: str = "float32"
    shards: int = 1
    shard: int | None = None

    def __post_init__(self) -> None:
        where = "server config"
        if not isinstance(self.task, Mapping) or not isinstance(self.task.get("name"), str):
            raise ConfigError(f"{where}: task must be a table with a 'name' (a registered task), got {self.task!r}")
        if not isinstance(self.curricula, Mapping) or not self.curricula:
            raise ConfigError(f"{where}: curricula must be a non-empty table {{name: policy spec}}, got "
                              f"{self.curricula!r}")
        for name, spec in self.curricula.items():
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{where}: curricula.{name} must be a policy spec table, got {spec!r}")
        if self.default_curriculum is None:
            self.default_curriculum = next(iter(self.curricula))
        elif self.default_curriculum not in self.curricula:
            raise ConfigError(f"{where}: default_curriculum = {self.default_curriculum!r} is not one of the "
                              f"curricula: {', '.join(self.curricula)}")
        if self.seed is not None and not _is_int(self.seed, 0):
            raise ConfigError(f"{where}: seed must be a non-negative integer or absent, got {self.seed!r}")
        for name in ("credit", "window_trials", "send_hwm", "shards"):
            if not _is_int(getattr(self, name), 1):
                raise ConfigError(f"{where}: {name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("heartbeat_interval_s", "expiry_s", "fsync_interval_s"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, float)) or not val > 0:
                raise ConfigError(f"{where}: {name} must be a positive number of seconds, got {val!r}")
        if self.expiry_s < LIVENESS * self.heartbeat_interval_s:
            raise ConfigError(f"{where}: expiry_s = {self.expiry_s} must be at least {LIVENESS} x "
                              f"heartbeat_interval_s = {LIVENESS * self.heartbeat_interval_s}")
        if self.shard is not None and not (_is_int(self.shard, 0) and self.shard < self.shards):
            raise ConfigError(f"{where}: shard must be an integer from 0 to shards - 1 = {self.shards - 1}, got "
                              f"{self.shard!r}")
        if self.outputs not in OUTPUT_DTYPES:
            raise ConfigError(f"{where}: outputs must be one of {', '.join(map(repr, OUTPUT_DTYPES))}, got "
                              f"{self.outputs!r}")
        if self.build not in BUILD_MODES:
            raise ConfigError(f"{where}: build must be one of {', '.join(map(repr, BUILD_MODES))}, got "
                              f"{self.build!r}")
        if self.fsync not in journal.FSYNC_MODES:
            raise ConfigError(f"{where}: fsync must be one of {', '.join(journal.FSYNC_MODES)}, got {self.fsync!r}")
        if not isinstance(self.bind, str) or "://" not in self.bind:
            raise ConfigError(f"{where}: bind must be a ZeroMQ endpoint like 'tcp://127.0.0.1:5555', got "
                              f"{self.bind!r}")
        ipc_problem = curve_keys.ipc_problem(self.bind)  # ipc://PATH: a Unix socket, its path length limited
        if ipc_problem is not None:
            raise ConfigError(f"{where}: bind = {self.bind!r}: {ipc_problem}")
        if self.use_curve and not self.keys:
            raise ConfigError(f"{where}: bind = {self.bind!r} is reachable from other machines (or curve = true): "
                              "it requires CurveZMQ keys; make them with `skinnerbox keys DIR` and set keys = 'DIR'")
        try:
            protocol.Limits.from_dict(self.limits)
        except ValueError as err:
            raise ConfigError(f"{where}: limits: {err}") from None

    @property
    def protocol_limits(self) -> protocol.Limits:
        return protocol.Limits.from_dict(self.limits)

    @property
    def use_curve(self) -> bool:
        return bool(self.curve or not curve_keys.is_loopback(self.bind))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base_dir: str | os.PathLike | None = None,
                  ignore_unknown: bool = False) -> "ServerConfig":
        """Build from plain data; relative ``journal``/``keys`` paths (and an ``ipc://`` bind's socket file) are
        taken relative to ``base_dir``.

        Unknown keys are an error naming them, unless ``ignore_unknown``."""
        known = [f.name for f in fields(cls)]
        if not ignore_unknown:
            check_known("server config", data, known)
        values = {k: v for k, v in data.items() if k in known}
        if base_dir is not None:
            for key in ("journal", "keys"):
                if isinstance(values.get(key), str) and not os.path.isabs(values[key]):
                    values[key] = str(Path(base_dir) / values[key])
            socket_file = curve_keys.ipc_path(values.get("bind"))  # ipc://PATH: relative like the journal
            if socket_file is not None and not os.path.isabs(socket_file):
                values["bind"] = curve_keys.IPC + str(Path(base_dir) / socket_file)
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | os.PathLike, ignore_unknown: bool = False) -> "ServerConfig":
        """Read a server config file, TOML or ``.json`` (relative paths in it are relative to the file)."""
        return cls.from_dict(read_file(path), base_dir=Path(path).resolve().parent, ignore_unknown=ignore_unknown)

    def to_dict(self) -> dict:
        return asdict(self)


SERVER_SET_BY_LAB = ("task", "curricula", "journal", "seed", "shard")
SERVER_KEYS = tuple(f.name for f in fields(ServerConfig) if f.name not in SERVER_SET_BY_LAB)


def load_server_file(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None,
                     ignore_unknown: bool = False) -> tuple[ServerConfig, dict | None]:
    """What ``skinnerbox server FILE`` runs: a server config file (``ServerConfig``'s keys and an optional
    ``tracking`` table, as a lab writes ``server_config.json``) or a lab file (its ``[server]`` table, task,
    curricula and seed; the journal in its workdir).

    Args:
        path: the file; relative paths in it are relative to its folder.
        overrides: command-line values (``bind``, ``journal``, ``seed``, ``keys``; None entries ignored); paths
            are relative to the working directory.
        ignore_unknown: ignore keys a server config does not use.

    Returns:
        ``(config, tracking)``: tracking is ``{"tracking_uri", "run_id"}`` of a lab's parent run, or None.
    """
    path = Path(path)
    data = read_file(path)
    if "agents" in data or "lab" in data:
        lab = LabFile.from_dict(data, source=str(path), task_path=[path.resolve().parent])
        data = lab.server_dict(journal=str(Path(lab.lab.workdir) / "journal"))
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = str(Path(value).resolve()) if key in ("journal", "keys") else value
    tracking = data.pop("tracking", None)
    return ServerConfig.from_dict(data, base_dir=path.resolve().parent, ignore_unknown=ignore_unknown), tracking


# ---------------------------------------------------------------------------------------------- launcher
_GRES = re.compile(r"[A-Za-z][\w.\-]*(:[\w.\-]+)?(:\d+)?")  # SLURM's name[:type][:count]


@dataclass
class SlurmOptions:
    """How the SLURM launcher submits jobs: the ``[launcher.slurm]`` table, with the names of hydra's submitit
    launcher. An agent's ``[agents.launcher]`` table overrides any key but ``server`` and ``array_parallelism``
    (:meth:`LabFile.slurm_options` merges them). Read only when ``[lab] launcher = "slurm"``; the tables may stay
    in a lab run locally.

    Args:
        partition: the SLURM partition (``--partition``); None: the cluster's default.
        account: the account charged (``--account``); None: the user's default.
        qos: the quality of service (``--qos``); None: the partition's default.
        timeout_min: walltime of one job, in minutes (``--time``); a job that reaches it is requeued (see
            ``max_num_timeout``) and its agent resumes from its checkpoint.
        gres: generic resources per job (``--gres``), SLURM's ``name[:type][:count]``, comma separated: e.g.
            ``"gpu:1"`` (a GPU of its own) or ``"shard:2"`` (two shards of a shared GPU). None: no GPU.
        cpus_per_task: CPU cores per job (``--cpus-per-task``); None: the agent's ``threads``.
        mem_gb: memory per job, in GB (``--mem``); None: the partition's default.
        array_parallelism: array tasks of the lab's job array running at once (``--array=...%N``); lab-wide.
        max_num_timeout: requeues of a job after a timeout or a preemption before it counts as failed.
        signal_delay_s: seconds before the walltime at which SLURM signals the job, so that the agent
            checkpoints before it is stopped.
        setup: shell lines run in the job before the agent starts (``module load ...``, ``source venv/...``).
        additional_parameters: further ``sbatch`` options, ``{option: value}`` without the dashes (e.g.
            ``{constraint = "a100", mail_type = "FAIL"}``); an agent's table is merged into the lab's.
        server: where the task server runs: ``"host"`` (beside the lab, on the submitting host) or ``"job"``
            (as a SLURM job of its own, for sites that forbid long processes on login nodes; agents find it
            through ``server.json`` in the lab directory on shared storage). Lab-wide.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    timeout_min: int = 60
    gres: str | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    array_parallelism: int = 256
    max_num_timeout: int = 3
    signal_delay_s: int = 90
    setup: list = field(default_factory=list)
    additional_parameters: dict = field(default_factory=dict)
    server: str = "host"

    def __post_init__(self) -> None:
        for key in ("partition", "account", "qos"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{key} = {value!r} must be a non-empty string (or absent: the cluster's default)")
        for key, low, unit in (("timeout_min", 1, "minutes"), ("array_parallelism", 1, "array tasks at once"),
                               ("max_num_timeout", 0, "requeues"), ("signal_delay_s", 0, "seconds")):
            if not _is_int(getattr(self, key), low):
                raise ConfigError(f"{key} = {getattr(self, key)!r} must be an integer >= {low} ({unit})")
        if self.cpus_per_task is not None and not _is_int(self.cpus_per_task, 1):
            raise ConfigError(f"cpus_per_task = {self.cpus_per_task!r} must be an integer >= 1 (or absent: the "
                              "agent's threads)")
        if self.gres is not None and (not isinstance(self.gres, str)
                                      or not all(_GRES.fullmatch(g) for g in self.gres.split(","))):
            raise ConfigError(f"gres = {self.gres!r} must be SLURM's name[:type][:count], comma separated, e.g. "
                              "'gpu:1' or 'shard:2'")
        if self.mem_gb is not None:
            if isinstance(self.mem_gb, bool) or not isinstance(self.mem_gb, (int, float)) or not self.mem_gb > 0:
                raise ConfigError(f"mem_gb = {self.mem_gb!r} must be a positive number of GB (or absent)")
            self.mem_gb = float(self.mem_gb)
        if not isinstance(self.setup, list) or not all(isinstance(line, str) for line in self.setup):
            raise ConfigError(f"setup = {self.setup!r} must be a list of shell lines (strings)")
        if not isinstance(self.additional_parameters, Mapping):
            raise ConfigError(f"additional_parameters = {self.additional_parameters!r} must be a table of sbatch "
                              "options, e.g. {constraint = 'a100'}")
        for key, value in self.additional_parameters.items():
            if not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"additional_parameters.{key} = {value!r} must be a string, number or boolean")
        if self.server not in ("host", "job"):
            raise ConfigError(f"server = {self.server!r} must be 'host' (the server runs beside the lab) or 'job' "
                              "(as a SLURM job of its own)")

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], where: str = "launcher.slurm",
                  keys: Sequence[str] | None = None) -> "SlurmOptions":
        """Check a ``[launcher.slurm]`` (or ``[agents.launcher]``) table and build the options.

        Args:
            table: the keys set; the others keep their defaults.
            where: the table's name in messages.
            keys: the keys allowed there (default: every field).

        Raises:
            ConfigError: ``where.key = value`` and what was expected; an unknown key is named with the closest
                known one (:class:`~shaping.errors.UnknownKeyError`).
        """
        check_known(where, table, SLURM_KEYS if keys is None else keys)
        try:
            return cls(**copy.deepcopy(dict(table)))
        except ConfigError as err:
            raise ConfigError(f"{where}.{err}") from None

    def to_dict(self) -> dict:
        return asdict(self)


SLURM_KEYS = tuple(f.name for f in fields(SlurmOptions))
SLURM_LAB_ONLY = ("server", "array_parallelism")  # one value for the whole lab: not in [agents.launcher]
AGENT_LAUNCHER_KEYS = tuple(k for k in SLURM_KEYS if k not in SLURM_LAB_ONLY)


# ---------------------------------------------------------------------------------------------- lab
@dataclass
class LabSection:
    """The ``[lab]`` table.

    Args:
        name: the lab's name (default: the file's stem).
        experiment: the MLflow experiment (default: ``name``).
        workdir: journal/, checkpoints/, weights/, logs/ (default ``labs/<name>``).
        seed: the server seed every agent's trial stream and policy derive from.
        max_restarts: restarts of a crashed agent (or server) before the lab gives up on it.
        tracking_uri: MLflow store; ``""``: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///<cwd>/mlflow.db``;
            ``"none"``: no MLflow.
        client_name: the CurveZMQ client key pair the lab's agents use off loopback.
        launcher: how agent processes are started: ``"local"`` (subprocesses of the lab on this machine) or
            ``"slurm"`` (SLURM jobs through submitit, set up by ``[launcher.slurm]``: :class:`SlurmOptions`).
        pack_size: the most networks trained in one agent process (stacked in one compiled step,
            :class:`agents.pack.Pack`); agents that can share a pack (:meth:`LabFile.packs`) are grouped in file
            order. 1: one process per network.
    """

    name: str = "lab"
    experiment: str = ""
    workdir: str = ""
    seed: int = 0
    max_restarts: int = 2
    tracking_uri: str = ""
    client_name: str = "client"
    launcher: str = "local"
    pack_size: int = 1

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"lab.launcher = {self.launcher!r} must be 'local' (agents as processes on this "
                              "machine) or 'slurm' (agents as SLURM jobs, see [launcher.slurm])")
        for key in ("name", "experiment", "workdir", "tracking_uri", "client_name"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"lab.{key} = {getattr(self, key)!r} must be a string")
        for key in ("seed", "max_restarts"):
            if not _is_int(getattr(self, key), 0):
                raise ConfigError(f"lab.{key} = {getattr(self, key)!r} must be a non-negative integer")
        if not _is_int(self.pack_size, 1):
            raise ConfigError(f"lab.pack_size = {self.pack_size!r} must be an integer >= 1 (networks per agent "
                              "process; 1: one process each)")
        self.experiment = self.experiment or self.name
        self.workdir = self.workdir or f"labs/{self.name}"


@dataclass
class AgentEntry:
    """One ``[[agents]]`` table: the process keys below; every other key is the model spec (``model``).

    Args:
        name: the agent's name (its session at the server; letters, digits, ``_.-``).
        curriculum: one of ``[curricula]`` (None: the server's default, the first).
        checkpoint_every: batches between checkpoints.
        threads: TensorFlow (and OpenMP) threads of the agent process.
        device: ``"CPU"``, ``"GPU"`` or ``"GPU:k"``.
        max_batches: stop after this many batches in one process (None: when the curriculum ends).
        launcher: this agent's overrides of ``[launcher.slurm]`` (:data:`AGENT_LAUNCHER_KEYS`; the table
            ``[agents.launcher]``); read only by the SLURM launcher.
        factors: the swept keys and this agent's values, ``{key: value}``, in the sweep table's order
            (``{}``: not from a sweep). Set by :func:`expand_sweep`; kept in ``lab.json``.
        group: the name of the ``[[agents]]`` entry this agent was expanded from (None: not from a sweep).
        model: the model spec for :func:`agents.build_model` (``model``, ``N_rec``, ``dale_ratio``, ...).
    """

    name: str
    curriculum: str | None = None
    checkpoint_every: int = 20
    threads: int = 1
    device: str = "CPU"
    max_batches: int | None = None
    launcher: dict = field(default_factory=dict)
    factors: dict = field(default_factory=dict)
    group: str | None = None
    model: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        if self.curriculum is not None and not isinstance(self.curriculum, str):
            raise ConfigError(f"curriculum = {self.curriculum!r} must be the name of one of the curricula")
        try:
            protocol.check_agent_name(self.name)
        except protocol.ProtocolError as err:
            raise ConfigError(f"name: {err.detail}") from None
        for key, low in (("checkpoint_every", 1), ("threads", 1)):
            if not _is_int(getattr(self, key), low):
                raise ConfigError(f"{key} = {getattr(self, key)!r} must be an integer >= {low}")
        if self.max_batches is not None and not _is_int(self.max_batches, 1):
            raise ConfigError(f"max_batches = {self.max_batches!r} must be an integer >= 1")
        if not isinstance(self.device, str) or not (self.device.upper() in ("CPU", "GPU")
                                                    or self.device.upper().startswith("GPU:")):
            raise ConfigError(f"device = {self.device!r} must be 'CPU', 'GPU' or 'GPU:k'")
        if not isinstance(self.launcher, Mapping):
            raise ConfigError(f"launcher = {self.launcher!r} must be a table ([agents.launcher]) of "
                              f"[launcher.slurm] keys")
        lab_wide = [k for k in self.launcher if k in SLURM_LAB_ONLY]
        if lab_wide:
            raise ConfigError(f"launcher.{lab_wide[0]} is one setting for the whole lab: set it in "
                              "[launcher.slurm], not per agent")
        SlurmOptions.from_dict(self.launcher, "launcher", AGENT_LAUNCHER_KEYS)
        if not isinstance(self.factors, Mapping):
            raise ConfigError(f"factors = {self.factors!r} must be a table {{swept key: value}}")
        if self.group is not None and (not isinstance(self.group, str) or not self.group):
            raise ConfigError(f"group = {self.group!r} must be the name of the swept entry, or absent")

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> "AgentEntry":
        """Split an ``[[agents]]`` table into the process keys and the model spec."""
        process = {k: v for k, v in table.items() if k in AGENT_KEYS}
        return cls(**process, model={k: v for k, v in table.items() if k not in AGENT_KEYS})

    def to_dict(self) -> dict:
        """The table as written: process keys (those set) then the model spec's."""
        out = {"name": self.name}
        for f in fields(self):
            if f.name not in ("name", "model"):
                out[f.name] = getattr(self, f.name)
        return {**out, **self.model}


AGENT_KEYS = tuple(f.name for f in fields(AgentEntry) if f.name != "model")
LAB_KEYS = tuple(f.name for f in fields(LabSection))
# What may differ between the networks of one pack (each holds its own): names, curricula and sweep bookkeeping,
# seeds, constraints (Dale, regions, connectivity, fixed synapses), recurrent noise, learning rate, initial weights.
PACK_FREE_KEYS = frozenset({
    "name", "curriculum", "factors", "group", "seed", "dale_ratio", "regions", "autapses", "input_density",
    "rec_density", "output_density", "fixed", "rec_noise", "learning_rate", "spec_rad", "which_rand_init",
    "init_minval", "init_maxval"})


# ---------------------------------------------------------------------------------------------- sweeps
SWEEP_FIXED = ("name", "sweep", "launcher", "factors", "group")  # keys a sweep may not vary
_NAME_SAFE = re.compile(r"[A-Za-z0-9_.\-]+")  # a value written into a name as is ("=" would be ambiguous)


def sweep_value_name(value: Any, position: int) -> str:
    """How a swept value appears in an agent's name: an int as is, a float shortest (``repr``: ``0.8``,
    ``1e-05``), a bool lowercase, a string of name-safe characters as is; anything else (a table, a list, a
    string with other characters) by its ``position`` in the sweep's list."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = repr(value) if isinstance(value, float) else value if isinstance(value, str) else None
    return text if text is not None and _NAME_SAFE.fullmatch(text) else str(position)


def expand_sweep(table: Mapping[str, Any], where: str = "agents[0]") -> list[dict]:
    """The ``[[agents]]`` tables one table stands for: itself, or one per combination of its ``[agents.sweep]``.

    A sweep is a table of lists, each naming an agent key (a model key such as ``seed``, ``dale_ratio``,
    ``N_rec``, ``learning_rate``; ``curriculum`` or another process key) and the values it takes. With
    ``mode = "product"`` (the default) every combination is an agent, the last key varying fastest; with
    ``mode = "zip"`` the lists (of equal lengths) are read side by side. Each agent is named
    ``{name}-{key}={value}-...`` in the sweep table's order (:func:`sweep_value_name`), e.g.
    ``net-seed=3-dale_ratio=0.8``, and carries ``factors`` (``{key: value}``) and ``group`` (``name``).

    Args:
        table: one ``[[agents]]`` table, with a name.
        where: the table's place in the file, for messages (``agents[i]``).

    Returns:
        Plain ``[[agents]]`` tables without ``sweep`` (``[table]`` when it has none).

    Raises:
        ConfigError: naming ``where.sweep.<key>``: a value that is not a non-empty list, a key also set in the
            table (or one a sweep may not vary: :data:`SWEEP_FIXED`), lists of unequal lengths under ``zip``, an
            unknown mode, two combinations with one name, or names longer than the protocol allows.
    """
    if "sweep" not in table:
        return [dict(table)]
    sweep, name, here = table["sweep"], table.get("name"), f"{where}.sweep"
    for key in ("factors", "group"):
        if key in table:
            raise ConfigError(f"{where}.{key} is set by its sweep: remove it from a table with [agents.sweep]")
    if not isinstance(sweep, Mapping):
        raise ConfigError(f"{here} = {sweep!r} must be a table of lists ([agents.sweep]), e.g. seed = [0, 1, 2]")
    try:
        protocol.check_agent_name(name if isinstance(name, str) else "")
    except protocol.ProtocolError as err:
        raise ConfigError(f"{where}.name: {err.detail}") from None
    mode = sweep.get("mode", "product")
    if mode not in SWEEP_MODES:
        raise ConfigError(f"{here}.mode = {mode!r} must be 'product' (every combination, the default) or 'zip' "
                          "(the lists side by side)")
    lists = {k: v for k, v in sweep.items() if k != "mode"}
    if not lists:
        raise ConfigError(f"{here} sweeps no key: give it lists of values, e.g. seed = [0, 1, 2]")
    for key, values in lists.items():
        if key in SWEEP_FIXED:
            raise ConfigError(f"{here}.{key}: {key!r} cannot be swept (it is not a setting of one agent's run)")
        if key in table:
            raise ConfigError(f"{here}.{key} is also set in the table ({where}.{key} = {table[key]!r}): set it "
                              "in one place")
        if not isinstance(values, list):
            raise ConfigError(f"{here}.{key} = {values!r} must be a list of the values to sweep, e.g. "
                              f"{key} = [{values!r}]")
        if not values:
            raise ConfigError(f"{here}.{key} is an empty list: it would expand into no agents")
    keys = list(lists)
    words = {k: [sweep_value_name(v, j) for j, v in enumerate(lists[k])] for k in keys}
    if mode == "zip":
        first = keys[0]
        for key in keys[1:]:
            if len(lists[key]) != len(lists[first]):
                raise ConfigError(f"{here}.{key} has {len(lists[key])} values and {first} has "
                                  f"{len(lists[first])}: mode = 'zip' pairs the lists, so they need equal lengths")
        combos = [tuple([j] * len(keys)) for j in range(len(lists[first]))]
    else:
        for key in keys:
            dup = next((j for j, w in enumerate(words[key]) if w in words[key][:j]), None)
            if dup is not None:
                other = words[key].index(words[key][dup])
                raise ConfigError(f"{here}.{key}: {lists[key][other]!r} and {lists[key][dup]!r} (positions {other} "
                                  f"and {dup}) would give two agents one name: list each value once")
        combos = list(itertools.product(*(range(len(lists[k])) for k in keys)))
    base = {k: v for k, v in table.items() if k != "sweep"}
    out, named = [], {}
    for combo in combos:
        factors = {k: copy.deepcopy(lists[k][j]) for k, j in zip(keys, combo)}
        agent_name = "-".join([name, *(f"{k}={words[k][j]}" for k, j in zip(keys, combo))])
        if agent_name in named:
            raise ConfigError(f"{here}: the values at positions {named[agent_name]} and {combo[0]} of the zipped "
                              f"lists are both named {agent_name!r}: list each combination once")
        named[agent_name] = combo[0]  # product mode's names are distinct once each list's are: only zip gets here
        out.append({**copy.deepcopy(base), **copy.deepcopy(factors), "name": agent_name, "factors": factors,
                    "group": name})
    longest = max(named, key=lambda n: len(n.encode()))
    limit = protocol.LIMITS.max_name_bytes
    if len(longest.encode()) > limit:
        over = len(longest.encode()) - limit
        raise ConfigError(f"{here}: the agent name {longest!r} is {len(longest.encode())} bytes, over the "
                          f"protocol's {limit} (max_name_bytes); the names are '{name}-key=value-...': shorten the "
                          f"entry name {name!r} (by at least {over} characters) or the swept values")
    for agent_name in named:
        try:
            protocol.check_agent_name(agent_name)
        except protocol.ProtocolError as err:
            raise ConfigError(f"{here}: {err.detail}") from None
    return out


@dataclass
class AgentConfig:
    """What one agent process runs (derived from its lab file entry by :meth:`LabFile.agent_config`, or built
    directly in scripts and tests).

    Args:
        name: the agent's name (its session key at the server; restarting under it resumes).
        server: the task server's endpoint, e.g. ``tcp://127.0.0.1:5555``.
        model: model settings for :func:`agents.build_model` (``model``, ``N_rec``, ``dale_ratio``,
            ``autapses``, ``regions``, ``rec_noise``, ``learning_rate``, ``seed``, ...).
        curriculum: which of the server's curricula to follow (None: the server's default).
        workdir: where checkpoints (``checkpoints/<name>.ckpt.npz``) and weight files go.
        checkpoint_every: batches between checkpoints.
        max_batches: stop after this many batches in this process (None: until the curriculum is complete).
        threads: TensorFlow intra/inter-op threads (1 is best when agents share cores).
        device: ``"CPU"``, ``"GPU"`` (any, memory growth on) or ``"GPU:k"`` (pinned).
        keys, client_name: CurveZMQ keys directory and client key name, for a server off loopback.
        log_every_s: seconds between connectivity images logged to MLflow (besides graduations and the end).
        timeout_s: give up when the server has been silent this long (s).
        factors, group: a swept agent's factors and the entry it was expanded from (logged on its MLflow run).
        server_file: the server's ``server.json``, re-read at each reconnection (a server that moved is found).
    """

    name: str
    server: str
    model: dict = field(default_factory=dict)
    curriculum: str | None = None
    workdir: str = "."
    checkpoint_every: int = AgentEntry.checkpoint_every
    max_batches: int | None = None
    threads: int = AgentEntry.threads
    device: str = AgentEntry.device
    keys: str | None = None
    client_name: str = LabSection.client_name
    log_every_s: float = 60.0
    timeout_s: float = 120.0
    factors: dict = field(default_factory=dict)
    group: str | None = None
    server_file: str | None = None

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.workdir) / "checkpoints" / f"{self.name}.ckpt.npz"


@dataclass
class LabFile:
    """A checked lab file (see the module docstring). Build it with :meth:`load` or :meth:`from_dict`.

    Attributes:
        lab: the ``[lab]`` table, defaults filled in.
        task: ``{"name": ..., **constructor kwargs}``.
        curricula: ``{name: policy spec}``, in file order.
        agents: the ``[[agents]]`` entries, in file order, each sweep expanded in its place (:func:`expand_sweep`).
        server: the ``[server]`` table (ServerConfig keys the lab does not set).
        source: where it came from, for messages.
        task_path: folders searched for a ``"module:Class"`` task (the file's own folder).
        launcher: the ``[launcher]`` section as written, ``{"slurm": {...}}`` (see :meth:`slurm_options`).
    """

    lab: LabSection
    task: dict
    curricula: dict
    agents: list[AgentEntry]
    server: dict = field(default_factory=dict)
    source: str = "lab config"
    task_path: list[str] = field(default_factory=list)
    launcher: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabFile":
        """Read and check a lab file (TOML, or the ``lab.json`` a lab writes)."""
        path = Path(path)
        return cls.from_dict(read_file(path), source=str(path), task_path=[path.resolve().parent])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "lab config",
                  task_path: Sequence[str | os.PathLike] = ()) -> "LabFile":
        """Check a lab config given as plain data and build its task and curricula once.

        Args:
            data: the file's tables.
            source: where it came from, for messages (a path's stem is the default lab name).
            task_path: folders put on ``sys.path`` while the task and stage tasks are built (the working
                directory is searched too, as the ``python -m`` processes a lab starts do).

        Raises:
            ConfigError: naming ``source``, the table and key, the value and what was expected.
        """
        try:
            with on_sys_path([*task_path, Path.cwd()]):
                return cls._check(json.loads(json.dumps(data)), source, [str(Path(d).resolve()) for d in task_path])
        except ConfigError as err:
            if not str(err).startswith(f"{source}:"):
                err.args = (f"{source}: {err}",)  # the same class (UnknownKeyError stays one), named by its file
            raise err from None

    @classmethod
    def _check(cls, data: dict, source: str, task_path: list[str]) -> "LabFile":
        from . import policies, tasks  # building tasks is only needed here

        if not isinstance(data, Mapping):
            raise ConfigError(f"a lab file is a table of tables, got {type(data).__name__}")
        check_known("the lab file", data, SECTIONS, "section")
        for key in ("task", "curricula", "agents"):
            if key not in data:
                raise ConfigError(f"missing [{key}] section")
        lab_table = data.get("lab", {})
        check_known("[lab]", lab_table, LAB_KEYS)
        default_name = Path(source).stem if source != "lab config" else "lab"
        lab = LabSection(**{"name": default_name, **lab_table})
        task = data["task"]
        if not isinstance(task, Mapping) or not isinstance(task.get("name"), str):
            raise ConfigError(f"[task] must be a table whose name is a registered task or 'module:Class', got "
                              f"{task!r}")
        try:
            built = tasks.make(task["name"], **{k: v for k, v in task.items() if k != "name"})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"[task]: {err}") from None
        curricula = data["curricula"]
        if not isinstance(curricula, Mapping) or not curricula:
            raise ConfigError("[curricula] must hold at least one named policy spec")
        for name, spec in curricula.items():
            try:
                policies.from_spec(spec, built, seed=0)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"curricula.{name}: {err}") from None
        server = data.get("server", {})
        check_known("[server]", server, SERVER_KEYS)
        launcher = data.get("launcher", {})
        check_known("[launcher]", launcher, LAUNCHER_TABLES, "table")
        SlurmOptions.from_dict(launcher.get("slurm", {}), "launcher.slurm")
        tables = data["agents"]
        if not isinstance(tables, list) or not tables:
            raise ConfigError("[[agents]] must list at least one agent")
        agents: list[AgentEntry] = []
        seen: dict[str, str] = {}  # agent name -> where it was defined
        for i, table in enumerate(tables):
            if not isinstance(table, Mapping):
                raise ConfigError(f"agents[{i}] must be a table ([[agents]]), got {table!r}")
            if "name" not in table:
                raise ConfigError(f"agents[{i}] has no name (each [[agents]] table needs name = \"...\")")
            for expanded in expand_sweep(table, f"agents[{i}]"):
                swept = expanded["factors"] if "sweep" in table else {}
                try:
                    entry = AgentEntry.from_dict(expanded)
                except ConfigError as err:
                    key = re.match(r"[\w]+", str(err))
                    at = f"agents[{i}].sweep." if key and key.group() in swept else f"agents[{i}]."
                    err.args = (f"{at}{err}" + (f" (agent {expanded['name']!r})" if swept else ""),)
                    raise err from None
                at = f"agents[{i}].sweep" if swept else f"agents[{i}]"
                if entry.name in seen:
                    raise ConfigError(f"{at}: the agent name {entry.name!r} is used twice (also by {seen[entry.name]})"
                                      if swept or "sweep" in seen[entry.name] else
                                      f"agents[{i}].name = {entry.name!r} is used twice")
                seen[entry.name] = at
                if entry.curriculum is not None and entry.curriculum not in curricula:
                    at = f"agents[{i}].sweep.curriculum" if "curriculum" in swept else f"agents[{i}].curriculum"
                    raise ConfigError(f"{at} = {entry.curriculum!r} is not one of the curricula: "
                                      f"{', '.join(curricula)}")
                agents.append(entry)
        labfile = cls(lab, dict(task), dict(curricula), agents, dict(server), source, task_path,
                      json.loads(json.dumps(launcher)))
        try:  # the server's own checks (bind off loopback needs keys, ...), before anything starts
            labfile.server_config(journal="journal")
        except ConfigError as err:
            raise ConfigError(f"[server]: {str(err).removeprefix('server config: ')}") from None
        return labfile

    # ------------------------------------------------------------------ derived
    def agent(self, name: str) -> AgentEntry:
        """The ``[[agents]]`` entry called ``name`` (ConfigError listing the agents otherwise)."""
        for entry in self.agents:
            if entry.name == name:
                return entry
        raise ConfigError(f"{self.source}: no agent named {name!r}; agents: {', '.join(a.name for a in self.agents)}")

    def slurm_options(self, name: str | None = None) -> SlurmOptions:
        """The SLURM settings of agent ``name``: ``[launcher.slurm]`` with its ``[agents.launcher]`` keys on top
        (``additional_parameters`` merged key by key, any other key replaced), and ``cpus_per_task`` left unset
        taken from its ``threads``. ``name`` None: the lab's own (what the server's job runs with).

        Raises:
            ConfigError: no agent is called ``name``.
        """
        table = copy.deepcopy(self.launcher.get("slurm", {}))
        if name is not None:
            entry = self.agent(name)
            extra = copy.deepcopy(entry.launcher)
            if "additional_parameters" in extra:
                extra["additional_parameters"] = {**table.get("additional_parameters", {}),
                                                  **extra["additional_parameters"]}
            table.update(extra)
            if table.get("cpus_per_task") is None:
                table["cpus_per_task"] = entry.threads
        return SlurmOptions(**table)

    def factors(self) -> dict[str, dict]:
        """``{agent: {swept key: value}}`` for the agents expanded from a sweep, in file order (what
        :func:`shaping.readout.sweep_summary` groups by)."""
        return {a.name: dict(a.factors) for a in self.agents if a.factors}

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the file (``[server] keys``) are relative to."""
        return Path(self.task_path[0]) if self.task_path else Path.cwd()

    def server_dict(self, journal: str, tracking: Mapping[str, Any] | None = None) -> dict:
        """The server's config as plain data (what a lab writes to ``server_config.json``)."""
        server = {"task": self.task, "curricula": self.curricula, "seed": self.lab.seed, "journal": str(journal),
                  **self.server}
        if server.get("keys"):  # relative to the lab file, like the task module
            server["keys"] = str((self.base_dir / server["keys"]).resolve())
        if tracking:
            server["tracking"] = dict(tracking)
        return server

    def server_config(self, journal: str) -> ServerConfig:
        """The :class:`ServerConfig` of this lab's server, journaling into ``journal``."""
        return ServerConfig.from_dict(self.server_dict(journal))

    def agent_config(self, name: str, server: str, workdir: str | None = None, **overrides: Any) -> AgentConfig:
        """The :class:`AgentConfig` of agent ``name`` talking to ``server``.

        Args:
            workdir: checkpoints and weights (default: ``lab.workdir``).
            overrides: AgentConfig fields set from elsewhere (the command line); None values are ignored.
        """
        entry = self.agent(name)
        values = {"name": name, "server": server, "model": dict(entry.model), "curriculum": entry.curriculum,
                  "workdir": workdir or self.lab.workdir, "checkpoint_every": entry.checkpoint_every,
                  "max_batches": entry.max_batches, "threads": entry.threads, "device": entry.device,
                  "client_name": self.lab.client_name, "factors": dict(entry.factors), "group": entry.group}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return AgentConfig(**values)

    def packs(self) -> list[list[AgentEntry]]:
        """The agents grouped into packs of at most ``lab.pack_size`` (one agent process each), in file order.
        Agents share a pack when everything but :data:`PACK_FREE_KEYS` (seed, constraints, noise, learning rate:
        what a pack holds per network) and their curriculum is the same: model kind and size, training
        settings, and the process keys (threads, device, checkpoints, launcher settings)."""
        size = self.lab.pack_size
        open_packs: dict[str, list[AgentEntry]] = {}
        out: list[list[AgentEntry]] = []
        for entry in self.agents:
            shared = {k: v for k, v in entry.to_dict().items() if k not in PACK_FREE_KEYS}
            key = json.dumps(shared, sort_keys=True, default=str)
            pack = open_packs.get(key)
            if pack is None or len(pack) >= size:
                pack = open_packs[key] = []
                out.append(pack)
            pack.append(entry)
        return out

    def replicate(self, offset: int) -> "LabFile":
        """The same lab with ``lab.seed`` offset by ``offset`` and every agent's model ``seed`` by ``1000 *
        offset``: a replicate with new trial streams and new initial networks (benchmarks over seeds)."""
        data = self.to_dict()
        data["lab"]["seed"] += int(offset)
        for agent in data["agents"]:
            agent["seed"] = int(agent.get("seed") or 0) + 1000 * int(offset)
            if "seed" in agent["factors"]:  # a swept seed: the factor is the seed run (the name is kept)
                agent["factors"]["seed"] = agent["seed"]
        return LabFile.from_dict(data, source=self.source, task_path=self.task_path)

    def to_dict(self) -> dict:
        """Plain data with every default filled in (what a lab writes to ``lab.json``)."""
        return {"lab": asdict(self.lab), "task": dict(self.task), "curricula": dict(self.curricula),
                "agents": [a.to_dict() for a in self.agents], "server": dict(self.server),
                "launcher": copy.deepcopy(self.launcher)}


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low
