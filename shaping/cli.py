"""The ``skinnerbox`` command: one small function per subcommand.

    skinnerbox lab CONFIG.toml             run a whole lab (server + agents), print a summary
    skinnerbox server CONFIG.toml          run a task server until Ctrl-C / SIGTERM
    skinnerbox server CONFIG --front | --shard I    the front or one shard of a sharded server (shards > 1)
    skinnerbox agent --server EP --name N --config CONFIG.toml    one agent process (TensorFlow)
    skinnerbox keys DIR [--client NAME]    make CurveZMQ keys for a server off loopback
    skinnerbox dashboard LAB_DIR           the live shaping dashboard (Streamlit, loopback)
    skinnerbox report LAB_DIR              a self-contained HTML report (and log it to MLflow)
    skinnerbox sync LAB_DIR                push a lab's journal into MLflow after the fact
    skinnerbox override LAB_DIR AGENT --stage S | --knob K=V    move a running agent's curriculum by hand

To add a subcommand, write ``_NAME_args(parser)`` and ``cmd_NAME(args) -> int`` and append a
:class:`Subcommand` to ``SUBCOMMANDS``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from .errors import MissingFile, SkinnerboxError, UsageError

log = logging.getLogger("skinnerbox")


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---------------------------------------------------------------------------------------------- server
def _server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML (or .json) file: task, curricula, journal, bind, ... "
                                  "(see shaping.server.ServerConfig)")
    p.add_argument("--bind", help="override the config's bind endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument("--journal", help="override the config's journal directory (relative to the working directory)")
    p.add_argument("--seed", type=int, help="override the config's server seed")
    p.add_argument("--keys", help="override the config's CurveZMQ keys directory (relative to the working directory)")
    p.add_argument("--ignore-unknown", action="store_true",
                   help="ignore keys the server does not use (e.g. a lab file's agents)")
    role = p.add_mutually_exclusive_group()
    role.add_argument("--front", action="store_true",
                      help="with shards > 1: run the front, the public endpoint that tells each agent which shard "
                           "holds its session")
    role.add_argument("--shard", type=int, metavar="I",
                      help="with shards > 1: run shard I (0 = first), a task server journaling into JOURNAL/shard-I "
                           "on a port of its own")


def server_config(args: argparse.Namespace) -> tuple:
    """The :class:`~shaping.labfile.ServerConfig` and tracking record ``skinnerbox server`` runs with (see
    :func:`shaping.labfile.load_server_file`): the file's paths are relative to its folder, the command line's
    to the working directory; a ``"module:Class"`` task is imported from the file's folder or the working
    directory."""
    from pathlib import Path

    from .labfile import load_server_file

    for folder in (str(Path.cwd()), str(Path(args.config).resolve().parent)):  # a "module:Class" task's module
        if folder not in sys.path:
            sys.path.insert(0, folder)
    overrides = {key: getattr(args, key) for key in ("bind", "journal", "seed", "keys")}
    return load_server_file(args.config, overrides, ignore_unknown=args.ignore_unknown)


def cmd_server(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .journal import shard_dir
    from .server import serve
    from .shards import shard_bind

    config, tracking = server_config(args)
    k = config.shards
    if not (args.front or args.shard is not None):
        if k > 1:
            raise UsageError(f"the config has shards = {k}: run it as a lab (`skinnerbox lab`), or start its front "
                             f"(`--front`) and each of its shards (`--shard I`, I = 0 to {k - 1})")
        return serve(config, tracking=tracking)
    if k < 2:
        raise UsageError(f"--{'front' if args.front else 'shard'} needs a config with shards >= 2, got shards = {k}")
    if config.seed is None:  # each agent's trial stream derives from (seed, agent): one seed for every shard
        raise UsageError("a sharded server needs a fixed seed, the same for every shard: set seed in the config or "
                         "pass --seed N to the front and to every shard")
    if args.front:
        from .server.front import check_shards, serve_front

        check_shards(config)
        return serve_front(config)
    if not 0 <= args.shard < k:
        raise UsageError(f"--shard {args.shard}: the config has shards = {k}, so I is 0 to {k - 1}")
    config = replace(config, journal=str(shard_dir(config.journal, args.shard)), shard=args.shard,
                     bind=config.bind if args.bind else shard_bind(config.bind, args.shard))
    return serve(config, tracking=tracking)


# ---------------------------------------------------------------------------------------------- keys
def _keys_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="keys directory (server key pair, clients/, authorized_clients/)")
    p.add_argument("--client", action="append", dest="clients", metavar="NAME",
                   help="a client key pair to make and authorise (repeatable; default: one named 'client')")
    p.add_argument("--force", action="store_true", help="replace existing key files")


def cmd_keys(args: argparse.Namespace) -> int:
    from .keys import generate_keys

    paths = generate_keys(args.dir, clients=args.clients or ["client"], force=args.force)
    print(f"server key pair: {paths.pop('server')}  (keep the secret on the server; give agents server.key)")
    for name, path in paths.items():
        print(f"client {name!r}: {path}  (copy to that agent's machine; authorised on the server)")
    return 0


# ---------------------------------------------------------------------------------------------- lab
def _lab_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="lab config (TOML): [lab], [task], [curricula.*], [[agents]]")
    p.add_argument("--workdir", help="override lab.workdir")
    p.add_argument("--tracking-uri", help="MLflow tracking URI ('none' disables; default sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--timeout-s", type=float, help="stop the lab after this many seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def cmd_lab(args: argparse.Namespace) -> int:
    import pandas as pd

    from .lab import Lab

    lab = Lab(args.config, workdir=args.workdir, tracking_uri=args.tracking_uri, timeout_s=args.timeout_s,
              progress=not args.no_progress)
    summary = lab.run()  # ServerNotStarted (a port taken: the server's log says why) is reported by main()
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print("\n" + summary.to_string(index=False))
        sweep = summary.attrs.get("sweep")
        if sweep is not None and len(sweep):
            print("\ntrials to criterion by sweep factor (median [q1, q3] of the agents that reached it):\n"
                  + sweep.to_string(index=False))
    if summary.attrs.get("verdict"):
        print("\n" + summary.attrs["verdict"])
    print(f"\nlab directory: {lab.dir}")
    if lab.tracking_uri:
        print(f"MLflow store:  {lab.tracking_uri}   (make ui)")
        if lab.lab_run is not None and lab.lab_run.experiment_id is not None:
            from .tracking.uris import runs_page_url

            print(f"MLflow runs:   {runs_page_url('http://127.0.0.1:5000', lab.lab_run.experiment_id)}")
    print(f"dashboard:     make dashboard LAB={lab.dir}")
    failed = [name for name, proc in lab.agents.items() if proc.returncode not in (0, None)]
    if failed:
        print(f"agents that failed: {', '.join(failed)} (logs in {lab.dir / 'logs'})", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------- agent
def cmd_agent(args: argparse.Namespace) -> int:
    import importlib

    if "pandas" not in sys.modules:  # as `python -m agents` does: an agent process needs no pyarrow
        sys.modules.setdefault("pyarrow", None)
    # The agent process lives in the TensorFlow package; shaping itself never imports it.
    return importlib.import_module("agents.agent").main(args.agent_args)


def _agent_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("agent_args", nargs=argparse.REMAINDER,
                   help="--server EP --name NAME --config CONFIG [--workdir DIR] [--keys DIR] ...")


# ---------------------------------------------------------------------------------------------- dashboards
def _dashboard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("lab_dir", help="a lab directory (holding journal/)")
    p.add_argument("--port", type=int, help="TCP port (default 8501)")
    p.add_argument("--tracking-uri", help="MLflow store (default: the lab's)")
    p.add_argument("--refresh-s", type=float, default=5.0, help="seconds between refreshes (0: never)")


def cmd_dashboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dashboards.launch import serve as serve_dashboard

    if not Path(args.lab_dir).is_dir():  # a typo would otherwise serve an empty dashboard
        raise MissingFile(f"no lab directory at {args.lab_dir}")

    print(f"dashboard of {args.lab_dir}: http://127.0.0.1:{args.port or 8501}  (Ctrl-C to stop)")
    return serve_dashboard(args.lab_dir, port=args.port, tracking_uri=args.tracking_uri, refresh_s=args.refresh_s)


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("lab_dir", help="a lab directory (holding journal/)")
    p.add_argument("--out", help="HTML file (default LAB_DIR/report.html)")
    p.add_argument("--tracking-uri", help="MLflow store (default: the lab's)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log the report to the lab's parent run")


def cmd_report(args: argparse.Namespace) -> int:
    from dashboards.report import write_report

    path = write_report(args.lab_dir, args.out, tracking_uri=args.tracking_uri, log_to_mlflow=not args.no_mlflow)
    print(f"report: {path}")
    return 0


def _sync_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("lab_dir", help="a lab directory (holding journal/ and lab.json) or a journal directory")
    p.add_argument("--tracking-uri", help="MLflow store (default: the one the lab ran with, else "
                                          "$MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlflow.db)")
    p.add_argument("--experiment", help="experiment name (default: the lab's)")


def cmd_sync(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .labfile import read_file
    from .tracking import resolve_tracking_uri, sync

    lab_dir = Path(args.lab_dir)
    journal_dir = lab_dir / "journal" if (lab_dir / "journal").is_dir() else lab_dir
    lab_json = journal_dir.parent / "lab.json"
    config = read_file(lab_json) if lab_json.exists() else None  # ConfigError naming the file if corrupt
    experiment = args.experiment or (config or {}).get("lab", {}).get("experiment", "skinnerbox")
    ran_with = (config or {}).get("lab", {}).get("tracking_uri")  # the store the lab ran with
    uri = resolve_tracking_uri(args.tracking_uri or (ran_with if ran_with != "none" else None))
    result = sync(journal_dir, uri, experiment, lab_config=config)
    if result.get("skipped"):
        print(f"{journal_dir} was already synced (parent run {result['parent_run_id']})")
    else:
        print(f"synced {journal_dir} into {uri}: parent run {result['parent_run_id']}, "
              f"{len(result['runs'])} agent run(s)")
    return 0


# ---------------------------------------------------------------------------------------------- override
def _override_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("lab_dir", help="a running lab's directory (holding journal/server.json) or its journal")
    p.add_argument("agent", help="the agent whose curriculum to move")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--stage", help="move to this stage: a name, or an index (0 = first)")
    what.add_argument("--knob", metavar="NAME=VALUE",
                      help="set a knob of the current stage until the stage changes; VALUE is JSON "
                           "(0.2, [0.1, 0.2] or '{\"uniform\": [0.1, 0.5]}')")
    p.add_argument("--note", help="why (journaled with the event)")
    p.add_argument("--keys", help="CurveZMQ keys directory, for a server off loopback")
    p.add_argument("--client-name", default="client",
                   help="which client key pair of --keys (default 'client'), as for `skinnerbox agent`")
    p.add_argument("--timeout-s", type=float, default=10.0, help="give up after this many seconds")


def cmd_override(args: argparse.Namespace) -> int:
    import json
    import re
    from pathlib import Path

    from .client import override
    from .procs import read_endpoint
    from .protocol import ProtocolError

    lab_dir = Path(args.lab_dir)
    journal_dir = lab_dir / "journal" if (lab_dir / "journal").is_dir() else lab_dir
    try:
        info = read_endpoint(journal_dir, timeout_s=1.0)
    except TimeoutError:
        raise UsageError(f"no task server is running on {journal_dir} (no server.json there)") from None
    endpoint = info["endpoint"]
    if info.get("curve") and not args.keys:
        raise UsageError(f"the task server at {endpoint} takes only CurveZMQ connections: give --keys DIR (and "
                         f"--client-name)")
    change: dict = {}
    if args.knob is not None:
        name, sep, text = args.knob.partition("=")
        if not sep or not name:
            raise UsageError(f"--knob {args.knob!r}: expected NAME=VALUE, e.g. coherence=0.2")
        try:
            change = {"knob": name.strip(), "value": json.loads(text)}
        except json.JSONDecodeError:
            change = {"knob": name.strip(), "value": text}  # a bare word: a categorical value
    else:
        change = {"stage": int(args.stage) if re.fullmatch(r"-?\d+", args.stage) else args.stage}
    try:
        reply = override(endpoint, args.agent, note=args.note, timeout_s=args.timeout_s, keys=args.keys,
                         client_name=args.client_name, **change)
    except ProtocolError as err:
        print(f"skinnerbox override: refused: {err}", file=sys.stderr)
        return 1
    except TimeoutError as err:
        print(f"skinnerbox override: {err}", file=sys.stderr)
        return 1
    knobs = ", ".join(f"{k}={v}" for k, v in reply["knobs"].items())
    print(f"{reply['agent']}: stage {reply['stage']!r} (index {reply['stage_index']}) after {reply['trials']} "
          f"trials; knobs {knobs}")
    return 0


# ---------------------------------------------------------------------------------------------- main
SUBCOMMANDS: list[Subcommand] = [
    Subcommand("lab", "run a whole lab (task server + agent processes) from one config", _lab_args, cmd_lab),
    Subcommand("server", "run a task server", _server_args, cmd_server),
    Subcommand("agent", "run one agent process (TensorFlow) against a task server", _agent_args, cmd_agent),
    Subcommand("keys", "make CurveZMQ keys for agents on other machines", _keys_args, cmd_keys),
    Subcommand("dashboard", "serve the live shaping dashboard of a lab", _dashboard_args, cmd_dashboard),
    Subcommand("report", "write a self-contained HTML report of a lab", _report_args, cmd_report),
    Subcommand("sync", "push a lab's journal into MLflow (after the store was down)", _sync_args, cmd_sync),
    Subcommand("override", "move a running agent's curriculum by hand (a stage or a knob)", _override_args,
               cmd_override),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skinnerbox", description="An operant chamber for recurrent neural "
                                                                    "networks.")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in SUBCOMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def _split_agent_args(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``(head, rest)``: ``rest`` is everything after ``agent`` when that is the command, else None.

    ``skinnerbox agent`` hands its arguments to :func:`agents.agent.main` untouched; argparse's ``REMAINDER``
    cannot take them when the first one is an option (``--server ...``), so they are split off first."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--log-level" else 1
    if i < len(argv) and argv[i] == "agent":
        return argv[:i + 1], argv[i + 1:]
    return argv, None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``skinnerbox``; returns the exit status."""
    parser = build_parser()
    head, agent_args = _split_agent_args(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(head)
    if agent_args is not None:
        args.agent_args = agent_args
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.run(args)
    except SkinnerboxError as err:  # the user's to fix (a bad config, a missing file, a lab in use); a bug
        print(f"skinnerbox {args.command}: {err}", file=sys.stderr)  # anywhere else keeps its traceback
        return 2


if __name__ == "__main__":
    sys.exit(main())
