"""The task contract: PsychRNN-compatible, vectorised, seeded, with difficulty knobs and per-trial scoring.

A PsychRNN user's task class runs here unchanged with only its import changed to
``from shaping.tasks import Task``: it implements ``generate_trial_params(batch, trial) -> dict`` and
``trial_function(t, params) -> (x_t, y_t, mask_t)`` (t in ms) and gets ``batch_generator()``,
``get_trial_batch()`` and ``get_task_params()`` as in PsychRNN 1.0.0 (Ehrlich et al. 2021, eNeuro,
https://doi.org/10.1523/ENEURO.0427-20.2020).

Beyond PsychRNN:

- **Vectorised batches.** A task that implements ``sample_params(n, rng, knobs) -> DataFrame`` and
  ``build_trials(params, rng) -> (x, y, mask)`` builds a whole batch with array operations over trials and
  time (all built-in tasks do). Other tasks fall back to PsychRNN's per-time-step loop automatically.
- **Seeds.** ``Task(..., seed=...)``; batch ``k`` is drawn from ``SeedSequence(seed, spawn_key=(k,))``, so a
  batch is reproducible from (seed, batch id, knob values) alone, whatever was generated before it.
  PsychRNN-style tasks draw from NumPy's global RNG; for those the global state is seeded from the same
  sequence for the duration of the batch and then put back, so they are reproducible too.
- **Knobs** (:mod:`shaping.tasks.knobs`): the difficulty parameters a policy moves.
- **Scoring** per trial into a pandas DataFrame (``score``), richer than PsychRNN's ``accuracy_function``.

Arrays are float32 and shaped ``(N_batch, N_steps, channels)``; time is ``t = i * dt`` ms for step ``i``
(an integer step counter, never accumulated).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .knobs import Knob

OUTCOMES = ("correct", "error", "no_response")
SCORE_COLUMNS = ("trial", "outcome", "choice", "target")  # what score() puts first, before the trial params
PARAM_PREFIX = "param."  # a trial parameter named like a score column is kept under this prefix
_OUTCOME_LABELS = np.array(OUTCOMES, dtype=object)


def _time_sum(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(a * mask).sum(axis=1)``: ``(N_batch, N_steps, N_out) -> (N_batch, N_out)``, summed over time.

    einsum adds the steps in the same order without the product temporary, and avoids NumPy's slow
    strided reduction over the middle axis (about 4x faster at 200 steps)."""
    return np.einsum("ntk,ntk->nk", a, mask)


@dataclass
class Batch:
    """One batch of trials.

    Attributes:
        x: inputs ``(N_batch, N_steps, N_in)`` float32.
        y: targets ``(N_batch, N_steps, N_out)`` float32.
        mask: loss/scoring weights ``(N_batch, N_steps, N_out)`` float32.
        params: one row per trial: every trial parameter (the record the journal and scoring use).
        knobs: the knob values the batch was drawn under.
        batch_id: index of the batch in the task's seeded stream.
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    params: pd.DataFrame
    knobs: dict = field(default_factory=dict)
    batch_id: int = 0

    def __len__(self) -> int:
        return self.x.shape[0]

    def trial_params(self) -> np.ndarray:
        """Per-trial parameter dicts as PsychRNN yields them (an object array of dicts)."""
        out = np.empty(len(self.params), dtype=object)
        out[:] = self.params.to_dict("records")
        return out

    def as_psychrnn(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, mask, trial_params)`` as PsychRNN's ``batch_generator`` yields them."""
        return self.x, self.y, self.mask, self.trial_params()


class TrialBuilder:
    """Builds a batch of trials with NeuroGym's period vocabulary, vectorised over trials and time.

    Periods are per-trial ``[onset, offset)`` intervals in ms. The rounding rule, stated once: step ``i``
    (time ``t = i*dt``) belongs to a period when ``onset <= t < offset``, i.e. steps
    ``ceil(onset/dt) .. ceil(offset/dt) - 1``. Periods beyond ``T`` are clipped.

    Example::

        b = TrialBuilder(task, n)
        b.add_period("fixation", 100)                 # 0 .. 100 ms for every trial
        b.add_period("stimulus", params.stim_ms)      # per-trial durations, after the previous period
        b.add_input("motion_left", values, "stimulus")
        b.set_groundtruth(target_channel, "decision", hi=1.0, lo=0.2)
    """

    def __init__(self, task: "Task", n: int):
        self.task = task
        self.n = n
        self.t = np.arange(task.N_steps) * float(task.dt)  # (N_steps,) ms
        self.x = np.zeros((n, task.N_steps, task.N_in), dtype=np.float32)
        self.y = np.zeros((n, task.N_steps, task.N_out), dtype=np.float32)
        self.mask = np.zeros((n, task.N_steps, task.N_out), dtype=np.float32)
        self.periods: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._end = np.zeros(n)

    def add_period(self, name: str, duration_ms: Any, after: str | None = None,
                   onset_ms: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Add a period of ``duration_ms`` (scalar or per trial) after ``after`` (default: the last one
        added), or at ``onset_ms``. Returns per-trial ``(onset_ms, offset_ms)`` arrays."""
        if onset_ms is None:
            onset = self.periods[after][1] if after is not None else self._end
        else:
            onset = onset_ms
        onset = np.broadcast_to(np.asarray(onset, dtype=float), (self.n,)).copy()
        offset = onset + np.broadcast_to(np.asarray(duration_ms, dtype=float), (self.n,))
        self.periods[name] = (onset, offset)
        self._end = offset
        return onset, offset

    def in_period(self, name: str) -> np.ndarray:
        """Boolean ``(n, N_steps)``: which steps of each trial lie in the period."""
        onset, offset = self.periods[name]
        return (self.t[None, :] >= onset[:, None]) & (self.t[None, :] < offset[:, None])

    def after(self, name: str) -> np.ndarray:
        """Boolean ``(n, N_steps)``: steps at or after the period's onset."""
        return self.t[None, :] >= self.periods[name][0][:, None]

    @staticmethod
    def _per_trial(value: Any, n: int) -> np.ndarray:
        v = np.asarray(value, dtype=np.float32)
        return np.broadcast_to(v.reshape(-1, 1) if v.ndim == 1 else v, (n, 1) if v.ndim <= 1 else v.shape)

    def add_input(self, channel: Any, value: Any, period: str | np.ndarray) -> None:
        """Add ``value`` (scalar or per trial) to input ``channel`` (int or per-trial int array) during
        ``period`` (a name or a boolean ``(n, N_steps)`` array)."""
        where = self.in_period(period) if isinstance(period, str) else period
        self._put(self.x, channel, value, where, add=True)

    def set_groundtruth(self, channel: Any, value: Any, period: str | np.ndarray) -> None:
        """Set the target of output ``channel`` (int or per-trial array) to ``value`` during ``period``."""
        where = self.in_period(period) if isinstance(period, str) else period
        self._put(self.y, channel, value, where, add=False)

    def set_mask(self, value: float, period: str | np.ndarray, channel: Any = None) -> None:
        """Set the loss/scoring weight during ``period`` (all output channels unless ``channel``)."""
        where = self.in_period(period) if isinstance(period, str) else period
        if channel is None:
            self.mask[where] = value
        else:
            self._put(self.mask, channel, value, where, add=False)

    def _put(self, arr: np.ndarray, channel: Any, value: Any, where: np.ndarray, add: bool) -> None:
        ch = np.broadcast_to(np.asarray(channel, dtype=int), (self.n,))
        val = np.broadcast_to(np.asarray(value, dtype=np.float32).reshape(-1, 1)
                              if np.ndim(value) == 1 else np.asarray(value, dtype=np.float32),
                              where.shape)
        for c in np.unique(ch):  # one channel at a time: contiguous writes, no fancy-index scatter
            sel = where & (ch == c)[:, None]
            if add:
                arr[:, :, c] += np.where(sel, val, np.float32(0))
            else:
                arr[:, :, c] = np.where(sel, val, arr[:, :, c])

    def add_noise(self, sd: Any, rng: np.random.Generator, channels: Sequence[int] | None = None) -> None:
        """Add Gaussian noise with standard deviation ``sd`` (scalar or per trial) to the inputs."""
        sd = np.asarray(sd, dtype=np.float32)
        if not np.any(sd):
            return
        idx = slice(None) if channels is None else list(channels)
        shape = self.x[:, :, idx].shape
        noise = rng.standard_normal(shape, dtype=np.float32)
        self.x[:, :, idx] += noise * (sd.reshape(-1, 1, 1) if sd.ndim == 1 else sd)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.x, self.y, self.mask


class Task:
    """Base class of every task (PsychRNN's ``Task`` contract plus knobs, seeds and per-trial scoring).

    Args:
        N_in: number of input channels.
        N_out: number of output channels.
        dt: simulation time step (ms).
        tau: unit time constant (ms); a scalar or one per recurrent unit.
        T: trial duration (ms); ``N_steps = ceil(T / dt)``.
        N_batch: trials per batch.
        seed: an int, a ``numpy.random.Generator`` (an int is drawn from it) or None (fresh entropy, kept in
            ``self.seed`` so the stream can be reproduced later).
        **knob_values: initial knob values (see :class:`~shaping.tasks.knobs.Knob`).

    Class attributes a subclass may set:
        metadata: ``{"paper_name", "paper_link", "tags", "description"}``.
        knobs: tuple of :class:`Knob`.
        input_names / output_names: channel names (default ``in0..``, ``out0..``).
        response_threshold: an output below it in the response window is ``no_response`` (None: never).
        side_knob: the knob giving P(correct choice == 1), moved by bias correction (None: no sides).
        evidence_knob: the knob psychometric curves are plotted against (None: none).
    """

    metadata: dict = {}
    knobs: tuple[Knob, ...] = ()
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    response_threshold: float | None = None
    side_knob: str | None = None
    evidence_knob: str | None = None

    def __init__(self, N_in: int, N_out: int, dt: float, tau: Any, T: float, N_batch: int,
                 seed: int | np.random.Generator | None = None, **knob_values: Any):
        name = type(self).__name__
        for arg, val in (("N_in", N_in), ("N_out", N_out), ("N_batch", N_batch)):
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name}: {arg} must be a positive integer, got {val!r}")
        for arg, val in (("dt", dt), ("T", T)):
            if not np.isscalar(val) or not val > 0:
                raise ValueError(f"{name}: {arg} must be a positive number of ms, got {val!r}")
        if not np.all(np.asarray(tau, dtype=float) > 0):
            raise ValueError(f"{name}: tau must be positive (ms), got {tau!r}")
        self.N_in = int(N_in)
        self.N_out = int(N_out)
        self.dt = dt
        self.tau = tau
        self.T = T
        self.N_batch = int(N_batch)
        self.alpha = dt / np.asarray(tau, dtype=float) if np.ndim(tau) else dt / tau
        self.N_steps = int(np.ceil(T / dt))
        self.reseed(seed)
        self.knob_values: dict[str, Any] = {k.name: k.default for k in self.knobs}
        if knob_values:
            self.set_knobs(**knob_values)
        self._generator: Iterator | None = None

    # ------------------------------------------------------------------ seeds and knobs
    def reseed(self, seed: int | np.random.Generator | None) -> None:
        """Restart the task's batch stream from ``seed``."""
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(0, 2**63))
        elif seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self.seed = int(seed)
        self.batch_index = 0
        self.rng = np.random.default_rng(self.seed)
        self._generator = None

    def batch_rng(self, batch_id: int) -> np.random.Generator:
        """The generator batch ``batch_id`` is drawn from: a function of (seed, batch_id) only."""
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(int(batch_id),)))

    @classmethod
    def knob(cls, name: str) -> Knob:
        for k in cls.knobs:
            if k.name == name:
                return k
        names = ", ".join(k.name for k in cls.knobs) or "none"
        raise ValueError(f"{cls.__name__} has no knob {name!r}; its knobs are: {names}")

    def validate_knobs(self, values: Mapping[str, Any] | None) -> dict[str, Any]:
        """The task's current knob values updated with ``values``, each validated."""
        merged = dict(self.knob_values)
        for key, val in (values or {}).items():
            merged[key] = self.knob(key).validate(val, type(self).__name__)
        return merged

    def set_knobs(self, **values: Any) -> None:
        """Set knob values for the batches that follow (``ValueError`` on an unknown knob or a bad value)."""
        self.knob_values = self.validate_knobs(values)

    # ------------------------------------------------------------------ PsychRNN API
    def generate_trial_params(self, batch: int, trial: int) -> dict:
        """Parameters of one trial (PsychRNN API). Vectorised tasks derive it from ``sample_params``."""
        if not self.vectorised:
            raise NotImplementedError(f"{type(self).__name__} must implement generate_trial_params")
        return self.sample_params(1, self.rng, self.knob_values).iloc[0].to_dict()

    def trial_function(self, time: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input, target and mask at time ``time`` (ms) of the trial ``params`` (PsychRNN API)."""
        raise NotImplementedError(f"{type(self).__name__} must implement trial_function")

    def accuracy_function(self, correct_output: np.ndarray, test_output: np.ndarray,
                          output_mask: np.ndarray) -> float:
        """Fraction correct (PsychRNN API): argmax of the masked mean output against the target's."""
        chosen = np.argmax(np.mean(test_output * output_mask, axis=1), axis=1)
        truth = np.argmax(np.mean(correct_output * output_mask, axis=1), axis=1)
        return float(np.mean(np.equal(truth, chosen)))

    def generate_trial(self, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One trial through ``trial_function``, one call per time step (PsychRNN's path)."""
        x = np.zeros((self.N_steps, self.N_in), dtype=np.float32)
        y = np.zeros((self.N_steps, self.N_out), dtype=np.float32)
        m = np.zeros((self.N_steps, self.N_out), dtype=np.float32)
        for i in range(self.N_steps):
            x[i], y[i], m[i] = self.trial_function(i * self.dt, params)
        return x, y, m

    def batch_generator(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Yields ``(x, y, mask, trial_params)`` forever, from the task's seeded stream."""
        while True:
            batch = self.generate(batch_id=self.batch_index)
            self.batch_index += 1
            yield batch.as_psychrnn()

    def get_trial_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The next batch of the persistent generator (PsychRNN API)."""
        if self._generator is None:
            self._generator = self.batch_generator()
        return next(self._generator)

    def get_task_params(self) -> dict:
        """A copy of the task's parameters (PsychRNN returns its live ``__dict__``; we don't)."""
        skip = {"rng", "_generator"}
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in skip})

    # ------------------------------------------------------------------ batches
    @property
    def vectorised(self) -> bool:
        """True when the task builds whole batches with array operations."""
        cls = type(self)
        return cls.sample_params is not Task.sample_params and cls.build_trials is not Task.build_trials

    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        """Vectorised path: draw ``n`` trials' parameters under ``knobs``, one row per trial."""
        raise NotImplementedError

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vectorised path: ``(x, y, mask)`` for the trials in ``params`` (noise drawn from ``rng``)."""
        raise NotImplementedError

    def generate(self, n: int | None = None, knobs: Mapping[str, Any] | None = None,
                 batch_id: int | None = None, stepwise: bool = False,
                 repeat: Sequence[Mapping[str, Any]] | None = None) -> Batch:
        """Build a batch of ``n`` trials (default ``N_batch``) under ``knobs`` (default: the task's own).

        ``batch_id`` picks the batch in the seeded stream (default: the next one). ``stepwise=True`` forces
        PsychRNN's per-time-step path (built-in tasks then draw their params vectorised and build each trial
        with ``trial_function``, which is how the two paths are compared). ``repeat`` is a list of trial
        parameter overrides (e.g. ``{"direction": 1, "coherence": 0.1}``) applied to the first trials of
        the batch, which are flagged in a ``correction`` column (correction trials after an error).
        """
        n = self.N_batch if n is None else int(n)
        knob_values = self.validate_knobs(knobs)
        if batch_id is None:
            batch_id = self.batch_index
            self.batch_index += 1
        rng = self.batch_rng(batch_id)
        if self.vectorised:
            params = self.sample_params(n, rng, knob_values)
            params = apply_repeats(params, repeat, type(self).__name__)
            if stepwise:
                live, self.rng = self.rng, rng  # per-step noise from the batch's own stream: reproducible
                try:
                    trials = [self.generate_trial(p) for p in params.to_dict("records")]
                finally:
                    self.rng = live
                x, y, mask = (np.stack(a) for a in zip(*trials))
            else:
                x, y, mask = self.build_trials(params, rng)
        else:
            live, self.knob_values = self.knob_values, knob_values  # a user task reads self.knob_values
            try:
                x, y, mask, params = self._generate_psychrnn(n, batch_id, rng, repeat)
            finally:
                self.knob_values = live
        for key, val in knob_values.items():
            if key not in params.columns:
                params[key] = [val] * n if not np.isscalar(val) else val
        return Batch(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32),
                     np.ascontiguousarray(mask, dtype=np.float32), params, knob_values, int(batch_id))

    def _generate_psychrnn(self, n: int, batch_id: int, rng: np.random.Generator,
                           repeat: Sequence[Mapping[str, Any]] | None = None):
        # A PsychRNN task draws from NumPy's global RNG: seed it from (seed, batch_id) for this batch only.
        saved = np.random.get_state()
        np.random.seed(rng.integers(0, 2**32, dtype=np.uint64).item())
        try:
            trials, records = [], []
            for trial in range(n):
                p = self.generate_trial_params(batch_id + 1, trial)  # PsychRNN counts batches from 1
                if repeat and trial < len(repeat):
                    p = {**p, **repeat[trial]}
                    p["correction"] = bool(p.get("correction", True))
                trials.append(self.generate_trial(p))
                records.append(p)
        finally:
            np.random.set_state(saved)
        x, y, mask = (np.stack(a) for a in zip(*trials))
        params = _records_frame(records)
        if repeat:
            params["correction"] = params["correction"].fillna(False).astype(bool)
        return x, y, mask, params

    # ------------------------------------------------------------------ scoring
    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        """The correct choice per trial ``(N_batch,)`` int; -1 where withholding a response is correct."""
        return np.argmax(_time_sum(y, mask), axis=1)

    def choice_from_output(self, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        """The agent's choice per trial ``(N_batch,)`` int: the output channel with the largest masked mean
        in the response window; -1 (no response) when it stays below ``response_threshold``."""
        w = np.einsum("ntk->nk", mask)
        mean = _time_sum(y_hat, mask) / np.maximum(w, 1e-12)
        choice = np.argmax(mean, axis=1)
        if self.response_threshold is not None:
            choice = np.where(mean.max(axis=1) < self.response_threshold, -1, choice)
        return choice

    def score(self, y: np.ndarray, y_hat: np.ndarray, mask: np.ndarray,
              trial_params: pd.DataFrame | Sequence[dict] | None = None) -> pd.DataFrame:
        """Score each trial: one row per trial with ``trial``, ``outcome`` (correct / error /
        no_response), ``choice`` (-1 for none), ``target`` and every trial parameter and knob value. A trial
        parameter named like one of those four (PsychRNN's DelayedDiscrimination draws the correct
        ``choice``) is kept as ``param.<name>``; correction trials repeat it from there.

        Args:
            y: targets ``(N_batch, N_steps, N_out)``.
            y_hat: the agent's outputs, same shape.
            mask: the batch's mask, same shape.
            trial_params: the batch's ``params`` table (or PsychRNN's list of dicts).
        """
        y, y_hat, mask = (np.asarray(a, dtype=np.float32) for a in (y, y_hat, mask))
        if y_hat.shape != y.shape or mask.shape != y.shape:
            raise ValueError(f"{type(self).__name__}.score: y {y.shape}, y_hat {y_hat.shape} and mask "
                             f"{mask.shape} must all be (N_batch, N_steps, N_out)")
        params = _records_frame(trial_params) if trial_params is not None else pd.DataFrame(index=range(len(y)))
        target = np.array(self.target_choice(y, mask, params), dtype=np.int64)  # copies: may be a params view
        choice = np.array(self.choice_from_output(y_hat, mask, params), dtype=np.int64)
        # 0 correct, 1 error, 2 no response, as indices into OUTCOMES
        code = np.where(choice == target, 0, np.where(choice < 0, 2, 1))
        columns = {"trial": np.arange(len(y)), "outcome": _OUTCOME_LABELS[code], "choice": choice,
                   "target": target}
        # One DataFrame from a dict of fresh column arrays, taken as they are (copy=False: no consolidating
        # copy); concat/drop and pandas' own copies cost more than the scoring itself. The server waits on this.
        for col, values in params.items():
            # the table never aliases trial_params; a parameter named like a score column (PsychRNN's
            # DelayedDiscrimination draws the correct "choice") is kept as "param.<name>"
            columns[col if col not in SCORE_COLUMNS else PARAM_PREFIX + col] = values.array.copy()
        return pd.DataFrame(columns, copy=False)

    # ------------------------------------------------------------------ description
    def spec(self) -> dict:
        """Plain-data description of the task (what the server sends agents in WELCOME)."""
        return {
            "task": type(self).__name__, "N_in": self.N_in, "N_out": self.N_out, "dt": self.dt,
            "tau": np.asarray(self.tau).tolist(), "T": self.T, "N_steps": self.N_steps,
            "N_batch": self.N_batch, "seed": self.seed,
            "input_names": list(self.channel_names("in")), "output_names": list(self.channel_names("out")),
            "knobs": {k.name: k.to_dict() for k in self.knobs},
        }

    def channel_names(self, which: str) -> tuple[str, ...]:
        if which == "in":
            return tuple(self.input_names or (f"in{i}" for i in range(self.N_in)))
        return tuple(self.output_names or (f"out{i}" for i in range(self.N_out)))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(N_in={self.N_in}, N_out={self.N_out}, dt={self.dt}, tau={self.tau}, "
                f"T={self.T}, N_batch={self.N_batch}, seed={self.seed})")


def apply_repeats(params: pd.DataFrame, repeat: Sequence[Mapping[str, Any]] | None,
                  task: str = "task") -> pd.DataFrame:
    """Overwrite the first trials' parameters with ``repeat``; each entry's optional ``correction`` key
    (default True) flags the trial as a correction trial and is not itself a trial parameter."""
    if not repeat:
        return params
    k = min(len(repeat), len(params))
    flags = np.zeros(len(params), dtype=bool)
    for i in range(k):
        entry = dict(repeat[i])
        flags[i] = bool(entry.pop("correction", True))
        for col, val in entry.items():
            if col not in params.columns:
                raise ValueError(f"{task}: cannot repeat trial parameter {col!r}; trial parameters are "
                                 f"{', '.join(params.columns)}")
            params.at[i, col] = val
    params["correction"] = flags
    return params


def _records_frame(records: pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
    """Trial parameters as a DataFrame; array-valued parameters are kept as objects."""
    if isinstance(records, pd.DataFrame):
        idx = records.index
        if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
            return records  # already 0..n-1: no copy (callers only read it)
        return records.reset_index(drop=True)
    records = list(records)
    return pd.DataFrame.from_records(records) if records else pd.DataFrame()
