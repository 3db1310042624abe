"""Trials built beside the agent (protocol 2) against trials built by the server (protocol 1's way), and
server shards: what one server core costs per trial, what the wire carries per trial, and how capacity grows
with ``shards``.

Each row runs real task server processes (``shaping.server.TaskServer``, journal on, fsync "interval") and one
process of simulated agents per server that answer every batch at once (no TensorFlow):

- **server-built**: the server generates x, y, mask (PerceptualDiscrimination, 200 steps) and sends them; the
  agent answers with its targets as outputs, ``(n, N_steps, N_out)`` float32.
- **agent-built**: the server decides the batch (seed, stage, knobs) and sends a header; the simulated agent
  answers with what the task's scoring reads (PROTOCOL.md, "Trials built beside the agent"): for
  PerceptualDiscrimination each trial's mean outputs over its response window, ``(n, N_out)`` (zeros: it does
  not build the trials, which is the agent's cost, not the server's: ``bench/loop.py`` runs a real agent that
  does); for DelayedDiscrimination, whose own choice rule reads its window's every step, the outputs of those
  steps ``(rows, N_out)`` in float32 or float16 (it builds the batch to know the windows, as the server does).

Figures per row: server CPU per trial (the loop thread, and the whole process with ZeroMQ's I/O threads),
bytes per trial on the wire (every frame both ways, counted at the agents), and trials/s (wall) with the
server's trials per CPU-second (the rate one fully busy core sustains). Shards rows run K server processes,
each with its own agents (the front only answers HELLOs, so it is not in the measured path).

Usage: ``python bench/wire.py [--batch 4096] [--agents 2] [--seconds 6] [--shards 1 2] [--quick]``
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import zmq
from loop import print_table  # bench/loop.py's table printer (this folder is on the path)

from shaping import protocol

TASK = {"name": "PerceptualDiscrimination", "dt": 10, "T": 2000}  # 200 time steps
# a task scored from every step of its window (readout "window"): the server builds its batches too
WINDOWED = {"name": "DelayedDiscrimination", "dt": 10, "T": 2000}


def _server(config: dict, ready: mp.Queue, stop: mp.Event, out: mp.Queue) -> None:
    import logging

    from shaping.server import TaskServer

    logging.basicConfig(level=logging.ERROR)
    server = TaskServer(config)
    ready.put(server.start())
    threading.Thread(target=lambda: (stop.wait(), server.stop()), daemon=True).start()
    server.run()
    out.put(dict(server.stats))


def _answer(task, header: dict) -> np.ndarray:
    """What an agent that built the batch sends back at once: each trial's mean outputs over its window, all
    zero (readout "mean": a silent network, which costs the server what any answer costs, and this process
    nothing, so that it does not take the servers' cores), or its targets over every step of its scoring window
    (readout "window": the batch is built, as a real agent builds it)."""
    build = header["build"]
    if build["readout"] == "mean":
        return np.zeros((header["n"], task.N_out), np.float32)
    batch = task.draw_for_scoring(header["n"], header["knobs"], header["batch"], build.get("repeat") or None)
    return task.window_rows(batch, batch.y)


def _agents(endpoint: str, n_agents: int, n_trials: int, build: str, dtype: str, seconds: float,
            warmup_s: float, prefix: str, out: mp.Queue) -> None:
    """One process of ``n_agents`` DEALER sockets answering every batch at once; counts bytes both ways."""
    from shaping.client import AgentTrials
    from shaping.tasks.build import versions as build_versions

    ctx = zmq.Context()
    poller = zmq.Poller()
    socks, state = [], {}
    hello = {"curriculum": "fixed"}
    if build == "agent":
        hello.update(build="agent", versions=build_versions())
    for i in range(n_agents):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send_multipart(protocol.encode("HELLO", {"agent": f"{prefix}{i:03d}", **hello}))
        poller.register(s, zmq.POLLIN)
        socks.append(s)
    trials = nbytes = 0
    t_start = t_end = None
    deadline = time.monotonic() + warmup_s + seconds + 60

    def send(sock, frames, counting):
        nonlocal nbytes
        if counting:
            nbytes += sum(memoryview(f).nbytes for f in frames)
        sock.send_multipart(frames, copy=False)

    while time.monotonic() < deadline:
        now = time.monotonic()
        counting = t_start is not None and t_start <= now < t_end
        for sock, _ in poller.poll(1000):
            frames = sock.recv_multipart(copy=False)
            if counting:
                nbytes += sum(f.buffer.nbytes for f in frames)
            msg = protocol.decode(frames)
            h = msg.header
            if msg.type == "WELCOME":
                get = {"n": n_trials}
                if h.get("build") == "agent":
                    trials_here = AgentTrials(h["tasks"], h["fingerprint"])
                    get["fingerprint"] = trials_here.fingerprint
                    state[sock] = (h["epoch"], get, trials_here)
                else:
                    state[sock] = (h["epoch"], get, None)
                for _ in range(3):
                    send(sock, protocol.encode("GET", get), False)
                if len(state) == n_agents and t_start is None:
                    t_start = time.monotonic() + warmup_s
                    t_end = t_start + seconds
            elif msg.type == "BATCH":
                epoch, get, builder = state[sock]
                if "build" in h:
                    y_hat = _answer(builder.task(h["build"]["task"], h["build"]["seed"]), h)
                    y_hat = y_hat.astype(np.float16) if dtype == "float16" and h["build"]["readout"] == "window" \
                        else y_hat
                else:
                    y_hat = msg.arrays["y"]
                send(sock, protocol.encode("RESULT", {"batch": h["batch"], "epoch": epoch}, {"y_hat": y_hat}),
                     counting)
            elif msg.type == "SCORE":
                if counting:
                    trials += h["n"]
                if t_end is not None and now >= t_end:
                    continue
                send(sock, protocol.encode("GET", state[sock][1]), counting)
            elif msg.type == "ERROR":
                raise RuntimeError(f"server error: {h}")
        if t_end is not None and time.monotonic() >= t_end:
            break
    for s in socks:
        s.close(0)
    ctx.term()
    out.put((trials, nbytes))


def _get(queue: mp.Queue, proc: mp.Process, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=0.2)
        except Exception:
            if not proc.is_alive():
                raise RuntimeError(f"{proc.name} exited with code {proc.exitcode} before reporting") from None
    raise TimeoutError(f"{proc.name} reported nothing within {timeout_s} s")


def run(build: str, dtype: str, shards: int, n_agents: int, n_trials: int, seconds: float,
        warmup_s: float = 1.0, task: dict = TASK) -> dict:
    """One row: ``shards`` server processes, each with ``n_agents`` simulated agents in one process."""
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="skinnerbox-wire-") as tmp:
        servers, agents, stats_qs, rate_qs = [], [], [], []
        stop = ctx.Event()
        for k in range(shards):
            config = {"task": {**task, "N_batch": n_trials}, "curricula": {"fixed": {"kind": "fixed"}},
                      "seed": 0, "journal": str(Path(tmp, f"shard-{k}")), "credit": 3, "build": build,
                      "outputs": dtype}
            ready, stats_q = ctx.Queue(), ctx.Queue()
            p = ctx.Process(target=_server, name=f"server-{k}", args=(config, ready, stop, stats_q))
            p.start()
            servers.append((p, ready))
            stats_qs.append(stats_q)
        for k, (p, ready) in enumerate(servers):
            endpoint = _get(ready, p, 120)
            rate_q = ctx.Queue()
            a = ctx.Process(target=_agents, name=f"agents-{k}", args=(endpoint, n_agents, n_trials, build, dtype,
                                                                     seconds, warmup_s, f"s{k}-", rate_q))
            a.start()
            agents.append(a)
            rate_qs.append(rate_q)
        counted = [_get(q, a, seconds + warmup_s + 180) for q, a in zip(rate_qs, agents)]
        for a in agents:
            a.join(30)
        stop.set()
        stats = [_get(q, p, 60) for q, (p, _) in zip(stats_qs, servers)]
        for p, _ in servers:
            p.join(30)
    trials = sum(c[0] for c in counted)
    all_trials = sum(s["trials"] for s in stats)
    loop_cpu = sum(s["cpu_s"] for s in stats)
    proc_cpu = sum(s["process_cpu_s"] for s in stats)
    from shaping.tasks import make

    readout = make(task["name"], **{k: v for k, v in task.items() if k != "name"}).readout
    return {"task": task["name"], "trials built by": build if build == "server" else f"agent ({readout}, {dtype})",
            "shards": shards,
            "agents": shards * n_agents, "server CPU µs/trial (loop)": 1e6 * loop_cpu / all_trials,
            "server CPU µs/trial (process)": 1e6 * proc_cpu / all_trials,
            "bytes/trial": sum(c[1] for c in counted) / max(trials, 1), "trials/s (wall)": trials / seconds,
            "trials per server CPU s": all_trials / proc_cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="trials per batch (N_batch)")
    parser.add_argument("--agents", type=int, default=2, help="simulated agents per server process")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per row")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2], help="server processes per scaling row")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.seconds, args.shards = 256, 1.0, [1, 2]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{cpus} CPU core(s); {TASK}, N_batch {args.batch}; credit 3; {args.agents} simulated agent(s) per "
          f"server; {args.seconds:g} s per row")
    rows = []
    for task, modes in ((TASK, (("server", "float32"), ("agent", "float32"))),
                        (WINDOWED, (("server", "float32"), ("agent", "float32"), ("agent", "float16")))):
        these = [run(b, d, 1, args.agents, args.batch, args.seconds, task=task) for b, d in modes]
        for r in these:
            r["CPU vs server-built"] = these[0]["server CPU µs/trial (process)"] / r["server CPU µs/trial (process)"]
            r["bytes vs server-built"] = these[0]["bytes/trial"] / r["bytes/trial"]
        rows += these
    print_table(rows, "One server process: trials built by the server vs beside the agent (goal: >= 10x lower "
                      "CPU and bytes per trial)")
    scaling = [run("agent", "float32", k, args.agents, args.batch, args.seconds) for k in args.shards]
    one = scaling[0]["trials/s (wall)"]
    for r in scaling:
        r["vs linear"] = r["trials/s (wall)"] / (one * r["shards"])
    print_table(scaling, f"Shards: agent-built trials, {args.agents} agents per shard, {cpus} cores "
                         "shared by servers and agents (goal: within 10% of linear)")
    per_core = scaling[0]["trials per server CPU s"]
    print(f"\nProjection: 16 shards on 16 free cores sustain about {16 * per_core:,.0f} trials/s "
          f"(16 x {per_core:,.0f} trials per server CPU-second, if the agents run elsewhere)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
