"""The errors a user can fix, in one place: what the command line reports as a message (exit status 2).

Anything else that escapes a command is a bug in skinnerbox and keeps its traceback. Each class subclasses the
built-in exception its callers caught before it existed (``ValueError``, ``OSError``, ``RuntimeError``), so code
written against those keeps working.

This module imports nothing of the project: every layer may raise these.
"""
from __future__ import annotations

import difflib
import os
from typing import Iterable


class SkinnerboxError(Exception):
    """Base class of every error caused by the user's input or environment, not by a bug."""


class ConfigError(SkinnerboxError, ValueError):
    """A lab file, server config, task or curriculum spec is wrong; the message names the file, the key,
    the value received and what was expected."""


class UnknownKeyError(ConfigError):
    """A table holds a key nobody reads (a typo, usually); the message suggests the closest known key."""

    def __init__(self, where: str, unknown: Iterable[str], known: Iterable[str], what: str = "key"):
        self.unknown = sorted(unknown)
        self.known = list(known)
        hints = []
        for key in self.unknown:
            close = difflib.get_close_matches(key, self.known, n=1)
            hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        super().__init__(f"{where}: unknown {what}(s) {', '.join(hints)}; known: {', '.join(self.known)}")


class ConfigChanged(ConfigError):
    """A config would resume journaled sessions under another curriculum or task than the ones they ran.

    Attributes:
        changes: one line per agent: its name, curriculum and every differing key as ``key: old -> new``.
    """

    def __init__(self, journal: str | os.PathLike, changes: list[str]):
        self.changes = list(changes)
        super().__init__(
            f"journal {journal} holds sessions that this config would resume with another curriculum or task "
            "(a resumed session keeps what it started with, so the new settings would be recorded but not run):\n  "
            + "\n  ".join(self.changes) + "\nRestore the old config to resume; use a new lab directory (or "
            "journal) to run the new one; to move an agent within its curriculum, use `skinnerbox override`.")


class InUseError(SkinnerboxError, OSError):
    """A lab, journal or port is held by another process; the message names the holder and what to do."""


class ServerNotStarted(SkinnerboxError, RuntimeError):
    """The task server a lab started exited, or did not bind, before it served; the message quotes its log."""


class CheckpointMismatch(SkinnerboxError, RuntimeError):
    """An agent's checkpoint belongs to another server session than the one offered: a restart would be
    refused the same way (the agent exits with :data:`shaping.procs.REFUSED`)."""


class UsageError(SkinnerboxError, ValueError):
    """A command was given arguments that cannot work (a malformed ``--knob``, no server running there)."""


class MissingFile(SkinnerboxError, FileNotFoundError):
    """A file the user must provide is missing (a key pair, a lab directory); the message says how to make it."""


class FileInTheWay(SkinnerboxError, FileExistsError):
    """A file would be replaced that the user did not ask to replace (``--force`` does)."""
