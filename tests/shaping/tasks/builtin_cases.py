"""Per-task knowledge the generic tests need, written independently of the task code.

For every built-in task: a factory, the mask its params imply, the chance accuracy of an agent that ignores
its inputs, a simple NumPy ideal observer (reads the inputs, decides, writes outputs in the task's format)
and the knob values under which the observer makes errors at all (``stress``), so a knob's effect shows.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from shaping.tasks import (
    Batch,
    ContextDependentDM,
    DelayedDiscrimination,
    DelayedMatchToSample,
    FlipFlop,
    GoNoGo,
    MatchToCategory,
    MultiSensoryIntegration,
    NDelayedMatch,
    NParity,
    PerceptualDiscrimination,
    PostDecisionWager,
    ProAntiSaccade,
    ReadySetGo,
    Task,
)
from shaping.tasks.common import input_noise_sd, ring_angles

MEMORY_SD_PER_SQRT_S = 1.0  # observer's memory diffusion: sd grows with sqrt(delay in s)
BIT_FADE_PER_STEP = 0.03  # bit-stream observer: a bit k steps old is recalled flipped with P = (1 - 0.97^k) / 2
SURE_CONFIDENCE = 0.7  # the wagering observer takes the sure option below this posterior P(correct)


def times(task: Task) -> np.ndarray:
    return np.arange(task.N_steps) * float(task.dt)


def col(params: pd.DataFrame, name: str) -> np.ndarray:
    return params[name].to_numpy(dtype=float)


def between(task: Task, on: Any, off: Any) -> np.ndarray:
    """(n, N_steps) bool: on <= t < off."""
    t = times(task)
    on, off = (np.asarray(v, float).reshape(-1, 1) for v in (on, off))
    return (t[None, :] >= on) & (t[None, :] < off)


def all_channels(task: Task, where: np.ndarray) -> np.ndarray:
    return np.repeat(where[:, :, None], task.N_out, axis=2).astype(np.float32)


def window_sum(x: np.ndarray, where: np.ndarray) -> np.ndarray:
    """(n, channels): sum of x over the steps in ``where``."""
    return np.einsum("nt,ntc->nc", where.astype(np.float64), x.astype(np.float64))


def population_angle(resp: np.ndarray, angles: np.ndarray) -> np.ndarray:
    return np.mod(np.angle(resp @ np.exp(1j * angles)), 2 * np.pi)


def one_hot_outputs(batch: Batch, choice: np.ndarray) -> np.ndarray:
    y_hat = np.zeros_like(batch.y)
    y_hat[np.arange(len(choice)), :, choice] = 1.0
    return y_hat


def memory(rng: np.random.Generator, delay_ms: np.ndarray, scale: Any = 1.0) -> np.ndarray:
    return rng.standard_normal(len(delay_ms)) * MEMORY_SD_PER_SQRT_S * np.sqrt(delay_ms / 1000.0) * scale


# ---------------------------------------------------------------------- expected masks (from params only)
def mask_perceptual(task, p):
    return all_channels(task, times(task)[None, :] >= (col(p, "onset_time") + col(p, "stim_duration"))[:, None])


def mask_delayed_discrimination(task, p):
    return all_channels(task, between(task, col(p, "decision"), col(p, "end")))


def mask_match_to_category(task, p):
    off = col(p, "onset_time") + col(p, "input_dur")
    return all_channels(task, between(task, off, off + col(p, "output_dur")))


def mask_decision_period(task, p):
    return all_channels(task, between(task, col(p, "decision_on_ms"), col(p, "decision_off_ms")))


def mask_wager(task, p):
    mask = all_channels(task, between(task, col(p, "decision_on_ms"), col(p, "decision_off_ms")))
    mask[:, :, 2] *= (p["wager"].to_numpy() == 1)[:, None]  # the sure option is offered on wager trials only
    return mask


def mask_ready_set_go(task, p):
    set_on = col(p, "set_on_ms")
    return all_channels(task, between(task, set_on, set_on + 2 * col(p, "production_ms")))


def mask_flip_flop(task, p):
    t = times(task)
    mask = np.ones((len(p), task.N_steps, task.N_bits), dtype=np.float32)
    for i, row in enumerate(p.to_dict("records")):
        pulses = [(0.0, b) for b in range(task.N_bits)]
        pulses += [(row[f"pulse{j}_ms"], row[f"pulse{j}_bit"]) for j in range(16) if row[f"pulse{j}_bit"] >= 0]
        for onset, b in pulses:
            mask[i, (t >= onset) & (t < onset + task.pulse_ms + task.settle_ms), int(b)] = 0
    return mask


def stream_heads(task, row) -> list[tuple[int, int]]:
    """``[(n, first output channel), ...]``: the heads a bit-stream trial scores (its N, or 2..N)."""
    N = int(row["N"])
    if task.heads == "single":
        return [(N, 0)]
    return [(n, 2 * (n - 2)) for n in range(2, N + 1)]


def mask_bit_stream(task, p):
    mask = np.zeros((len(p), task.N_steps, task.N_out), dtype=np.float32)
    for i, row in enumerate(p.to_dict("records")):
        for _, c in stream_heads(task, row):
            mask[i, int(row["length"]) - 1, c:c + 2] = 1.0
    return mask


def stream_answer(task, bits: np.ndarray, n: int) -> int:
    """The paper's definitions on a stream ``bits`` (its length L, newest last): N-DMS ``bits[L-N] ==
    bits[L-1]``, N-parity ``sum(bits[L-N:]) % 2``."""
    if isinstance(task, NDelayedMatch):
        return int(bits[-n] == bits[-1])
    return int(bits[-n:].sum() % 2)


# ---------------------------------------------------------------------- ideal observers
def observe_perceptual(task, b, rng):
    t = times(task)
    on = col(b.params, "onset_time")[:, None]
    off = on + col(b.params, "stim_duration")[:, None]
    evidence = window_sum(b.x, (t > on) & (t < off))  # PsychRNN's strict inequalities
    return one_hot_outputs(b, np.argmax(evidence, axis=1))


def observe_delayed_discrimination(task, b, rng):
    p = b.params
    levels = []
    for on, off in (("stimulus_1", "delay"), ("stimulus_2", "decision")):
        w = between(task, col(p, on), col(p, off))
        s = window_sum(b.x, w)
        levels.append((s[:, 0] - s[:, 1]) / np.maximum(w.sum(axis=1), 1))
    first = levels[0] + memory(rng, col(p, "delay_ms"))
    return one_hot_outputs(b, np.where(first > levels[1], 0, 1))


def observe_match_to_category(task, b, rng):
    p = b.params
    resp = window_sum(b.x, between(task, col(p, "onset_time"), col(p, "onset_time") + col(p, "input_dur")))
    angle = population_angle(resp, np.linspace(0, 2 * np.pi, task.N_in))
    return one_hot_outputs(b, np.minimum((angle / (2 * np.pi / task.N_out)).astype(int), task.N_out - 1))


def observe_context(task, b, rng):
    p = b.params
    context = np.argmax(window_sum(b.x[:, :, 3:5], between(task, 0.0, col(p, "decision_on_ms"))), axis=1)
    evidence = window_sum(b.x[:, :, 1:3], between(task, col(p, "stim_on_ms"), col(p, "stim_off_ms")))
    return one_hot_outputs(b, (evidence[np.arange(len(p)), context] > 0).astype(int))


def side_log_odds(weighted_sum: np.ndarray, sd: np.ndarray, p_choice1: np.ndarray) -> np.ndarray:
    """Posterior log odds of side 1 from ``sum(coherence * (evidence1 - evidence0))`` and the per-channel
    noise ``sd`` (the likelihood ratio is ``weighted_sum / sd^2``), with the side prior."""
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.where(sd > 0, weighted_sum / sd ** 2, np.sign(weighted_sum) * np.inf)
        return llr + np.log(p_choice1) - np.log1p(-p_choice1)


def observe_wager(task, b, rng):
    """Knows the noise level, the trial's coherence and the side prior; reports the likelier side, and writes
    the sure output above it when its posterior P(correct) is below SURE_CONFIDENCE (the task reads the sure
    output only where it is offered, so the observer need not read the cue)."""
    p = b.params
    s = window_sum(b.x[:, :, 1:3], between(task, col(p, "stim_on_ms"), col(p, "stim_off_ms")))
    sd = input_noise_sd(task.dt, task.tau, col(p, "stim_noise"))
    log_odds = np.nan_to_num(side_log_odds(col(p, "coherence") * (s[:, 1] - s[:, 0]), sd, col(p, "p_choice1")))
    side = (log_odds > 0).astype(int)
    unsure = 1.0 / (1.0 + np.exp(-np.abs(log_odds))) < SURE_CONFIDENCE
    y_hat = np.zeros_like(b.y)
    y_hat[np.arange(len(p)), :, side] = np.where(unsure, 0.5, 1.0)[:, None]
    y_hat[:, :, 2] = unsure[:, None]
    return y_hat


def observe_multisensory(task, b, rng):
    """Detects which modalities are shown (their channels' summed mean, 1 or 0), then weighs each shown
    modality's evidence by its coherence (the optimal weights at equal noise) and reports the likelier side."""
    p = b.params
    w = between(task, col(p, "stim_on_ms"), col(p, "stim_off_ms"))
    s = window_sum(b.x[:, :, 1:5], w)
    steps = w.sum(axis=1)
    weighted = np.zeros(len(p))
    for first, gain in ((0, col(p, "gain_visual")), (2, col(p, "gain_auditory"))):
        coh = col(p, "coherence") * gain
        shown = s[:, first] + s[:, first + 1] > 0.5 * steps
        weighted += np.where(shown, coh * (s[:, first + 1] - s[:, first]), 0.0)
    sd = input_noise_sd(task.dt, task.tau, col(p, "stim_noise"))
    return one_hot_outputs(b, (np.nan_to_num(side_log_odds(weighted, sd, col(p, "p_choice1"))) > 0).astype(int))


def observe_gonogo(task, b, rng):
    """Bayes-optimal with a memory: knows the noise level and the prior p_nogo."""
    p = b.params
    w = between(task, col(p, "stim_on_ms"), col(p, "stim_off_ms"))
    steps = w.sum(axis=1).astype(float)
    s = window_sum(b.x, w)
    mem_sd = MEMORY_SD_PER_SQRT_S * steps * np.sqrt(col(p, "delay_ms") / 1000.0)
    evidence = s[:, 2] - s[:, 1] + rng.standard_normal(len(p)) * mem_sd
    var = 2 * steps * input_noise_sd(task.dt, task.tau, col(p, "stim_noise")) ** 2 + mem_sd ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        llr_go = np.where(var > 0, 2 * steps * evidence / var, np.sign(evidence) * np.inf)
        prior = np.log(col(p, "p_nogo")) - np.log1p(-col(p, "p_nogo"))
    go = llr_go > prior
    return b.mask * go[:, None, None]


def observe_dms(task, b, rng):
    p = b.params
    angles = ring_angles(task.dim_ring)
    ring = b.x[:, :, 1:]
    sample = population_angle(window_sum(ring, between(task, col(p, "sample_on_ms"), col(p, "sample_off_ms"))),
                              angles) + memory(rng, col(p, "delay_ms"))
    test = population_angle(window_sum(ring, between(task, col(p, "test_on_ms"), col(p, "test_off_ms"))), angles)
    return one_hot_outputs(b, np.where(np.cos(sample - test) > 0, 0, 1))


def observe_pro_anti(task, b, rng):
    """Bayes-optimal rule reading (knows the noise level and the prior p_anti); memory for the direction."""
    p, D = b.params, task.dim_ring
    r = window_sum(b.x[:, :, 1:3], between(task, 0.0, col(p, "decision_on_ms")))
    sd = input_noise_sd(task.dt, task.tau, col(p, "stim_noise"))
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.where(sd > 0, (r[:, 1] - r[:, 0]) / sd ** 2, np.sign(r[:, 1] - r[:, 0]) * np.inf)
        prior = np.log(col(p, "p_anti")) - np.log1p(-col(p, "p_anti"))
    anti = (llr + prior > 0).astype(int)
    resp = window_sum(b.x[:, :, 3:], between(task, col(p, "stim_on_ms"), col(p, "stim_off_ms")))
    angle = population_angle(resp, ring_angles(D)) + memory(rng, col(p, "delay_ms"))
    stim = np.round(angle / (2 * np.pi / D)).astype(int) % D
    return one_hot_outputs(b, (stim + anti * D // 2) % D)


def observe_ready_set_go(task, b, rng, weber: float = 0.15):
    """Measures the Ready-Set interval from the flashes, reproduces it with scalar (Weber) noise."""
    t = times(task)
    ready = t[np.argmax(b.x[:, :, 0] > 0.5, axis=1)]
    set_on = t[np.argmax(b.x[:, :, 1] > 0.5, axis=1)]
    produced = task.gain * (set_on - ready) * (1 + weber * rng.standard_normal(len(ready)))
    return (t[None, :] >= (set_on + produced)[:, None]).astype(np.float32)[:, :, None]


def observe_flip_flop(task, b, rng):
    """Knows when and where pulses come; reads each pulse's sign from the noisy input."""
    p = b.params.copy()

    def read(onset: np.ndarray, bit: np.ndarray) -> np.ndarray:
        w = between(task, onset, onset + task.pulse_ms)
        return np.where(np.einsum("nt,nt->n", w, b.x[np.arange(len(p)), :, bit]) >= 0, 1, -1)

    for k in range(task.N_bits):
        p[f"init{k}"] = read(np.zeros(len(p)), np.full(len(p), k))
    for i in range(16):
        used = p[f"pulse{i}_bit"].to_numpy() >= 0
        onset = np.where(used, col(p, f"pulse{i}_ms"), 0.0)
        p[f"pulse{i}_sign"] = np.where(used, read(onset, np.maximum(p[f"pulse{i}_bit"].to_numpy(), 0)), 0)
    _, y_hat, _ = task.targets(p)
    return y_hat


def observe_bit_stream(task, b, rng):
    """Reads the stream, but recalls a bit k steps old flipped with probability ``(1 - (1 - fade)^k) / 2``
    (``fade`` = BIT_FADE_PER_STEP), then answers every scored head from what it recalls."""
    y_hat = np.zeros_like(b.y)
    for i, row in enumerate(b.params.to_dict("records")):
        L = int(row["length"])
        bits = (b.x[i, :L, 0] > 0.5).astype(int)
        age = np.arange(L)[::-1]
        flip = rng.random(L) < (1 - (1 - BIT_FADE_PER_STEP) ** age) / 2
        recalled = bits ^ flip
        for n, c in stream_heads(task, row):
            y_hat[i, :, c + stream_answer(task, recalled, n)] = 1.0
    return y_hat


# ---------------------------------------------------------------------- chance
def chance_uniform(k: int) -> Callable[[Task, Batch], float]:
    return lambda task, b: 1.0 / k


def chance_delayed_discrimination(task, b):
    empty = ~b.mask.any(axis=(1, 2))  # nothing to score: counted correct, as in PsychRNN
    return float(np.mean(empty) + 0.5 * np.mean(~empty))


def chance_wager(task, b):
    """A blind agent answers a side (1/2), or picks uniformly among the three options offered on wager trials
    (1/3): wager trials are credited halfway between."""
    return float(np.mean(np.where(b.params["wager"].to_numpy() == 1, 5 / 12, 1 / 2)))


def chance_gonogo(task, b):
    p = float(b.params["p_nogo"].mean())
    return max(p, 1 - p)


def chance_bit_stream(task, b):
    """A blind agent is right on each scored head with P = 1/2, and a trial needs every one of them."""
    heads = b.params["N"].to_numpy() - 1 if task.heads == "multi" else np.ones(len(b.params))
    return float(np.mean(0.5 ** heads))


def configured(cls: type, **kwargs: Any) -> Callable[..., Task]:
    """``cls`` with constructor arguments fixed (a factory), keeping the class attributes the generic tests
    read from a factory (``knobs``, ``side_knob``)."""
    factory = functools.partial(cls, **kwargs)
    factory.knobs, factory.side_knob = cls.knobs, cls.side_knob
    return factory


@dataclass
class Case:
    factory: Callable[..., Task]
    expected_mask: Callable[[Task, pd.DataFrame], np.ndarray]
    chance: Callable[[Task, Batch], float]
    observer: Callable[[Task, Batch, np.random.Generator], np.ndarray]
    stress: dict = field(default_factory=dict)  # knob values under which the observer errs
    knob_stress: dict = field(default_factory=dict)  # per knob: overrides of ``stress`` for its test
    knob_factory: dict = field(default_factory=dict)  # per knob: another instance for its test

    def for_knob(self, name: str, seed: int) -> tuple[Task, dict]:
        """The task instance and knob values under which knob ``name``'s effect is measured."""
        task = self.knob_factory.get(name, self.factory)(seed=seed)
        return task, {**self.stress, **self.knob_stress.get(name, {})}


CASES: dict[str, Case] = {
    "PerceptualDiscrimination": Case(PerceptualDiscrimination, mask_perceptual, chance_uniform(2),
                                     observe_perceptual, {"stim_noise": 1.0, "coherence": 0.3}),
    "DelayedDiscrimination": Case(DelayedDiscrimination, mask_delayed_discrimination,
                                  chance_delayed_discrimination, observe_delayed_discrimination,
                                  {"stim_noise": 0.5, "f_diff_hz": 4.0},
                                  knob_stress={"delay_scale": {"stim_noise": 0.1, "f_diff_hz": 8.0},
                                               "stim_noise": {"delay_scale": 0.0}}),
    "MatchToCategory": Case(MatchToCategory, mask_match_to_category, chance_uniform(2),
                            observe_match_to_category, {"stim_noise": 60.0}),
    "ContextDependentDM": Case(ContextDependentDM, mask_decision_period, chance_uniform(2), observe_context,
                               {"stim_noise": 1.0, "coherence_motion": 0.1, "coherence_color": 0.1}),
    "GoNoGo": Case(GoNoGo, mask_decision_period, chance_gonogo, observe_gonogo,
                   {"stim_noise": 1.5, "stim_ms": 100.0, "delay_ms": 500.0},
                   knob_stress={"delay_ms": {"stim_noise": 0.0}}),
    "DelayedMatchToSample": Case(DelayedMatchToSample, mask_decision_period, chance_uniform(2), observe_dms,
                                 {"stim_noise": 1.0, "delay_ms": 1000.0},
                                 knob_stress={"delay_ms": {"stim_noise": 0.0}}),
    "ProAntiSaccade": Case(ProAntiSaccade, mask_decision_period, chance_uniform(8), observe_pro_anti,
                           {"stim_noise": 1.0, "delay_ms": 500.0},
                           knob_stress={"delay_ms": {"stim_noise": 0.0}, "p_anti": {"delay_ms": 0.0}},
                           # with 2 directions, reading the rule and reading the direction err alike
                           knob_factory={"p_anti": lambda **kw: ProAntiSaccade(dim_ring=2, **kw)}),
    "ReadySetGo": Case(ReadySetGo, mask_ready_set_go, lambda task, b: 0.0, observe_ready_set_go, {}),
    "FlipFlop": Case(FlipFlop, mask_flip_flop, lambda task, b: 0.0, observe_flip_flop,
                     {"stim_noise": 0.5, "n_pulses": 4.0}),
    "PostDecisionWager": Case(PostDecisionWager, mask_wager, chance_wager, observe_wager,
                              {"stim_noise": 0.3, "coherence": 0.25, "stim_ms": 300.0}),
    "MultiSensoryIntegration": Case(MultiSensoryIntegration, mask_decision_period, chance_uniform(2),
                                    observe_multisensory,
                                    {"stim_noise": 0.3, "coherence": 0.15}),
    # CASES is keyed by catalog name, so one layout each here; VARIANTS holds the other two (their generic
    # laws run in test_sequence_memory.py)
    "NDelayedMatch": Case(configured(NDelayedMatch, N_max=12, N=6), mask_bit_stream, chance_bit_stream,
                          observe_bit_stream),
    "NParity": Case(configured(NParity, heads="multi", N_max=12, N=6), mask_bit_stream, chance_bit_stream,
                    observe_bit_stream),
}

VARIANTS: dict[str, Case] = {
    "NDelayedMatch-multi": Case(configured(NDelayedMatch, heads="multi", N_max=12, N=6), mask_bit_stream,
                                chance_bit_stream, observe_bit_stream),
    "NParity-single": Case(configured(NParity, N_max=12, N=6), mask_bit_stream, chance_bit_stream,
                           observe_bit_stream),
}


def accuracy(task: Task, batch: Batch, y_hat: np.ndarray) -> float:
    scored = task.score(batch.y, y_hat, batch.mask, batch.params)
    return float(np.mean(scored["outcome"] == "correct"))
