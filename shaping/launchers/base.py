"""What a lab asks of a launcher: start processes, tell which have ended and how, stop them all.

The lab supervises (restarts, progress, summary); a launcher only knows how a process is started, polled and
stopped on one kind of machine: :class:`~shaping.launchers.local.LocalLauncher` runs subprocesses of the lab,
:class:`~shaping.launchers.slurm.SlurmLauncher` submits SLURM jobs. Exit statuses follow
:mod:`shaping.procs` (0 done, :data:`~shaping.procs.REFUSED` never restarted, anything else a crash).
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import SkinnerboxError

LOST = -1  # the exit status of a process whose end nobody saw (a SLURM job gone without a result: a node lost)


class LaunchError(SkinnerboxError, RuntimeError):
    """A launcher could not start what the lab asked for (no ``sbatch`` on PATH, a job the scheduler rejected)."""


@dataclass
class Process:
    """One process of a lab (an agent, or the task server), as its launcher runs it.

    Args:
        name: the agent's name (``"server"`` for the task server).
        role: ``"agent"`` or ``"server"``.
        members: the networks an agent process trains: its own name, or several for a pack.
        argv: the command line.
        log_path: where its stdout and stderr are appended.
        threads: CPU threads it may use (OpenMP/TensorFlow; the CPUs a SLURM job asks for by default).
        restarts: times the lab started it again after a crash.
        requeues: times the scheduler started it again (preemption, walltime), as counted at each start.
        where: the pid or job id it runs as now, for messages.
        started: when it was last started (``time.monotonic``, s); wall_s: the time it ran, all starts (s).
        returncode: the exit status of its latest run that ended; running: started and not seen to end;
            done: the lab will not start it again.
    """

    name: str
    argv: list
    log_path: Path
    threads: int = 1
    role: str = "agent"
    members: list = field(default_factory=list)
    restarts: int = 0
    requeues: int = 0
    where: str = ""
    started: float = 0.0
    wall_s: float = 0.0
    returncode: int | None = None
    done: bool = False
    running: bool = False
    handle: object = field(default=None, repr=False)

    def mark_started(self) -> None:
        self.started = time.monotonic()
        self.running = True

    def mark_ended(self, code: int) -> None:
        """Its latest start ended with ``code`` (kept until the next end, restarts included)."""
        if self.running:
            self.wall_s += time.monotonic() - self.started
        self.running = False
        self.returncode = code


class Launcher(abc.ABC):
    """Starts, polls and stops the processes of one lab.

    Attributes:
        name: ``"local"`` or ``"slurm"``.
        poll_interval_s: how often the lab polls it (s); a scheduler is asked less often than a pid.
    """

    name: str = ""
    poll_interval_s: float = 0.5

    def check(self) -> None:
        """Raise :class:`LaunchError` (before the lab starts anything) when this launcher cannot run here."""

    @abc.abstractmethod
    def start(self, procs: Sequence[Process], env: dict) -> None:
        """Start every process of ``procs`` (several at once where the engine can: one SLURM job array).

        Args:
            env: environment overrides for the processes (:func:`shaping.procs.process_env` keys); each
                process's ``threads`` sets its thread count.
        """

    @abc.abstractmethod
    def poll(self, procs: Sequence[Process]) -> dict[str, int]:
        """The exit status of each process of ``procs`` that has ended since it was started (by name)."""

    @abc.abstractmethod
    def stop(self, procs: Sequence[Process], grace_s: float) -> None:
        """Ask every running process of ``procs`` to stop cleanly (each checkpoints), wait up to ``grace_s``,
        then kill what is left; each one's ``returncode`` is set where it is known."""

    def cancel_leftovers(self) -> list[str]:
        """Stop what an earlier run of the lab that died left running, before this run starts (ids stopped).
        Local children stop by themselves once their lab is gone (:func:`shaping.procs.lab_gone`)."""
        return []

    def describe(self) -> str:
        """One line for the lab's log: where the processes run."""
        return self.name

    def close(self) -> None:
        """Release what the launcher holds (nothing for most)."""
