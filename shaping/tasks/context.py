"""Context-dependent decision: two noisy evidence streams, a cue says which one to report.

Each trial shows two signed, noisy evidence streams at once (motion and colour); a context input says which
modality is relevant, and the network reports the sign of that one while ignoring the other, which agrees
(congruent) or disagrees with it on half the trials. Mante, Sussillo, Shenoy & Newsome 2013, Nature 503:78
(https://www.nature.com/articles/nature12742): two sensory inputs whose mean is the signed coherence, two
context inputs on throughout the trial. Timing as NeuroGym's ``ContextDecisionMaking`` (fixation 300,
stimulus 750 ms); coherence defaults {0.05, 0.15, 0.5} as there.

Deviations: a fixation input (1 until the decision period) tells the network when to answer, and two
one-hot outputs (1.0 / 0.2, PsychRNN style) replace Mante's single signed output; a fixed 300 ms delay
precedes a 300 ms decision period; noise ``stim_noise * sqrt(2 tau / dt)`` on every input (Yang et al. 2019).
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
    decision_window,
    draw_side,
    fixation_step,
    input_noise_sd,
    knob_samples,
    param_column,
    side_probability_knob,
)
from .knobs import Knob
from .registry import register

__all__ = ["ContextDependentDM"]

_MOTION, _COLOR = 1, 2  # input channels of the two modalities


@register
class ContextDependentDM(Task):
    """Report the sign of the cued modality's evidence (choice 1: positive, choice 0: negative).

    Inputs: ``fixation``, ``motion``, ``color`` (mean ``+-coherence`` during the stimulus, plus noise),
    ``context_motion``, ``context_color`` (1 on the cued modality until the end of the decision period).
    Outputs: ``choice0``, ``choice1``, one-hot 1.0 / 0.2 during the decision period (mask 1 there).

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        timing: period durations in ms overriding ``fixation`` (300), ``stimulus`` (750), ``delay`` (300),
            ``decision`` (300) key by key.
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.

    Trial params: ``context`` (0 motion, 1 colour), ``side_motion``/``side_color`` (1: positive evidence),
    ``choice``, ``coherence_relevant``, ``congruent``, period bounds in ms and the knob values.
    """

    metadata = {
        "description": "context-dependent integration of one of two noisy evidence streams",
        "paper_name": "Mante, Sussillo, Shenoy & Newsome 2013, Context-dependent computation by recurrent "
                      "dynamics in prefrontal cortex",
        "paper_link": "https://www.nature.com/articles/nature12742",
        "tags": ["perceptual", "context dependent", "2AFC"],
    }
    knobs = (
        Knob("coherence_motion", 0.0, 1.0, [0.05, 0.15, 0.5], "higher", "fraction",
             doc="strength of the motion evidence (its input mean is +-coherence)"),
        Knob("coherence_color", 0.0, 1.0, [0.05, 0.15, 0.5], "higher", "fraction",
             doc="strength of the colour evidence (its input mean is +-coherence)"),
        Knob("stim_noise", 0.0, 2.0, 0.2, "lower", "a.u.", doc="input noise, scaled by sqrt(2 tau / dt)"),
        side_probability_knob("probability that the cued modality's evidence is positive (choice 1)"),
    )
    input_names = ("fixation", "motion", "color", "context_motion", "context_color")
    output_names = ("choice0", "choice1")
    side_knob = "p_choice1"
    evidence_knob = "coherence_motion"
    # each modality's evidence has its own sign: in the other context it is not the choice's
    evidence_side = {"coherence_motion": "side_motion", "coherence_color": "side_color"}
    psychometric_by = "context"
    psychometric_labels = {0: "motion context", 1: "colour context"}
    default_timing = {"fixation": 300.0, "stimulus": 750.0, "delay": 300.0, "decision": 300.0}

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 1700, N_batch: int = 128,
                 timing: Mapping[str, float] | None = None, seed: int | np.random.Generator | None = None,
                 **knobs: Any):
        super().__init__(5, 2, dt, tau, T, N_batch, seed=seed, **knobs)
        self.timing = check_timing("ContextDependentDM", self.default_timing, timing, self.dt)
        self.lo = LO
        self.hi = HI

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        context = rng.integers(0, 2, n)
        choice = draw_side(v["p_choice1"], rng)
        other = rng.integers(0, 2, n)
        side_motion = np.where(context == 0, choice, other)
        side_color = np.where(context == 1, choice, other)
        tm = self.timing
        stim_on = np.full(n, tm["fixation"])
        stim_off = stim_on + tm["stimulus"]
        decision_on = stim_off + tm["delay"]
        decision_off = decision_on + tm["decision"]
        check_fits(self, decision_off, knobs)
        return pd.DataFrame({
            "context": context, "side_motion": side_motion, "side_color": side_color, "choice": choice,
            "coherence_motion": v["coherence_motion"], "coherence_color": v["coherence_color"],
            "coherence_relevant": np.where(context == 0, v["coherence_motion"], v["coherence_color"]),
            "congruent": side_motion == side_color,
            "stim_noise": v["stim_noise"], "p_choice1": v["p_choice1"],
            "stim_on_ms": stim_on, "stim_off_ms": stim_off,
            "decision_on_ms": decision_on, "decision_off_ms": decision_off,
        })

    @staticmethod
    def _evidence(params: Mapping[str, Any]) -> tuple[Any, Any]:
        """Signed input means of the motion and colour streams."""
        signed = [(2 * np.asarray(params[f"side_{m}"]) - 1) * np.asarray(params[f"coherence_{m}"], dtype=float)
                  for m in ("motion", "color")]
        return signed[0], signed[1]

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = TrialBuilder(self, len(params))
        b.add_noise(input_noise_sd(self.dt, self.tau, params["stim_noise"].to_numpy()), rng)
        b.add_period("stimulus", onset_ms=params["stim_on_ms"], offset_ms=params["stim_off_ms"])
        b.add_period("decision", onset_ms=params["decision_on_ms"], offset_ms=params["decision_off_ms"])
        b.add_input("fixation", 1.0, b.before("decision"))
        b.add_input(["motion", "color"], np.stack(self._evidence(params), axis=1), "stimulus")
        b.add_input(["context_motion", "context_color"], np.eye(2)[params["context"]], b.until("decision"))
        b.set_choice_target(params["choice"], "decision", self.hi, self.lo)
        b.set_mask(1.0, "decision")
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t, y_t, mask_t = fixation_step(self, t, params)
        if params["stim_on_ms"] <= t < params["stim_off_ms"]:
            motion, color = self._evidence(params)
            x_t[_MOTION] += motion
            x_t[_COLOR] += color
        if t < params["decision_off_ms"]:
            x_t[3 + int(params["context"])] += 1.0
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
