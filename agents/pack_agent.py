"""A pack process: several networks trained in one agent process, each in closed loop with its own session.

Each network is an :class:`~agents.closed_loop.Agent` (its own HELLO, batches, stage and knobs, checkpoint,
weight files and MLflow run), driven through the phases of its ``run``; their models are stacked into
:class:`~agents.pack.Pack` es (networks that cannot share one, e.g. of another size, go to another), and every
optimizer step trains all the networks of a pack whose batches have the same shape in one compiled step.
Networks at different stages train side by side; a network whose curriculum completes (or that is stopped)
finishes alone and leaves; a network whose session is refused (another session's checkpoint, a model that
cannot be built) is left out while the others train. A killed pack resumes every session it held, each from
its own checkpoint.

The process exits 0, or :data:`~shaping.procs.REFUSED` when every network was refused.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from shaping.errors import CheckpointMismatch, ConfigError
from shaping.labfile import AgentConfig

from .closed_loop import Agent, _configure_device

log = logging.getLogger(__name__)


class PackAgent:
    """Several networks in one process (see the module docstring).

    Args:
        configs: one :class:`~shaping.labfile.AgentConfig` per network (same server, device and threads).
    """

    def __init__(self, configs: Sequence[AgentConfig]):
        if not configs:
            raise ValueError("a pack needs at least one network")
        self.members = [Agent(cfg) for cfg in configs]
        self.refused: dict[str, str] = {}
        self.packs: list[tuple[Any, list[Agent]]] = []

    def request_stop(self, *_: Any) -> None:
        """Every network finishes its batch, checkpoints and leaves (the SIGTERM/SIGINT/SIGUSR2 handler)."""
        for member in self.members:
            member.request_stop()

    def run(self) -> dict:
        """Train every network until its curriculum completes or it is stopped; a summary per network."""
        first = self.members[0].config
        _configure_device(first.device, first.threads)
        started = time.monotonic()
        opened = []
        try:
            for member in self.members:
                try:
                    member.open()
                    opened.append(member)
                except (CheckpointMismatch, ConfigError) as err:  # this network's session only
                    log.error("%s", err)
                    self.refused[member.config.name] = str(err)
                    member.close()
            self.packs = self._stack(opened)
            active = list(opened)
            while active:
                batches = {}
                for member in list(active):
                    batch = member.next_batch()
                    if batch is None:
                        self._leave(member, active)
                    else:
                        batches[member] = batch
                results = self._train(batches)
                for member, batch in batches.items():
                    loss, outputs = results[member]
                    if member.after_step(batch, loss, outputs):
                        self._leave(member, active)
        finally:
            for member in opened:
                member.close()
        log.info("pack of %d network(s) in %d stack(s) done in %.0f s; %d refused", len(self.members),
                 len(self.packs), time.monotonic() - started, len(self.refused))
        return {m.config.name: (m.summary() if m.config.name not in self.refused else
                                {"agent": m.config.name, "refused": self.refused[m.config.name]})
                for m in self.members}

    def _leave(self, member: Agent, active: list) -> None:
        member.finish()
        member.close()
        active.remove(member)

    def _stack(self, members: list[Agent]) -> list[tuple[Any, list[Agent]]]:
        """Group the networks into packs, greedily in order: each joins the first pack it is compatible with."""
        from .pack import Pack

        groups: list[list[Agent]] = []
        for member in members:  # a network no pack can hold (an LSTM, a custom loss) ends up alone
            for group in groups:
                try:
                    Pack.check_compatible(group[0].model, member.model)  # ValueError: not with this group
                except ValueError:
                    continue
                group.append(member)
                break
            else:
                groups.append([member])
        packs = []
        for group in groups:
            pack = None  # one network trains faster as a plain model than as a pack of one (bench/packs.py)
            if len(group) > 1:
                pack = Pack([m.model for m in group])
            for member in group:
                member.before_save = None if pack is None else pack.sync_to_models
            packs.append((pack, group))
        if len(groups) > 1:
            log.warning("the pack's networks need %d stacks (they differ in size or training settings)", len(groups))
        return packs

    def _train(self, batches: dict) -> dict:
        """One compiled step per (pack, batch shape): ``{member: (loss, outputs)}``."""
        out = {}
        for pack, group in self.packs:
            if pack is None:
                (member,) = group
                if member in batches:
                    b = batches[member]
                    out[member] = member.model.train_on_batch(b.x, b.y, b.mask)
                continue
            shapes: dict[tuple, list[int]] = {}
            for k, member in enumerate(group):
                if member in batches:
                    shapes.setdefault(np.shape(batches[member].x) + np.shape(batches[member].y), []).append(k)
            for ks in shapes.values():
                ref = batches[group[ks[0]]]
                zeros = (np.zeros_like(ref.x), np.zeros_like(ref.y), np.zeros_like(ref.mask))
                xs, ys, masks = [], [], []
                for k, member in enumerate(group):
                    b = batches.get(member) if k in ks else None
                    xs.append(zeros[0] if b is None else b.x)
                    ys.append(zeros[1] if b is None else b.y)
                    masks.append(zeros[2] if b is None else b.mask)
                active = np.array([k in ks for k in range(len(group))])
                losses, outputs = pack.train_on_batches(xs, ys, masks, active=active)
                for k in ks:
                    out[group[k]] = (float(losses[k]), outputs[k])
        return out
