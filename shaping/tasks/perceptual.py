"""Two-alternative perceptual discrimination (random-dot-motion style), with PsychRNN's parameterisation.

Two noisy input channels; during the stimulus one of them (``direction``) carries a mean ``1 + coherence``
and the other ``1``; the network reports which channel was stronger on two outputs (one-hot, high 1.0,
low 0.2) from 20 ms after stimulus offset. Loosely based on Britten et al. 1992, J Neurosci 12(12):4745
(https://www.jneurosci.org/content/12/12/4745), as parameterised in PsychRNN 1.0.0 (Ehrlich et al. 2021):
onset ~ U(0, T/2) ms, duration ~ U(T/8, 3T/8) ms, coherence drawn from {0.1, 0.3, 0.5, 0.7}, stimulus
noise 0.1 scaled as PsychRNN does (``sqrt(2 * 0.01 * sqrt(10) * sqrt(dt) * stim_noise^2)``).

Deviations from PsychRNN: its ``direction`` argument is honoured (PsychRNN ignores it); the side is drawn with
probability ``p_choice1`` (a knob, so bias correction can move it); coherence and noise are knobs.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import Task, TrialBuilder
from .common import draw_side, knob_samples, param_column, psychrnn_noise_sd, step_times, steps_from
from .knobs import Knob
from .registry import register

__all__ = ["PerceptualDiscrimination", "psychrnn_noise_sd"]


@register
class PerceptualDiscrimination(Task):
    """Two-alternative forced choice: which of two noisy channels has the higher mean?

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        coherence: PsychRNN's argument: fix every trial's coherence (same as setting the knob). As in PsychRNN,
            assigning ``task.coherence`` later changes the trials that follow (it sets the knob).
        direction: 0 or 1 fixes which channel is stronger on every trial (PsychRNN ignores this argument);
            ``task.direction`` is read at every batch.
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.
    """

    metadata = {
        "description": "2AFC perceptual decision: report the stronger of two noisy evidence streams",
        "paper_name": "Britten et al. 1992, The analysis of visual motion (PsychRNN parameterisation)",
        "paper_link": "https://www.jneurosci.org/content/12/12/4745",
        "tags": ["perceptual", "2AFC", "psychrnn"],
    }
    knobs = (
        Knob("coherence", 0.0, 2.0, [0.1, 0.3, 0.5, 0.7], "higher", "a.u.",
             doc="extra mean input on the correct channel"),
        Knob("stim_noise", 0.0, 2.0, 0.1, "lower", "a.u.", doc="input noise scale (PsychRNN's stim_noise)"),
        Knob("p_choice1", 0.0, 1.0, 0.5, None, "probability",
             doc="probability that channel 1 is the correct side (moved by bias correction)"),
    )
    input_names = ("evidence0", "evidence1")
    output_names = ("choice0", "choice1")
    side_knob = "p_choice1"
    evidence_knob = "coherence"

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 2000, N_batch: int = 128,
                 coherence: float | None = None, direction: int | None = None,
                 seed: int | np.random.Generator | None = None, **knobs: Any):
        if coherence is not None:
            knobs.setdefault("coherence", coherence)
        if direction not in (None, 0, 1):
            raise ValueError(f"PerceptualDiscrimination: direction must be 0, 1 or None, got {direction!r}")
        super().__init__(2, 2, dt, tau, T, N_batch, seed=seed, **knobs)
        self.direction = direction
        self.lo = 0.2
        self.hi = 1.0

    @property
    def coherence(self) -> float | None:
        """PsychRNN's attribute: the coherence of every trial, or None when each trial draws one (from the
        knob's list or range). Assigning a number sets the ``coherence`` knob; None restores its default
        (PsychRNN's draw from {0.1, 0.3, 0.5, 0.7})."""
        value = self.knob_values["coherence"]
        return value if np.isscalar(value) else None

    @coherence.setter
    def coherence(self, value: float | None) -> None:
        self.set_knobs(coherence=self.knob("coherence").default if value is None else value)

    def get_task_params(self) -> dict:
        """:meth:`Task.get_task_params` with PsychRNN's ``coherence`` (a property here, not in ``__dict__``)."""
        return {**super().get_task_params(), "coherence": self.coherence}

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        if self.direction is None:
            direction = draw_side(v["p_choice1"], rng)
        else:
            direction = np.full(n, self.direction, dtype=np.int64)
        return pd.DataFrame({
            "coherence": v["coherence"],
            "direction": direction,
            "stim_noise": v["stim_noise"],
            "onset_time": rng.random(n) * self.T / 2.0,
            "stim_duration": rng.random(n) * self.T / 4.0 + self.T / 8.0,
            "p_choice1": v["p_choice1"],
        })

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        direction = params["direction"].to_numpy(dtype=np.int64)
        b = TrialBuilder(self, len(params))
        b.add_noise(psychrnn_noise_sd(self.dt, params["stim_noise"].to_numpy(dtype=float)), rng)
        on, off = b.add_period("stimulus", params["stim_duration"], onset_ms=params["onset_time"])
        on, off = on[:, None], off[:, None]  # (n, 1), against b.t (N_steps,)
        stimulus = (b.t > on) & (b.t < off)  # PsychRNN's strict inequalities, here and below
        b.add_input(direction, np.float32(1) + params["coherence"].to_numpy(dtype=np.float32), stimulus)
        b.add_input(1 - direction, 1.0, stimulus)
        b.set_choice_target(direction, b.t > off + 20, self.hi, self.lo)
        b.set_mask(1.0, b.t >= off)
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t = psychrnn_noise_sd(self.dt, params["stim_noise"]) * self.rng.standard_normal(self.N_in)
        y_t = np.zeros(self.N_out)
        mask_t = np.ones(self.N_out)
        onset, dur, d = params["onset_time"], params["stim_duration"], int(params["direction"])
        if onset < t < onset + dur:
            x_t[d] += 1 + params["coherence"]
            x_t[1 - d] += 1
        if t > onset + dur + 20:
            y_t[d] = self.hi
            y_t[1 - d] = self.lo
        if t < onset + dur:
            mask_t = np.zeros(self.N_out)
        return x_t, y_t, mask_t

    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        return param_column(params, "direction", self, np.int64)

    def response_window(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The masked steps of :meth:`build_trials` (``t >= stimulus offset`` to the end), from the params."""
        offset = params["onset_time"].to_numpy(dtype=float) + params["stim_duration"].to_numpy(dtype=float)
        return steps_from(step_times(self), offset)
