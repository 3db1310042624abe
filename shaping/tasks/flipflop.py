"""N-bit flip-flop: each output holds the sign of the last pulse on its input.

Each of ``N_bits`` inputs receives brief +1 or -1 pulses at random times; the matching output must hold the
sign of the latest pulse on its input until the next one, ignoring pulses on the other inputs. Sussillo &
Barak 2013, Neural Computation 25:626 (https://doi.org/10.1162/NECO_a_00409), the 3-bit memory.

Trial layout: every bit gets a pulse at t = 0 (its initial state), then ``n_pulses`` pulses (a knob) fall on
distinct slots of a ``slot_ms`` grid, each on a random bit with a random sign. Pulses last ``pulse_ms``. The
target of bit k is the sign of its latest pulse (from that pulse's onset); the mask is 1 except during
``pulse_ms + settle_ms`` from each pulse's onset on that bit, so the network has time to flip.

Scoring: the trial is correct when every bit's output has the target's sign at every masked step. ``choice``
is the number of bits that did, ``target`` is ``N_bits``; so ``choice == target`` exactly when correct.

Deviations: pulses on a slot grid (one pulse per slot) rather than Poisson times, so that trials are
described by a fixed set of columns (``pulse{i}_ms``, ``pulse{i}_bit``, ``pulse{i}_sign``; unused: NaN, -1,
0) and never overlap; noise ``stim_noise * sqrt(2 tau / dt)`` on every input (Yang et al. 2019).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import Task
from .common import input_noise_sd, knob_samples, noise, param_column, step_times
from .knobs import Knob
from .registry import register

__all__ = ["FlipFlop"]

MAX_PULSES = 16


@register
class FlipFlop(Task):
    """``N_bits`` flip-flop memory: output k holds the sign of the last pulse on input k.

    Args:
        dt: time step (ms). tau: unit time constant (ms). T: trial duration (ms). N_batch: trials per batch.
        N_bits: number of bits (inputs = outputs).
        pulse_ms: pulse duration (ms, >= dt).
        settle_ms: unscored time after each pulse on its bit (ms).
        slot_ms: spacing of the pulse grid (ms, >= pulse_ms + settle_ms); slot j starts at ``j * slot_ms``
            for ``j = 1 .. T // slot_ms - 1``.
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values.
    """

    metadata = {
        "description": "N-bit flip-flop: hold the sign of the last pulse on each of N inputs",
        "paper_name": "Sussillo & Barak 2013, Opening the black box: low-dimensional dynamics in "
                      "high-dimensional recurrent neural networks",
        "paper_link": "https://doi.org/10.1162/NECO_a_00409",
        "tags": ["memory", "multi-output", "dynamics"],
    }
    knobs = (
        Knob("n_pulses", 0.0, float(MAX_PULSES), 8.0, "lower", "count", integer=True,
             doc="pulses after the initial ones (each a chance to flip a bit)"),
        Knob("stim_noise", 0.0, 2.0, 0.05, "lower", "a.u.", doc="input noise, scaled by sqrt(2 tau / dt)"),
    )
    side_knob = None
    evidence_knob = None

    def __init__(self, dt: float = 10, tau: float = 100, T: float = 2000, N_batch: int = 128,
                 N_bits: int = 3, pulse_ms: float = 20.0, settle_ms: float = 30.0, slot_ms: float = 100.0,
                 seed: int | np.random.Generator | None = None, **knobs: Any):
        if not isinstance(N_bits, (int, np.integer)) or N_bits < 1:
            raise ValueError(f"FlipFlop: N_bits must be a positive integer, got {N_bits!r}")
        self.N_bits = int(N_bits)
        self.input_names = tuple(f"bit{k}_in" for k in range(self.N_bits))
        self.output_names = tuple(f"bit{k}" for k in range(self.N_bits))
        super().__init__(self.N_bits, self.N_bits, dt, tau, T, N_batch, seed=seed, **knobs)
        if not pulse_ms >= dt:
            raise ValueError(f"FlipFlop: pulse_ms={pulse_ms!r} must be >= dt={dt!r} ms")
        if not settle_ms >= 0:
            raise ValueError(f"FlipFlop: settle_ms must be >= 0 ms, got {settle_ms!r}")
        if not slot_ms >= pulse_ms + settle_ms:
            raise ValueError(f"FlipFlop: slot_ms={slot_ms!r} must be >= pulse_ms + settle_ms = "
                             f"{pulse_ms + settle_ms:g} ms")
        self.pulse_ms = float(pulse_ms)
        self.settle_ms = float(settle_ms)
        self.slot_ms = float(slot_ms)
        self.n_slots = max(int(T // slot_ms) - 1, 0)

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        v = knob_samples(self, knobs, n, rng)
        k = v["n_pulses"].astype(np.int64)
        if k.size and k.max() > self.n_slots:
            raise ValueError(f"FlipFlop: n_pulses={int(k.max())} needs that many {self.slot_ms:g} ms slots but "
                             f"T={self.T:g} ms holds {self.n_slots}; raise T or lower n_pulses")
        init = rng.integers(0, 2, (n, self.N_bits)) * 2 - 1
        used = np.arange(MAX_PULSES)[None, :] < k[:, None]
        slots = np.full((n, MAX_PULSES), np.inf)
        m = min(MAX_PULSES, self.n_slots)
        if m:
            # A random subset of the slots per trial, in time order (unused entries sort last as inf).
            perm = np.argsort(rng.random((n, self.n_slots)), axis=1)[:, :m] + 1
            slots[:, :m] = np.where(used[:, :m], perm, np.inf)
            slots.sort(axis=1)
        bits = rng.integers(0, self.N_bits, (n, MAX_PULSES))
        signs = rng.integers(0, 2, (n, MAX_PULSES)) * 2 - 1
        cols: dict[str, Any] = {f"init{b}": init[:, b] for b in range(self.N_bits)}
        cols.update(n_pulses=k, stim_noise=v["stim_noise"])
        onset = np.where(used, slots * self.slot_ms, np.nan)
        for i in range(MAX_PULSES):
            cols[f"pulse{i}_ms"] = onset[:, i]
            cols[f"pulse{i}_bit"] = np.where(used[:, i], bits[:, i], -1)
            cols[f"pulse{i}_sign"] = np.where(used[:, i], signs[:, i], 0)
        return pd.DataFrame(cols)

    def _events(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(n, N_bits + MAX_PULSES)`` onsets (ms), bits (-1: unused) and signs of every pulse, the initial
        ones at t = 0 included, in time order within each trial (unused entries last)."""
        n = len(params)
        pulses = range(MAX_PULSES)
        onset = np.concatenate([np.zeros((n, self.N_bits)), np.stack(
            [param_column(params, f"pulse{i}_ms", self, float) for i in pulses], axis=1)], axis=1)
        bit = np.concatenate([np.broadcast_to(np.arange(self.N_bits), (n, self.N_bits)), np.stack(
            [params[f"pulse{i}_bit"].to_numpy(dtype=np.int64) for i in pulses], axis=1)], axis=1)
        sign = np.concatenate([np.stack([params[f"init{b}"].to_numpy(dtype=np.int64)
                                         for b in range(self.N_bits)], axis=1), np.stack(
            [params[f"pulse{i}_sign"].to_numpy(dtype=np.int64) for i in pulses], axis=1)], axis=1)
        onset = np.where(bit >= 0, onset, np.inf)
        order = np.argsort(onset, axis=1, kind="stable")
        return tuple(np.take_along_axis(a, order, axis=1) for a in (onset, bit, sign))

    def targets(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noise-free ``(pulses, y, mask)``, each ``(n, N_steps, N_bits)`` float32.

        Each array is a cumulative sum over time of per-pulse changes placed at the first step with
        ``t >=`` the change's time (the rule every window follows): the pulse input (+sign at onset, -sign at
        offset), the state (its sign minus the bit's previous state, at onset) and the count of unscored
        pulses (+1 at onset, -1 after ``pulse_ms + settle_ms``).
        """
        n, N, B = len(params), self.N_steps, self.N_bits
        onset, bit, sign = self._events(params)
        rows = np.arange(n)
        change = np.zeros_like(sign)
        state = np.zeros((n, B), dtype=np.int64)
        for e in range(bit.shape[1]):  # a handful of pulses, in time order
            b = np.maximum(bit[:, e], 0)
            change[:, e] = np.where(bit[:, e] >= 0, sign[:, e] - state[rows, b], 0)
            state[rows, b] += change[:, e]
        trial, ev = np.nonzero(bit >= 0)
        b, on = bit[trial, ev], onset[trial, ev]
        t = step_times(self)
        start, stop, free = (np.searchsorted(t, s, side="left")
                             for s in (on, on + self.pulse_ms, on + self.pulse_ms + self.settle_ms))
        cell = (trial * B + b) * (N + 1)  # flat index of (trial, bit, step 0); time last, contiguous
        size = n * B * (N + 1)
        acc = np.stack([np.bincount(np.concatenate(steps) + np.tile(cell, len(steps)),
                                    np.concatenate(values), minlength=size)
                        for steps, values in (((start, stop), (sign[trial, ev], -sign[trial, ev])),
                                              ((start,), (change[trial, ev],)),
                                              ((start, free), (np.ones(len(b)), -np.ones(len(b)))))])
        acc = acc.reshape(3, n, B, N + 1).astype(np.float32)
        np.cumsum(acc, axis=3, out=acc)
        pulses, y, busy = (np.ascontiguousarray(acc[k, :, :, :N].transpose(0, 2, 1)) for k in range(3))
        return pulses, y, (busy == 0).astype(np.float32)

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pulses, y, mask = self.targets(params)
        x = noise(rng, pulses.shape, input_noise_sd(self.dt, self.tau, params["stim_noise"].to_numpy()))
        x += pulses
        return x, y, mask

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x_t = input_noise_sd(self.dt, self.tau, params["stim_noise"]) * self.rng.standard_normal(self.N_in)
        y_t = np.zeros(self.N_out)
        mask_t = np.ones(self.N_out)
        latest = np.full(self.N_bits, -np.inf)
        events = [(0.0, b, params[f"init{b}"]) for b in range(self.N_bits)]
        events += [(params[f"pulse{i}_ms"], int(params[f"pulse{i}_bit"]), params[f"pulse{i}_sign"])
                   for i in range(MAX_PULSES) if params[f"pulse{i}_bit"] >= 0]
        for onset, b, sign in events:
            if onset <= t < onset + self.pulse_ms:
                x_t[b] += sign
            if onset <= t < onset + self.pulse_ms + self.settle_ms:
                mask_t[b] = 0.0
            if onset <= t and onset > latest[b]:
                latest[b] = onset
                y_t[b] = sign
        return x_t, y_t, mask_t

    # ------------------------------------------------------------------ scoring
    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        return np.full(len(y), self.N_bits, dtype=np.int64)

    def choice_from_output(self, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        _, y, _ = self.targets(params)
        return self._bits_held(y, y_hat, mask)

    @staticmethod
    def _bits_held(y: np.ndarray, y_hat: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``(n,)`` number of bits whose output has the target's sign at every masked step."""
        right = (np.sign(y_hat) == np.sign(y)) | (mask == 0)
        return right.all(axis=1).sum(axis=1).astype(np.int64)

    def accuracy_function(self, correct_output: np.ndarray, test_output: np.ndarray,
                          output_mask: np.ndarray) -> float:
        """PsychRNN API: the fraction of trials where every bit held the right sign at every masked step."""
        return float(np.mean(self._bits_held(correct_output, test_output, output_mask) == self.N_bits))
