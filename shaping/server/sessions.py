"""One agent's curriculum on the task server: its seeded task stream, policy, recent-trial window and batches
in flight (:class:`Session`), testable without a socket.

Seeds: an agent's trial stream and its policy derive from (server seed, agent name), so a restarted server
re-issues what was never scored.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .. import journal
from ..readout import RecentWindow


def agent_seed(server_seed: int, agent: str) -> int:
    """The seed of an agent's trial stream: a stable function of (server seed, agent name)."""
    digest = int.from_bytes(hashlib.blake2b(agent.encode(), digest_size=8).digest(), "little")
    return int(np.random.SeedSequence([server_seed, digest]).generate_state(2, np.uint64)[0] % (2**63))


def policy_seed(task_seed: int) -> int:
    """The seed of an agent's policy, derived from its task seed."""
    return int(np.random.SeedSequence(task_seed, spawn_key=(1,)).generate_state(2, np.uint64)[0] % (2**63))


# ---------------------------------------------------------------------------------------------- sessions
@dataclass
class InFlight:
    """A batch sent and not yet scored."""

    batch: Any  # shaping.tasks.Batch
    task: Any  # the Task it was drawn from
    conditions: dict
    epoch: int
    issued: float  # monotonic s
    stage_visit: int = 0  # the session's stage visit it was drawn in (see Session.stage_visit)
    window: tuple | None = None  # agent-built: each trial's scoring window [start, stop) in steps, (n,) each
    rows: int = 0  # agent-built "window" readout: the rows of outputs its RESULT carries (the windows' length)
    readout: str | None = None  # agent-built: what its RESULT carries, "mean" or "window" (Task.readout)


class Session:
    """One agent's curriculum on this server: its seeded task stream, policy, window and in-flight batches.

    Attributes:
        agent, session_id, curriculum: who, which session, which curriculum.
        policy: the agent's policy. task: its base task (seeded). seed: the task seed.
        epoch: connection count (a HELLO starts a new epoch). identity: current ROUTER routing id or None.
        next_batch: id of the next batch in the stream. in_flight: batch id -> :class:`InFlight`.
        trials, batches: scored so far. window: the last ``window_trials`` outcomes (1 = correct).
        stage_visit: counts the stage changes seen by this server process, so that a batch drawn in an
            earlier visit of the same stage (A -> B -> A while it was in flight) is recognised as stale.
        run: provenance record sent in WELCOME (hooks fill it). info: the agent's HELLO info.
        version: the protocol version the agent speaks (every message to it is signed with it).
        build: who builds its trials, ``"server"`` or ``"agent"`` (protocol 2). fingerprint: with ``"agent"``,
            the digest the agent's GETs must carry (:func:`shaping.tasks.build.fingerprint`).
    """

    def __init__(self, agent: str, session_id: str, curriculum: str, spec: dict, task_config: dict,
                 seed: int, window_trials: int):
        from ..policies import from_spec  # kept lazy: policies import tasks

        self.agent = agent
        self.session_id = session_id
        self.curriculum = curriculum
        self.task_config = dict(task_config)
        self.seed = int(seed)
        self.task = _make_task(self.task_config, self.seed)
        self.policy = from_spec(dict(spec), self.task, seed=policy_seed(self.seed))
        self.spec = self.policy.get_config()
        self.tasks: dict[str, Any] = {}
        self.epoch = 0
        self.identity: bytes | None = None
        self.connected = False
        self.next_batch = 0
        self.in_flight: dict[int, InFlight] = {}
        self.scored_ids: set[int] = set()
        self.void_ids: dict[int, str] = {}
        self.trials = 0
        self.batches = 0
        self.window = RecentWindow(window_trials)  # the recent accuracy every view of the lab shows (readout)
        self.run: dict = {}
        self.info: dict = {}
        self.last_heard = 0.0
        self.last_sent = 0.0
        self.stage_visit = 0
        self.last_scored = -1  # id of the batch scored last (an override is journaled after it)
        self.policy_accuracy: float | None = None  # after the last scored batch (journaled, in SCORE)
        self.conditions = self.policy.conditions()
        self.version = 1
        self.build = "server"
        self.fingerprint: str | None = None

    # ---------------------------------------------------------------- stream
    def build_tasks(self) -> dict[str, dict]:
        """Every task the session may draw from, by :func:`~shaping.tasks.build.task_key`: the base task and
        each stage's own."""
        from ..tasks.build import task_key

        configs = [self.task_config, *(dict(spec) for spec in self.policy.stage_tasks().values() if spec)]
        return {task_key(c): c for c in configs}

    def task_config_for(self, conditions: dict) -> dict:
        """The config of the task a stage draws from (the base task's when the stage has none)."""
        return dict(conditions.get("task") or self.task_config)

    def task_for(self, conditions: dict) -> Any:
        """The task a stage draws from: the base task, or the stage's own (cached, same seed)."""
        spec = conditions.get("task")
        if not spec:
            return self.task
        key = json.dumps(spec, sort_keys=True, default=str)
        task = self.tasks.get(key)
        if task is None:
            task = _make_task(spec, self.seed)
            if (task.N_in, task.N_out) != (self.task.N_in, self.task.N_out):
                raise ValueError(f"curriculum {self.curriculum!r} stage {conditions.get('stage')!r} switches to "
                                 f"task {spec.get('name')!r} with N_in={task.N_in}, N_out={task.N_out}; the "
                                 f"session's task has N_in={self.task.N_in}, N_out={self.task.N_out} (an agent's "
                                 "input and output sizes cannot change)")
            self.tasks[key] = task
        return task

    def record(self, outcome_codes: np.ndarray) -> None:
        self.window.add(outcome_codes == 0)

    @property
    def window_accuracy(self) -> float | None:
        return self.window.accuracy

    def void_in_flight(self, reason: str) -> int:
        """End every in-flight batch unscored (its RESULT will get UNKNOWN_BATCH)."""
        n = len(self.in_flight)
        for bid in self.in_flight:
            self.void_ids[bid] = reason
        self.in_flight.clear()
        if len(self.void_ids) > 4096:
            for bid in sorted(self.void_ids)[:2048]:
                del self.void_ids[bid]
        return n

    # ---------------------------------------------------------------- state
    def state(self) -> dict:
        """Plain-data snapshot (journaled after every batch)."""
        return {"policy": self.policy.state(), "next_batch": self.next_batch, "trials": self.trials,
                "batches": self.batches, "epoch": self.epoch, "window": list(self.window)}

    def restore(self, state: Mapping[str, Any], last_batch: int) -> None:
        self.policy.restore(state["policy"])
        self.trials = int(state["trials"])
        self.batches = int(state["batches"])
        self.window = RecentWindow(self.window.window_trials)
        self.window.add(bool(w) for w in state.get("window", []))
        # Batches issued after the last journaled one were never acknowledged: issue their ids again.
        self.next_batch = int(last_batch) + 1
        self.last_scored = int(last_batch)
        self.conditions = self.policy.conditions()

    def welcome_stage(self) -> dict:
        return {"stage": str(self.conditions["stage"]), "stage_index": int(self.conditions["stage_index"]),
                "knobs": _plain_knobs(self.conditions["knobs"])}

    def __repr__(self) -> str:
        return (f"Session(agent={self.agent!r}, session={self.session_id!r}, curriculum={self.curriculum!r}, "
                f"epoch={self.epoch}, trials={self.trials}, stage={self.conditions['stage']!r})")


def _make_task(config: Mapping[str, Any], seed: int) -> Any:
    from ..tasks.build import make_task

    return make_task(config, seed)


def _plain_knobs(knobs: Mapping[str, Any]) -> dict:
    return json.loads(journal.dumps(dict(knobs)))


