"""Closed-loop benchmarks: task-server capacity (here) and agent throughput (the lead's part, below).

Server capacity: one task server process (one loop thread) serves many simulated agents that answer each
batch instantly with its own target (``y``); every trial is generated, sent, received, scored and journaled.
Reported per row: trials/s of wall time, and trials per CPU-second of the server's loop thread (the figure
"on one core", robust to other processes sharing the machine) and of the whole server process (ZeroMQ I/O
threads included). Target: > 20,000 trials/s for PerceptualDiscrimination at 200 time steps.

Usage: ``python bench/loop.py [--seconds 3] [--agents 1 4 16] [--batch 64 128 256] [--quick]``
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

import zmq  # noqa: E402

from shaping import protocol as P  # noqa: E402

TASK = {"name": "PerceptualDiscrimination", "dt": 10, "T": 2000}  # 200 time steps


# ---------------------------------------------------------------------------------------------- server side
def _server_process(config: dict, ready: mp.Queue, stop: mp.Event, out: mp.Queue) -> None:
    import logging  # noqa: PLC0415

    from shaping.server import TaskServer  # noqa: PLC0415

    logging.basicConfig(level=logging.ERROR)
    server = TaskServer(config)
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
        s.send_multipart(P.encode("HELLO", {"agent": f"sim{i:03d}", "curriculum": "fixed"}))
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
            msg = P.decode(frames)
            if msg.type == "WELCOME":
                epochs[sock] = msg.header["epoch"]
                for _ in range(credit):
                    sock.send_multipart(P.encode("GET", {"n": n_trials}))
                if len(epochs) == n_agents and t_start is None:
                    t_start = time.monotonic() + warmup_s
                    t_end = t_start + seconds
            elif msg.type == "BATCH":
                sock.send_multipart(P.encode("RESULT", {"batch": msg.header["batch"], "epoch": epochs[sock]},
                                             {"y_hat": msg.arrays["y"]}), copy=False)
            elif msg.type == "SCORE":
                now = time.monotonic()
                if t_start is not None and t_start <= now < t_end:
                    trials += msg.header["n"]
                if t_end is not None and now >= t_end:
                    continue
                sock.send_multipart(P.encode("GET", {"n": n_trials}))
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


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    cols = list(rows[0])
    widths = [max(len(c), 10) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        cells = []
        for c, w in zip(cols, widths):
            v = r[c]
            cells.append((f"{v:,.0f}" if v >= 100 else f"{v:.2f}").rjust(w) if isinstance(v, float)
                         else str(v).rjust(w))
        print("  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per row")
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 4, 16], help="simulated agents per row")
    parser.add_argument("--batch", type=int, nargs="+", default=[128, 256], help="trials per batch")
    parser.add_argument("--quick", action="store_true", help="one short row (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.agents, args.batch = 1.0, [4], [128]
    rows = [server_capacity(a, b, args.seconds) for b in args.batch for a in args.agents]
    print_table(rows, "Server capacity: PerceptualDiscrimination, 200 steps, instant simulated agents, "
                      "journal on (target > 20,000 trials/s on one core)")

    # ------------------------------------------------------------------------------------------------
    # AGENT THROUGHPUT (the lead adds this part): closed-loop throughput of one TF agent through the server
    # versus the same agent training locally on the same task in the same run (target ratio >= 0.9), and
    # aggregate trials/s with 1, 2 and 4 agent processes.
    # ------------------------------------------------------------------------------------------------
    return 0


if __name__ == "__main__":
    sys.exit(main())
