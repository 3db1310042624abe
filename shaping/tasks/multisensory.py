"""Multisensory integration: one side, shown through vision, audition or both.

Each trial presents evidence for one side through a visual pair of channels, an auditory pair, or both at
once (the same side and the same coherence, each modality scaled by its own gain); the network reports the
side after the stimulus.
An observer that combines the two modalities is more accurate on multisensory trials than with either one
alone. Raposo, Sheppard, Schrater & Churchland 2012, J Neurosci 32:3726, "Multisensory decision-making in
rats and humans" (https://doi.org/10.1523/JNEUROSCI.4998-11.2012): rats and humans judged whether a 1000 ms
train of flashes, clicks or both (synchronous, same rate) was faster or slower than 12.5 events/s; visual,
auditory and multisensory trials were interleaved, and multisensory trials gave steeper psychometric curves,
close to the optimal combination of the two single-modality reliabilities.

Deviations: the event rate is abstracted as one ``coherence`` (its distance from the category boundary,
shared by both modalities as the paper's matched rates are), and each modality's reliability as a gain on
it: a shown modality is a pair of evidence channels with means ``(1 +- gain * coherence) / 2`` toward the
correct side, 0 when that modality is absent; a fixation input (1 until the decision period) is the go
signal, the fixation period lasts 300 ms and the decision period 300 ms; outputs are one-hot 1.0 / 0.2
(PsychRNN style); every input carries noise ``stim_noise * sqrt(2 tau / dt)`` (Yang et al. 2019), an absent
modality included.
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

__all__ = ["MultiSensoryIntegration", "VISUAL", "AUDITORY", "BOTH"]

VISUAL, AUDITORY, BOTH = 0, 1, 2  # modality codes (the ``modality`` trial parameter)


@register
class MultiSensoryIntegration(Task):
    """Report the side shown by visual, auditory or combined evidence.

    Inputs ``(N_batch, N_steps, 5)``: ``fixation`` (1 until the decision period), ``visual0``, ``visual1``,
    ``auditory0``, ``auditory1``; during the stimulus a present modality's channel for the correct side has
    mean ``(1 + coh) / 2`` and the other ``(1 - coh) / 2`` (``coh``: that modality's coherence); an absent
    modality's channels have mean 0 (``coh`` = ``coherence`` times that modality's gain). All inputs carry
    noise. Outputs ``(N_batch, N_steps, 2)``: ``choice0``,
    ``choice1``, one-hot 1.0 / 0.2 during the decision period (mask 1 there, 0 elsewhere).

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        timing: period durations in ms overriding ``fixation`` (300), ``stimulus`` (1000) and ``decision``
            (300), key by key.
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.

    Trial params: ``modality`` (0 visual only, 1 auditory only, 2 both: ``VISUAL``, ``AUDITORY``, ``BOTH``),
    ``choice`` (the correct side), ``coherence`` (shown on every trial, the evidence of psychometric curves),
    ``gain_visual``, ``gain_auditory``, ``p_multisensory``, ``stim_noise``, ``p_choice1`` and the period bounds
    ``stim_on_ms``, ``stim_off_ms``, ``decision_on_ms``, ``decision_off_ms`` in absolute ms.
    """

    metadata = {
        "description": "multisensory decision: one side shown through vision, audition or both",
        "paper_name": "Raposo, Sheppard, Schrater & Churchland 2012, Multisensory decision-making in rats and "
                      "humans",
        "paper_link": "https://doi.org/10.1523/JNEUROSCI.4998-11.2012",
        "tags": ["perceptual", "multisensory", "2AFC"],
    }
    knobs = (
        Knob("coherence", 0.0, 1.0, [0.05, 0.1, 0.2, 0.4], "higher", "fraction",
             doc="strength of the evidence, the same in both modalities (the paper's matched event rates)"),
        Knob("gain_visual", 0.0, 1.0, 1.0, "higher", "fraction",
             doc="the visual channels' means are (1 +- gain_visual * coherence) / 2: the modality's reliability"),
        Knob("gain_auditory", 0.0, 1.0, 1.0, "higher", "fraction",
             doc="the auditory channels' means are (1 +- gain_auditory * coherence) / 2"),
        Knob("p_multisensory", 0.0, 1.0, 1.0 / 3.0, "higher", "probability",
             doc="fraction of trials showing both modalities; the others are split evenly between them"),
        Knob("stim_noise", 0.0, 2.0, 0.2, "lower", "a.u.", doc="input noise, scaled by sqrt(2 tau / dt)"),
        side_probability_knob("probability that side 1 is correct (moved by bias correction)"),
    )
    input_names = ("fixation", "visual0", "visual1", "auditory0", "auditory1")
    output_names = ("choice0", "choice1")
    side_knob = "p_choice1"
    evidence_knob = "coherence"
    psychometric_by = "modality"
    psychometric_labels = {VISUAL: "visual", AUDITORY: "auditory", BOTH: "multisensory"}
    default_timing = {"fixation": 300.0, "stimulus": 1000.0, "decision": 300.0}

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 1600, N_batch: int = 128,
                 timing: Mapping[str, float] | None = None, seed: int | np.random.Generator | None = None,
                 **knobs: Any):
        super().__init__(5, 2, dt, tau, T, N_batch, seed=seed, **knobs)
        self.timing = check_timing("MultiSensoryIntegration", self.default_timing, timing, self.dt)
        self.lo = LO
        self.hi = HI

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        choice = draw_side(v["p_choice1"], rng)
        both = rng.random(n) < v["p_multisensory"]
        single = rng.integers(0, 2, n)  # VISUAL or AUDITORY where only one modality is shown
        modality = np.where(both, BOTH, single).astype(np.int64)
        tm = self.timing
        stim_on = np.full(n, tm["fixation"])
        stim_off = stim_on + tm["stimulus"]
        decision_on = stim_off
        decision_off = decision_on + tm["decision"]
        check_fits(self, decision_off, knobs)
        return pd.DataFrame({
            "modality": modality, "choice": choice, "coherence": v["coherence"], "gain_visual": v["gain_visual"],
            "gain_auditory": v["gain_auditory"], "p_multisensory": v["p_multisensory"],
            "stim_noise": v["stim_noise"], "p_choice1": v["p_choice1"],
            "stim_on_ms": stim_on, "stim_off_ms": stim_off,
            "decision_on_ms": decision_on, "decision_off_ms": decision_off,
        })

    @staticmethod
    def _levels(modality: Any, choice: Any, coh_visual: Any, coh_auditory: Any) -> np.ndarray:
        """``(n, 4)`` float64 stimulus means of ``visual0, visual1, auditory0, auditory1``."""
        modality, choice = np.atleast_1d(modality).astype(np.int64), np.atleast_1d(choice).astype(np.int64)
        rows = np.arange(modality.size)
        out = np.zeros((modality.size, 4))
        for m, coh, present in ((VISUAL, coh_visual, modality != AUDITORY),
                                (AUDITORY, coh_auditory, modality != VISUAL)):
            coh = np.broadcast_to(np.asarray(coh, dtype=float), modality.shape)
            base = 2 * m
            out[rows, base + choice] = np.where(present, (1.0 + coh) / 2.0, 0.0)
            out[rows, base + 1 - choice] = np.where(present, (1.0 - coh) / 2.0, 0.0)
        return out

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        coh = params["coherence"].to_numpy(dtype=float)
        levels = self._levels(params["modality"], params["choice"], coh * params["gain_visual"].to_numpy(),
                              coh * params["gain_auditory"].to_numpy())
        b = TrialBuilder(self, len(params))
        b.add_noise(input_noise_sd(self.dt, self.tau, params["stim_noise"].to_numpy()), rng)
        b.add_period("stimulus", onset_ms=params["stim_on_ms"], offset_ms=params["stim_off_ms"])
        b.add_period("decision", onset_ms=params["decision_on_ms"], offset_ms=params["decision_off_ms"])
        b.add_input("fixation", 1.0, b.before("decision"))
        b.add_input(["visual0", "visual1", "auditory0", "auditory1"], levels, "stimulus")
        b.set_choice_target(params["choice"], "decision", self.hi, self.lo)
        b.set_mask(1.0, "decision")
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t, y_t, mask_t = fixation_step(self, t, params)
        if params["stim_on_ms"] <= t < params["stim_off_ms"]:
            coh = float(params["coherence"])
            x_t[1:] += self._levels(params["modality"], params["choice"], coh * float(params["gain_visual"]),
                                    coh * float(params["gain_auditory"]))[0]
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
