"""Simulated observers: test and benchmark policies without training a network.

An :class:`Observer` answers 2AFC trials with a known psychometric function of the trial's evidence
(e.g. coherence): with probability ``(1 - lapse) * F(c)`` it *sees* the stimulus and chooses correctly,
otherwise it guesses, choosing side 1 with probability ``p_guess1`` (0.5: unbiased; anything else is a
side bias that leaves accuracy on balanced trials unchanged). ``F`` is a Weibull
``1 - exp(-(c / alpha)**beta)`` (Quick 1974; Wichmann & Hill 2001), so accuracy on balanced trials is
``0.5 + 0.5 * (1 - lapse) * F(c)``. A *learner* improves with practice: its threshold ``alpha`` decays
from ``alpha`` to ``alpha_final`` with time constant ``tau_trials`` (trials experienced).

:func:`run` closes the loop: policy -> conditions -> task trials -> observer choices -> scored table ->
policy, batch after batch. ``full=True`` goes through ``task.generate`` and ``task.score`` exactly as the
server does; the default fast path draws only the trial parameters (``task.sample_params``) and builds the
same scored table without input arrays.
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from shaping.tasks import registry
from shaping.tasks.base import apply_repeats


def weibull(x: Any, alpha: float, beta: float, guess: float = 0.5, lapse: float = 0.0) -> np.ndarray:
    """Proportion correct ``guess + (1 - guess - lapse) * (1 - exp(-(x / alpha)**beta))``."""
    x = np.maximum(np.asarray(x, dtype=float), 0.0)
    return guess + (1 - guess - lapse) * (1 - np.exp(-(x / alpha) ** beta))


def weibull_inverse(p: Any, alpha: float, beta: float, guess: float = 0.5, lapse: float = 0.0) -> np.ndarray:
    """The stimulus level at which :func:`weibull` gives proportion correct ``p``."""
    f = (np.asarray(p, dtype=float) - guess) / (1 - guess - lapse)
    return alpha * (-np.log1p(-f)) ** (1 / beta)


def logistic(x: Any, mu: float, width: float, guess: float = 0.5, lapse: float = 0.0) -> np.ndarray:
    """Proportion correct ``guess + (1 - guess - lapse) / (1 + exp(-(x - mu) / width))``."""
    x = np.asarray(x, dtype=float)
    return guess + (1 - guess - lapse) / (1 + np.exp(-(x - mu) / width))


@dataclass
class Observer:
    """A simulated 2AFC observer (and learner).

    Args:
        alpha: Weibull threshold, in evidence units (``F(alpha) = 1 - 1/e``).
        beta: Weibull slope.
        lapse: probability of not looking on a trial (then it guesses).
        p_guess1: probability of choosing side 1 when guessing (0.5: unbiased).
        p_no_response: probability of not responding at all (choice -1).
        alpha_final, tau_trials: a learner's threshold decays towards ``alpha_final`` with this time
            constant, in trials experienced (None: no learning).
        evidence: the trial parameter the psychometric function reads (None: the task's ``evidence_knob``).
        side: the trial parameter holding the correct side (fast path only; full path reads the targets).
    """

    alpha: float = 0.2
    beta: float = 1.5
    lapse: float = 0.0
    p_guess1: float = 0.5
    p_no_response: float = 0.0
    alpha_final: float | None = None
    tau_trials: float = 2000.0
    evidence: str | None = None
    side: str = "direction"
    practice: int = field(default=0)

    @property
    def threshold(self) -> float:
        """Weibull ``alpha`` now (after practice)."""
        if self.alpha_final is None:
            return self.alpha
        return self.alpha_final + (self.alpha - self.alpha_final) * float(np.exp(-self.practice / self.tau_trials))

    def p_correct(self, evidence: Any) -> np.ndarray:
        """Accuracy on balanced trials at ``evidence`` now (ignoring no-responses)."""
        return weibull(evidence, self.threshold, self.beta, 0.5, 0.5 * self.lapse)

    def respond(self, evidence: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Choices ``(n,)`` (0, 1 or -1 for no response) on trials with these evidence values and targets."""
        evidence = np.asarray(evidence, dtype=float)
        target = np.asarray(target, dtype=np.int64)
        n = evidence.size
        sees = rng.random(n) < (1 - self.lapse) * (1 - np.exp(-(np.maximum(evidence, 0) / self.threshold)
                                                               ** self.beta))
        guess = (rng.random(n) < self.p_guess1).astype(np.int64)
        choice = np.where(sees, target, guess)
        if self.p_no_response:
            choice = np.where(rng.random(n) < self.p_no_response, -1, choice)
        self.practice += n
        return choice


def scored_table(params: pd.DataFrame, choice: np.ndarray, target: np.ndarray) -> pd.DataFrame:
    """The table ``Task.score`` returns, from choices and targets: ``trial, outcome, choice, target`` and
    every trial parameter (:func:`shaping.tasks.base.score_table`, the one place it is made)."""
    from ..tasks.base import score_table

    return score_table(np.asarray(target, dtype=np.int64), np.asarray(choice, dtype=np.int64), params)


def outputs_for(choice: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Network outputs ``(N_batch, N_steps, N_out)`` whose masked argmax is ``choice`` (all zero for -1)."""
    y_hat = np.zeros_like(y)
    rows = np.nonzero(choice >= 0)[0]
    y_hat[rows, :, choice[rows]] = 1.0
    return y_hat * (mask > 0)


@dataclass
class Result:
    """What :func:`run` saw: every scored trial (with ``batch`` and ``stage`` columns), the events, and per
    batch the conditions, the scored table passed to ``update`` and the events it returned."""

    trials: pd.DataFrame
    events: list[dict]
    conditions: list[dict]
    scored: list[pd.DataFrame]
    batch_events: list[list[dict]]


def run(policy: Any, task: Any, observer: Observer, n_trials: int, seed: int = 0, full: bool = False,
        N_batch: int | None = None, first_batch: int = 0, stop_when_complete: bool = True,
        in_flight: int = 1) -> Result:
    """Run ``policy`` on ``observer`` for about ``n_trials`` trials (whole batches).

    Args:
        policy: a :class:`~shaping.policies.base.Policy`.
        task: the policy's task; stages naming another task get one built from the registry.
        observer: the simulated observer (its practice advances).
        n_trials: trials to run (rounded up to whole batches).
        seed: seeds the observer's choices; trial parameters come from the task's own seeded stream.
        full: go through ``task.generate`` / ``task.score`` (slower, exactly the server's path).
        N_batch: trials per batch (default ``task.N_batch``).
        first_batch: batch id of the first batch in the task's stream (to continue a run).
        stop_when_complete: stop early once ``policy.complete``.
        in_flight: batches drawn before the first is scored, as an agent that pipelines keeps them (the
            server's default credit is 3): the policy learns of batch k after batch k + in_flight - 1 was drawn.
    """
    if not isinstance(in_flight, int) or in_flight < 1:
        raise ValueError(f"run: in_flight must be a positive int, got {in_flight!r}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(first_batch,)))
    n = task.N_batch if N_batch is None else int(N_batch)
    tasks: dict[str, Any] = {}
    events, conds, raw, per_batch = [], [], [], []
    b, done = first_batch, 0
    pending: deque = deque()

    def score_oldest() -> None:
        scored_batch, drawn = pending.popleft()
        per_batch.append(policy.update(scored_batch, drawn))
        events.extend(per_batch[-1])

    while done < n_trials:
        if stop_when_complete and policy.complete:
            break
        c = policy.conditions()
        conds.append(c)
        t = task if c["task"] is None else _task(tasks, c["task"], task.seed)
        evidence = observer.evidence or getattr(t, "evidence_knob", None)
        if full:
            batch = t.generate(n, knobs=c["knobs"], batch_id=b, repeat=c["repeat"])
            target = np.asarray(t.target_choice(batch.y, batch.mask, batch.params), dtype=np.int64)
            choice = observer.respond(batch.params[evidence].to_numpy(), target, rng)
            scored = t.score(batch.y, outputs_for(choice, batch.y, batch.mask), batch.mask, batch.params)
        else:
            knobs = t.validate_knobs(c["knobs"])
            params = apply_repeats(t.sample_params(n, t.batch_rng(b), knobs), c["repeat"])
            for key, val in knobs.items():
                if key not in params.columns:
                    params[key] = [val] * n if not np.isscalar(val) else val
            target = params[observer.side].to_numpy(dtype=np.int64)
            choice = observer.respond(params[evidence].to_numpy(), target, rng)
            scored = scored_table(params, choice, target)
        pending.append((scored, c))
        if len(pending) >= in_flight:
            score_oldest()
        raw.append(scored)
        done += len(scored)
        b += 1
    while pending and not (stop_when_complete and policy.complete):
        score_oldest()
    per_batch += [[] for _ in pending]  # drawn after completion: never counted (the server's "stale")
    trials = pd.DataFrame()
    if raw:
        sizes = [len(s) for s in raw]
        trials = pd.concat(raw, ignore_index=True)
        trials["batch"] = np.repeat(np.arange(first_batch, b), sizes)
        trials["stage"] = np.repeat([c["stage"] for c in conds], sizes)
    return Result(trials, events, conds, raw, per_batch)


def _task(cache: dict, spec: Mapping[str, Any], seed: int) -> Any:
    key = json.dumps(spec, sort_keys=True)
    if key not in cache:
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        kwargs.setdefault("seed", seed)
        cache[key] = registry.make(spec["name"], **kwargs)
    return cache[key]
