"""CurveZMQ keys: the only way agents on other machines may reach a task server.

Layout of a keys directory (``skinnerbox keys DIR`` makes it)::

    DIR/server.key, DIR/server.key_secret          the server's key pair (the secret stays on the server)
    DIR/clients/NAME.key, NAME.key_secret          one key pair per client (copy it to that agent's machine)
    DIR/authorized_clients/NAME.key                public keys the server accepts (read when it starts: delete
                                                   one and restart the server to revoke it)

Agents need ``server.key`` (public) and their own ``NAME.key_secret``. Keys are Z85 text, made by libzmq's
bundled libsodium (``zmq.curve_keypair``) in the certificate format of ``zmq.auth``.
"""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Iterable

import zmq
import zmq.auth

from .errors import ConfigError, FileInTheWay, MissingFile

SERVER = "server"
CLIENTS_DIR = "clients"
AUTHORIZED_DIR = "authorized_clients"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def generate_keys(directory: str | os.PathLike, clients: Iterable[str] = ("client",),
                  force: bool = False) -> dict[str, Path]:
    """Make a server key pair (unless one exists) and a key pair per client name, authorising each client.

    Args:
        directory: the keys directory (created if missing).
        clients: client names, e.g. one per machine or per agent.
        force: overwrite existing key files (otherwise an existing client name is an error and an existing
            server key pair is kept).

    Returns:
        ``{"server": secret-key path, NAME: client secret-key path, ...}``.
    """
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support; reinstall pyzmq from its wheels")
    root = Path(directory)
    for sub in ("", CLIENTS_DIR, AUTHORIZED_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    server_secret = root / f"{SERVER}.key_secret"
    if force or not server_secret.exists():
        zmq.auth.create_certificates(root, SERVER)
    os.chmod(server_secret, 0o600)
    out[SERVER] = server_secret
    for name in clients:
        if not _NAME.match(name) or name == SERVER:
            raise ConfigError(f"generate_keys: client name {name!r} must use [A-Za-z0-9_.-] and not be "
                             f"{SERVER!r}")
        secret = root / CLIENTS_DIR / f"{name}.key_secret"
        if secret.exists() and not force:
            raise FileInTheWay(f"generate_keys: {secret} exists; pass force=True (--force) to replace it")
        public_path, secret_path = zmq.auth.create_certificates(root / CLIENTS_DIR, name)
        os.chmod(secret_path, 0o600)
        (root / AUTHORIZED_DIR / f"{name}.key").write_bytes(Path(public_path).read_bytes())
        out[name] = Path(secret_path)
    return out


def server_keys(directory: str | os.PathLike) -> tuple[bytes, bytes]:
    """The server's ``(public, secret)`` Z85 keys from ``DIR/server.key_secret``."""
    path = Path(directory) / f"{SERVER}.key_secret"
    if not path.exists():
        raise MissingFile(f"no server key pair at {path}; make one with `skinnerbox keys {directory}`")
    public, secret = zmq.auth.load_certificate(path)
    return public, secret


def server_public_key(path: str | os.PathLike) -> bytes:
    """The server's public key from a keys directory or a ``server.key`` file."""
    p = Path(path)
    if p.is_dir():
        p = p / f"{SERVER}.key"
    if not p.exists():
        raise MissingFile(f"no server public key at {p}; copy server.key from the server's keys directory")
    public, _ = zmq.auth.load_certificate(p)
    return public


def client_keys(path: str | os.PathLike, name: str = "client") -> tuple[bytes, bytes]:
    """A client's ``(public, secret)`` keys from a keys directory (``clients/NAME.key_secret``) or from a
    ``.key_secret`` file."""
    p = Path(path)
    if p.is_dir():
        p = p / CLIENTS_DIR / f"{name}.key_secret"
    if not p.exists():
        raise MissingFile(f"no client key pair at {p}; make one with `skinnerbox keys DIR --client {name}`")
    public, secret = zmq.auth.load_certificate(p)
    if secret is None:
        raise ConfigError(f"{p} holds no secret key; pass the .key_secret file")
    return public, secret


def authorized_dir(directory: str | os.PathLike) -> Path:
    """The directory of public keys a server accepts."""
    path = Path(directory) / AUTHORIZED_DIR
    if not path.is_dir():
        raise MissingFile(f"no {AUTHORIZED_DIR}/ in {directory}; make keys with `skinnerbox keys {directory}`")
    return path


IPC = "ipc://"
# The longest path an ipc:// endpoint may name (bytes): a Unix socket address holds 108 bytes on Linux, 104 on
# macOS, the last one a NUL. pyzmq reports libzmq's own limit where it knows it.
IPC_PATH_MAX_BYTES = int(getattr(zmq, "IPC_PATH_MAX_LEN", 0) or 107)


def ipc_path(endpoint: str) -> str | None:
    """The socket file an ``ipc://PATH`` endpoint names, as given (None for other transports, for ``ipc://*``,
    which makes a temporary one, and for a Linux abstract name ``ipc://@NAME``, which has no file)."""
    if not isinstance(endpoint, str) or not endpoint.startswith(IPC):
        return None
    path = endpoint[len(IPC):]
    return None if path in ("", "*") or path.startswith("@") else path


def ipc_problem(endpoint: str) -> str | None:
    """Why an ``ipc://`` endpoint cannot be bound, or None when it can (and for other transports): an empty path,
    or one longer than :data:`IPC_PATH_MAX_BYTES` once made absolute (the path as the server binds it)."""
    if not isinstance(endpoint, str) or not endpoint.startswith(IPC):
        return None
    if endpoint == IPC:
        return f"{endpoint!r} names no socket file; write ipc://PATH, e.g. 'ipc://server.sock'"
    path = ipc_path(endpoint)
    name = os.path.abspath(path) if path is not None else endpoint[len(IPC):]
    size = len(os.fsencode(name))
    if size > IPC_PATH_MAX_BYTES:
        return (f"the ipc socket path {name!r} is {size} bytes long, more than the {IPC_PATH_MAX_BYTES} a Unix "
                f"domain socket allows; choose a shorter path, e.g. 'ipc:///tmp/{Path(name).name[:40]}'")
    return None


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach: ``tcp://127.x.x.x``, ``tcp://[::1]``,
    ``tcp://localhost``, ``ipc://`` (a Unix domain socket: its file's permissions say who may connect) and
    ``inproc://``. Anything else (``*``, ``0.0.0.0``, a host name, an interface name) is treated as reachable
    from outside."""
    if endpoint.startswith((IPC, "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
    if ";" in host:  # "source;destination" form: judge the address actually bound
        host = host.split(";")[-1]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
