"""The public socket of a task server or of a sharded lab's front: one ROUTER bound as the config says (loopback
by default, CurveZMQ off loopback, ``ipc://`` socket files guarded and cleaned up), with its errors as user
errors. Both :class:`~shaping.server.TaskServer` and :class:`~shaping.server.front.Front` bind through it."""
from __future__ import annotations

import errno
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from .. import keys as curve_keys
from ..errors import ConfigError, InUseError
from ..labfile import ServerConfig

__all__ = ["BoundRouter", "bind_router"]


@dataclass
class BoundRouter:
    """A bound ROUTER and what to undo when it closes.

    Attributes:
        socket: the ROUTER. endpoint: its bound endpoint (a free port filled in, an ipc path made absolute).
        auth: the ZAP authenticator thread when CURVE is on. ipc_file: ``(path, st_dev, st_ino)`` of the ipc
            socket file this process made (libzmq leaves it behind on close).
    """

    socket: zmq.Socket
    endpoint: str
    auth: Any = None
    ipc_file: tuple[str, int, int] | None = None

    def release(self) -> None:
        """Stop the authenticator and remove the ipc socket file, unless a successor has bound there since (the
        socket itself is closed by its owner, which chooses the linger)."""
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if self.ipc_file is not None:
            path, dev, ino = self.ipc_file
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.unlink(path)
            except FileNotFoundError:
                pass
            self.ipc_file = None


def bind_router(cfg: ServerConfig, context: zmq.Context) -> BoundRouter:
    """A ROUTER on ``cfg.bind`` with the server's socket options (see :class:`BoundRouter`).

    Raises:
        InUseError: the port, or the ipc path, is taken by another live process.
        ConfigError: the endpoint cannot be bound on this machine (a bad address, an ipc path too long).
    """
    limits = cfg.protocol_limits
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDHWM, cfg.send_hwm)
    sock.setsockopt(zmq.RCVHWM, cfg.send_hwm)
    sock.setsockopt(zmq.MAXMSGSIZE, limits.max_message_bytes)
    # No ZMTP heartbeats (ZMQ_HEARTBEAT_*) on this socket: with a receive high-water mark, libzmq 4.3.5 can
    # abort the whole process when a peer that flooded it dies (zeromq/libzmq#3937, #4364). The protocol's
    # own HEARTBEATs and expiry_s detect dead agents.
    auth = None
    if cfg.use_curve:
        from zmq.auth.thread import ThreadAuthenticator

        public, secret = curve_keys.server_keys(cfg.keys)
        auth = ThreadAuthenticator(context, log=logging.getLogger("shaping.server.auth"))
        auth.start()
        auth.configure_curve(domain="*", location=str(curve_keys.authorized_dir(cfg.keys)))
        sock.curve_secretkey = secret
        sock.curve_publickey = public
        sock.curve_server = True
    bind = cfg.bind
    if bind.startswith("tcp://") and bind.endswith(":0"):
        bind = bind[:-2] + ":*"
    socket_file = curve_keys.ipc_path(bind)
    ipc_file = None
    try:
        if socket_file is not None:
            # libzmq replaces any file at the path, a live server's socket included: refuse that (a stale
            # file, left by a killed server, is replaced), and bind the absolute path agents will be given
            socket_file = os.path.abspath(socket_file)
            bind = curve_keys.IPC + socket_file
            if os.path.exists(socket_file):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.settimeout(1.0)
                    live = probe.connect_ex(socket_file) == 0  # refused: stale; not a socket: ZeroMQ's to judge
                if live:
                    raise InUseError(f"task server: cannot bind {cfg.bind!r}: another process is listening on "
                                     f"{socket_file}; stop it or choose another ipc path")
            Path(socket_file).parent.mkdir(parents=True, exist_ok=True)
        sock.bind(bind)
        if socket_file is not None:
            os.chmod(socket_file, 0o600)  # ipc needs no CURVE: only this user may connect
            st = os.stat(socket_file)
            ipc_file = (socket_file, st.st_dev, st.st_ino)
    except (zmq.ZMQError, OSError) as err:
        sock.close(0)
        if auth is not None:
            auth.stop()
        if isinstance(err, InUseError):
            raise
        if err.errno == errno.EADDRINUSE:  # another process holds the port: the user's to resolve
            raise InUseError(f"task server: cannot bind {cfg.bind!r}: the address is in use by another "
                             "process; choose another port (port 0 picks a free one)") from None
        if err.errno in (errno.EINVAL, errno.EADDRNOTAVAIL, errno.ENODEV, zmq.EPROTONOSUPPORT, errno.ENAMETOOLONG):
            raise ConfigError(f"task server: cannot bind {cfg.bind!r}: {err} (bind is a ZeroMQ endpoint like "
                              "'tcp://127.0.0.1:5555' on an address of this machine, or 'ipc://PATH' with a short "
                              "PATH)") from None
        raise OSError(f"task server: cannot bind {cfg.bind!r}: {err}") from None
    return BoundRouter(sock, sock.getsockopt_string(zmq.LAST_ENDPOINT), auth, ipc_file)
