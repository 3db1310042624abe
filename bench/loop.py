"""Closed-loop benchmarks: one TF agent through the task server versus locally, MLflow logging overhead,
task-server capacity, and scaling with several agent processes. Each part prints a table.

1. **Agent throughput** (issue 5): one real agent (``agents.agent.Agent``, the product's loop: the server's
   default credit of 3 batches in flight, one optimizer step, RESULT, the previous batch's SCORE read after
   the step; one TensorFlow thread) trains through a
   real task server (``shaping.server.TaskServer`` in its own process) and the same model trains locally
   (``task.generate`` + ``train_on_batch``) in the same run. Trials/s of each and their ratio (target >= 0.9).
   ``PerceptualDiscrimination(dt=10, tau=100, T=2000, N_batch=128)``, ``Basic`` with ``N_rec=50``, a fixed
   curriculum.
2. **MLflow overhead** (issue 6): the same closed loop with the server's ``CurriculumTracker``
   (``shaping.server.attach_tracking``) and the agent's ``AgentTracker`` writing to an sqlite store, versus
   without (target: logging slows training by < 5 %). The agent also logs a ``W_rec`` image every
   ``log_every_s`` (60 s); that cost is timed once and amortised over the interval.
3. **Server capacity**: one task server process (one loop thread) serves many simulated agents that answer
   each batch instantly with its own target (``y``); every trial is generated, sent, received, scored and
   journaled. Reported per row: trials/s of wall time, and trials per CPU-second of the server's loop thread
   (the figure "on one core", robust to other processes sharing the machine) and of the whole server process
   (ZeroMQ I/O threads included). Target: > 20,000 trials/s for PerceptualDiscrimination at 200 time steps.
4. **Scaling**: aggregate trials/s of 1, 2 and 4 agent processes on one server, next to as many local
   training processes.

How parts 1, 2 and 4 measure on a shared, noisy machine: each condition is a group of live processes (TF
imported, model built, warmed up) that trains a *segment* of ``--batches`` batches per process when told,
then waits. The groups take turns in a rotating order for ``--rounds`` rounds; a figure is the median over
rounds and a ratio the median of the ratios measured within each round, so slow phases of the machine hit
every condition alike. An agent's segment is that many whole cycles of its loop (gate to gate, the gate
sitting before each training step).

Usage: ``python bench/loop.py [--quick] [--parts agent logging capacity scaling] [--rounds 16]
[--batches 40] [--warmup 30] [--scale 1 2 4] [--scale-rounds 4] [--seconds 3] [--agents 1 4 16]
[--batch 128 256]``
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zmq

from shaping import protocol

TASK = {"name": "PerceptualDiscrimination", "dt": 10, "T": 2000}  # 200 time steps
# The agent benchmarks (issue 5): PerceptualDiscrimination(dt=10, tau=100, T=2000, N_batch=128), Basic N_rec=50.
AGENT_TASK = {"name": "PerceptualDiscrimination", "dt": 10, "tau": 100, "T": 2000, "N_batch": 128}
AGENT_MODEL = {"model": "Basic", "N_rec": 50, "learning_rate": 1e-3, "seed": 1}
CURRICULUM = {"kind": "fixed", "knobs": {"coherence": [0.1, 0.3, 0.5, 0.7]}}
PARTS = ["agent", "logging", "capacity", "scaling"]


# ---------------------------------------------------------------------------------------------- server side
def _server_process(config: dict, ready: mp.Queue, stop: mp.Event, out: mp.Queue,
                    tracking: dict | None = None) -> None:
    import logging

    from shaping.server import TaskServer, attach_tracking

    logging.basicConfig(level=logging.ERROR)
    server = TaskServer(config)
    if tracking:
        attach_tracking(server, tracking)
    ready.put(server.start())
    threading.Thread(target=lambda: (stop.wait(), server.stop()), daemon=True).start()
    server.run()
    out.put(dict(server.stats))


# ---------------------------------------------------------------------------------------------- agents side
def _instant_agents(endpoint: str, n_agents: int, n_trials: int, credit: int, seconds: float,
                    warmup_s: float, out: mp.Queue) -> None:
    """One process, ``n_agents`` DEALER sockets, each answering every batch at once with its target."""
    ctx = zmq.Context()
    poller = zmq.Poller()
    socks = []
    for i in range(n_agents):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send_multipart(protocol.encode("HELLO", {"agent": f"sim{i:03d}", "curriculum": "fixed"}))
        poller.register(s, zmq.POLLIN)
        socks.append(s)
    epochs: dict[zmq.Socket, int] = {}
    trials = 0
    t_start = None
    t_end = None
    deadline = time.monotonic() + warmup_s + seconds + 30
    while time.monotonic() < deadline:
        for sock, _ in poller.poll(1000):
            frames = sock.recv_multipart(copy=False)
            msg = protocol.decode(frames)
            if msg.type == "WELCOME":
                epochs[sock] = msg.header["epoch"]
                for _ in range(credit):
                    sock.send_multipart(protocol.encode("GET", {"n": n_trials}))
                if len(epochs) == n_agents and t_start is None:
                    t_start = time.monotonic() + warmup_s
                    t_end = t_start + seconds
            elif msg.type == "BATCH":
                sock.send_multipart(protocol.encode("RESULT", {"batch": msg.header["batch"], "epoch": epochs[sock]},
                                             {"y_hat": msg.arrays["y"]}), copy=False)
            elif msg.type == "SCORE":
                now = time.monotonic()
                if t_start is not None and t_start <= now < t_end:
                    trials += msg.header["n"]
                if t_end is not None and now >= t_end:
                    continue
                sock.send_multipart(protocol.encode("GET", {"n": n_trials}))
            elif msg.type == "ERROR":
                raise RuntimeError(f"server error: {msg.header}")
        if t_end is not None and time.monotonic() >= t_end:
            break
    for s in socks:
        s.close(0)
    ctx.term()
    out.put(trials / seconds)


def _get(queue: mp.Queue, proc: mp.Process, timeout_s: float):
    """A result from a child process, failing fast (with its exit code) if the child dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=0.2)
        except Exception:  # queue.Empty
            if not proc.is_alive():
                raise RuntimeError(f"{proc.name} exited with code {proc.exitcode} before reporting") from None
    raise TimeoutError(f"{proc.name} reported nothing within {timeout_s} s")


def server_capacity(n_agents: int, n_trials: int, seconds: float = 3.0, warmup_s: float = 0.5,
                    credit: int = 2) -> dict:
    """Run one capacity measurement; returns trials/s (wall, loop thread CPU, process CPU)."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as journal:
        config = {"task": {**TASK, "N_batch": n_trials}, "curricula": {"fixed": {"kind": "fixed"}},
                  "seed": 0, "journal": journal, "credit": credit}
        ready, stats_q, rate_q, stop = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Event()
        server = ctx.Process(target=_server_process, args=(config, ready, stop, stats_q))
        server.start()
        endpoint = _get(ready, server, 60)
        agents = ctx.Process(target=_instant_agents,
                             args=(endpoint, n_agents, n_trials, credit, seconds, warmup_s, rate_q))
        agents.start()
        wall_rate = _get(rate_q, agents, seconds + warmup_s + 120)
        agents.join(30)
        stop.set()
        stats = _get(stats_q, server, 60)
        server.join(30)
    return {"agents": n_agents, "trials/batch": n_trials, "trials/s (wall)": wall_rate,
            "trials/s per loop-thread CPU s": stats["trials"] / max(stats["cpu_s"], 1e-9),
            "trials/s per process CPU s": stats["trials"] / max(stats["process_cpu_s"], 1e-9),
            "server CPU busy": stats["cpu_s"] / max(stats["wall_s"], 1e-9)}


# ---------------------------------------------------------------------------------------------- TF agents
def _tf_process_env() -> None:
    """What an agent process sets before TensorFlow starts (CPU only; threads are set by the caller)."""
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    import logging

    logging.basicConfig(level=logging.ERROR)


def _local_worker(wid: int, model: dict, task_config: dict, knobs: dict, cmd: mp.Queue, out: mp.Queue) -> None:
    """The same model trained locally: ``task.generate`` + ``train_on_batch``, ``n`` batches per command."""
    _tf_process_env()
    import agents
    from shaping.tasks import make

    agents.configure_threads(1)
    task = make(task_config["name"], seed=wid, **{k: v for k, v in task_config.items() if k != "name"})
    net = agents.build_model(model, task.spec())
    out.put(("ready", wid, None))
    batch_id = 0
    while (n := cmd.get()) is not None:
        t0 = time.time()
        for _ in range(n):
            batch = task.generate(knobs=knobs, batch_id=batch_id)
            net.train_on_batch(batch.x, batch.y, batch.mask)
            batch_id += 1
        out.put(("done", wid, (t0, time.time(), n)))
    out.put(("exit", wid, {}))


class _GatedModel:
    """A model whose ``train_on_batch`` first passes a gate; everything else is the model's own."""

    def __init__(self, model, gate):
        self._model, self._gate = model, gate

    def train_on_batch(self, x, y, mask):
        self._gate()
        return self._model.train_on_batch(x, y, mask)

    def __getattr__(self, name):
        return getattr(self._model, name)


def _agent_worker(wid: int, endpoint: str, name: str, model: dict, workdir: str, cmd: mp.Queue,
                  out: mp.Queue) -> None:
    """The product's agent (``agents.agent.Agent``: train, RESULT, read the previous batch's SCORE).

    Two additions, neither inside the measured loop's work: a gate before each training step that waits
    for the next command (a segment is ``n`` whole cycles, gate to gate), and timing of the one-off MLflow
    work: after the tracker's start-up logging and after each connectivity snapshot the agent waits for the
    tracker's background writer, so that the cost is measured whole and none of it spills into a segment.
    Checkpoints are taken only at the end, as the local loop takes none (the product's default, one every 20
    batches, costs about 3 ms each: 0.6 % of the step here)."""
    _tf_process_env()
    import agents
    from agents.agent import Agent, AgentConfig

    agents.configure_threads(1)

    class SegmentedAgent(Agent):
        def __init__(self, config: AgentConfig):
            super().__init__(config)
            self.logging_s: dict[str, list[float]] = {}
            self._left, self._n, self._t0 = 0, 0, None

        @property
        def model(self):
            return self.__dict__.get("_gated")

        @model.setter
        def model(self, value) -> None:
            self.__dict__["_gated"] = None if value is None else _GatedModel(value, self._gate)

        def _gate(self) -> None:
            if self._left == 0:
                out.put(("done", wid, (self._t0, time.time(), self._n)) if self._t0 else ("ready", wid, None))
                n = cmd.get()
                if n is None:  # train this one batch, then leave as a stopped agent does
                    self.request_stop()
                    n = 1
                self._left, self._n, self._t0 = n, n, time.time()
            self._left -= 1

        def _timed(self, label: str, fn, *args) -> None:
            t0 = time.perf_counter()
            fn(*args)
            if self.tracker is not None:
                self.tracker.writer.drain()
                self.logging_s.setdefault(label, []).append(time.perf_counter() - t0)

        def _start_tracking(self, run) -> None:
            self._timed("start", super()._start_tracking, run)

        def _log_connectivity(self, trials, tag, weights_path=None) -> None:
            label = "image" if tag is None else "final" if tag == "final" else "stage"
            self._timed(label, super()._log_connectivity, trials, tag, weights_path)

    config = AgentConfig(name=name, server=endpoint, model=dict(model), workdir=workdir, checkpoint_every=10 ** 9,
                         threads=1, device="CPU")
    agent = SegmentedAgent(config)
    summary = agent.run()
    out.put(("exit", wid, {"summary": summary, "logging_s": agent.logging_s}))


def _collect(queue: mp.Queue, procs: list, kind: str, timeout_s: float) -> list:
    """One ``(kind, wid, payload)`` item from each of ``procs``; fails fast if one of them dies."""
    items, deadline = [], time.monotonic() + timeout_s
    while len(items) < len(procs):
        try:
            item = queue.get(timeout=0.2)
        except Exception:  # queue.Empty
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited with code {dead[0].exitcode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(procs) - len(items)} process(es) sent no {kind!r} within "
                                   f"{timeout_s} s") from None
            continue
        if item[0] != kind:
            raise RuntimeError(f"expected {kind!r} from every worker, got {item[0]!r} from worker {item[1]}")
        items.append(item)
    return items


class Group:
    """``n_procs`` live training processes that run a segment of ``n`` batches each when told.

    Args:
        label: what the group is (``local``, ``loop``, ``loop+mlflow``, ``loop-agent-built``: the server
            configured with ``build = "agent"``, protocol 2).
        n_procs: processes in the group.
        workdir: a folder for the server's journal, MLflow store and agents' checkpoints (closed-loop groups).
    """

    def __init__(self, label: str, n_procs: int, workdir: str):
        ctx = mp.get_context("spawn")
        self.label = label
        self.out = ctx.Queue()
        self.cmds = [ctx.Queue() for _ in range(n_procs)]
        self.server = self.stop = self.stats = None
        self.journal = str(Path(workdir, "journal"))
        if label == "local":
            args = [(AGENT_MODEL, AGENT_TASK, CURRICULUM["knobs"]) for _ in range(n_procs)]
            target = _local_worker
        else:
            endpoint = self._start_server(ctx, workdir, tracking=label == "loop+mlflow")
            args = [(endpoint, f"a{i}", AGENT_MODEL, workdir) for i in range(n_procs)]
            target = _agent_worker
        self.procs = [ctx.Process(target=target, name=f"{label}-{i}", args=(i, *args[i], self.cmds[i], self.out),
                                  daemon=True) for i in range(n_procs)]
        for p in self.procs:
            p.start()
        self.exits: list = []

    def _start_server(self, ctx, workdir: str, tracking: bool) -> str:
        config = {"task": dict(AGENT_TASK), "curricula": {"fixed": CURRICULUM}, "seed": 0, "journal": self.journal,
                  "build": "agent" if self.label == "loop-agent-built" else "server"}
        track = None
        if tracking:
            from shaping.tracking import LabRun

            uri = f"sqlite:///{Path(workdir, 'mlflow.db').as_posix()}"
            lab = LabRun.start(uri, "bench-loop", {"task": AGENT_TASK, "curriculum": CURRICULUM,
                                                   "model": AGENT_MODEL})
            if not lab.enabled:
                raise RuntimeError(f"could not open the MLflow store {uri}")
            track = {"tracking_uri": uri, "run_id": lab.run_id}
        ready, self.stats, self.stop = ctx.Queue(), ctx.Queue(), ctx.Event()
        self.server = ctx.Process(target=_server_process, name=f"{self.label}-server",
                                  args=(config, ready, self.stop, self.stats, track), daemon=True)
        self.server.start()
        return _get(ready, self.server, 120)

    def wait_ready(self) -> None:
        _collect(self.out, self.procs, "ready", 600)

    def segment(self, n: int) -> float:
        """Every process trains ``n`` batches; returns the group's trials/s (first start to last end)."""
        for c in self.cmds:
            c.put(n)
        spans = [item[2] for item in _collect(self.out, self.procs, "done", 600)]
        t0, t1 = min(s[0] for s in spans), max(s[1] for s in spans)
        return AGENT_TASK["N_batch"] * n * len(spans) / (t1 - t0)

    def close(self) -> None:
        """Stop the processes (agents checkpoint and say BYE), then the server; whatever does not stop in
        time (or after a failure) is terminated."""
        try:
            for c in self.cmds:
                c.put(None)
            self.exits = [item[2] for item in _collect(self.out, self.procs, "exit", 600)]
            for p in self.procs:
                p.join(60)
            if self.server is not None:
                self.stop.set()
                _get(self.stats, self.server, 120)
                self.server.join(60)
        finally:
            for p in [*self.procs, self.server]:
                if p is not None and p.is_alive():
                    p.terminate()
                    p.join(10)

    def logging_s(self) -> dict[str, list[float]]:
        """Seconds of each one-off MLflow step the agents timed (``start``, ``image``, ``final``)."""
        out: dict[str, list[float]] = {}
        for e in self.exits:
            for label, values in e.get("logging_s", {}).items():
                out.setdefault(label, []).extend(values)
        return out


def _close_all(groups: list[Group]) -> None:
    """Close every group, then raise the first error any close raised."""
    errors = []
    for g in groups:
        try:
            g.close()
        except Exception as err:  # - the others must still be closed
            errors.append(err)
    if errors:
        raise errors[0]


def run_rounds(groups: list[Group], rounds: int, batches: int, warmup: int) -> dict[str, list[float]]:
    """Warm every group up, then ``rounds`` rounds of one ``batches`` segment per group, in rotating order."""
    for g in groups:
        g.wait_ready()
    for g in groups:
        g.segment(warmup)
    rates: dict[str, list[float]] = {g.label: [] for g in groups}
    for r in range(rounds):
        k = r % len(groups)
        for g in groups[k:] + groups[:k]:
            rates[g.label].append(g.segment(batches))
        print("  round {:>2}/{}: ".format(r + 1, rounds)
              + ", ".join(f"{label} {v[-1]:,.0f}" for label, v in rates.items()) + " trials/s", flush=True)
    return rates


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _ratio(rates: dict[str, list[float]], a: str, b: str) -> tuple[float, str]:
    """Median over rounds of ``a / b`` measured in the same round, and the quartiles of those ratios."""
    ratios = [x / y for x, y in zip(rates[a], rates[b])]
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return _median(ratios), f"{q1:.2f}-{q3:.2f}"


def agent_throughput(rounds: int, batches: int, warmup: int, logging: bool = True,
                     log_every_s: float = 60.0, agent_built: bool = True) -> tuple[list[dict], list[dict] | None]:
    """One agent: local, closed loop, (``agent_built``) closed loop building its own trials (protocol 2) and
    (``logging``) closed loop with MLflow, taking turns.

    Returns the throughput table and the logging table (None without ``logging``)."""
    labels = ["local", "loop"] + (["loop-agent-built"] if agent_built else []) + (["loop+mlflow"] if logging else [])
    with tempfile.TemporaryDirectory(prefix="skinnerbox-bench-") as tmp:
        groups: list[Group] = []
        try:
            for label in labels:
                os.makedirs(Path(tmp, label))
                groups.append(Group(label, 1, str(Path(tmp, label))))
            rates = run_rounds(groups, rounds, batches, warmup)
        finally:
            _close_all(groups)
        logged = groups[-1].logging_s() if logging else {}
    local, loop, batch = _median(rates["local"]), _median(rates["loop"]), AGENT_TASK["N_batch"]
    ratio, spread = _ratio(rates, "loop", "local")
    throughput = [
        {"agent": "local: generate + train_on_batch", "trials/s": local, "ms/batch": 1000 * batch / local,
         "vs local": 1.0, "quartiles": ""},
        {"agent": "closed loop: Agent via TaskServer", "trials/s": loop, "ms/batch": 1000 * batch / loop,
         "vs local": ratio, "quartiles": spread},
    ]
    if agent_built:
        built = _median(rates["loop-agent-built"])
        ratio, spread = _ratio(rates, "loop-agent-built", "local")
        throughput.append({"agent": "closed loop, trials built by the agent (build = agent)", "trials/s": built,
                           "ms/batch": 1000 * batch / built, "vs local": ratio, "quartiles": spread})
    if not logging:
        return throughput, None
    tracked = _median(rates["loop+mlflow"])
    ratio, spread = _ratio(rates, "loop+mlflow", "loop")
    slowdown = 1 - ratio
    image_s = _median(logged["image"]) if logged.get("image") else 0.0
    with_images = 1 - (1 - slowdown) * (1 - image_s / log_every_s)  # the agent stops for one image per interval
    table = [
        {"closed loop": "without MLflow", "trials/s": loop, "slowdown": "-", "ratio quartiles": ""},
        {"closed loop": "with MLflow (server + agent trackers)", "trials/s": tracked, "slowdown": f"{slowdown:.1%}",
         "ratio quartiles": spread},
        {"closed loop": f"  + a W_rec image every {log_every_s:g} s ({1000 * image_s:.0f} ms each)",
         "trials/s": tracked * (1 - image_s / log_every_s), "slowdown": f"{with_images:.1%}", "ratio quartiles": ""},
    ]
    for label, what in (("start", "tracker start-up (once)"), ("final", "final weights + figures (once)")):
        if logged.get(label):
            table.append({"closed loop": f"  {what}: {_median(logged[label]):.2f} s", "trials/s": "",
                          "slowdown": "", "ratio quartiles": ""})
    return throughput, table


def scaling(counts: list[int], rounds: int, batches: int, warmup: int) -> list[dict]:
    """Aggregate trials/s of N agent processes on one server, and of N local training processes."""
    rows = []
    for n in counts:
        print(f"  {n} process(es) per group", flush=True)
        with tempfile.TemporaryDirectory(prefix="skinnerbox-bench-") as tmp:
            groups: list[Group] = []
            try:
                for label in ("local", "loop"):
                    groups.append(Group(label, n, tmp))
                rates = run_rounds(groups, rounds, batches, warmup)
            finally:
                _close_all(groups)
        loop = _median(rates["loop"])
        ratio, spread = _ratio(rates, "loop", "local")
        rows.append({"agents": n, "closed loop trials/s": loop, "per agent": loop / n,
                     "local trials/s": _median(rates["local"]), "vs local": ratio, "quartiles": spread})
    return rows


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    return str(v)


def print_table(rows: list[dict], title: str) -> None:
    """Rows as an aligned table: the first column left-aligned, the others right-aligned."""
    print(f"\n{title}")
    cols = list(rows[0])
    cells = [[_cell(r[c]) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    print(line(cols))
    for row in cells:
        print(line(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS, help="which benchmarks to run")
    parser.add_argument("--rounds", type=int, default=16, help="rounds of agent/logging segments")
    parser.add_argument("--batches", type=int, default=40, help="batches per process per segment")
    parser.add_argument("--warmup", type=int, default=30, help="batches per process before the first round")
    parser.add_argument("--scale", type=int, nargs="+", default=[1, 2, 4], help="agent processes per row")
    parser.add_argument("--scale-rounds", type=int, default=4, help="rounds of each scaling row")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per capacity row")
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 4, 16], help="simulated agents per row")
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 256], help="trials per batch")
    parser.add_argument("--quick", action="store_true", help="short runs of every part (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.agents, args.batch = 1.0, [4], [128]
        args.rounds, args.scale_rounds, args.batches, args.warmup, args.scale = 3, 2, 20, 10, [1, 2]
    t0 = time.monotonic()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cpus} CPU core(s); {AGENT_TASK}; model {AGENT_MODEL}; curriculum {CURRICULUM}; "
          f"segments of {args.batches} batches per process after {args.warmup} warm-up batches; one TensorFlow "
          "thread per process")

    if "agent" in args.parts or "logging" in args.parts:
        print("\nAgent throughput: rounds (trials/s of each condition's segment)")
        throughput, logging_rows = agent_throughput(args.rounds, args.batches, args.warmup,
                                                    logging="logging" in args.parts)
        n = f"median of {args.rounds} rounds"
        print_table(throughput, f"Agent throughput: one Basic N_rec=50 agent, 200 steps, 128 trials/batch ({n}; "
                                "target closed loop / local >= 0.9)")
        if logging_rows:
            print_table(logging_rows, f"MLflow logging overhead: closed loop with and without tracking to an "
                                      f"sqlite store ({n}; target slowdown < 5%)")
    if "capacity" in args.parts:
        rows = [server_capacity(a, b, args.seconds) for b in args.batch for a in args.agents]
        print_table(rows, "Server capacity: PerceptualDiscrimination, 200 steps, instant simulated agents, "
                          "journal on (target > 20,000 trials/s on one core)")
    if "scaling" in args.parts:
        print("\nScaling: rounds")
        rows = scaling(args.scale, args.scale_rounds, args.batches, args.warmup)
        print_table(rows, f"Scaling: agent processes on one task server vs as many local training processes, "
                          f"{cpus} core(s) (aggregate trials/s while all run)")
    print(f"\n(total {time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
