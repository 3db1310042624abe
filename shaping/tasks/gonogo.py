"""Go/no-go: respond after a go cue, withhold after a no-go cue.

A cue on one of two input channels (go or no-go) is shown, a delay follows, and when the fixation input
turns off the network must drive its single output up on go trials and keep it down on no-go trials.
Withholding on a no-go trial is the correct answer: its target choice is -1 and a ``no_response`` there
scores ``correct``; on a go trial it is a miss (``no_response``). Timing after NeuroGym's ``GoNogo``
(stimulus 500, delay 500 ms), which cites Zhu et al. 2019, eLife 8:e43191
(https://elifesciences.org/articles/43191).

Deviations: a 100 ms fixation period precedes the cue and the decision period is 400 ms (NeuroGym: 0 and
500); the output is a single ``go`` channel trained to 1.0 (go) or 0.0 (no-go), read as a response when its
mean over the decision period reaches 0.5; noise ``stim_noise * sqrt(2 tau / dt)`` on every input. Only
the decision period is trained and scored: a response during the cue or delay (a premature go, which an
animal's rig would count as a fixation break) is neither penalised nor seen by ``score``.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import Task, TrialBuilder
from .common import check_fits, check_timing, fixation_step, input_noise_sd, knob_samples, param_column
from .knobs import Knob
from .registry import register

__all__ = ["GoNoGo"]


@register
class GoNoGo(Task):
    """Go/no-go with a delay: ``go`` output to 1.0 after a go cue, kept at 0.0 after a no-go cue.

    Inputs: ``fixation`` (1 until the decision period), ``nogo_cue``, ``go_cue`` (1 during the stimulus).
    Output: ``go``; the mask is 1 during the decision period on every trial. Scoring: choice 0 when the mean
    ``go`` output over the decision period is >= 0.5 (``response_threshold``), else -1 (withheld); the target
    is 0 on go trials and -1 on no-go trials.

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        timing: ``fixation`` (100) and ``decision`` (400) durations in ms; the stimulus and delay are knobs.
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.
    """

    metadata = {
        "description": "go/no-go with a delay: respond to the go cue, withhold to the no-go cue",
        "paper_name": "Zhu et al. 2019, Active information maintenance in working memory by a sensory cortex "
                      "(NeuroGym GoNogo)",
        "paper_link": "https://elifesciences.org/articles/43191",
        "tags": ["go/no-go", "response inhibition", "delayed response"],
    }
    knobs = (
        Knob("p_nogo", 0.0, 0.5, 0.5, "lower", "probability",
             doc="fraction of no-go trials (0: go trials only, the usual first shaping stage)"),
        Knob("stim_ms", 20.0, 1000.0, 500.0, "higher", "ms", doc="cue duration"),
        Knob("delay_ms", 0.0, 1000.0, 500.0, "lower", "ms", doc="delay between cue offset and the decision"),
        Knob("stim_noise", 0.0, 2.0, 0.1, "lower", "a.u.", doc="input noise, scaled by sqrt(2 tau / dt)"),
    )
    input_names = ("fixation", "nogo_cue", "go_cue")
    output_names = ("go",)
    response_threshold = 0.5
    side_knob = None
    evidence_knob = "stim_ms"
    default_timing = {"fixation": 100.0, "decision": 400.0}

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 2000, N_batch: int = 128,
                 timing: Mapping[str, float] | None = None, seed: int | np.random.Generator | None = None,
                 **knobs: Any):
        super().__init__(3, 1, dt, tau, T, N_batch, seed=seed, **knobs)
        self.timing = check_timing("GoNoGo", self.default_timing, timing, self.dt)

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        nogo = (rng.random(n) < v["p_nogo"]).astype(np.int64)
        stim_on = np.full(n, self.timing["fixation"])
        stim_off = stim_on + v["stim_ms"]
        decision_on = stim_off + v["delay_ms"]
        decision_off = decision_on + self.timing["decision"]
        check_fits(self, decision_off, knobs)
        return pd.DataFrame({
            "nogo": nogo, "p_nogo": v["p_nogo"], "stim_ms": v["stim_ms"], "delay_ms": v["delay_ms"],
            "stim_noise": v["stim_noise"], "stim_on_ms": stim_on, "stim_off_ms": stim_off,
            "decision_on_ms": decision_on, "decision_off_ms": decision_off,
        })

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nogo = params["nogo"].to_numpy(dtype=np.int64)
        b = TrialBuilder(self, len(params))
        b.add_noise(input_noise_sd(self.dt, self.tau, params["stim_noise"].to_numpy()), rng)
        b.add_period("stimulus", onset_ms=params["stim_on_ms"], offset_ms=params["stim_off_ms"])
        b.add_period("decision", onset_ms=params["decision_on_ms"], offset_ms=params["decision_off_ms"])
        b.add_input("fixation", 1.0, b.before("decision"))
        b.add_input(2 - nogo, 1.0, "stimulus")  # channel 1: nogo_cue, channel 2: go_cue
        b.set_groundtruth("go", 1 - nogo, "decision")
        b.set_mask(1.0, "decision")
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t, y_t, mask_t = fixation_step(self, t, params)
        nogo = int(params["nogo"])
        if params["stim_on_ms"] <= t < params["stim_off_ms"]:
            x_t[2 - nogo] += 1.0
        if params["decision_on_ms"] <= t < params["decision_off_ms"]:
            y_t[0] = 1.0 - nogo
            mask_t[0] = 1.0
        return x_t, y_t, mask_t

    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        return np.where(param_column(params, "nogo", self, np.int64) == 1, -1, 0)

    def accuracy_function(self, correct_output: np.ndarray, test_output: np.ndarray,
                          output_mask: np.ndarray) -> float:
        """PsychRNN API from arrays alone: a trial is correct when the output's and the target's masked means
        fall on the same side of ``response_threshold`` (respond vs withhold)."""
        w = np.maximum(output_mask.sum(axis=(1, 2)), 1e-12)
        go = (test_output * output_mask).sum(axis=(1, 2)) / w >= self.response_threshold
        should = (correct_output * output_mask).sum(axis=(1, 2)) / w >= self.response_threshold
        return float(np.mean(go == should))
