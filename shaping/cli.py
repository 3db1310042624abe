"""The ``skinnerbox`` command: one small function per subcommand.

    skinnerbox server CONFIG.toml          run a task server until Ctrl-C / SIGTERM
    skinnerbox keys DIR [--client NAME]    make CurveZMQ keys for a server off loopback

To add a subcommand, write ``_NAME_args(parser)`` and ``cmd_NAME(args) -> int`` and append a
:class:`Subcommand` to ``SUBCOMMANDS``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

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
    p.add_argument("--journal", help="override the config's journal directory")
    p.add_argument("--seed", type=int, help="override the config's server seed")
    p.add_argument("--keys", help="override the config's CurveZMQ keys directory")
    p.add_argument("--ignore-unknown", action="store_true",
                   help="ignore keys the server does not use (e.g. a lab file's agents)")


def cmd_server(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from .server import ServerConfig, read_toml, serve  # noqa: PLC0415

    data = read_toml(args.config)
    for key in ("bind", "journal", "seed", "keys"):
        value = getattr(args, key)
        if value is not None:
            data[key] = value
    config = ServerConfig.from_dict(data, base_dir=Path(args.config).resolve().parent,
                                    ignore_unknown=args.ignore_unknown)
    return serve(config)


# ---------------------------------------------------------------------------------------------- keys
def _keys_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="keys directory (server key pair, clients/, authorized_clients/)")
    p.add_argument("--client", action="append", dest="clients", metavar="NAME",
                   help="a client key pair to make and authorise (repeatable; default: one named 'client')")
    p.add_argument("--force", action="store_true", help="replace existing key files")


def cmd_keys(args: argparse.Namespace) -> int:
    from .keys import generate_keys  # noqa: PLC0415

    paths = generate_keys(args.dir, clients=args.clients or ["client"], force=args.force)
    print(f"server key pair: {paths.pop('server')}  (keep the secret on the server; give agents server.key)")
    for name, path in paths.items():
        print(f"client {name!r}: {path}  (copy to that agent's machine; authorised on the server)")
    return 0


# ---------------------------------------------------------------------------------------------- main
SUBCOMMANDS: list[Subcommand] = [
    Subcommand("server", "run a task server", _server_args, cmd_server),
    Subcommand("keys", "make CurveZMQ keys for agents on other machines", _keys_args, cmd_keys),
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``skinnerbox``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.run(args)
    except (ValueError, OSError) as err:  # bad config, missing file, journal in use, port taken
        print(f"skinnerbox {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
