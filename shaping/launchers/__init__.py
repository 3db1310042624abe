"""Launchers: how a lab's processes are started, polled and stopped (``[lab] launcher``).

- ``"local"`` (:class:`LocalLauncher`): subprocesses of the lab on this machine, the default.
- ``"slurm"`` (:class:`SlurmLauncher`): one SLURM job per agent through submitit (``[launcher.slurm]``).

The lab (:mod:`shaping.lab`) supervises whichever it is given: restarts, progress bars, the summary.
"""
from __future__ import annotations

from .base import LOST, Launcher, LaunchError, Process
from .local import LocalLauncher
from .slurm import SlurmLauncher

__all__ = ["LOST", "LaunchError", "Launcher", "LocalLauncher", "Process", "SlurmLauncher"]

