"""One network in closed loop with the task server: a task client, a model and its checkpoints.

One job: train one network on the trials the server sends (:class:`Agent`; the process around it is
:mod:`agents.agent`, and a pack of several networks in one process is :mod:`agents.pack_agent`). The loop is GET,
one optimizer step on the batch, RESULT with the outputs of the forward pass that step computed (what is scored is
the agent's behaviour on those trials *before* it learned from them), then SCORE. The agent never grades itself.

The loop is pipelined: the SCORE of batch k is read after the step on batch k + 1, so the server's scoring,
journaling and reply overlap training instead of stalling it (with the server's default credit of 3, the next
batch is always already generated). Consequences: the agent sees a stage change one batch later (the batch
already prefetched under the old stage is scored as ``stale``, as with any prefetch); when the curriculum
completes, the one batch trained meanwhile is still sent and scored (journaled as ``stale``, not counted by the
policy), so the journal holds every trial the network learned from (but for a batch voided by a reconnect,
which the server never scores, in any loop).

Checkpoints (weights, optimizer state and noise stream, written atomically) are taken every
``checkpoint_every`` batches, at every stage change, on SIGTERM/SIGINT and at the end, each after waiting for
the outstanding SCORE, so a checkpoint never holds learning from trials the journal lacks; a restarted agent
loads its latest one, and the server resumes its curriculum from the journal (a checkpoint offered to a session
the server does not know is refused: it belongs to another journal). With a ``run`` in the server's WELCOME,
the model's settings (when that run lacks them) and its learned connectivity are logged to that MLflow run
(see :mod:`agents.tracking`).

Usage: ``skinnerbox agent --server tcp://127.0.0.1:5555 --name shaped --config examples/demo.toml``.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

from shaping.client import TaskClient
from shaping.errors import CheckpointMismatch, ConfigError
from shaping.labfile import AgentConfig
from shaping.procs import current_endpoint, lab_gone

from .weights import snapshot_tag

log = logging.getLogger(__name__)


def _configure_device(device: str, threads: int) -> None:
    """Pin the process to a device before TensorFlow starts (GPU memory growth so agents can share one GPU)."""
    if device.upper().startswith("GPU:"):
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", device.split(":", 1)[1])
    elif device.upper() == "CPU":
        os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    from . import configure_threads

    configure_threads(threads)
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if device.upper().startswith("GPU") and not gpus:
        raise RuntimeError(f"device = {device!r}, but TensorFlow sees no GPU in this process (is tensorflow-cpu "
                           f"installed? the [gpu] extra installs the CUDA build; CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); use device = 'CPU' to train on the CPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if device.upper().startswith("GPU"):  # on SLURM, the GPU (or shard) of the job's gres
        log.info("pinned to %d GPU(s): CUDA_VISIBLE_DEVICES=%s", len(gpus), os.environ.get("CUDA_VISIBLE_DEVICES"))


class Agent:
    """One network in closed loop with the task server (see the module docstring)."""

    def __init__(self, config: AgentConfig):
        self.config = config
        self.model = None
        self.tracker = None
        self.batches = 0
        self.stage_changes = 0
        self._stop = False
        self._last_image = 0.0
        self._task_spec: dict | None = None
        self._stage = 0
        self._stage_changed = False
        self._losses: dict[int, float] = {}  # batch id -> the loss of its step, until its SCORE is read
        self.client: TaskClient | None = None
        self.before_save: Any = None  # called before the model is saved (set by a pack)
        self._pending: Any = None
        self._last_score: Any = None
        self._started = time.monotonic()

    def _find_server(self) -> str | None:
        """The server's endpoint from its ``server.json`` (``server_file``), read at each reconnection."""
        return current_endpoint(self.config.server_file) if self.config.server_file else None

    def request_stop(self, *_: Any) -> None:
        """Finish the current batch, checkpoint and leave (the SIGTERM/SIGINT handler)."""
        self._stop = True

    def run(self) -> dict:
        """Train until the curriculum is complete, ``max_batches`` or a stop request; returns a summary."""
        _configure_device(self.config.device, self.config.threads)
        try:
            self.open()
            while True:
                batch = self.next_batch()
                if batch is None:
                    break
                loss, outputs = self.model.train_on_batch(batch.x, batch.y, batch.mask)
                if self.after_step(batch, loss, outputs):
                    break
            self.finish()
        finally:
            self.close()
        return self.summary()

    # The phases of run(), which a pack (agents.pack_agent) drives for several networks at once.
    def open(self) -> None:
        """HELLO to the server, the model built (and its checkpoint loaded when the session resumes), tracking.

        Raises:
            CheckpointMismatch, ConfigError: this network's session is refused (exit status 2 alone).
        """
        cfg = self.config
        from . import build_model

        self._started = time.monotonic()
        self.client = TaskClient(cfg.server, cfg.name, curriculum=cfg.curriculum, info={"model": cfg.model},
                                 keys=cfg.keys, client_name=cfg.client_name, timeout_s=cfg.timeout_s,
                                 give_up=lab_gone, find_server=self._find_server)
        welcome = self.client.hello()
        try:
            resumed = self._resumes_checkpoint(welcome)
        except CheckpointMismatch:
            self.client.bye("refused: checkpoint of another session")
            raise
        self._task_spec = dict(welcome.task)
        try:
            self.model = build_model(cfg.model, welcome.task)
        except (TypeError, ValueError) as err:  # the [[agents]] entry's model keys: a restart changes nothing
            self.client.bye("refused: bad model spec")
            raise ConfigError(f"agent {cfg.name!r}: {err}") from None
        if resumed:
            self.model.load_checkpoint(cfg.checkpoint_path)
            log.info("%s: resumed from %s (server: stage %s, %d trials)", cfg.name, cfg.checkpoint_path,
                     welcome.stage, welcome.trials)
        self._start_tracking(welcome.run)
        self._stage = welcome.stage_index
        self._pending = None  # the batch whose RESULT is sent and whose SCORE has not been read yet
        self._last_score = None

    def next_batch(self) -> Any:
        """The next batch to train on, or None once the curriculum is complete."""
        if self.client.complete:
            return None
        batch = self.client.get()
        return None if self.client.complete else batch

    def after_step(self, batch: Any, loss: float, outputs: Any) -> bool:
        """Send the outputs of the step on ``batch``, read the previous SCORE, checkpoint when due; True when
        this network should stop (a stop request, ``max_batches``, or its lab is gone)."""
        cfg = self.config
        self._losses[batch.batch_id] = loss
        self.client.result(batch, outputs, wait=False)
        self.batches += 1
        if self._pending is not None:  # arrived while this batch trained: reading it costs nothing
            self._last_score = self._on_score(self.client.score(self._pending), self._pending) or self._last_score
        self._pending = batch
        stop = self._stop or lab_gone() or (cfg.max_batches is not None and self.batches >= cfg.max_batches)
        if stop or self._stage_changed or self.batches % cfg.checkpoint_every == 0:
            self._drain()  # so that a checkpoint never holds learning from trials the journal lacks
            self._before_save()
            self.model.save_checkpoint(cfg.checkpoint_path)
            self._stage_changed = False
        due_image = time.monotonic() - self._last_image > cfg.log_every_s
        if self.tracker is not None and self._last_score is not None and due_image:
            self._log_connectivity(self._last_score.trials, None)
        return stop

    def finish(self) -> None:
        """The last SCORE read, the final checkpoint and weight file, BYE."""
        cfg = self.config
        self._drain()
        self._before_save()
        self.model.save_checkpoint(cfg.checkpoint_path)
        final = self.model.save(Path(cfg.workdir) / "weights" / f"{cfg.name}.npz")
        self._log_connectivity(self._last_score.trials if self._last_score else 0, "final", final)
        self.client.bye("complete" if self.client.complete else "stopped")

    def close(self) -> None:
        """Close the connection and the tracker (after :meth:`finish`, or on an error)."""
        if self.client is not None:
            self.client.close()
        if self.tracker is not None:
            self.tracker.close()

    def summary(self) -> dict:
        score = self._last_score
        return {"agent": self.config.name, "batches": self.batches,
                "complete": bool(self.client is not None and self.client.complete),
                "trials": score.trials if score else None, "stage": score.stage if score else None,
                "wall_s": time.monotonic() - self._started}

    def _drain(self) -> None:
        if self._pending is not None:
            self._last_score = self._on_score(self.client.score(self._pending), self._pending) or self._last_score
            self._pending = None

    def _before_save(self) -> None:
        """Bring the model up to date before it is saved (a pack copies this network's slice back into it)."""
        if self.before_save is not None:
            self.before_save()

    def _on_score(self, score: Any, batch: Any) -> Any:
        """Log the batch's training loss at its trial count; note a stage change (checkpoint and connectivity
        image follow); None for a void batch."""
        loss = self._losses.pop(batch.batch_id, None)
        if score is None:  # void after a reconnect or expired: the server re-issues it
            return None
        if self.tracker is not None and loss is not None:
            self.tracker.log_metrics({"train/loss": loss}, step=score.trials)
        if score.stage_index != self._stage:
            self.stage_changes += 1
            self._stage_changed = True
            self._log_connectivity(score.trials, snapshot_tag(self._stage, batch.stage, score.trials))
            self._stage = score.stage_index
        return score

    def _resumes_checkpoint(self, welcome: Any) -> bool:
        """Whether to continue from the checkpoint: only into a session the server resumed with trials. A
        checkpoint offered to a new session (the journal was removed, or is another one) is refused
        (:class:`CheckpointMismatch`); a session with trials but no checkpoint gets a fresh network, with a
        warning."""
        path = self.config.checkpoint_path
        if path.exists() and not (welcome.resumed and welcome.trials > 0):
            raise CheckpointMismatch(
                f"agent {self.config.name!r}: {path} holds a network trained in an earlier session, but the server's "
                f"session of this agent is new (resumed: {welcome.resumed}, {welcome.trials} trials: its journal "
                "was removed, or is another one), whose trials to criterion would be a trained network's. Remove "
                "the checkpoint to start a fresh network, or run against the journal it belongs to.")
        if not path.exists() and welcome.trials > 0:
            log.warning("%s: no checkpoint at %s, but the server's session has %d trials (stage %s): a fresh "
                        "network joins it", self.config.name, path, welcome.trials, welcome.stage)
        return path.exists()

    # ------------------------------------------------------------------ tracking
    def _start_tracking(self, run: Mapping[str, Any] | None) -> None:
        if not run or not run.get("run_id"):
            return
        from .tracking import AgentTracker

        self.tracker = AgentTracker(dict(run), weights_dir=Path(self.config.workdir) / "weights")
        if not self._run_has_model_config():
            self.tracker.log_model_config(self.model.config())
            self.tracker.log_masks(self.model.masks())
            self.tracker.log_sweep(self.config.factors, self.config.group)

    def _run_has_model_config(self) -> bool:
        """True when the run from WELCOME already holds the model's settings (this agent restarted within one
        lab session); a new run (every lab session makes its own) lacks them, checkpoint or not."""
        tracker = self.tracker
        run = tracker.guard.run("read the run's params", lambda: tracker.client.get_run(tracker.run_id))
        return run is not None and any(key.startswith("model.") for key in run.data.params)

    def _log_connectivity(self, trials: int, tag: str | None, weights_path: Path | None = None) -> None:
        """Save the network as it is now (``weights/<agent>_<tag>.npz``, MLflow or not) and log it to MLflow."""
        self._before_save()
        if tag is not None and weights_path is None:
            weights_path = self.model.save(Path(self.config.workdir) / "weights" / f"{self.config.name}_{tag}.npz")
        if self.tracker is None:
            return
        self._last_image = time.monotonic()
        spec = self._task_spec or {}
        self.tracker.log_connectivity(str(weights_path) if weights_path else None, self.model.get_weights(),
                                      region_labels=self.model.region_labels, step=int(trials), tag=tag,
                                      input_names=spec.get("input_names"), output_names=spec.get("output_names"))
