"""Working memory: hold a stimulus across a delay, then compare it with a second one.

``DelayedDiscrimination``: two flutter frequencies f1 and f2 separated by a delay; the network reports
whether f1 > f2. Romo, Brody, Hernández & Lemus 1999, Nature 399:470 (https://www.nature.com/articles/20939),
with PsychRNN 1.0.0's exact parameterisation (Ehrlich et al. 2021, https://doi.org/10.1523/ENEURO.0427-20.2020):
onset ~ U(0, T/8), stimulus 1 ~ U(0, T/4), delay ~ U(0, T/4), stimulus 2 ~ U(0, T/4), decision ~ U(0, T/8) ms;
pairs (f_high, f_low) from {(18, 10), (22, 14), (26, 18), (30, 22), (34, 26)} Hz; a frequency f drives channel 0
with 0.4 + 0.8 (f - 10) / 24 and channel 1 with 0.4 + 0.8 (34 - f) / 24; noise as PsychRNN scales it.

``DelayedMatchToSample``: a sample direction on a ring, a delay, a test direction; the network reports match
or non-match. Miller, Erickson & Desimone 1996, J Neurosci 16(16):5154
(https://www.jneurosci.org/content/16/16/5154); timing and ring code as NeuroGym's ``DelayMatchSample``
(fixation 300, sample 500, delay 1000, test 500 ms; channel k carries 0.5 + 0.5 cos(theta_k - theta)); the
non-match test is the opposite direction.

Deviations: noise is drawn from the batch's generator, not NumPy's global one; knobs scale the delay, set the
frequency difference and the side (``p_choice1``); DelayedMatchToSample has a fixation input (1 until the
decision period), no fixation output, and noise ``stim_noise * sqrt(2 tau / dt)`` on every input (Yang et al.
2019); its decision period is 500 ms (NeuroGym: 900).
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
    draw_side,
    fixation_step,
    input_noise_sd,
    knob_samples,
    param_column,
    psychrnn_noise_sd,
    ring_angles,
    side_probability_knob,
)
from .knobs import Knob
from .registry import register

__all__ = ["DelayedDiscrimination", "DelayedMatchToSample"]


def _scale_p(f: Any) -> Any:
    """Frequency (Hz) to channel-0 level: 10 Hz -> 0.4, 34 Hz -> 1.2."""
    return 0.4 + 0.8 * (np.asarray(f, dtype=float) - 10) / (34 - 10)


def _scale_n(f: Any) -> Any:
    """Frequency (Hz) to channel-1 level, inverted: 10 Hz -> 1.2, 34 Hz -> 0.4."""
    return 0.4 + 0.8 * (34 - np.asarray(f, dtype=float)) / (34 - 10)


@register
class DelayedDiscrimination(Task):
    """Delayed frequency comparison: is the first frequency higher (choice 0) or lower (choice 1)?

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        onset_time: stimulus-1 onset (ms) for every trial; default U(0, T/8) per trial (PsychRNN).
        stim_duration_1: stimulus-1 duration (ms); default U(0, T/4).
        delay_duration: delay (ms) before ``delay_scale``; default U(0, T/4).
        stim_duration_2: stimulus-2 duration (ms); default U(0, T/4).
        decision_duration: decision period (ms); default U(0, T/8).
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.

    Trial params keep PsychRNN's keys (``stimulus_1, delay, stimulus_2, decision, end``: period onsets in ms;
    ``f1, f2`` in Hz; ``choice``), plus ``delay_ms`` (the delay's duration) and the knob values. A trial
    whose decision period holds no time step (it is drawn from U(0, T/8) ms) scores target = choice = -1,
    i.e. correct, as PsychRNN's ``accuracy_function`` counts it.
    """

    metadata = {
        "description": "delayed comparison of two flutter frequencies (parametric working memory)",
        "paper_name": "Romo et al. 1999, Neuronal correlates of parametric working memory in the prefrontal "
                      "cortex (PsychRNN parameterisation)",
        "paper_link": "https://www.nature.com/articles/20939",
        "tags": ["working memory", "2AFC", "psychrnn"],
    }
    knobs = (
        Knob("f_diff_hz", 0.0, 24.0, 8.0, "higher", "Hz",
             doc="f_high - f_low (PsychRNN's pairs differ by 8 Hz; f_low from 10, 14, 18, 22, 26 Hz)"),
        Knob("delay_scale", 0.0, 1.0, 1.0, "lower", "fraction",
             doc="the delay is PsychRNN's (U(0, T/4) ms, or delay_duration) times this"),
        Knob("stim_noise", 0.0, 2.0, 0.1, "lower", "a.u.", doc="input noise scale (PsychRNN's stim_noise)"),
        side_probability_knob("probability that f1 < f2 (choice 1)"),
    )
    input_names = ("f_positive", "f_negative")
    output_names = ("f1_higher", "f2_higher")
    side_knob = "p_choice1"
    evidence_knob = "f_diff_hz"
    low_frequencies_hz = (10.0, 14.0, 18.0, 22.0, 26.0)

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 2000, N_batch: int = 128,
                 onset_time: float | None = None, stim_duration_1: float | None = None,
                 delay_duration: float | None = None, stim_duration_2: float | None = None,
                 decision_duration: float | None = None, seed: int | np.random.Generator | None = None,
                 **knobs: Any):
        super().__init__(2, 2, dt, tau, T, N_batch, seed=seed, **knobs)
        for arg, val in (("onset_time", onset_time), ("stim_duration_1", stim_duration_1),
                         ("delay_duration", delay_duration), ("stim_duration_2", stim_duration_2),
                         ("decision_duration", decision_duration)):
            if val is not None and not (np.isscalar(val) and float(val) >= 0):
                raise ValueError(f"DelayedDiscrimination: {arg} must be None or a duration >= 0 ms, "
                                 f"got {val!r}")
        self.onset_time = onset_time
        self.stim_duration_1 = stim_duration_1
        self.delay_duration = delay_duration
        self.stim_duration_2 = stim_duration_2
        self.decision_duration = decision_duration
        self.lo = LO
        self.hi = HI

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)

        def duration(fixed: float | None, longest: float) -> np.ndarray:
            return np.full(n, float(fixed)) if fixed is not None else rng.uniform(0, 1, n) * longest

        onset = duration(self.onset_time, self.T / 8.0)
        stim1 = duration(self.stim_duration_1, self.T / 4.0)
        delay = duration(self.delay_duration, self.T / 4.0) * v["delay_scale"]
        stim2 = duration(self.stim_duration_2, self.T / 4.0)
        decision = duration(self.decision_duration, self.T / 8.0)
        f_low = np.asarray(self.low_frequencies_hz)[rng.integers(0, len(self.low_frequencies_hz), n)]
        f_high = f_low + v["f_diff_hz"]
        choice = draw_side(v["p_choice1"], rng)
        end = onset + stim1 + delay + stim2 + decision
        check_fits(self, end, knobs)
        return pd.DataFrame({
            "stimulus_1": onset,
            "delay": onset + stim1,
            "stimulus_2": onset + stim1 + delay,
            "decision": onset + stim1 + delay + stim2,
            "end": end,
            "stim_noise": v["stim_noise"],
            "f1": np.where(choice == 0, f_high, f_low),
            "f2": np.where(choice == 0, f_low, f_high),
            "choice": choice,
            "delay_ms": delay,
            "f_diff_hz": v["f_diff_hz"],
            "delay_scale": v["delay_scale"],
            "p_choice1": v["p_choice1"],
        })

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = TrialBuilder(self, len(params))
        b.add_noise(psychrnn_noise_sd(self.dt, params["stim_noise"].to_numpy(dtype=float)), rng)
        for f, on, off in (("f1", "stimulus_1", "delay"), ("f2", "stimulus_2", "decision")):
            b.add_period(on, onset_ms=params[on], offset_ms=params[off])
            b.add_input(["f_positive", "f_negative"], np.stack([_scale_p(params[f]), _scale_n(params[f])], axis=1), on)
        b.add_period("decision", onset_ms=params["decision"], offset_ms=params["end"])
        b.set_choice_target(params["choice"], "decision", self.hi, self.lo)
        b.set_mask(1.0, "decision")
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t = psychrnn_noise_sd(self.dt, params["stim_noise"]) * self.rng.standard_normal(self.N_in)
        y_t = np.zeros(self.N_out)
        mask_t = np.zeros(self.N_out)
        if params["stimulus_1"] <= t < params["delay"]:
            x_t[0] += _scale_p(params["f1"])
            x_t[1] += _scale_n(params["f1"])
        if params["stimulus_2"] <= t < params["decision"]:
            x_t[0] += _scale_p(params["f2"])
            x_t[1] += _scale_n(params["f2"])
        if params["decision"] <= t < params["end"]:
            choice = int(params["choice"])
            y_t[choice] = self.hi
            y_t[1 - choice] = self.lo
            mask_t = np.ones(self.N_out)
        return x_t, y_t, mask_t

    # A decision period drawn shorter than dt can hold no time step: such a trial asks for nothing. PsychRNN's
    # accuracy_function counts it correct (argmax of two zeros on both sides); so do we, with target and
    # choice -1.
    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        choice = param_column(params, "choice", self, np.int64)
        return np.where(mask.any(axis=(1, 2)), choice, -1)

    def choice_from_output(self, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        return np.where(mask.any(axis=(1, 2)), super().choice_from_output(y_hat, mask, params), -1)


@register
class DelayedMatchToSample(Task):
    """Delayed match-to-sample on a ring: is the test direction the sample's (choice 0) or not (choice 1)?

    Inputs: ``fixation`` (1 until the decision period) and ``dim_ring`` direction channels (ring code of the
    sample during the sample period, of the test during the test period). Outputs: ``match``, ``nonmatch``
    (one-hot 1.0 / 0.2 during the decision period, where the mask is 1).

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        dim_ring: number of directions (even, >= 2); a non-match test is the opposite direction.
        timing: period durations in ms overriding ``fixation`` (300), ``sample`` (500), ``test`` (500),
            ``decision`` (500) key by key; the delay is the ``delay_ms`` knob.
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.
    """

    metadata = {
        "description": "delayed match-to-sample of directions on a ring (working memory)",
        "paper_name": "Miller, Erickson & Desimone 1996, Neural mechanisms of visual working memory in "
                      "prefrontal cortex of the macaque",
        "paper_link": "https://www.jneurosci.org/content/16/16/5154",
        "tags": ["working memory", "match-to-sample", "2AFC"],
    }
    knobs = (
        Knob("delay_ms", 0.0, 1500.0, 1000.0, "lower", "ms", doc="delay between sample and test"),
        Knob("stim_noise", 0.0, 2.0, 0.1, "lower", "a.u.", doc="input noise, scaled by sqrt(2 tau / dt)"),
        side_probability_knob("probability of a non-match trial (choice 1)"),
    )
    output_names = ("match", "nonmatch")
    side_knob = "p_choice1"
    evidence_knob = None
    default_timing = {"fixation": 300.0, "sample": 500.0, "test": 500.0, "decision": 500.0}

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 3300, N_batch: int = 128,
                 dim_ring: int = 8, timing: Mapping[str, float] | None = None,
                 seed: int | np.random.Generator | None = None, **knobs: Any):
        if not isinstance(dim_ring, (int, np.integer)) or dim_ring < 2 or dim_ring % 2:
            raise ValueError(f"DelayedMatchToSample: dim_ring must be an even integer >= 2, got {dim_ring!r}")
        self.dim_ring = int(dim_ring)
        self.input_names = ("fixation",) + tuple(f"direction{k}" for k in range(self.dim_ring))
        super().__init__(1 + self.dim_ring, 2, dt, tau, T, N_batch, seed=seed, **knobs)
        self.timing = check_timing("DelayedMatchToSample", self.default_timing, timing, self.dt)
        self.lo = LO
        self.hi = HI

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        choice = draw_side(v["p_choice1"], rng)
        sample = rng.integers(0, self.dim_ring, n)
        test = np.where(choice == 0, sample, (sample + self.dim_ring // 2) % self.dim_ring)
        tm = self.timing
        sample_on = np.full(n, tm["fixation"])
        sample_off = sample_on + tm["sample"]
        test_on = sample_off + v["delay_ms"]
        test_off = test_on + tm["test"]
        decision_off = test_off + tm["decision"]
        check_fits(self, decision_off, knobs)
        angles = ring_angles(self.dim_ring)
        return pd.DataFrame({
            "sample": sample, "test": test, "choice": choice,
            "sample_theta": angles[sample], "test_theta": angles[test],
            "delay_ms": v["delay_ms"], "stim_noise": v["stim_noise"], "p_choice1": v["p_choice1"],
            "sample_on_ms": sample_on, "sample_off_ms": sample_off, "test_on_ms": test_on,
            "test_off_ms": test_off, "decision_on_ms": test_off, "decision_off_ms": decision_off,
        })

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ring = self.input_names[1:]
        b = TrialBuilder(self, len(params))
        b.add_noise(input_noise_sd(self.dt, self.tau, params["stim_noise"].to_numpy(dtype=float)), rng)
        b.add_period("sample", onset_ms=params["sample_on_ms"], offset_ms=params["sample_off_ms"])
        b.add_period("test", onset_ms=params["test_on_ms"], offset_ms=params["test_off_ms"])
        b.add_period("decision", onset_ms=params["decision_on_ms"], offset_ms=params["decision_off_ms"])
        b.add_input("fixation", 1.0, b.before("decision"))
        b.add_input(ring, cos_tuning(params["sample_theta"], self.dim_ring), "sample")
        b.add_input(ring, cos_tuning(params["test_theta"], self.dim_ring), "test")
        b.set_choice_target(params["choice"], "decision", self.hi, self.lo)
        b.set_mask(1.0, "decision")
        return b.result()

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t, y_t, mask_t = fixation_step(self, t, params)
        if params["sample_on_ms"] <= t < params["sample_off_ms"]:
            x_t[1:] += cos_tuning(params["sample_theta"], self.dim_ring)[0]
        if params["test_on_ms"] <= t < params["test_off_ms"]:
            x_t[1:] += cos_tuning(params["test_theta"], self.dim_ring)[0]
        if params["decision_on_ms"] <= t < params["decision_off_ms"]:
            choice = int(params["choice"])
            y_t[:] = self.lo
            y_t[choice] = self.hi
            mask_t[:] = 1.0
        return x_t, y_t, mask_t

    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        return param_column(params, "choice", self, np.int64)

    def response_window(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The masked steps: the decision period, from the params (see ``Task.response_window``)."""
        return decision_window(self, params)
