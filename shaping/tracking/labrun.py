"""The lab's parent run: one per lab session, with one child run per agent.

Layout (one experiment per lab, see :func:`shaping.tracking.store.ensure_experiment`): :class:`LabRun` is the
parent run of a lab session. It holds

- the lab config whole as ``lab_config.json``, the git commit and package versions as tags
  (:func:`shaping.tracking.store.provenance_tags`), the tag ``skinnerbox.role = lab``;
- a description (the ``mlflow.note.content`` tag, markdown, one line each: the lab, each agent, each curriculum;
  :func:`shaping.tracking.names.describe_lab`);
- at the end, the lab summary (:meth:`LabRun.log_summary`): per agent, the metrics ``summary/<agent>/<column>``
  for its numbers (``trials_to_criterion`` always, when reached), tags ``summary.<agent>.<column>`` for the rest
  (``outcome`` always), ``summary.csv``, and one line per agent in the description, under the lab's line.

:meth:`LabRun.child` makes one child run per agent (``mlflow.parentRunId``, ``skinnerbox.agent``) and returns
the plain ``run`` dict the server sends the agent in WELCOME, so that the server
(:class:`shaping.tracking.CurriculumTracker`) and the agent (:class:`agents.tracking.AgentTracker`) write to the
same run.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from .names import NOTE_TAG, describe_lab, now_ms, plain, safe_name
from .store import MAX_METRICS_PER_BATCH, MAX_TAGS_PER_BATCH, StoreGuard, ensure_experiment, provenance_tags
from .uris import resolve_tracking_uri

#: Summary columns read as "trials to criterion", first found first (the lab summary's name for it today is
#: ``trials_to_complete``: the trials trained until the curriculum's completion criterion was met).
CRITERION_COLUMNS = ("trials_to_criterion", "trials_to_complete")
SUMMARY_HEADING = "**Summary**"


def _number(value: Any) -> float | None:
    """``value`` as a finite float when it is a number (bools are not), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def summary_outcome(row: Mapping[str, Any]) -> str:
    """An agent's outcome from its summary row: its ``outcome`` when the row has one, else ``complete`` (the
    criterion was met), ``out_of_trials`` (the curriculum's ``max_trials`` ran out first) or ``incomplete``
    (stopped before either)."""
    if not _missing(row.get("outcome")):
        return str(row["outcome"])
    if row.get("complete") is True or row.get("complete") == 1:
        return "complete"
    return "out_of_trials" if row.get("out_of_trials") is True or row.get("out_of_trials") == 1 else "incomplete"


def summary_entries(summary: pd.DataFrame) -> tuple[dict[str, float], dict[str, str]]:
    """The lab summary as ``(metrics, tags)`` for the parent run.

    Args:
        summary: one row per agent, with an ``agent`` column (``shaping.lab.summarize``).

    Returns:
        metrics ``summary/<agent>/<column>`` for each finite number (plus ``trials_to_criterion`` from the first
        of :data:`CRITERION_COLUMNS` present), and tags ``summary.<agent>.<column>`` for every other value
        (plus ``outcome``, :func:`summary_outcome`); missing values are left out.
    """
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for row in summary.to_dict("records"):
        agent = safe_name(row.get("agent", "agent")).replace("/", "_")
        for column, value in row.items():
            if column == "agent" or column in CRITERION_COLUMNS or _missing(value):
                continue
            if (number := _number(value)) is not None:
                metrics[f"summary/{agent}/{safe_name(column)}"] = number
            else:
                text = value if isinstance(value, str) else json.dumps(plain(value))  # as params: true, not True
                tags[f"summary.{agent}.{safe_name(column)}"] = text[:5000]
        criterion = next((row[c] for c in CRITERION_COLUMNS if c in row and not _missing(row[c])), None)
        if (number := _number(criterion)) is not None:
            metrics[f"summary/{agent}/trials_to_criterion"] = number
        tags[f"summary.{agent}.outcome"] = summary_outcome(row)
    return metrics, tags


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """One markdown line per agent: its outcome and trials to criterion (when reached)."""
    lines = []
    for row in summary.to_dict("records"):
        criterion = next((row[c] for c in CRITERION_COLUMNS if c in row and not _missing(row[c])), None)
        reached = f", criterion at {int(criterion):,} trials" if _number(criterion) is not None else ""
        trials = f" ({int(row['trials']):,} trials trained)" if _number(row.get("trials")) is not None else ""
        lines.append(f"- {row.get('agent', 'agent')}: {summary_outcome(row)}{reached}{trials}")
    return lines


def with_summary(note: str, lines: list[str]) -> str:
    """``note`` (markdown paragraphs) with the summary paragraph (:data:`SUMMARY_HEADING`, then ``lines``) second,
    right under the lab's line where the UI shows it before folding the rest; an earlier summary is replaced."""
    paragraphs = [p for p in note.split("\n\n") if p.strip() and not p.startswith(SUMMARY_HEADING)]
    paragraphs.insert(min(1, len(paragraphs)), "\n".join([SUMMARY_HEADING, *lines]))
    return "\n\n".join(paragraphs)


class LabRun:
    """The parent run of one lab session; hands out one child run per agent.

    Build it with :meth:`start` (new session) or :meth:`attach` (resume). When the store cannot be reached
    the object is disabled: :meth:`child` still answers, with ``run_id`` None, and nothing is logged.

    Attributes:
        tracking_uri, experiment_id, run_id: where the parent run lives (ids None when disabled).
        client: the ``MlflowClient`` on ``tracking_uri``.
        guard: the :class:`~shaping.tracking.store.StoreGuard` shared with the
            :class:`~shaping.tracking.CurriculumTracker` built on this run.
    """

    def __init__(self, tracking_uri: str, experiment_id: str | None, run_id: str | None,
                 guard: StoreGuard | None = None):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.guard = guard or StoreGuard(tracking_uri)
        if run_id is None:
            self.guard.enabled = False
        self._client: MlflowClient | None = None
        self._children: dict[str, dict] = {}

    @property
    def client(self) -> MlflowClient:
        """The ``MlflowClient`` on ``tracking_uri``, made on first use (for sqlite that opens the file, so
        it is only touched inside guarded calls)."""
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def enabled(self) -> bool:
        return self.guard.enabled and self.run_id is not None

    @classmethod
    def start(cls, tracking_uri: str | None, experiment: str, lab_config: Mapping[str, Any],
              run_name: str | None = None, tags: Mapping[str, str] | None = None,
              description: str | None = None) -> LabRun:
        """Create the parent run of a lab session.

        Args:
            tracking_uri: any MLflow URI; None: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///<cwd>/mlflow.db``.
            experiment: the lab's experiment name (created if missing).
            lab_config: the lab config, logged whole as ``lab_config.json``.
            run_name: name of the parent run (default: MLflow's generated name).
            tags: extra tags (git commit and package versions are added).
            description: the run's description (markdown); default
                :func:`~shaping.tracking.names.describe_lab` of ``lab_config``.
        """
        uri = resolve_tracking_uri(tracking_uri)
        guard = StoreGuard(uri)
        note = describe_lab(lab_config) if description is None else description

        def create() -> tuple[str, str]:
            eid = ensure_experiment(uri, experiment)
            client = MlflowClient(tracking_uri=uri)
            all_tags = {**provenance_tags(), "skinnerbox.role": "lab", **({NOTE_TAG: note} if note else {}),
                        **dict(tags or {})}
            run = client.create_run(eid, run_name=run_name, tags=all_tags)
            client.log_dict(run.info.run_id, plain(dict(lab_config)), "lab_config.json")
            return eid, run.info.run_id

        ids = guard.run("LabRun.start", create)
        eid, rid = ids if ids else (None, None)
        return cls(uri, eid, rid, guard)

    @classmethod
    def attach(cls, tracking_uri: str, run_id: str) -> LabRun:
        """Reattach to an existing parent run (a resumed lab); its children are found by agent name."""
        guard = StoreGuard(tracking_uri)
        run = guard.run("LabRun.attach", lambda: MlflowClient(tracking_uri=tracking_uri).get_run(run_id))
        return cls(tracking_uri, run.info.experiment_id if run else None, run_id if run else None, guard)

    def child(self, agent: str) -> dict:
        """The child run of ``agent`` (created on first call, found again on resume).

        Returns:
            ``{"tracking_uri", "experiment_id", "run_id", "parent_run_id", "run_name"}``: plain JSON for
            WELCOME; ``run_id`` is None when tracking is off.
        """
        if agent in self._children:
            return dict(self._children[agent])
        run = {"tracking_uri": self.tracking_uri, "experiment_id": self.experiment_id, "run_id": None,
               "parent_run_id": self.run_id, "run_name": agent}
        if not self.enabled:
            return run

        def find_or_create() -> str:
            query = (f"tags.`mlflow.parentRunId` = '{self.run_id}' and "
                     f"tags.`skinnerbox.agent` = '{agent.replace(chr(39), '')}'")
            found = self.client.search_runs([self.experiment_id], query, max_results=1)
            if found:
                return found[0].info.run_id
            tags = {"mlflow.parentRunId": self.run_id, "skinnerbox.agent": agent, "skinnerbox.role": "agent"}
            return self.client.create_run(self.experiment_id, run_name=agent, tags=tags).info.run_id

        run["run_id"] = self.guard.run("LabRun.child", find_or_create)
        if run["run_id"] is not None:
            self._children[agent] = run
        return dict(run)

    def log_summary(self, summary: pd.DataFrame) -> bool:
        """Log the lab summary on the parent run (see the module docstring): per-agent metrics and tags
        (:func:`summary_entries`), the table as ``summary.csv`` (for a sweep also ``sweep.csv`` and the figure
        ``sweep.png``), and one line per agent in the run's description
        (:func:`with_summary`: replacing those of an earlier call, as a resumed lab ends again). Synchronous; a store
        failure is logged, never raised.

        Args:
            summary: one row per agent with an ``agent`` column (``shaping.lab.summarize``).

        Returns:
            True when it was written.
        """
        if not self.enabled:
            return False
        metrics, tags = summary_entries(summary)
        lines = summary_lines(summary)

        def write() -> bool:
            client, ts = self.client, now_ms()
            note = client.get_run(self.run_id).data.tags.get(NOTE_TAG, "")
            tags[NOTE_TAG] = with_summary(note, lines)
            items = [Metric(k, v, ts, 0) for k, v in metrics.items()]
            for i in range(0, len(items), MAX_METRICS_PER_BATCH):
                client.log_batch(self.run_id, metrics=items[i:i + MAX_METRICS_PER_BATCH], synchronous=True)
            runtags = [RunTag(k, v) for k, v in tags.items()]
            for i in range(0, len(runtags), MAX_TAGS_PER_BATCH):
                client.log_batch(self.run_id, tags=runtags[i:i + MAX_TAGS_PER_BATCH], synchronous=True)
            client.log_text(self.run_id, summary.to_csv(index=False), "summary.csv")
            sweep = summary.attrs.get("sweep")
            if sweep is not None and len(sweep):
                client.log_text(self.run_id, sweep.to_csv(index=False), "sweep.csv")
                if summary.attrs.get("factors"):  # trials to criterion per agent, by factor (as in the report)
                    from .. import figures

                    fig = figures.sweep_trials(summary, summary.attrs["factors"], sweep)
                    client.log_figure(self.run_id, fig, "sweep.png")
            return True

        return bool(self.guard.run("LabRun.log_summary", write))

    def end(self, status: str = "FINISHED") -> None:
        """Mark the parent run ended (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        if self.enabled:
            self.guard.run("LabRun.end", lambda: self.client.set_terminated(self.run_id, status))

    def __repr__(self) -> str:
        return f"LabRun(tracking_uri={self.tracking_uri!r}, run_id={self.run_id!r}, enabled={self.enabled})"
