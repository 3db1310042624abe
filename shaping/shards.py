"""Which server process (shard) of a sharded lab holds an agent's session, and where each shard binds.

A lab with ``[server] shards = K`` runs K task servers, each owning a disjoint set of sessions in a journal of
its own (``journal/shard-<i>``, :func:`shaping.journal.shard_dir`), behind one public endpoint: the front
(:mod:`shaping.server.front`) answers an agent's HELLO with a REDIRECT to the shard :func:`shard_of` names.

The assignment depends on the agent's name and K only: a stable hash (BLAKE2b of the UTF-8 name, not Python's
``hash()``, which is salted per process), so every process, on every machine and at every restart, agrees on
it. Changing K moves agents to other shards (and so to new sessions): a lab refuses that once it has run.

Standard library only: the client imports it.
"""
from __future__ import annotations

import hashlib

__all__ = ["shard_bind", "shard_of"]


def shard_of(agent: str, shards: int) -> int:
    """The shard (0 to ``shards - 1``) that holds agent ``agent``'s session.

    Args:
        agent: the agent's name (its session key).
        shards: the number of shards, >= 1.

    Returns:
        The shard index; always 0 when ``shards`` is 1.

    Raises:
        ValueError: ``shards`` is not an integer >= 1, or ``agent`` is not a string.
    """
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shard_of: shards must be an integer >= 1, got {shards!r}")
    if not isinstance(agent, str):
        raise ValueError(f"shard_of: agent must be a name (str), got {agent!r}")
    digest = hashlib.blake2b(agent.encode("utf-8"), digest_size=8).digest()  # BLAKE2b-64, not a cut 512-bit digest
    return int.from_bytes(digest, "big") % shards


def shard_bind(bind: str, shard: int) -> str:
    """The endpoint shard ``shard`` binds, given the lab's public ``bind`` (the front's).

    A TCP bind keeps its host and takes a free port (``tcp://0.0.0.0:5555`` -> ``tcp://0.0.0.0:0``), so a shard
    is reachable wherever the front is, with the same CURVE rules; an ``ipc://`` bind gets a path of its own per
    shard (``ipc:///tmp/lab.sock`` -> ``ipc:///tmp/lab.sock.shard-1``; ``ipc://*`` stays a fresh path). Any other
    transport is returned unchanged.

    Args:
        bind: a ZeroMQ endpoint, e.g. ``tcp://127.0.0.1:5555``.
        shard: the shard's index (0 = first).

    Returns:
        The shard's bind endpoint.
    """
    if bind.startswith("tcp://"):
        host, sep, _port = bind[len("tcp://"):].rpartition(":")
        if sep and host:
            return f"tcp://{host}:0"
        return bind
    if bind.startswith("ipc://"):
        path = bind[len("ipc://"):]
        return bind if path in ("", "*") else f"ipc://{path}.shard-{int(shard)}"
    return bind
