"""Categorisation: report which arbitrary category of a ring a stimulus direction falls in.

A Gaussian bump of activity on ``N_in`` ring channels encodes a direction; the ring is cut into ``N_out``
equal categories, and the network drives the output of the stimulus's category. Freedman & Assad 2006,
Nature 443:85 (https://www.nature.com/articles/nature05078), with PsychRNN 1.0.0's exact parameterisation
(Ehrlich et al. 2021): direction ~ U(0, 2 pi), category ``int(angle / (2 pi / N_out))``, onset 200 ms,
input 1000 ms, output 800 ms, channel k at ``linspace(0, 2 pi, N_in)[k]`` (both ends of the ring get a
channel, as in PsychRNN) carrying a wrapped normal pdf with scale 1 rad, noise ``stim_noise / (2 dt)``.

Deviations: noise is drawn from the batch's generator; knobs set the distance of stimuli from the category
boundaries (``boundary_margin``; 0 is PsychRNN's uniform draw), the noise and the frequency of category 1;
``T`` shorter than the 2000 ms trial is refused rather than silently truncating the response period.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import Task, TrialBuilder
from .common import knob_samples, param_column, side_probability_knob, step_times, steps_from
from .knobs import Knob
from .registry import register

__all__ = ["MatchToCategory"]


@register
class MatchToCategory(Task):
    """Which of ``N_out`` ring categories holds the stimulus direction?

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms, >= 2000).
        N_batch: trials per batch.
        N_in: ring channels (PsychRNN default 16). N_out: categories (PsychRNN default 2).
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.

    Trial params keep PsychRNN's keys (``angle`` rad, ``category``, ``onset_time``, ``input_dur``,
    ``output_dur`` ms, ``stim_noise``) plus the knob values.
    """

    metadata = {
        "description": "categorise a direction on a ring by arbitrary category boundaries",
        "paper_name": "Freedman & Assad 2006, Experience-dependent representation of visual categories in "
                      "parietal cortex (PsychRNN parameterisation)",
        "paper_link": "https://www.nature.com/articles/nature05078",
        "tags": ["categorisation", "ring", "psychrnn"],
    }
    knobs = (
        Knob("boundary_margin", 0.0, 0.9, 0.0, "higher", "fraction",
             doc="stimuli keep at least this fraction of half a category's width from its boundaries"),
        Knob("stim_noise", 0.0, 100.0, 0.1, "lower", "a.u.",
             doc="input noise scale (sd = stim_noise / (2 dt))"),
        side_probability_knob("P(category 1) = 2 p_choice1 / N_out (0.5: uniform; with 2 categories, "
                              "P(category 1))"),
    )
    side_knob = "p_choice1"
    evidence_knob = "boundary_margin"
    onset_ms = 200.0
    input_ms = 1000.0
    output_ms = 800.0

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 2000, N_batch: int = 128,
                 N_in: int = 16, N_out: int = 2, seed: int | np.random.Generator | None = None, **knobs: Any):
        super().__init__(N_in, N_out, dt, tau, T, N_batch, seed=seed, **knobs)
        if N_out < 2:
            raise ValueError(f"MatchToCategory: N_out (categories) must be >= 2, got {N_out!r}")
        trial_ms = self.onset_ms + self.input_ms + self.output_ms
        if T < trial_ms:
            raise ValueError(f"MatchToCategory: T must be >= {trial_ms:g} ms (onset 200 + input 1000 + "
                             f"output 800), got {T!r}")
        self.input_names = tuple(f"direction{k}" for k in range(self.N_in))
        self.output_names = tuple(f"category{k}" for k in range(self.N_out))
        # PsychRNN places N_in channels with linspace(0, 2 pi, N_in): the first and last share angle 0.
        self.channel_angles = np.linspace(0, 2 * np.pi, self.N_in)

    def gaussian_input(self, angle: Any) -> np.ndarray:
        """``(n, N_in)`` float64: wrapped normal pdf (scale 1 rad) of each channel's angle around ``angle``."""
        eff = self.channel_angles[None, :] - np.asarray(angle, dtype=float).reshape(-1, 1)
        eff = np.where(eff > np.pi, eff - 2 * np.pi, np.where(eff < -np.pi, eff + 2 * np.pi, eff))
        return np.exp(-eff ** 2 / 2.0) / np.sqrt(2 * np.pi)

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        k = self.N_out
        # P(category 1) = 2 p / k; the other categories share the rest equally (p = 0.5: uniform).
        p1 = 2.0 * v["p_choice1"] / k
        u = rng.random(n)
        other = np.minimum((u - p1) / np.maximum(1.0 - p1, 1e-12) * (k - 1), k - 2).astype(np.int64)
        cat = np.where(u < p1, 1, np.where(other >= 1, other + 1, 0))
        width = 2 * np.pi / k
        # Uniform within the category's central (1 - margin) part; margin 0 gives PsychRNN's U(0, 2 pi).
        angle = (cat + 0.5) * width + (1.0 - v["boundary_margin"]) * (width / 2) * rng.uniform(-1, 1, n)
        angle = np.mod(angle, 2 * np.pi)
        category = np.minimum((angle / width).astype(np.int64), k - 1)  # PsychRNN: int(angle / width)
        return pd.DataFrame({
            "angle": angle, "category": category,
            "onset_time": np.full(n, self.onset_ms), "input_dur": np.full(n, self.input_ms),
            "output_dur": np.full(n, self.output_ms),
            "stim_noise": v["stim_noise"], "boundary_margin": v["boundary_margin"], "p_choice1": v["p_choice1"],
        })

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = TrialBuilder(self, len(params))
        b.add_noise((1.0 / (2 * self.dt)) * params["stim_noise"].to_numpy(dtype=float), rng)
        b.add_period("stimulus", params["input_dur"], onset_ms=params["onset_time"])
        b.add_period("response", params["output_dur"])
        b.add_input(self.channel_names("in"), self.gaussian_input(params["angle"]), "stimulus")
        b.set_choice_target(params["category"], "response", hi=1.0, lo=0.0)
        b.set_mask(1.0, "response")
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t = (1.0 / (2 * self.dt)) * params["stim_noise"] * self.rng.standard_normal(self.N_in)
        y_t = np.zeros(self.N_out)
        mask_t = np.zeros(self.N_out)
        onset, input_dur, output_dur = params["onset_time"], params["input_dur"], params["output_dur"]
        if onset <= t < onset + input_dur:
            x_t += self.gaussian_input(params["angle"])[0]
        if onset + input_dur <= t < onset + input_dur + output_dur:
            y_t[int(params["category"])] += 1.0
            mask_t = np.ones(self.N_out)
        return x_t, y_t, mask_t

    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        return param_column(params, "category", self, np.int64)

    def response_window(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The masked steps: the response period after the stimulus, from the params (``Task.response_window``)."""
        onset = params["onset_time"].to_numpy(dtype=float) + params["input_dur"].to_numpy(dtype=float)
        return steps_from(step_times(self), onset, onset + params["output_dur"].to_numpy(dtype=float))
