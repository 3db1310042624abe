"""Interval timing: measure the interval between two flashes, then reproduce it.

Two brief flashes (Ready, Set) are separated by a sample interval; the network must respond (drive its
``go`` output up) once the same interval, times a ``gain``, has elapsed after Set. Jazayeri & Shadlen 2010,
Nat Neurosci 13:1020 (https://www.nature.com/articles/nn.2590): sample intervals drawn uniformly from a prior
(default: their short prior, 494-847 ms). Gain as Remington et al. 2018 (Neuron 98:1005); the production
window (twice the target interval after Set) and the tolerance ``tolerance * target + 25 ms`` as NeuroGym's
``ReadySetGo``.

Scoring: the produced interval is the time from Set onset to the first step of the response window where the
``go`` output reaches 0.5 (``response_threshold``), both taken on the step grid (the first step at or after
each event: what the network sees), and it is compared with the target interval on the same grid. The trial
is ``correct`` when it lies within the tolerance of the target (``choice`` 1, the target), an ``error`` when
it is early (``choice`` 0) or late (``choice`` 2), and ``no_response`` when the output never reaches 0.5 in
the window (``choice`` -1).
``score`` adds the produced interval as a ``produced_ms`` column (NaN without a response).

Deviations: no fixation input and no input noise; the target output is a step (0 from Set to the target
time, 1.0 after) rather than NeuroGym's single-step pulse, so that a threshold crossing is well defined.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import Task, TrialBuilder
from .common import check_fits, knob_samples, param_column, step_times
from .knobs import Knob
from .registry import register

__all__ = ["ReadySetGo"]


@register
class ReadySetGo(Task):
    """Ready-Set-Go interval reproduction: respond ``gain`` x the Ready-Set interval after Set.

    Inputs: ``ready``, ``set`` (1 during each ``flash_ms`` flash). Output: ``go``; the target is 0 from Set
    onset to the target time and 1.0 from then to the end of the response window (Set + 2 x target); the mask
    is 1 over that window.

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        gain: produced interval / sample interval (Remington et al. 2018 used 1 and 1.5).
        flash_ms: duration of the Ready and Set flashes (ms).
        fixation_ms: time before the Ready flash (ms).
        tolerance_floor_ms: constant part of the tolerance (ms); the tolerance is
            ``tolerance * target + tolerance_floor_ms``.
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.
    """

    metadata = {
        "description": "measure the Ready-Set interval and reproduce it after Set",
        "paper_name": "Jazayeri & Shadlen 2010, Temporal context calibrates interval timing",
        "paper_link": "https://www.nature.com/articles/nn.2590",
        "tags": ["timing", "interval reproduction"],
    }
    knobs = (
        Knob("interval_ms", 100.0, 1200.0, {"uniform": [494.0, 847.0]}, "lower", "ms",
             doc="Ready-Set sample interval (default: Jazayeri & Shadlen's short prior)"),
        Knob("tolerance", 0.02, 1.0, 0.2, "higher", "fraction",
             doc="a response within tolerance * target + tolerance_floor_ms of the target is correct"),
    )
    input_names = ("ready", "set")
    output_names = ("go",)
    response_threshold = 0.5
    side_knob = None
    evidence_knob = "interval_ms"
    EARLY, ON_TIME, LATE = 0, 1, 2

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 3700, N_batch: int = 128,
                 gain: float = 1.0, flash_ms: float = 50.0, fixation_ms: float = 100.0,
                 tolerance_floor_ms: float = 25.0, seed: int | np.random.Generator | None = None, **knobs: Any):
        super().__init__(2, 1, dt, tau, T, N_batch, seed=seed, **knobs)
        checks = (("gain", gain, True), ("flash_ms", flash_ms, True), ("fixation_ms", fixation_ms, False),
                  ("tolerance_floor_ms", tolerance_floor_ms, False))
        for arg, val, strict in checks:
            if not np.isscalar(val) or not (float(val) > 0 if strict else float(val) >= 0):
                raise ValueError(f"ReadySetGo: {arg} must be a number {'>' if strict else '>='} 0, got {val!r}")
        if flash_ms < dt:
            raise ValueError(f"ReadySetGo: flash_ms={flash_ms!r} must be >= dt={dt!r} ms so every flash "
                             f"covers a time step")
        self.gain = float(gain)
        self.flash_ms = float(flash_ms)
        self.fixation_ms = float(fixation_ms)
        self.tolerance_floor_ms = float(tolerance_floor_ms)

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        interval = v["interval_ms"]
        production = self.gain * interval
        ready_on = np.full(n, self.fixation_ms)
        set_on = ready_on + interval
        response_off = set_on + 2 * production
        check_fits(self, response_off, knobs)
        return pd.DataFrame({
            "interval_ms": interval, "production_ms": production, "tolerance": v["tolerance"],
            "ready_on_ms": ready_on, "set_on_ms": set_on, "go_ms": set_on + production,
            "response_off_ms": response_off,
        })

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = TrialBuilder(self, len(params))
        b.add_period("ready", self.flash_ms, onset_ms=params["ready_on_ms"])
        b.add_period("set", self.flash_ms, onset_ms=params["set_on_ms"])
        b.add_period("production", onset_ms=params["set_on_ms"], offset_ms=params["response_off_ms"])
        b.add_period("go", onset_ms=params["go_ms"], offset_ms=params["response_off_ms"])
        b.add_input("ready", 1.0, "ready")
        b.add_input("set", 1.0, "set")
        b.set_groundtruth("go", 1.0, "go")  # 0 before the target time, 1 from it on
        b.set_mask(1.0, "production")
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t = np.zeros(self.N_in)
        y_t = np.zeros(self.N_out)
        mask_t = np.zeros(self.N_out)
        if params["ready_on_ms"] <= t < params["ready_on_ms"] + self.flash_ms:
            x_t[0] = 1.0
        if params["set_on_ms"] <= t < params["set_on_ms"] + self.flash_ms:
            x_t[1] = 1.0
        if params["go_ms"] <= t < params["response_off_ms"]:
            y_t[0] = 1.0
        if params["set_on_ms"] <= t < params["response_off_ms"]:
            mask_t[0] = 1.0
        return x_t, y_t, mask_t

    # ------------------------------------------------------------------ scoring
    def _on_grid(self, ms: np.ndarray) -> np.ndarray:
        """The time of the first step at or after ``ms``: when an event at ``ms`` reaches the network."""
        return np.ceil(np.asarray(ms, dtype=float) / self.dt - 1e-9) * self.dt

    def produced_ms(self, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        """``(N_batch,)`` ms from the first step of Set to the first masked step where ``go`` reaches the
        threshold (NaN when it never does). Both are on the step grid, so the target output's own crossing
        gives the on-grid target interval (see :meth:`target_ms`) exactly."""
        t = step_times(self)
        above = (np.asarray(y_hat)[:, :, 0] >= self.response_threshold) & (np.asarray(mask)[:, :, 0] > 0)
        first = np.argmax(above, axis=1)
        set_on = self._on_grid(param_column(params, "set_on_ms", self, float))
        return np.where(above.any(axis=1), t[first] - set_on, np.nan)

    def target_ms(self, params: pd.DataFrame) -> np.ndarray:
        """``(N_batch,)`` the target interval as the network sees it: from the first step of Set to the first
        step of the target output (``production_ms`` rounded to the step grid, off by less than ``dt``)."""
        return self._on_grid(param_column(params, "go_ms", self, float)) - \
            self._on_grid(param_column(params, "set_on_ms", self, float))

    def tolerance_ms(self, params: pd.DataFrame) -> np.ndarray:
        """``(N_batch,)`` half-width of the correct window around the target interval (ms)."""
        target = param_column(params, "production_ms", self, float)
        return param_column(params, "tolerance", self, float) * target + self.tolerance_floor_ms

    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        return np.full(len(y), self.ON_TIME, dtype=np.int64)

    def choice_from_output(self, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        produced = self.produced_ms(y_hat, mask, params)
        error = produced - self.target_ms(params)
        tol = self.tolerance_ms(params)
        with np.errstate(invalid="ignore"):
            choice = np.where(error < -tol, self.EARLY, np.where(error > tol, self.LATE, self.ON_TIME))
        return np.where(np.isnan(produced), -1, choice)

    def accuracy_function(self, correct_output: np.ndarray, test_output: np.ndarray,
                          output_mask: np.ndarray) -> float:
        """PsychRNN API from arrays alone: target and produced intervals are the first threshold crossings of
        ``correct_output`` and ``test_output`` after the response window opens; the tolerance is the task's
        current ``tolerance`` knob (its smallest value when it is a list or range), not each trial's."""
        t = step_times(self)
        opened = np.asarray(output_mask)[:, :, 0] > 0
        start = t[np.argmax(opened, axis=1)]

        def crossing(out: np.ndarray) -> np.ndarray:
            above = (np.asarray(out)[:, :, 0] >= self.response_threshold) & opened
            return np.where(above.any(axis=1), t[np.argmax(above, axis=1)] - start, np.nan)

        target, produced = crossing(correct_output), crossing(test_output)
        knob = self.knob_values["tolerance"]
        tolerance = min(knob["uniform"]) if isinstance(knob, dict) else float(np.min(knob))
        with np.errstate(invalid="ignore"):
            ok = np.abs(produced - target) <= tolerance * target + self.tolerance_floor_ms
        return float(np.mean(ok))

    def score(self, y: np.ndarray, y_hat: np.ndarray, mask: np.ndarray,
              trial_params: pd.DataFrame | None = None) -> pd.DataFrame:
        """:meth:`Task.score` plus ``produced_ms`` (the produced interval, NaN without a response)."""
        scored = super().score(y, y_hat, mask, trial_params)
        params = scored.drop(columns=["trial", "outcome", "choice", "target"])
        scored.insert(4, "produced_ms", self.produced_ms(np.asarray(y_hat, np.float32),
                                                         np.asarray(mask, np.float32), params))
        return scored
