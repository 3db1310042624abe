"""Confidence: a motion discrimination with a post-decision wager (an opt-out "sure" target).

A noisy two-channel motion stimulus is followed by a delay; on a random fraction of trials a "sure" cue
appears during the delay, and at the go signal the network reports a side or, on those trials only, may
take the sure option instead. Kiani & Shadlen 2009, Science 324:759, "Representation of confidence
associated with a decision by neurons in the parietal cortex" (https://doi.org/10.1126/science.1169405):
motion coherences {0, 3.2, 6.4, 12.8, 25.6, 51.2} %, motion lasting 100-900 ms, a delay of over a second, and
on half the trials a sure target shown 500-750 ms after motion offset that stays up until the choice;
choosing it pays a smaller but certain reward.

Supervised targets and scoring. A supervised target must be a fixed answer, so the target is always the
correct side, wager trial or not; ``wager`` is recorded per trial so that analyses can compute the opt-out
rate from the outputs. A network trained on these targets alone is taught the sure output's low level (0.2)
and so is not rewarded for opting out: the opt-out behaviour of the monkeys comes from reward, which gradient
descent on fixed targets does not give. Use the task to train the decision with the sure target present (and
``p_wager`` as a shaping knob), and read confidence from the outputs and states. The scores use the three
outcomes every task shares:

- the correct side is ``correct``, the other side ``error``;
- the sure option on a wager trial is ``no_response`` (with ``choice`` 2, not -1, and ``opted_out`` True):
  waiving the decision is neither right nor wrong, and a window that excludes no-response trials then gives
  the accuracy on the trials where the wager was declined, the measure Kiani & Shadlen report;
- on trials without the cue the sure target is not shown (as in the experiment): the ``sure`` output is
  masked there and is not an option, so the choice is between the two sides. (Were it read there anyway it
  would be scored ``error``; it cannot be, because a masked channel is never chosen.)

Deviations: stimulus durations are drawn uniformly (the ``stim_ms`` knob, default 100-900 ms) rather than
from a truncated exponential; the delay is fixed (1200 ms; variable and on average longer in the paper) and
the decision period lasts 300 ms; a fixation input (1 until the decision period) is the go signal; outputs are
one-hot 1.0 / 0.2 (PsychRNN style); evidence channels have means ``(1 +- coherence) / 2`` and every input carries noise
``stim_noise * sqrt(2 tau / dt)`` (Yang et al. 2019).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import Task, TrialBuilder, argmax_untied
from .common import (
    HI,
    LO,
    check_fits,
    check_timing,
    draw_side,
    fixation_step,
    input_noise_sd,
    knob_samples,
    side_probability_knob,
)
from .knobs import Knob
from .registry import register

__all__ = ["PostDecisionWager"]

SURE = 2  # output channel and choice index of the sure option


def _available_means(out: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(n, N_out)``: each output's mean over its masked steps; ``-inf`` for a channel masked throughout
    (an option that is not offered on that trial)."""
    w = np.einsum("ntk->nk", mask)
    mean = np.einsum("ntk,ntk->nk", out, mask) / np.maximum(w, 1e-12)
    return np.where(w > 0, mean, -np.inf)


@register
class PostDecisionWager(Task):
    """Report the stronger motion channel, or opt out on the sure target when it is offered.

    Inputs ``(N_batch, N_steps, 4)``: ``fixation`` (1 until the decision period), ``evidence0``,
    ``evidence1`` (means ``(1 + coherence) / 2`` on the correct side and ``(1 - coherence) / 2`` on the other
    during the stimulus), ``sure_cue`` (1 from ``sure_on_ms`` to the end of the decision period, on wager
    trials only); all carry noise. Outputs ``(N_batch, N_steps, 3)``: ``choice0``, ``choice1``, ``sure``;
    during the decision period the target is 1.0 on the correct side and 0.2 on the other two. The mask is 1
    during the decision period on ``choice0`` and ``choice1`` on every trial, and on ``sure`` on wager
    trials only.

    Scoring (see the module docstring): the choice is the output with the largest mean over its masked steps
    (``sure`` only where it is offered); the correct side is ``correct``, the other ``error``, the sure option
    ``no_response`` with ``choice`` 2; :meth:`score` adds an ``opted_out`` column.

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        timing: durations in ms overriding ``fixation`` (300), ``delay`` (1200; from stimulus offset to the
            decision period), ``sure_min`` (500) and ``sure_max`` (750; the sure cue comes on uniformly
            between these after stimulus offset, within the delay) and ``decision`` (300), key by key.
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.

    Trial params: ``direction`` (the correct side), ``wager`` (1: the sure target is offered), ``coherence``,
    ``stim_ms``, ``stim_noise``, ``p_wager``, ``p_choice1`` and the period bounds ``stim_on_ms``,
    ``stim_off_ms``, ``sure_on_ms`` (drawn on every trial, shown on wager trials), ``decision_on_ms``,
    ``decision_off_ms`` in absolute ms.
    """

    metadata = {
        "description": "motion discrimination with a post-decision wager: an opt-out sure target on some trials",
        "paper_name": "Kiani & Shadlen 2009, Representation of confidence associated with a decision by neurons "
                      "in the parietal cortex",
        "paper_link": "https://doi.org/10.1126/science.1169405",
        "tags": ["perceptual", "confidence", "delayed response", "2AFC"],
    }
    knobs = (
        Knob("coherence", 0.0, 1.0, [0.0, 0.032, 0.064, 0.128, 0.256, 0.512], "higher", "fraction",
             doc="motion strength: the evidence channels' means are (1 +- coherence) / 2"),
        Knob("stim_ms", 20.0, 1000.0, {"uniform": [100.0, 900.0]}, "higher", "ms",
             doc="motion stimulus duration"),
        Knob("stim_noise", 0.0, 2.0, 0.2, "lower", "a.u.", doc="input noise, scaled by sqrt(2 tau / dt)"),
        Knob("p_wager", 0.0, 1.0, 0.5, "lower", "probability",
             doc="fraction of trials offering the sure target (0: plain 2AFC, the usual first stage)"),
        side_probability_knob("probability that channel 1 is the correct side (moved by bias correction)"),
    )
    input_names = ("fixation", "evidence0", "evidence1", "sure_cue")
    output_names = ("choice0", "choice1", "sure")
    side_knob = "p_choice1"
    evidence_knob = "coherence"
    default_timing = {"fixation": 300.0, "delay": 1200.0, "sure_min": 500.0, "sure_max": 750.0,
                      "decision": 300.0}

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 2800, N_batch: int = 128,
                 timing: Mapping[str, float] | None = None, seed: int | np.random.Generator | None = None,
                 **knobs: Any):
        super().__init__(4, 3, dt, tau, T, N_batch, seed=seed, **knobs)
        self.timing = check_timing("PostDecisionWager", self.default_timing, timing, self.dt)
        tm = self.timing
        if not tm["sure_min"] <= tm["sure_max"] <= tm["delay"]:
            raise ValueError(f"PostDecisionWager: timing needs sure_min <= sure_max <= delay (ms), got "
                             f"sure_min={tm['sure_min']:g}, sure_max={tm['sure_max']:g}, delay={tm['delay']:g}")
        self.lo = LO
        self.hi = HI

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        direction = draw_side(v["p_choice1"], rng)
        wager = (rng.random(n) < v["p_wager"]).astype(np.int64)
        tm = self.timing
        stim_on = np.full(n, tm["fixation"])
        stim_off = stim_on + v["stim_ms"]
        sure_on = stim_off + rng.uniform(tm["sure_min"], tm["sure_max"], n)
        decision_on = stim_off + tm["delay"]
        decision_off = decision_on + tm["decision"]
        check_fits(self, decision_off, knobs)
        return pd.DataFrame({
            "direction": direction, "wager": wager, "coherence": v["coherence"], "stim_ms": v["stim_ms"],
            "stim_noise": v["stim_noise"], "p_wager": v["p_wager"], "p_choice1": v["p_choice1"],
            "stim_on_ms": stim_on, "stim_off_ms": stim_off, "sure_on_ms": sure_on,
            "decision_on_ms": decision_on, "decision_off_ms": decision_off,
        })

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        direction = params["direction"].to_numpy(dtype=np.int64)
        wager, coh = params["wager"].to_numpy(dtype=float), params["coherence"].to_numpy(dtype=float)
        b = TrialBuilder(self, len(params))
        b.add_noise(input_noise_sd(self.dt, self.tau, params["stim_noise"].to_numpy()), rng)
        b.add_period("stimulus", onset_ms=params["stim_on_ms"], offset_ms=params["stim_off_ms"])
        b.add_period("decision", onset_ms=params["decision_on_ms"], offset_ms=params["decision_off_ms"])
        b.add_period("sure", onset_ms=params["sure_on_ms"], offset_ms=params["decision_off_ms"])
        b.add_input("fixation", 1.0, b.before("decision"))
        b.add_input(1 + direction, (1.0 + coh) / 2.0, "stimulus")  # evidence for the correct side ...
        b.add_input(2 - direction, (1.0 - coh) / 2.0, "stimulus")  # ... and against it
        b.add_input("sure_cue", wager, "sure")
        b.set_choice_target(direction, "decision", self.hi, self.lo)
        b.set_mask(1.0, "decision")
        b.set_mask(wager, "decision", channel="sure")  # the sure option exists on wager trials only
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t, y_t, mask_t = fixation_step(self, t, params)
        d, coh, wager = int(params["direction"]), float(params["coherence"]), int(params["wager"])
        if params["stim_on_ms"] <= t < params["stim_off_ms"]:
            x_t[1 + d] += (1.0 + coh) / 2.0
            x_t[2 - d] += (1.0 - coh) / 2.0
        if wager and params["sure_on_ms"] <= t < params["decision_off_ms"]:
            x_t[3] += 1.0
        if params["decision_on_ms"] <= t < params["decision_off_ms"]:
            y_t[:] = self.lo
            y_t[d] = self.hi
            mask_t[:2] = 1.0
            mask_t[SURE] = float(wager)
        return x_t, y_t, mask_t

    # ------------------------------------------------------------------ scoring
    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        """The correct side on every trial (wager trials included: the supervised target is fixed)."""
        return np.argmax(_available_means(y, mask), axis=1)

    def choice_from_output(self, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        """The output with the largest mean over its masked steps, among the options offered on the trial
        (``sure``, choice 2, only where its mask is on: wager trials); -1 (no response) when the two highest
        tie exactly, as a silent network's do."""
        return argmax_untied(_available_means(y_hat, mask))

    def score(self, y: np.ndarray, y_hat: np.ndarray, mask: np.ndarray,
              trial_params: pd.DataFrame | None = None) -> pd.DataFrame:
        """:meth:`Task.score`, with the sure choice (``choice`` 2) scored ``no_response`` and an
        ``opted_out`` column (True where the sure option was taken)."""
        scored = super().score(y, y_hat, mask, trial_params)
        opted = scored["choice"].to_numpy() == SURE
        scored.loc[opted, "outcome"] = "no_response"
        scored.insert(4, "opted_out", opted)
        return scored

    def accuracy_function(self, correct_output: np.ndarray, test_output: np.ndarray,
                          output_mask: np.ndarray) -> float:
        """PsychRNN API from arrays alone: fraction of trials whose chosen option (as in :meth:`score`) is the
        target's; an opt-out is never correct."""
        m = np.asarray(output_mask, dtype=np.float32)
        chosen = np.argmax(_available_means(np.asarray(test_output, dtype=np.float32), m), axis=1)
        truth = np.argmax(_available_means(np.asarray(correct_output, dtype=np.float32), m), axis=1)
        return float(np.mean(chosen == truth))
