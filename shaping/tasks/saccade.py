"""Pro/anti saccades: look toward a stimulus, or away from it, as a rule cue says.

A rule input (pro or anti) is on throughout the trial; a stimulus appears at one of ``dim_ring`` directions;
after an optional memory delay the fixation input turns off and the network must respond at the stimulus's
direction (pro) or the opposite one (anti). Munoz & Everling 2004, Nat Rev Neurosci 5:218
(https://www.nature.com/articles/nrn1345); inputs, ring code and rule cue as Yang et al. 2019
(https://doi.org/10.1038/s41593-018-0310-2) and NeuroGym's ``AntiReach`` (channel k carries
0.5 + 0.5 cos(theta_k - theta) during the stimulus).

Deviations: one output per direction, one-hot 1.0 / 0.2 during the decision period (Yang et al.: a bump on
an output ring plus a fixation output); fixation 200, stimulus 500, decision 300 ms; noise
``stim_noise * sqrt(2 tau / dt)`` on every input, the rule cue included.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import Task, TrialBuilder
from .common import (
    HI,
    LO,
    check_fits,
    check_timing,
    cos_tuning,
    decision_window,
    fixation_step,
    input_noise_sd,
    knob_samples,
    param_column,
    ring_angles,
)
from .knobs import Knob
from .registry import register

__all__ = ["ProAntiSaccade"]


@register
class ProAntiSaccade(Task):
    """Respond at the stimulus direction (pro) or the opposite one (anti), as the rule cue says.

    Inputs: ``fixation`` (1 until the decision period), ``rule_pro``, ``rule_anti`` (1 until the end of the
    decision period), ``direction0..`` (ring code of the stimulus). Outputs: ``response0..`` (one per
    direction; one-hot 1.0 / 0.2 during the decision period, where the mask is 1).

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        dim_ring: number of directions (even, >= 2).
        timing: ``fixation`` (200), ``stimulus`` (500), ``decision`` (300) durations in ms, key by key; the
            delay is the ``delay_ms`` knob.
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.
    """

    metadata = {
        "description": "pro/anti saccades on a ring, rule cued, with an optional memory delay",
        "paper_name": "Munoz & Everling 2004, Look away: the anti-saccade task and the voluntary control of "
                      "eye movement",
        "paper_link": "https://www.nature.com/articles/nrn1345",
        "tags": ["rule", "response inhibition", "ring", "working memory"],
    }
    knobs = (
        Knob("p_anti", 0.0, 0.5, 0.5, "lower", "probability",
             doc="fraction of anti trials (0: pro trials only, the usual first shaping stage)"),
        Knob("delay_ms", 0.0, 1000.0, 0.0, "lower", "ms", doc="memory delay between stimulus and response"),
        Knob("stim_noise", 0.0, 2.0, 0.1, "lower", "a.u.", doc="input noise, scaled by sqrt(2 tau / dt)"),
    )
    side_knob = None
    evidence_knob = None
    default_timing = {"fixation": 200.0, "stimulus": 500.0, "decision": 300.0}

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 2000, N_batch: int = 128,
                 dim_ring: int = 8, timing: Mapping[str, float] | None = None,
                 seed: int | np.random.Generator | None = None, **knobs: Any):
        if not isinstance(dim_ring, (int, np.integer)) or dim_ring < 2 or dim_ring % 2:
            raise ValueError(f"ProAntiSaccade: dim_ring must be an even integer >= 2, got {dim_ring!r}")
        self.dim_ring = int(dim_ring)
        self.input_names = ("fixation", "rule_pro", "rule_anti") + tuple(
            f"direction{k}" for k in range(self.dim_ring))
        self.output_names = tuple(f"response{k}" for k in range(self.dim_ring))
        super().__init__(3 + self.dim_ring, self.dim_ring, dt, tau, T, N_batch, seed=seed, **knobs)
        self.timing = check_timing("ProAntiSaccade", self.default_timing, timing, self.dt)
        self.lo = LO
        self.hi = HI

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        anti = (rng.random(n) < v["p_anti"]).astype(np.int64)
        stim = rng.integers(0, self.dim_ring, n)
        choice = (stim + anti * (self.dim_ring // 2)) % self.dim_ring
        tm = self.timing
        stim_on = np.full(n, tm["fixation"])
        stim_off = stim_on + tm["stimulus"]
        decision_on = stim_off + v["delay_ms"]
        decision_off = decision_on + tm["decision"]
        check_fits(self, decision_off, knobs)
        return pd.DataFrame({
            "stim": stim, "anti": anti, "choice": choice, "stim_theta": ring_angles(self.dim_ring)[stim],
            "p_anti": v["p_anti"], "delay_ms": v["delay_ms"], "stim_noise": v["stim_noise"],
            "stim_on_ms": stim_on, "stim_off_ms": stim_off,
            "decision_on_ms": decision_on, "decision_off_ms": decision_off,
        })

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = TrialBuilder(self, len(params))
        b.add_noise(input_noise_sd(self.dt, self.tau, params["stim_noise"].to_numpy()), rng)
        b.add_period("stimulus", onset_ms=params["stim_on_ms"], offset_ms=params["stim_off_ms"])
        b.add_period("decision", onset_ms=params["decision_on_ms"], offset_ms=params["decision_off_ms"])
        b.add_input("fixation", 1.0, b.before("decision"))
        b.add_input(["rule_pro", "rule_anti"], np.eye(2)[params["anti"]], b.until("decision"))
        b.add_input(self.input_names[3:], cos_tuning(params["stim_theta"], self.dim_ring), "stimulus")
        b.set_choice_target(params["choice"], "decision", self.hi, self.lo)
        b.set_mask(1.0, "decision")
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t, y_t, mask_t = fixation_step(self, t, params)
        if t < params["decision_off_ms"]:
            x_t[1 + int(params["anti"])] += 1.0
        if params["stim_on_ms"] <= t < params["stim_off_ms"]:
            x_t[3:] += cos_tuning(params["stim_theta"], self.dim_ring)[0]
        if params["decision_on_ms"] <= t < params["decision_off_ms"]:
            y_t[:] = self.lo
            y_t[int(params["choice"])] = self.hi
            mask_t[:] = 1.0
        return x_t, y_t, mask_t

    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        return param_column(params, "choice", self, np.int64)

    def response_window(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The masked steps: the decision period, from the params (see ``Task.response_window``)."""
        return decision_window(self, params)
