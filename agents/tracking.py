"""MLflow provenance, agent side: constraint settings and learned connectivity.

The agent attaches to the child run the server created for it (the ``run`` dict of WELCOME) through an
``MlflowClient`` on the given tracking URI: never ``mlflow.start_run``, whose process-global active run
would not be the server's. The server writes the curriculum into the same run at the same time.

What an agent writes:

- params ``model.*`` and ``constraint.*`` (:meth:`AgentTracker.log_model_config`) and the config whole as
  ``model/config.json``; with them the run's one-line description (the ``mlflow.note.content`` tag): the
  curriculum line the server put in the ``run`` dict (its ``description``) and the network's constraints, e.g.
  ``"curriculum shaped (stages: easy → mixed → final); N_rec 50, Dale 0.8, no autapses, 2 regions"``
  (:meth:`AgentTracker.describe`);
- the masks as ``constraints/masks.npz`` (:meth:`AgentTracker.log_masks`), their densities as
  ``constraint.density.<name>`` params;
- at each stage change (graduation or regression) and at the end (:meth:`AgentTracker.log_connectivity`):
  the weights file unchanged under ``connectivity/<tag>/`` (loadable by ``agents.weights``; tag
  ``stage<i>_<name>_trial<N>`` (:func:`agents.weights.snapshot_tag`) or ``final``), ``W_rec.png`` (E then I, by region),
  ``eigenspectrum.png`` (effective ``W_rec`` with the unit circle), ``W_in.png`` and ``W_out.png``, the
  metric ``connectivity/spectral_radius``, and a step-keyed image ``W_rec`` (``MlflowClient.log_image(run_id,
  image, key="W_rec", step=trials)``) so the UI's step slider shows connectivity changing; for a network with
  trainable time constants (``train_tau``: the weights hold ``tau``, ``(N_rec,)`` ms) also ``tau.png`` (their
  histogram in steps, ``tau / dt``) and the metrics ``tau/mean_steps``, ``tau/median_steps``, ``tau/min_steps``,
  ``tau/max_steps`` at the snapshot's trial count (the metrics with every snapshot, tagged or not);
- training metrics (:meth:`AgentTracker.log_metrics`), buffered and written with ``log_batch``: the agent
  process logs each batch's loss as ``train/loss`` at the batch's trial count (the curriculum metrics' step).

Failure policy and timeouts are those of :mod:`shaping.tracking`: store calls run on a background thread,
the first store failure warns once and turns tracking off, and training never sees an exception. A slow store
falls behind on the figures first: params, metrics, every weights file and the final snapshot are written
ahead of the figures of earlier snapshots (and of the step images), which wait until nothing else does (at
most ``figure_backlog`` snapshots' worth; older ones are dropped). :meth:`AgentTracker.close` waits a bounded
time, then drops what is left and logs exactly what (count and which).
This module takes plain dicts and NumPy arrays; it does not import TensorFlow.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shaping import figures
from shaping.procs import AGENT_STOP_GRACE_S
from shaping.tracking.names import NOTE_TAG, describe_agent, describe_labels, flatten_params, now_ms, plain, safe_name

# MLflow's names through shaping.tracking, whose import sets MLflow's environment (telemetry off, short HTTP
# timeouts) before MLflow loads
from shaping.tracking.store import (
    BackgroundWriter,
    Metric,
    MlflowClient,
    StoreGuard,
    log_metrics_batched,
    log_params_batched,
)

logger = logging.getLogger(__name__)

#: Top-level config keys logged under ``constraint.``; every other key goes under ``model.``. A nested
#: ``constraints`` (or ``constraint``) section goes under ``constraint.`` with its own keys.
CONSTRAINT_KEYS = frozenset({
    # agents.rnn config() keys
    "dale_ratio", "autapses", "input_density", "rec_density", "output_density", "regions", "fixed",
    "explicit_masks", "W_in_train", "W_rec_train", "W_out_train", "b_rec_train", "b_out_train",
    "init_state_train",
    # other common spellings
    "connectivity", "density", "densities", "p_connect", "region_spec", "fixed_weights", "fixed_fraction",
    "fixed_fractions", "input_connectivity", "rec_connectivity", "output_connectivity",
})


# close() waits this long for the store: half the time a lab gives a stopped agent before SIGKILL, the rest
# being for its last batch, checkpoint and weight files.
CLOSE_TIMEOUT_S = AGENT_STOP_GRACE_S / 2
def split_config(config: Mapping[str, Any], constraint_keys: frozenset = CONSTRAINT_KEYS
                 ) -> tuple[dict, dict]:
    """``(model, constraint)`` parts of a model config (see :data:`CONSTRAINT_KEYS`)."""
    model: dict = {}
    constraint: dict = {}
    for key, value in plain(dict(config)).items():
        if key in ("constraints", "constraint") and isinstance(value, Mapping):
            constraint.update(value)
        elif key in constraint_keys:
            constraint[key] = value
        else:
            model[key] = value
    return model, constraint


class AgentTracker:
    """Logs an agent's model, constraints and connectivity into its child run.

    Args:
        run: the ``run`` dict from WELCOME (``tracking_uri``, ``run_id``, ...). None, or ``run_id`` None
            (the server could not reach the store), gives a tracker that does nothing.
        background: write on a background thread (default) or inline.
        flush_interval_s, flush_metrics: when buffered :meth:`log_metrics` values are written.
        weights_dir: where the agent saves its weight files (named in the warnings when MLflow misses some).
        figure_backlog: snapshots whose figures may wait for the store; beyond it the oldest are dropped.
    """

    def __init__(self, run: Mapping[str, Any] | None, background: bool = True, flush_interval_s: float = 10.0,
                 flush_metrics: int = 1000, weights_dir: str | os.PathLike | None = None, figure_backlog: int = 32):
        run = dict(run or {})
        self.run = run
        self.run_id: str | None = run.get("run_id")
        self.tracking_uri: str | None = run.get("tracking_uri")
        where = f"in {weights_dir}" if weights_dir is not None else "where the agent saves them"
        self.hint = (f"The agent's weight files, every snapshot's, are {where} (the dashboard and `skinnerbox "
                     "report` draw them); `skinnerbox sync` rebuilds the curriculum from the journal, not the "
                     "agent's metrics, connectivity or figures.")
        self.guard = StoreGuard(self.tracking_uri or "<none>", hint=f"Training goes on. {self.hint}")
        if not self.run_id or not self.tracking_uri:
            self.guard.enabled = False
            logger.info("AgentTracker: no MLflow run was given; nothing will be logged")
        self._client: MlflowClient | None = None
        self.writer = BackgroundWriter(self.guard, background=background, name="mlflow-agent",
                                       max_deferred=figure_backlog)
        self.flush_interval_s = float(flush_interval_s)
        self.flush_metrics = int(flush_metrics)
        self._metrics: list[Metric] = []
        self._last_flush = time.monotonic()
        self._dt: float | None = None  # ms, from log_model_config: the step that tau snapshots are counted in

    @property
    def enabled(self) -> bool:
        return self.guard.enabled

    @property
    def client(self) -> MlflowClient:
        """Made on first use, inside a guarded call (for sqlite, making it opens the file)."""
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    # ------------------------------------------------------------------ constraint settings
    def log_model_config(self, config: Mapping[str, Any], constraint_keys: frozenset = CONSTRAINT_KEYS) -> None:
        """Log the model's config as ``model.*`` / ``constraint.*`` params and as ``model/config.json``.

        Args:
            config: ``model.config()``: model kind, N_rec, tau (ms), dt (ms), transfer function, rec_noise,
                dale_ratio, autapses, densities, region spec, fixed-weight fractions, initializer,
                regularizers, loss, optimizer, learning rate, seed, ... Objects with ``get_config`` are
                logged through it, callables by name, arrays larger than 1000 values by shape.
            constraint_keys: which top-level keys are constraints.
        """
        if isinstance(config.get("dt"), (int, float)) and not isinstance(config.get("dt"), bool):
            self._dt = float(config["dt"])
        if not self.enabled:
            return
        model, constraint = split_config(config, constraint_keys)
        params = {**flatten_params(model, "model"), **flatten_params(constraint, "constraint")}
        whole = plain(dict(config))
        self.writer.submit("log model config", self._write_config, params, whole, self.describe(whole))

    def log_sweep(self, factors: Mapping[str, Any], group: str | None) -> None:
        """A swept agent's factors as params ``sweep.<key>`` and tags ``sweep.<key>`` (the MLflow UI groups and
        filters runs by either), and ``skinnerbox.group``: the ``[[agents]]`` entry it was expanded from."""
        if not self.enabled or not factors:
            return
        params = flatten_params(dict(factors), "sweep")
        tags = {**{k: str(v) for k, v in params.items()}, **({"skinnerbox.group": group} if group else {})}

        def write() -> None:
            log_params_batched(self.client, self.run_id, params)
            for key, value in tags.items():
                self.client.set_tag(self.run_id, key, value)

        self.writer.submit("log sweep factors", write)

    def describe(self, config: Mapping[str, Any]) -> str:
        """The run's one-line description: the curriculum line from the ``run`` dict (``description``, set by
        the server's :class:`shaping.tracking.CurriculumTracker`) and the constraints of ``config`` (a model
        config), e.g. ``"curriculum shaped (stages: easy → mixed → final); N_rec 50, Dale 0.8, no autapses, 2
        regions"`` (:func:`shaping.tracking.names.describe_agent`)."""
        curriculum = self.run.get("description")
        return describe_agent(curriculum if isinstance(curriculum, str) else None, config)

    def log_masks(self, masks: Mapping[str, np.ndarray]) -> None:
        """Log connectivity masks (e.g. ``input_connectivity``, ``rec_connectivity``, ``output_connectivity``,
        fixed-weight masks) as ``constraints/masks.npz`` and their densities as params."""
        if not self.enabled:
            return
        arrays = {safe_name(k): np.array(v, copy=True) for k, v in masks.items()}
        density = {f"constraint.density.{k}": f"{float(np.mean(v != 0)):.6g}" for k, v in arrays.items()
                   if v.size and not k.startswith("Dale_")}  # Dale_rec/Dale_out: diagonal sign matrices
        self.writer.submit("log masks", self._write_masks, arrays, density)

    # ------------------------------------------------------------------ learned connectivity
    def log_connectivity(self, weights_path: str | os.PathLike | None, weights: Mapping[str, Any],
                         dale_sign: Sequence[float] | None = None, region_labels: Sequence[Any] | None = None,
                         step: int = 0, tag: str | None = "final", input_names: Sequence[str] | None = None,
                         output_names: Sequence[str] | None = None, dt: float | None = None) -> None:
        """Log a connectivity snapshot: the weights file and its figures under ``connectivity/<tag>/``,
        the step-keyed ``W_rec`` image and ``connectivity/spectral_radius`` at ``step``. With ``tag`` None
        only the image and the metric are logged (cheap enough to call every few minutes).

        The file and arrays are copied before this returns, so the agent may overwrite them at once.

        Args:
            weights_path: the ``.npz`` the agent saved (``model.save``, which returns the path it wrote);
                None: the arrays are saved as ``weights.npz``. Ignored when ``tag`` is None.
            weights: ``model.get_weights()`` (PsychRNN keys ``W_in, W_rec, W_out, b_rec, b_out,
                init_state``, and ``Dale_rec``, ``dale_ratio``, connectivity masks when present).
            dale_sign: ``(N_rec,)`` +1 (E) / -1 (I); default from ``Dale_rec`` when ``dale_ratio`` is set.
            region_labels: ``(N_rec,)`` region per unit (``model.region_labels``), or None.
            step: trial count (the x of the UI's step slider).
            tag: folder name, e.g. ``"stage0_easy_trial384"`` (:func:`agents.weights.snapshot_tag`: the agent
                leaves stage 0, "easy", at trial 384) or ``"final"`` (its figures are not deferred); None: no folder,
                no file.
            input_names, output_names: channel names for the W_in / W_out maps.
            dt: ms, to count ``weights["tau"]`` in steps; default the ``dt`` of :meth:`log_model_config`'s config,
                else of the weights file's config (without any, the time constants are not logged).
        """
        if not self.enabled:
            return
        snapshot = {k: np.array(v, copy=True) for k, v in weights.items()}
        tau_steps = self._tau_steps(snapshot.get("tau"), dt, weights_path)
        tmp = tempfile.mkdtemp(prefix="skinnerbox-connectivity-")
        try:
            if tag is None:
                local = None
            elif weights_path is not None:
                local = Path(tmp, Path(weights_path).name)
                shutil.copyfile(weights_path, local)
            else:
                local = Path(tmp, "weights.npz")
                np.savez(local, **snapshot)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            logger.warning("AgentTracker.log_connectivity: cannot read %s (%s); snapshot skipped",
                           weights_path, err)
            return
        sign = None if dale_sign is None else np.asarray(dale_sign, dtype=float)
        labels = None if region_labels is None else list(region_labels)
        tag = None if tag is None else safe_name(tag)
        label = f"connectivity weights ({tag})" if tag else f"spectral radius (trial {step})"
        self.writer.submit(label, self._write_snapshot, tmp, local, snapshot, sign, labels, int(step), tag,
                           input_names, output_names, tau_steps)

    def _tau_steps(self, tau: Any, dt: float | None, weights_path: str | os.PathLike | None) -> np.ndarray | None:
        """A snapshot's time constants in steps (``tau / dt``), or None without per-unit ``tau`` or a known dt."""
        if tau is None or np.ndim(tau) != 1:
            return None
        dt = dt if dt is not None else self._dt
        if dt is None and weights_path is not None:
            try:
                from shaping.weights import load_weights

                dt = ((load_weights(weights_path)[1] or {}).get("config") or {}).get("dt")
            except (OSError, ValueError) as err:
                logger.info("AgentTracker: cannot read dt from %s (%s)", weights_path, err)
        if dt is None:
            logger.info("AgentTracker: the weights hold tau but dt is unknown; time constants not logged")
            return None
        return np.asarray(tau, dtype=float) / float(dt)

    # ------------------------------------------------------------------ metrics
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Buffer training metrics (e.g. ``{"train/loss": 0.1}``) at ``step`` (trial count)."""
        if not self.enabled:
            return
        ts = now_ms()
        self._metrics.extend(Metric(safe_name(k), float(v), ts, int(step)) for k, v in metrics.items())
        if len(self._metrics) >= self.flush_metrics or \
                time.monotonic() - self._last_flush >= self.flush_interval_s:
            self._flush_metrics()

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Write everything buffered and wait for the store; False on timeout."""
        self._flush_metrics()
        return self.writer.drain(timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        """Write everything buffered and wait for the store up to ``timeout_s`` (default
        :data:`CLOSE_TIMEOUT_S`); then drop what is left, so the process can exit. Whatever was dropped, now
        or earlier (``figure_backlog``), is logged as one warning saying what. Returns True when nothing was."""
        timeout_s = CLOSE_TIMEOUT_S if timeout_s is None else timeout_s
        self._flush_metrics()
        if self.writer.close(timeout_s):
            return True
        running = f" (still writing: {self.writer.running})" if self.writer.running else ""
        logger.warning("MLflow: %d write(s) to run %s were not made (the store could not keep up; the wait at "
                       "the end was %.0f s at most)%s: %s. %s", len(self.writer.dropped), self.run_id, timeout_s,
                       running, describe_labels(self.writer.dropped), self.hint)
        return False

    # ------------------------------------------------------------------ writing (background thread)
    def _flush_metrics(self) -> None:
        metrics, self._metrics = self._metrics, []
        self._last_flush = time.monotonic()
        if metrics and self.enabled:
            steps = sorted({m.step for m in metrics})
            self.writer.submit(f"metrics ({', '.join(sorted({m.key for m in metrics}))} at trials "
                               f"{steps[0]}-{steps[-1]})",
                               lambda: log_metrics_batched(self.client, self.run_id, metrics))

    def _write_config(self, params: dict, whole: dict, note: str) -> None:
        log_params_batched(self.client, self.run_id, params)
        self.client.log_dict(self.run_id, whole, "model/config.json")
        if note:
            self.client.set_tag(self.run_id, NOTE_TAG, note)

    def _write_masks(self, arrays: dict, density: dict) -> None:
        with tempfile.TemporaryDirectory(prefix="skinnerbox-masks-") as tmp:
            path = Path(tmp, "masks.npz")
            np.savez_compressed(path, **arrays)
            self.client.log_artifact(self.run_id, str(path), "constraints")
        log_params_batched(self.client, self.run_id, density)

    def _write_snapshot(self, tmp: str, local: Path | None, weights: dict, sign: np.ndarray | None,
                        labels: list | None, step: int, tag: str | None, input_names: Any, output_names: Any,
                        tau_steps: np.ndarray | None = None) -> None:
        """The cheap part of a snapshot, ahead of figures: its weights file and spectral radius; then its
        figures, queued behind everything else but the final snapshot's."""
        try:
            if local is not None:
                self.client.log_artifact(self.run_id, str(local), f"connectivity/{tag}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if sign is None:
            sign = figures.dale_sign_from_weights(weights)
        eff = figures.effective_weights(weights, sign)
        w_rec = eff.get("W_rec")
        if w_rec is not None:
            radius = float(np.max(np.abs(np.linalg.eigvals(w_rec)))) if w_rec.size else 0.0
            self.guard.run("connectivity metrics", log_metrics_batched, self.client, self.run_id,
                           [Metric("connectivity/spectral_radius", radius, now_ms(), step)])
        if tau_steps is not None and tau_steps.size:
            stats = {"mean": np.mean, "median": np.median, "min": np.min, "max": np.max}
            ts = now_ms()
            self.guard.run("time-constant metrics", log_metrics_batched, self.client, self.run_id,
                           [Metric(f"tau/{k}_steps", float(fn(tau_steps)), ts, step) for k, fn in stats.items()])
        label = f"connectivity figures ({tag})" if tag else f"W_rec image (trial {step})"
        queue = self.writer.submit if tag == "final" else self.writer.defer
        queue(label, self._write_figures, eff, sign, labels, step, tag, input_names, output_names, tau_steps)

    def _write_figures(self, eff: dict, sign: np.ndarray | None, labels: list | None, step: int, tag: str | None,
                       input_names: Any, output_names: Any, tau_steps: np.ndarray | None = None) -> None:
        """A snapshot's step-keyed ``W_rec`` image and, with a ``tag``, its figures in ``connectivity/<tag>/``."""
        run = self.guard.run
        client, run_id, folder = self.client, self.run_id, f"connectivity/{tag}"
        w_rec = eff.get("W_rec")
        if w_rec is not None:
            run("W_rec image", lambda: client.log_image(run_id, figures.w_rec_image(w_rec, sign, labels),
                                                        key="W_rec", step=step, synchronous=True))
        if tag is None:
            return
        if w_rec is not None:
            run("W_rec figure", lambda: client.log_figure(
                run_id, figures.w_rec_heatmap(w_rec, sign, labels, title=f"W_rec ({tag}, trial {step})"),
                f"{folder}/W_rec.png"))
            run("eigenspectrum figure", lambda: client.log_figure(
                run_id, figures.eigenspectrum(w_rec), f"{folder}/eigenspectrum.png"))
        if "W_in" in eff:
            run("W_in figure", lambda: client.log_figure(
                run_id, figures.w_in_map(eff["W_in"], sign, labels, input_names), f"{folder}/W_in.png"))
        if "W_out" in eff:
            run("W_out figure", lambda: client.log_figure(
                run_id, figures.w_out_map(eff["W_out"], sign, labels, output_names), f"{folder}/W_out.png"))
        if tau_steps is not None:
            run("tau figure", lambda: client.log_figure(
                run_id, figures.tau_histogram(tau_steps, title=f"Time constants ({tag}, trial {step})"),
                f"{folder}/tau.png"))
