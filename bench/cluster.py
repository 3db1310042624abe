"""Cluster benchmark (issue 14): a sweep of many small agents through SLURM against the same sweep run locally,
the bytes a trial puts on the wire, and the MLflow tracking server's write latency under concurrent writers.
Each part prints a table.

1. **Sweep** (``--launchers local slurm``): one real task server (``python -m shaping.cli server CONFIG``, a
   subprocess; PerceptualDiscrimination with 50 time steps, 16 trials a batch, a three-stage curriculum whose
   last stage never completes; journal in a temporary folder) and ``--agents`` simulated agents
   (``bench/sim_agent.py``: NumPy only, each answers ``--batches`` batches and leaves), started through
   :class:`shaping.launchers.LocalLauncher` (subprocesses) or :class:`shaping.launchers.SlurmLauncher` (one job
   array through submitit, one CPU a job). TensorFlow agents would not fit many to a small machine; the server's
   work per trial is the same whoever answers. Reported, in seconds from the moment the launcher is asked
   to start them (t = 0): the first and last start (the SLURM start records written on the node; the local
   launcher's ``Popen``), every agent's interpreter up, every agent's first SCORE ("all scoring": the sweep
   is running), every agent's last SCORE, and every process seen ended by the launcher (SLURM: gone from
   ``squeue``). Then trials served (the sessions' counts), the agents' reconnects (3 silent heartbeat intervals:
   an overloaded machine), and trials/s between the first first-SCORE and the last SCORE; the server
   process's CPU share over that span (utime + stime from ``/proc/<pid>/stat``, ZeroMQ I/O threads included,
   over wall time); and its CPU per trial over the whole run (the figure that extrapolates).
2. **Wire**: bytes of one BATCH, RESULT and SCORE message (all frames) for the sweep's task and for the agent
   benchmark's (200 steps, 128 trials), from a raw DEALER talking to an in-process server; per trial.
3. **MLflow** (``--skip-mlflow`` leaves it out): N concurrent writer processes (``--writers 1 8 64``), each
   with its own run, call ``MlflowClient.log_batch`` (``--metrics`` metrics a call, ``synchronous=True`` as the
   trackers do) ``--calls`` times after a warm-up call, all starting together; median and p95 latency, calls/s
   of all writers together, and the calls that failed (with MLflow's words). Against a real ``mlflow server``
   (one worker, ``--serve-artifacts``) on a fresh PostgreSQL database (``tests/services.py``), once per
   ``--pools`` setting of its SQLAlchemy connection pool (``MLFLOW_SQLALCHEMYSTORE_POOL_SIZE`` +
   ``..._MAX_OVERFLOW``; MLflow's default is SQLAlchemy's 5 + 10), and against the embedded sqlite file every
   writer opens itself (a lab's default store). MLflow's environment is the project's (``shaping.tracking``:
   HTTP timeout 5 s, no retries).

   Why the pool matters: MLflow's ``log_batch`` (3.x) holds one pooled connection (the run, read in an open
   transaction) while it takes a second for the metrics; the server runs up to 40 requests at once per worker
   (anyio's thread limit). With 15 or more concurrent ``log_batch`` calls every connection of a 5 + 10 pool can
   be held by a first step, each waiting for a second (PostgreSQL shows 15 sessions "idle in transaction"
   after reading the run): no request completes any more, and writers see 5 s read timeouts. A pool of more
   than 40 connections per worker cannot stall this way.

Parts whose service is missing (no SLURM node, no PostgreSQL) are skipped with the reason.

Usage: ``python bench/cluster.py [--agents 64] [--batches 100] [--pause-s 0] [--launchers local slurm]
[--writers 1 8 64] [--calls 20] [--metrics 10] [--pools default 10+40] [--skip-mlflow]``
"""
from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # services.py: PostgreSQL, mlflow server and SLURM helpers

import numpy as np  # noqa: E402
import zmq  # noqa: E402
from tqdm import tqdm  # noqa: E402

from shaping import protocol  # noqa: E402
from shaping.labfile import SlurmOptions  # noqa: E402
from shaping.launchers import LaunchError, LocalLauncher, Process, SlurmLauncher  # noqa: E402
from shaping.procs import process_env, read_endpoint  # noqa: E402

SIM_AGENT = ROOT / "bench" / "sim_agent.py"
# The sweep's task: 50 time steps, 16 trials a batch (as the server tests' SMALL_TASK).
SWEEP_TASK = {"name": "PerceptualDiscrimination", "dt": 10, "T": 500, "N_batch": 16}
# The agent benchmark's task (bench/loop.py, issue 5): 200 time steps, 128 trials a batch.
AGENT_TASK = {"name": "PerceptualDiscrimination", "dt": 10, "tau": 100, "T": 2000, "N_batch": 128}
# Three stages; the last has no graduation, so every agent answers all its batches.
STAGES = {
    "kind": "stages",
    "window": 48,
    "stages": [
        {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.7, "min_trials": 48}},
        {"name": "medium", "knobs": {"coherence": 0.3}, "graduate": {"accuracy": 0.7, "min_trials": 48}},
        {"name": "hard", "knobs": {"coherence": 0.1}},
    ],
}
LAUNCHERS = ["local", "slurm"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- helpers
def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) the process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 of proc(5)


def cpu_between(samples: list[tuple[float, float]], t_a: float, t_b: float) -> float:
    """CPU seconds used between wall times ``t_a`` and ``t_b`` (s), interpolated between ``(time, cpu_s)``
    samples."""
    times, cpus = zip(*samples)
    return float(np.interp(t_b, times, cpus) - np.interp(t_a, times, cpus))


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p95(values: list[float]) -> float:
    return float(np.percentile(values, 95)) if values else float("nan")


def _cell(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def print_table(rows: list[dict], title: str) -> None:
    """Rows as an aligned table: the first column left-aligned, the others right-aligned."""
    print(f"\n{title}")
    if not rows:
        print("  (nothing measured)")
        return
    cols = list(rows[0])
    cells = [[_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    print(line(cols))
    for row in cells:
        print(line(row))


def server_config(journal: Path, task: dict) -> dict:
    """The task server's config: ``task``, the stages curriculum, the product's heartbeat and expiry."""
    return {"task": dict(task), "curricula": {"shaped": STAGES}, "seed": 7, "journal": str(journal)}


@contextlib.contextmanager
def task_server(workdir: Path, task: dict) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m shaping.cli server`` on a fresh journal in ``workdir``; yields (process, endpoint) and stops
    it with SIGTERM (its log is ``workdir/server.log``)."""
    journal = workdir / "journal"
    config = workdir / "server_config.json"
    config.write_text(json.dumps(server_config(journal, task)))
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "shaping.cli", "server", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, env=process_env(1), cwd=ROOT, start_new_session=True)
    try:
        try:
            endpoint = read_endpoint(journal, timeout_s=60)["endpoint"]
        except TimeoutError:
            raise RuntimeError(f"the task server did not start:\n{log_path.read_text()[-2000:]}") from None
        yield proc, endpoint
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_log(path: Path) -> dict:
    """The three time stamps a simulated agent wrote (``up``, ``first_score``, ``done``/``closed``)."""
    record: dict = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return record
    for line in lines:
        item = json.loads(line)
        for key in ("up", "first_score", "done", "closed"):
            if key in item:
                record[key] = item[key]
        for key in ("trials", "reconnects"):
            if key in item:
                record[key] = item[key]
    return record


# ---------------------------------------------------------------------------------------------- 1. sweep
def make_launcher(kind: str, workdir: Path) -> LocalLauncher | SlurmLauncher:
    """The launcher ``kind``; raises LaunchError where it cannot run here."""
    if kind == "local":
        return LocalLauncher()
    from services import slurm_reason

    reason = slurm_reason()
    if reason:
        raise LaunchError(reason)
    options = SlurmOptions(timeout_min=30, cpus_per_task=1, array_parallelism=1024)
    launcher = SlurmLauncher(workdir / "slurm", lambda name: options, job_name="bench-cluster")
    launcher.check()
    return launcher


def sweep(kind: str, n_agents: int, batches: int, pause_s: float, timeout_s: float) -> dict:
    """Run one sweep of ``n_agents`` simulated agents through the launcher ``kind``; its table row.

    Times are seconds after the launcher was asked to start them; see the module docstring for each column.
    """
    with tempfile.TemporaryDirectory(prefix=f"skinnerbox-cluster-{kind}-") as tmp:
        workdir = Path(tmp)
        launcher = make_launcher(kind, workdir)
        with task_server(workdir, SWEEP_TASK) as (server, endpoint):
            logs = workdir / "logs"
            logs.mkdir()
            procs = [Process(name=f"a{i:03d}", log_path=logs / f"a{i:03d}.log", threads=1,
                             argv=[sys.executable, str(SIM_AGENT), endpoint, f"a{i:03d}", "--log",
                                   str(logs / f"a{i:03d}.jsonl"), "--curriculum", "shaped", "--batches",
                                   str(batches), "--pause-s", str(pause_s), "--seed", str(i)])
                     for i in range(n_agents)]
            samples = [(time.time(), cpu_s(server.pid))]
            t0, mono0 = time.time(), time.monotonic()
            launcher.start(procs, {})
            t_submitted = time.time()
            pending = {p.name: p for p in procs}
            codes: dict[str, int] = {}
            deadline = time.monotonic() + timeout_s
            with tqdm(total=n_agents, desc=f"  {kind}: agents ended", unit="agent", leave=False) as bar:
                while pending and time.monotonic() < deadline:
                    ended = launcher.poll(list(pending.values()))
                    for name, code in ended.items():
                        pending.pop(name).mark_ended(code)
                        codes[name] = code
                    bar.update(len(ended))
                    samples.append((time.time(), cpu_s(server.pid)))
                    if pending:
                        time.sleep(launcher.poll_interval_s)
            t_ended = time.time()
            samples.append((t_ended, cpu_s(server.pid)))
            if pending:
                launcher.stop(list(pending.values()), grace_s=30)
            if kind == "slurm":
                starts = [s[0]["t"] for p in procs if (s := launcher.starts(p))]
            else:
                starts = [t0 + p.started - mono0 for p in procs]
            records = [_read_log(p.log_path.with_suffix(".jsonl")) for p in procs]
        failed = [p.name for p in procs if codes.get(p.name) != 0]
        if failed:
            tail = procs[0].log_path.read_text()[-1500:] if procs[0].log_path.exists() else ""
            print(f"  {kind}: {len(failed)} agent(s) did not end cleanly ({', '.join(failed[:5])}...); "
                  f"{len(pending)} timed out. a000's log:\n{tail}")
    firsts = [r["first_score"] for r in records if "first_score" in r]
    dones = [r["done"] for r in records if "done" in r]
    ups = [r["up"] for r in records if "up" in r]
    trials = sum(r.get("trials", 0) for r in records)
    serving = (min(firsts), max(dones)) if firsts and dones else (t0, t_ended)
    cpu_run = cpu_between(samples, t0, t_ended)

    def since(values: list[float], pick) -> float:
        return pick(values) - t0 if values else float("nan")

    return {"launcher": kind, "agents": n_agents, "ok": n_agents - len(failed),
            "submit s": t_submitted - t0, "first start s": since(starts, min), "all started s": since(starts, max),
            "all up s": since(ups, max), "all scoring s": since(firsts, max), "all done s": since(dones, max),
            "all ended s": t_ended - t0, "trials": trials, "reconnects": sum(r.get("reconnects", 0) for r in records),
            "trials/s": trials / max(serving[1] - serving[0], 1e-9),
            "server CPU share": cpu_between(samples, *serving) / max(serving[1] - serving[0], 1e-9),
            "server CPU s": cpu_run, "server us/trial": 1e6 * cpu_run / max(trials, 1)}


# ---------------------------------------------------------------------------------------------- 2. wire
def _nbytes(frames: list) -> int:
    return sum(memoryview(f).nbytes for f in frames)


def wire_bytes(task: dict, batches: int = 5) -> dict:
    """Bytes of BATCH, RESULT and SCORE messages (every frame; ZMTP adds 2-9 bytes a frame) for ``task``,
    averaged over ``batches`` batches answered with their targets, from a raw DEALER and an in-process server."""
    from shaping.server import TaskServer

    with tempfile.TemporaryDirectory(prefix="skinnerbox-wire-") as journal:
        server = TaskServer(server_config(Path(journal), task))
        endpoint = server.start()
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)

        def request(command: str, header: dict, arrays: dict | None = None) -> tuple[list, protocol.Message]:
            frames = protocol.encode(command, header, arrays)
            sock.send_multipart(frames)
            while True:
                if not sock.poll(30_000):
                    raise TimeoutError(f"no answer to {command}")
                reply = sock.recv_multipart()
                msg = protocol.decode(reply)
                if msg.type != "HEARTBEAT":
                    return frames, (reply, msg)

        try:
            _, (_, welcome) = request("HELLO", {"agent": "wire", "curriculum": "shaped"})
            epoch = welcome.header["epoch"]
            sizes: dict[str, list[int]] = {"GET": [], "BATCH": [], "RESULT": [], "SCORE": []}
            n = 0
            for _ in range(batches):
                get, (batch_frames, batch) = request("GET", {})
                result, (score_frames, score) = request("RESULT", {"batch": batch.header["batch"], "epoch": epoch},
                                                        {"y_hat": np.ascontiguousarray(batch.arrays["y"])})
                if score.type != "SCORE":
                    raise RuntimeError(f"expected SCORE, got {score.type}: {score.header}")
                n += batch.header["n"]
                for name, frames in (("GET", get), ("BATCH", batch_frames), ("RESULT", result),
                                     ("SCORE", score_frames)):
                    sizes[name].append(_nbytes(frames))
        finally:
            sock.close(0)
            ctx.term()
            server.stop()
            thread.join(30)
    per_batch = {k: sum(v) / len(v) for k, v in sizes.items()}
    trials = n / batches
    steps = int(task["T"]) // int(task["dt"])
    down, up = per_batch["BATCH"] + per_batch["SCORE"], per_batch["GET"] + per_batch["RESULT"]
    return {"task": f"{task['name']} {steps} steps", "trials/batch": int(trials),
            "BATCH bytes": per_batch["BATCH"], "RESULT bytes": per_batch["RESULT"], "SCORE bytes": per_batch["SCORE"],
            "server->agent B/trial": down / trials, "agent->server B/trial": up / trials,
            "both B/trial": (down + up) / trials}


# ---------------------------------------------------------------------------------------------- 3. MLflow
def _metrics(n_metrics: int, step: int) -> list:
    from shaping.tracking.store import Metric

    now = int(time.time() * 1000)
    return [Metric(key=f"bench/m{j}", value=float(step + j), timestamp=now, step=step) for j in range(n_metrics)]


# What failed, in a few words: the first of these found in an error's text, else its first line.
KNOWN_FAILURES = ("Read timed out", "database is locked", "QueuePool limit", "Connection refused",
                  "too many 500 error responses", "too many connections")


def _first_line(err: BaseException) -> str:
    text = str(err)
    for marker in KNOWN_FAILURES:
        if marker in text:
            return f"{type(err).__name__}: {marker}"
    lines = text.strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:120] if lines else ''}"


def _writer(uri: str, experiment_id: str, calls: int, n_metrics: int, barrier, out) -> None:
    """One writer process: its own run, one warm-up ``log_batch``, then ``calls`` timed ones after the barrier."""
    from shaping.tracking.store import MlflowClient

    report: dict = {"latencies": [], "errors": [], "setup_error": None}
    run_id = None
    try:
        client = MlflowClient(tracking_uri=uri)
        run_id = client.create_run(experiment_id).info.run_id
        client.log_batch(run_id, metrics=_metrics(n_metrics, 0), synchronous=True)
    except Exception as err:  # a writer that cannot start is part of the result
        report["setup_error"] = _first_line(err)
    try:
        barrier.wait(timeout=600)
    except threading.BrokenBarrierError:
        pass
    report["start"] = time.time()
    if report["setup_error"] is None:
        for step in range(1, calls + 1):
            metrics = _metrics(n_metrics, step)
            t = time.perf_counter()
            try:
                client.log_batch(run_id, metrics=metrics, synchronous=True)
                report["latencies"].append(time.perf_counter() - t)
            except Exception as err:  # a failed call is part of the result
                report["errors"].append(_first_line(err))
    report["end"] = time.time()
    out.put(report)


def _setup(uri: str, out) -> None:
    """Create the benchmark's experiment (in a child process, so that the writers fork from a parent that holds
    no MLflow store, connection pool or HTTP session)."""
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    try:
        from shaping.tracking.store import ensure_experiment

        out.put(("ok", ensure_experiment(uri, "bench-cluster")))
    except Exception as err:  # reported by write_latency
        out.put(("error", _first_line(err)))


def write_latency(store: str, uri: str, writers: int, calls: int, n_metrics: int) -> dict:
    """``writers`` processes log to ``uri`` at once; the table row (latencies in ms)."""
    ctx = mp.get_context("fork")  # the parent has imported MLflow: each writer starts in milliseconds
    out = ctx.Queue()
    setup = ctx.Process(target=_setup, args=(uri, out))
    setup.start()
    status, experiment_id = out.get(timeout=300)
    setup.join(30)
    if status != "ok":
        raise RuntimeError(f"could not create the experiment on {store}: {experiment_id}")
    barrier = ctx.Barrier(writers)
    procs = [ctx.Process(target=_writer, args=(uri, experiment_id, calls, n_metrics, barrier, out))
             for _ in range(writers)]
    for p in procs:
        p.start()
    reports = []
    for _ in tqdm(procs, desc=f"  {store}, {writers} writer(s)", unit="writer", leave=False):
        reports.append(out.get(timeout=900))
    for p in procs:
        p.join(30)
    latencies = [x for r in reports for x in r["latencies"]]
    errors = Counter(e for r in reports for e in r["errors"])
    setup_errors = Counter(r["setup_error"] for r in reports if r["setup_error"])
    span = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    failures = "; ".join(f"{n} x {e}" for e, n in (errors + setup_errors).most_common(2))
    return {"store": store, "writers": writers, "metrics/call": n_metrics, "calls ok": len(latencies),
            "median ms": 1000 * _median(latencies), "p95 ms": 1000 * _p95(latencies),
            "max ms": 1000 * max(latencies) if latencies else float("nan"),
            "calls/s (all)": len(latencies) / max(span, 1e-9),
            "failed calls": sum(errors.values()), "writers not started": sum(setup_errors.values()),
            "failures": failures or "none"}


POOL_ENV = ("MLFLOW_SQLALCHEMYSTORE_POOL_SIZE", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW")


@contextlib.contextmanager
def _pool_env(pool: str) -> Iterator[str]:
    """MLflow's SQLAlchemy pool settings for a server started inside (``"default"``: SQLAlchemy's 5 + 10;
    ``"SIZE+OVERFLOW"``); yields the row's label."""
    saved = {k: os.environ.get(k) for k in POOL_ENV}
    try:
        if pool == "default":
            for k in POOL_ENV:
                os.environ.pop(k, None)
            yield "default pool 5+10"
        else:
            size, overflow = (int(x) for x in pool.split("+"))
            os.environ.update({POOL_ENV[0]: str(size), POOL_ENV[1]: str(overflow)})
            yield f"pool {size}+{overflow}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def mlflow_part(writers: list[int], calls: int, metrics: list[int], pools: list[str]) -> list[dict]:
    """Write latency rows: the PostgreSQL-backed ``mlflow server`` with each of ``pools`` (when PostgreSQL
    answers), then the embedded sqlite file."""
    import shaping.tracking.store  # noqa: F401 - MLflow imported (and its environment set) before the forks

    rows = []
    from services import fresh_database, mlflow_server, postgres_reason

    reason = postgres_reason()
    with tempfile.TemporaryDirectory(prefix="skinnerbox-mlflow-") as tmp:
        if reason:
            print(f"  mlflow server on PostgreSQL skipped: {reason}")
        for i, pool in enumerate([] if reason else pools):
            t = time.monotonic()
            artifacts = Path(tmp, f"pg{i}", "artifacts")
            with _pool_env(pool) as label, fresh_database() as url, mlflow_server(url, artifacts) as uri:
                print(f"  mlflow server on PostgreSQL ({label}) up in {time.monotonic() - t:.0f} s ({uri})")
                for n_metrics in metrics:
                    for n in writers:
                        rows.append(write_latency(f"mlflow server, PostgreSQL, {label}", uri, n, calls, n_metrics))
        for n_metrics in metrics:
            for n in writers:
                db = Path(tmp, f"sqlite-{n_metrics}-{n}", "mlflow.db")  # a fresh file per row
                db.parent.mkdir(parents=True)
                rows.append(write_latency("sqlite file (embedded)", f"sqlite:///{db}", n, calls, n_metrics))
    return rows


# ---------------------------------------------------------------------------------------------- main
def _queue_jobs() -> int | None:
    """Jobs in the SLURM queue now (other users' work shares the node), or None without squeue."""
    if shutil.which("squeue") is None:
        return None
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=30)
    return len(out.stdout.split()) if out.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=64, help="simulated agents in the sweep")
    parser.add_argument("--batches", type=int, default=100, help="batches each agent answers")
    parser.add_argument("--pause-s", type=float, default=0.0, help="each agent's 'training' time per batch (s)")
    parser.add_argument("--launchers", nargs="*", default=LAUNCHERS, choices=LAUNCHERS,
                        help="launchers to compare (none: no sweep)")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="longest a sweep may run (s)")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8, 64], help="concurrent MLflow writers")
    parser.add_argument("--calls", type=int, default=20, help="timed log_batch calls per writer")
    parser.add_argument("--metrics", type=int, nargs="+", default=[10], help="metrics per log_batch call")
    parser.add_argument("--pools", nargs="+", default=["default", "10+40"],
                        help="the MLflow server's SQLAlchemy pool, SIZE+OVERFLOW or 'default' (5+10), one server each")
    parser.add_argument("--skip-mlflow", action="store_true", help="leave out the MLflow write latency part")
    args = parser.parse_args(argv)
    t_start = time.monotonic()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    queued = _queue_jobs()
    print(f"{cpus} CPU core(s) on {socket.gethostname()}; {args.agents} simulated agents x {args.batches} batches "
          f"of {SWEEP_TASK['N_batch']} trials ({SWEEP_TASK['T'] // SWEEP_TASK['dt']} steps), pause "
          f"{args.pause_s:g} s a batch" + ("" if queued is None else f"; {queued} job(s) in the SLURM queue"))

    rows = []
    for kind in args.launchers:
        try:
            rows.append(sweep(kind, args.agents, args.batches, args.pause_s, args.timeout_s))
        except LaunchError as err:
            print(f"  {kind} sweep skipped: {err}")
    if args.launchers:
        print_table(rows, f"Sweep: {args.agents} simulated agents, one task server (times in s from the launcher's "
                          "start call)")

    print_table([wire_bytes(SWEEP_TASK), wire_bytes(AGENT_TASK)],
                "Wire: bytes per message and per trial (frames as sent; GET ~ 30 B a batch)")

    if not args.skip_mlflow:
        print_table(mlflow_part(args.writers, args.calls, args.metrics, args.pools),
                    f"MLflow: log_batch latency with N concurrent writer processes ({args.calls} calls each)")
    print(f"\n(total {time.monotonic() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
