"""Helpers shared by the built-in tasks: input-noise scales, the period window, ring codes, trial-length checks.

The built-in tasks build their batches with :class:`~shaping.tasks.base.TrialBuilder`; its windows follow
:func:`window`'s rule: step ``i`` (time ``t = i*dt`` ms) lies in ``[onset, offset)`` when ``onset <= t < offset``.
The per-step ``trial_function`` of each task uses the same comparisons on the same numbers (period bounds are
stored in the params table in absolute ms), so the vectorised and per-step paths agree exactly.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .knobs import Knob

# Output levels of PsychRNN's one-hot targets (high on the correct channel, low on the others).
HI = 1.0
LO = 0.2


def psychrnn_noise_sd(dt: float, stim_noise: Any) -> Any:
    """PsychRNN 1.0.0's input-noise standard deviation: ``sqrt(2 * 0.01 * sqrt(10) * sqrt(dt) * stim_noise^2)``.

    Used by the PsychRNN tasks (perceptual and delayed discrimination) to stay faithful to them. Note that it
    grows with ``dt``, so their difficulty depends on the time step.
    """
    return np.sqrt(2 * 0.01 * np.sqrt(10) * np.sqrt(dt) * np.square(stim_noise))


def input_noise_sd(dt: float, tau: Any, stim_noise: Any) -> Any:
    """Input-noise standard deviation ``stim_noise * sqrt(2 * tau / dt)`` (Yang et al. 2019, Nat Neurosci,
    https://doi.org/10.1038/s41593-018-0310-2: ``sigma_x * sqrt(2 / alpha)``).

    A leaky unit integrates ``alpha * x`` per step, so this scaling makes the integrated noise independent of
    ``dt`` (ms). With one ``tau`` per unit, the mean is used.
    """
    return np.asarray(stim_noise, dtype=float) * np.sqrt(2.0 * float(np.mean(tau)) / dt)


def step_times(task: Any) -> np.ndarray:
    """``(N_steps,)`` float64: ``t = i * dt`` ms (an integer step counter times ``dt``, never accumulated)."""
    return np.arange(task.N_steps) * float(task.dt)


def window(t: np.ndarray, onset: Any, offset: Any) -> np.ndarray:
    """Boolean ``(n, N_steps)``: ``onset <= t < offset`` for per-trial ``onset``/``offset`` arrays (ms)."""
    onset = np.asarray(onset, dtype=float).reshape(-1, 1)
    offset = np.asarray(offset, dtype=float).reshape(-1, 1)
    return (t[None, :] >= onset) & (t[None, :] < offset)


def ring_angles(n: int) -> np.ndarray:
    """Preferred angles (rad) of ``n`` channels evenly spaced on a ring: ``2*pi*k/n``."""
    return np.arange(n) * (2.0 * np.pi / n)


def cos_tuning(theta: Any, n: int) -> np.ndarray:
    """``(len(theta), n)`` float64 ring code ``0.5 + 0.5*cos(pref - theta)`` of stimuli at angles ``theta``
    (NeuroGym's ring encoding)."""
    theta = np.asarray(theta, dtype=float).reshape(-1, 1)
    return 0.5 + 0.5 * np.cos(ring_angles(n)[None, :] - theta)


def noise(rng: np.random.Generator, shape: tuple[int, int, int], sd: Any) -> np.ndarray:
    """Gaussian input noise ``(n, N_steps, N_in)`` float32 with per-trial standard deviation ``sd``.

    Always draws the full array, whatever ``sd``, so a batch's random stream (and everything drawn after
    the noise) does not depend on the noise level.
    """
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= np.asarray(sd, dtype=np.float32).reshape(-1, 1, 1)
    return x


def fixation_step(task: Any, t: float, params: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The start of a per-step ``trial_function`` for a task whose input 0 is fixation.

    Returns ``(x_t, y_t, mask_t)``: input noise drawn from the task's stream (``N_in``,), fixation 1 until
    ``params["decision_on_ms"]``, targets and mask zero (``N_out``,).
    """
    x_t = input_noise_sd(task.dt, task.tau, params["stim_noise"]) * task.rng.standard_normal(task.N_in)
    if t < params["decision_on_ms"]:
        x_t[0] += 1.0
    return x_t, np.zeros(task.N_out), np.zeros(task.N_out)


def _first_at_or_after(t: np.ndarray, time_ms: Any) -> np.ndarray:
    """``(n,)`` int64: for each time, the first step ``i`` with ``t[i] >= time`` (``len(t)`` if none), exactly as
    comparing with ``t`` would find it. An estimate from ``t``'s spacing corrected by one comparison each way:
    several times faster than ``searchsorted`` with unsorted keys."""
    time_ms = np.asarray(time_ms, dtype=float)
    steps = len(t)
    dt = t[1] - t[0] if steps > 1 else 1.0
    i = np.clip(np.ceil((time_ms - t[0]) / dt), 0, steps).astype(np.int64)
    padded = np.concatenate([t, [np.inf]])
    i = np.where((i > 0) & (padded[np.maximum(i - 1, 0)] >= time_ms), i - 1, i)  # one step too late
    return np.where(padded[i] < time_ms, i + 1, i)  # one step too early


def steps_from(t: np.ndarray, onset: Any, offset: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Per trial, the steps ``[start, stop)`` whose times ``t`` (``(N_steps,)`` ms) satisfy ``onset <= t`` (and
    ``t < offset`` when given), as :func:`window` selects them; ``(n,)`` int64 each, ``start = stop = 0`` for a
    trial with no such step (the convention of ``shaping.tasks.base.mask_window``)."""
    start = _first_at_or_after(t, onset)
    stop = np.full_like(start, len(t)) if offset is None else _first_at_or_after(t, offset)
    empty = stop <= start
    return np.where(empty, 0, start).astype(np.int64), np.where(empty, 0, stop).astype(np.int64)


def decision_window(task: Any, params: Any) -> tuple[np.ndarray, np.ndarray]:
    """The response window of a task whose mask is 1 on every output over its ``"decision"`` period, built
    from the ``decision_on_ms`` and ``decision_off_ms`` columns of its params: ``Task.response_window``'s steps."""
    return steps_from(step_times(task), params["decision_on_ms"].to_numpy(dtype=float),
                      params["decision_off_ms"].to_numpy(dtype=float))


def knob_samples(task: Any, knobs: Mapping[str, Any], n: int, rng: np.random.Generator
                 ) -> dict[str, np.ndarray]:
    """Per-trial values of every knob of ``task`` under ``knobs``, drawn in declaration order."""
    return {k.name: k.sample(knobs[k.name], n, rng) for k in task.knobs}


def check_fits(task: Any, end_ms: Any, knobs: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when a trial ending at ``end_ms`` (per trial) does not fit in ``task.T``."""
    longest = float(np.max(end_ms)) if np.size(end_ms) else 0.0
    if longest > task.T + 1e-9:
        shown = ", ".join(f"{k}={v!r}" for k, v in knobs.items())
        raise ValueError(f"{type(task).__name__}: a trial needs {longest:g} ms under knobs ({shown}) but "
                         f"T={task.T:g} ms; raise T or choose shorter periods")


# periods a trial cannot do without: the evidence and the response window (scored and trained on)
NONEMPTY_PERIODS = ("stimulus", "sample", "test", "decision")


def check_timing(task_name: str, timing: Mapping[str, float], overrides: Mapping[str, Any] | None,
                 dt: float) -> dict[str, float]:
    """Default period durations (ms) updated key by key with ``overrides``; unknown keys, negative durations
    and :data:`NONEMPTY_PERIODS` shorter than one step ``dt`` (ms) raise ``ValueError`` (a zero-length
    decision period has no masked step: nothing to train or score)."""
    merged = dict(timing)
    for key, val in (overrides or {}).items():
        if key not in timing:
            raise ValueError(f"{task_name}: unknown timing key {key!r}; keys are {', '.join(timing)}")
        if not np.isscalar(val) or not float(val) >= 0:
            raise ValueError(f"{task_name}: timing[{key!r}] must be a duration >= 0 ms, got {val!r}")
        if key in NONEMPTY_PERIODS and float(val) < dt:
            raise ValueError(f"{task_name}: timing[{key!r}] = {val!r} ms is shorter than one time step (dt = "
                             f"{dt!r} ms): the trial would have no {key} period")
        merged[key] = float(val)
    return merged


def draw_side(p_choice1: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` int64: 1 with per-trial probability ``p_choice1``, else 0."""
    return (rng.random(p_choice1.shape[0]) < p_choice1).astype(np.int64)


def side_probability_knob(doc: str) -> Knob:
    """The ``p_choice1`` knob: probability that the correct choice is 1. It is a bias-correction knob (a
    task's ``side_knob``), not a difficulty knob; ``easier`` is nominal."""
    return Knob("p_choice1", 0.0, 1.0, 0.5, None, "probability", doc=doc)


def param_column(params: Any, name: str, task: Any, dtype: Any = None) -> np.ndarray:
    """Column ``name`` of a batch's params table; ``ValueError`` when scoring was not given the params."""
    if name not in getattr(params, "columns", ()):
        raise ValueError(f"{type(task).__name__}.score needs the batch's trial params (column {name!r}); "
                         f"pass batch.params as trial_params")
    return params[name].to_numpy(dtype=dtype)
