"""The task server: one ZeroMQ ROUTER, one session per agent, every batch journaled before it is acknowledged.

One job: generate each agent's trials, score what the agent answered with the task's own scoring, move the
agent's curriculum (its policy) and tell it the result. The wire format is ``shaping/PROTOCOL.md``.

Invariants:

- **Journaled before acknowledged.** A batch's trials, the policy events and the policy state after it are one
  journal record, handed to the OS before ``SCORE`` is sent (see :mod:`shaping.journal`).
- **Exactly once.** The first valid RESULT for an in-flight batch is scored; later ones get ALREADY_SCORED.
  Batches of an ended epoch (the agent said HELLO again, the server restarted) are void and never scored.
- **Never blocks on one agent.** Replies are sent without blocking (``ROUTER_MANDATORY``: a vanished agent is
  an error, not a stall), and no request waits on another agent's.
- **Bad input never stops it.** Every malformed or unexpected message gets an ERROR reply and a log line;
  other agents do not notice.
- **Stages count their own trials.** A batch prefetched under a stage the agent has left by the time its
  RESULT arrives, even if it has come back to that stage since (at most ``credit - 1`` batches after a
  graduation or regression), or answered after the curriculum completed (a pipelined agent's last batch), is
  scored, journaled (flagged ``stale``) and acknowledged, but not fed to the policy: the new stage's window
  holds only its own trials. So an event's ``trial`` (the policy's count) leaves stale trials out; the server
  adds ``session_trials``, the session's count of every scored trial (the network trained on them all), at
  which metrics, figures and trials-to-criterion place it.
- **Reproducible.** Each agent's trial stream and policy are seeded from (server seed, agent name), and batch
  ``k`` of a stream is a function of (seed, k, knobs): a restarted server re-issues what was never scored.

Usage::

    server = TaskServer(ServerConfig.from_toml("server.toml"))   # or TaskServer({...}) in tests and benchmarks
    server.run()                                              # until server.stop() / SIGTERM (via serve())

Hooks (cheap, exception-safe: a failing hook logs one warning and the server carries on), for tracking:

- ``on_session_start(session) -> dict | None``: before WELCOME; a returned dict is merged into
  ``session.run`` (sent to the agent in WELCOME's ``run`` field and journaled).
- ``on_scored(session, scored, events, conditions)``: after each batch is journaled and acknowledged.
- ``on_session_end(session, reason)``: BYE, expiry, replacement or shutdown.
- ``on_stop(server)``: once, when the server stops.

The package, by concern: :mod:`.sessions` (one agent's curriculum, testable without a socket), :mod:`.resume`
(sessions rebuilt from the journal, changed configs refused), :mod:`.loop` (the socket loop, tracking hooks,
:func:`serve`); the config is :class:`shaping.labfile.ServerConfig`, the files it writes for other processes
are named in :mod:`shaping.procs`.
"""
from __future__ import annotations

from ..errors import ConfigChanged
from ..labfile import LIVENESS, ServerConfig
from ..labfile import read_file as read_toml
from ..procs import ENDPOINT_FILE, STATUS_FILE, read_endpoint
from .loop import STATUS_INTERVAL_S, TaskServer, attach_tracking, serve
from .resume import check_resume, resume_session
from .sessions import InFlight, Session, agent_seed, policy_seed

__all__ = ["ENDPOINT_FILE", "LIVENESS", "STATUS_FILE", "STATUS_INTERVAL_S", "ConfigChanged", "InFlight", "ServerConfig",
           "Session", "TaskServer", "agent_seed", "attach_tracking", "check_resume", "policy_seed", "read_endpoint",
           "read_toml", "resume_session", "serve"]
