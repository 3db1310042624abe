"""The agent process: one network, or several as a pack, in closed loop with the task server.

What ``skinnerbox lab`` starts: one network (:class:`agents.closed_loop.Agent`), or several as a pack
(:class:`agents.pack_agent.PackAgent`).

Usage: ``skinnerbox agent --server tcp://127.0.0.1:5555 --name shaped --config examples/demo.toml`` (several
comma-separated names: one pack). SIGTERM, SIGINT and SIGUSR2 are a clean stop: each network finishes its batch,
checkpoints and leaves. Exit status 0, or :data:`~shaping.procs.REFUSED` when a restart would be refused the same
way (a bad entry, another session's checkpoint; for a pack, when every network was refused).
"""
from __future__ import annotations

import logging
import signal
from typing import Any

from shaping.errors import CheckpointMismatch, ConfigError
from shaping.labfile import AgentConfig, LabFile
from shaping.procs import REFUSED

from .closed_loop import Agent
from .pack_agent import PackAgent

__all__ = ["Agent", "AgentConfig", "PackAgent", "STOP_SIGNALS", "main", "run_agent"]

log = logging.getLogger(__name__)


# SIGUSR2: what SLURM sends ``signal_delay_s`` before a job's time limit (submitit's ``--signal``); the agent
# checkpoints and leaves, and the job is requeued (shaping.launchers.slurm).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


def run_agent(config: AgentConfig | list[AgentConfig]) -> dict:
    """Run one agent process in the foreground, with SIGTERM, SIGINT and SIGUSR2 handled as a clean stop: one
    network, or several as a pack (:class:`agents.pack_agent.PackAgent`, a summary per network)."""
    if isinstance(config, (list, tuple)) and len(config) > 1:
        agent: Any = PackAgent(config)
    else:
        agent = Agent(config[0] if isinstance(config, (list, tuple)) else config)
    old = {sig: signal.signal(sig, agent.request_stop) for sig in STOP_SIGNALS}
    try:
        return agent.run()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.agent`` / ``skinnerbox agent``: one agent process from a lab config entry."""
    import argparse

    ap = argparse.ArgumentParser(prog="skinnerbox agent", description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True, help="task server endpoint, e.g. tcp://127.0.0.1:5555")
    ap.add_argument("--name", required=True,
                    help="agent name (an [[agents]] entry of the config); several, comma-separated: one pack")
    ap.add_argument("--config", required=True, help="lab config (.toml, or the lab.json a lab writes)")
    ap.add_argument("--workdir", default=None, help="checkpoints and weights go here (default: lab.workdir)")
    ap.add_argument("--curriculum", default=None, help="override the entry's curriculum")
    ap.add_argument("--keys", default=None, help="CurveZMQ keys directory (needed off loopback)")
    ap.add_argument("--client-name", default=None, help="client key pair to use from --keys (default: lab.client_name)")
    ap.add_argument("--max-batches", type=int, default=None)
    ap.add_argument("--device", default=None, help="CPU, GPU or GPU:k")
    ap.add_argument("--server-file", default=None,
                    help="the server's server.json: where to find it again if it moves (a requeued SLURM job)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        labfile = LabFile.load(args.config)
        configs = [labfile.agent_config(
            name, args.server, workdir=args.workdir, curriculum=args.curriculum, keys=args.keys,
            client_name=args.client_name, max_batches=args.max_batches, device=args.device,
            server_file=args.server_file) for name in args.name.split(",")]
    except ConfigError as err:  # the same file gives the same error on every restart
        log.error("%s", err)
        return REFUSED
    try:
        summary = run_agent(configs)
        if len(configs) > 1 and all("refused" in s for s in summary.values()):
            return REFUSED  # every network of the pack refused: a restart would too
    except (CheckpointMismatch, ConfigError) as err:
        log.error("%s", err)
        return REFUSED
    finally:
        # Checkpointed and gone from the server: a stop signal has nothing left to do in this process.
        # Ignoring it (rather than Python's default, restored at interpreter exit) keeps a lab's SIGTERM that
        # crosses a finished agent's teardown from turning its exit status into -15.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    log.info("agent %s done: %s", args.name, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
