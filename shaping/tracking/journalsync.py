"""Sync from the journal: rebuild a lab's runs in MLflow after the fact (``skinnerbox sync``).

Tracking turns itself off at the first store failure (:class:`shaping.tracking.store.StoreGuard`); the journal
holds everything, so :func:`sync` replays it through the server's own hooks (:class:`~shaping.tracking.
CurriculumTracker`, inline) into a new parent run with one child run per agent, as the store would have been
had it been reachable during the lab. The agents' own runs (model params, connectivity) are not in the journal
and are not rebuilt; each child run's description names the curriculum and, from the agent's HELLO, its
model's constraints.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient

from ..errors import MissingFile
from .curriculum import CurriculumTracker
from .labrun import LabRun
from .names import NOTE_TAG, describe_agent, describe_curriculum
from .store import ensure_experiment
from .uris import resolve_tracking_uri


def sync_frames(trial_log: pd.DataFrame, tracking_uri: str, experiment: str,
                events: pd.DataFrame | None = None, batches: pd.DataFrame | None = None,
                lab_config: Mapping[str, Any] | None = None,
                specs: Mapping[str, tuple[Mapping, Mapping]] | None = None, source: str | None = None,
                descriptions: Mapping[str, str] | None = None) -> dict:
    """Rebuild a lab's runs from journal tables by replaying the server's hooks, so that the store ends up
    as it would have been had it been reachable during the lab.

    Args:
        trial_log: :func:`shaping.journal.load`: one row per trial, in order, with ``agent`` and the batch
            keys ``session, batch`` (without an ``agent`` column: one agent named ``"agent"``).
        tracking_uri, experiment: where to write.
        events: :func:`shaping.journal.load_events` (matched to batches by ``agent, session, batch``).
        batches: :func:`shaping.journal.load_batches` (knob settings per batch; without it no knob metrics).
        lab_config: logged on the parent run.
        specs: agent -> ``(curriculum_spec, task_spec)``, logged as params when given.
        source: identifies what was synced (a journal path); a second sync of the same source is skipped.
        descriptions: agent -> its run's description (default: its curriculum, from ``specs``).

    Returns:
        ``{"parent_run_id", "runs": {agent: run dict}, "skipped": bool}``.
    """
    if source is not None:
        client = MlflowClient(tracking_uri=tracking_uri)
        eid = ensure_experiment(tracking_uri, experiment)
        done = client.search_runs([eid], f"tags.`skinnerbox.synced_from` = '{source}'", max_results=1)
        if done:
            return {"parent_run_id": done[0].info.run_id, "runs": {}, "skipped": True}
    lab = LabRun.start(tracking_uri, experiment, lab_config or {"synced_from": source},
                       tags={"skinnerbox.synced_from": source} if source else None)
    tracker = CurriculumTracker(lab, background=False, flush_interval_s=1e9)
    has_agent = "agent" in trial_log.columns
    runs = {}
    for agent in (trial_log["agent"].unique().tolist() if has_agent else ["agent"]):
        log = (trial_log[trial_log["agent"] == agent] if has_agent else trial_log).reset_index(drop=True)
        policy, task = (specs or {}).get(agent, ({}, {}))
        if not task and "task" in log.columns and len(log):
            task = {"task": str(log["task"].iloc[0])}
        runs[agent] = run = tracker.on_session_start(agent, policy, task)
        note = (descriptions or {}).get(agent) or run.get("description")
        if run["run_id"] is not None and note:
            lab.guard.run("run description", lab.client.set_tag, run["run_id"], NOTE_TAG, note)
        tracker.replay_journal(agent, log, batches, events)
        tracker.on_session_end(agent, log)
    tracker.flush()
    lab.end()
    return {"parent_run_id": lab.run_id, "runs": runs, "skipped": False}


def sync(journal_dir: str | os.PathLike, tracking_uri: str | None = None, experiment: str = "skinnerbox",
         lab_config: Mapping[str, Any] | None = None) -> dict:
    """Push a finished lab's journal into MLflow (``skinnerbox sync``): nothing is lost when the store was
    down during the lab. Replays :func:`shaping.journal.load`, ``load_batches``, ``load_events`` and the
    policy and task specs of the last HELLO record of each agent through :func:`sync_frames` (the HELLO's
    curriculum name and model spec make each run's description); syncing the same journal directory twice is a
    no-op (the parent run is tagged ``skinnerbox.synced_from``). A sharded journal directory (``shard-N``
    journals inside) is synced as one lab: one parent run, one child run per agent of every shard."""
    from .. import journal

    path = Path(journal_dir).resolve()
    if not journal.segments(path):  # MissingFile when the folder is missing; an empty one would make an empty run
        raise MissingFile(f"no journal at {path} (expected {journal.SEGMENT_GLOB} files, written by a lab or "
                          "`skinnerbox server`)")
    specs: dict[str, tuple[Mapping, Mapping]] = {}
    descriptions: dict[str, str] = {}
    for _, rec in journal.iter_records(path, kinds=[journal.HELLO]):
        policy = rec.get("spec") or rec.get("curriculum")
        policy = policy if isinstance(policy, Mapping) else {}
        task = rec.get("task")
        specs[rec["agent"]] = (policy, task if isinstance(task, Mapping) else {})
        name = rec.get("curriculum") if isinstance(rec.get("curriculum"), str) else None
        model = (rec.get("info") or {}).get("model") if isinstance(rec.get("info"), Mapping) else None
        descriptions[rec["agent"]] = describe_agent(describe_curriculum(policy, name),
                                                    model if isinstance(model, Mapping) else None)
    return sync_frames(journal.load(path), resolve_tracking_uri(tracking_uri), experiment,
                       events=journal.load_events(path), batches=journal.load_batches(path),
                       lab_config=lab_config, specs=specs, source=str(path), descriptions=descriptions)
