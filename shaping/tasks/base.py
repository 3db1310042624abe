"""The task contract: PsychRNN-compatible, vectorised, seeded, with difficulty knobs and per-trial scoring.

A PsychRNN user's task class runs here unchanged with only its import changed to
``from shaping.tasks import Task``: it implements ``generate_trial_params(batch, trial) -> dict`` and
``trial_function(t, params) -> (x_t, y_t, mask_t)`` (t in ms) and gets ``batch_generator()``,
``get_trial_batch()`` and ``get_task_params()`` as in PsychRNN 1.0.0 (Ehrlich et al. 2021, eNeuro,
https://doi.org/10.1523/ENEURO.0427-20.2020).

Beyond PsychRNN:

- **Vectorised batches.** A task that implements ``sample_params(n, rng, knobs) -> DataFrame`` and
  ``build_trials(params, rng) -> (x, y, mask)`` builds a whole batch with array operations over trials and
  time (all built-in tasks do). Other tasks fall back to PsychRNN's per-time-step loop automatically, and so
  does a subclass of a built-in task that overrides ``generate_trial_params`` or ``trial_function``.
- **Seeds.** ``Task(..., seed=...)``; batch ``k`` is drawn from ``SeedSequence(seed, spawn_key=(k,))``, so a
  batch is reproducible from (seed, batch id, knob values) alone, whatever was generated before it.
  Without a seed, one is drawn from NumPy's global RNG, so PsychRNN's idiom ``np.random.seed(2020)`` at the
  top of a script makes the whole script reproducible. PsychRNN-style tasks draw from NumPy's global RNG;
  for those the global state is seeded from the same sequence for the duration of the batch and then put
  back, so they are reproducible too.
- **Knobs** (:mod:`shaping.tasks.knobs`): the difficulty parameters a policy moves.
- **Scoring** per trial into a pandas DataFrame (``score``), richer than PsychRNN's ``accuracy_function``; a
  user task that only defines ``accuracy_function`` is scored trial by trial with it.

Arrays are float32 and shaped ``(N_batch, N_steps, channels)``; time is ``t = i * dt`` ms for step ``i``
(an integer step counter, never accumulated).
"""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .common import HI, LO, step_times, window
from .knobs import Knob

OUTCOMES = ("correct", "error", "no_response")
_GLOBAL_RNG = threading.Lock()  # held while a per-step task's batch draws from NumPy's global RNG
SCORE_COLUMNS = ("trial", "outcome", "choice", "target")  # what score() puts first, before the trial params
PARAM_PREFIX = "param."  # a trial parameter named like a score column is kept under this prefix


def _time_sum(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(a * mask).sum(axis=1)``: ``(N_batch, N_steps, N_out) -> (N_batch, N_out)``, summed over time.

    einsum adds the steps in the same order without the product temporary, and avoids NumPy's slow
    strided reduction over the middle axis (about 4x faster at 200 steps)."""
    return np.einsum("ntk,ntk->nk", a, mask)


@dataclass
class Batch:
    """One batch of trials.

    Attributes:
        x: inputs ``(N_batch, N_steps, N_in)`` float32 (None in a batch drawn for scoring alone).
        y: targets ``(N_batch, N_steps, N_out)`` float32 (idem).
        mask: loss/scoring weights ``(N_batch, N_steps, N_out)`` float32 (idem).
        params: one row per trial: every trial parameter (the record the journal and scoring use).
        knobs: the knob values the batch was drawn under.
        batch_id: index of the batch in the task's seeded stream.
        records: a per-step (PsychRNN-style) task's own ``generate_trial_params`` dicts, as it made them
            (keys and types untouched); None for a vectorised batch.
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    params: pd.DataFrame
    knobs: dict = field(default_factory=dict)
    batch_id: int = 0
    records: list | None = None

    def __len__(self) -> int:
        return len(self.params)

    @property
    def built(self) -> bool:
        """True when the batch carries its trials (``x``, ``y``, ``mask``); a batch drawn for scoring alone
        (:meth:`Task.draw_for_scoring`) may carry only its params."""
        return self.x is not None

    def trial_params(self) -> np.ndarray:
        """Per-trial parameter dicts as PsychRNN yields them (an object array of dicts).

        A per-step task gets back the dicts its ``generate_trial_params`` returned (a key only some trials
        have stays absent from the others; an int stays an int). A vectorised task gets one dict per row of
        ``params``, with Python ints for integer columns and Python floats for float columns."""
        out = np.empty(len(self.params), dtype=object)
        out[:] = self.records if self.records is not None else self.params.to_dict("records")
        return out

    def as_psychrnn(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, mask, trial_params)`` as PsychRNN's ``batch_generator`` yields them."""
        return self.x, self.y, self.mask, self.trial_params()


class TrialBuilder:
    """Builds a batch of trials with NeuroGym's period vocabulary, vectorised over trials and time.

    Periods are per-trial ``[onset, offset)`` intervals in ms. The rounding rule, stated once: step ``i``
    (time ``t = i*dt``) belongs to a period when ``onset <= t < offset``, i.e. steps
    ``ceil(onset/dt) .. ceil(offset/dt) - 1``. Periods beyond ``T`` are clipped.

    A channel is an index, a name from the task's ``input_names``/``output_names``, a per-trial array of
    indices (e.g. each trial's correct output), or a list of names (several channels at once, with one value
    per trial and channel: ``(n, k)``). A period is a name or a boolean ``(n, N_steps)`` array of steps.

    Example::

        b = TrialBuilder(task, n)
        b.add_noise(sd, rng)                          # Gaussian input noise, sd per trial
        b.add_period("fixation", 100)                 # 0 .. 100 ms for every trial
        b.add_period("stimulus", params.stim_ms)      # per-trial durations, after the previous period
        b.add_period("decision", 300)
        b.add_input("fixation", 1.0, b.before("decision"))
        b.add_input(["left", "right"], levels, "stimulus")   # levels (n, 2)
        b.set_choice_target(params.choice, "decision")       # 1.0 on the choice, 0.2 on the others
        b.set_mask(1.0, "decision")
        x, y, mask = b.result()
    """

    def __init__(self, task: "Task", n: int):
        self.task = task
        self.n = n
        self.t = step_times(task)  # (N_steps,) ms
        self.x = np.zeros((n, task.N_steps, task.N_in), dtype=np.float32)
        self.y = np.zeros((n, task.N_steps, task.N_out), dtype=np.float32)
        self.mask = np.zeros((n, task.N_steps, task.N_out), dtype=np.float32)
        self.periods: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._end = np.zeros(n)

    # ------------------------------------------------------------------ periods
    def add_period(self, name: str, duration_ms: Any = None, after: str | None = None, onset_ms: Any = None,
                   offset_ms: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Add a period of ``duration_ms`` (scalar or per trial) after ``after`` (default: the last one
        added), or at ``onset_ms``; or one from ``onset_ms`` to ``offset_ms`` (per-trial bounds, e.g. the
        columns of a params table). Returns per-trial ``(onset_ms, offset_ms)`` float64 arrays ``(n,)``.

        Raises:
            ValueError: neither or both of ``duration_ms`` and ``offset_ms``.
        """
        if (duration_ms is None) == (offset_ms is None):
            raise ValueError(f"add_period({name!r}): give either duration_ms or offset_ms, got duration_ms="
                             f"{duration_ms!r}, offset_ms={offset_ms!r}")
        if onset_ms is None:
            onset = self.periods[after][1] if after is not None else self._end
        else:
            onset = onset_ms
        onset = self._ms(onset)
        offset = onset + self._ms(duration_ms) if offset_ms is None else self._ms(offset_ms)
        self.periods[name] = (onset, offset)
        self._end = offset
        return onset, offset

    def _ms(self, value: Any) -> np.ndarray:
        """A time (ms), one for all trials or one per trial (a params column), as a fresh ``(n,)`` float64."""
        if isinstance(value, pd.Series):  # to_numpy is several times faster than np.asarray on a Series
            value = value.to_numpy(dtype=float)
        return np.broadcast_to(np.asarray(value, dtype=float), (self.n,)).copy()

    def in_period(self, name: str) -> np.ndarray:
        """Boolean ``(n, N_steps)``: which steps of each trial lie in the period."""
        return window(self.t, *self.periods[name])

    def after(self, name: str) -> np.ndarray:
        """Boolean ``(n, N_steps)``: steps at or after the period's onset."""
        return self.t[None, :] >= self.periods[name][0][:, None]

    def before(self, name: str) -> np.ndarray:
        """Boolean ``(n, N_steps)``: steps before the period's onset (a fixation cue that goes off at it)."""
        return self.t[None, :] < self.periods[name][0][:, None]

    def until(self, name: str) -> np.ndarray:
        """Boolean ``(n, N_steps)``: steps from the trial's start to the period's offset (a rule cue shown
        through the response)."""
        return self.t[None, :] < self.periods[name][1][:, None]

    # ------------------------------------------------------------------ inputs, targets, mask
    def add_input(self, channel: Any, value: Any, period: str | np.ndarray) -> None:
        """Add ``value`` to input ``channel`` during ``period``: a number, one per trial ``(n,)``, or for a
        list of channel names one per trial and channel ``(n, k)``."""
        self._write(self.x, self._channel(channel, "in"), value, self._where(period), add=True)

    def set_groundtruth(self, channel: Any, value: Any, period: str | np.ndarray) -> None:
        """Set the target of output ``channel`` to ``value`` (as in :meth:`add_input`) during ``period``."""
        self._write(self.y, self._channel(channel, "out"), value, self._where(period), add=False)

    def set_choice_target(self, choice: Any, period: str | np.ndarray, hi: float = HI, lo: float = LO) -> None:
        """The targets of a choice during ``period``: output ``choice`` (per-trial ints ``(n,)``) at ``hi``,
        every other output at ``lo`` (PsychRNN's one-hot levels by default)."""
        choice = np.asarray(choice, dtype=np.int64)
        levels = np.full((self.n, self.task.N_out), lo, dtype=np.float32)
        levels[np.arange(self.n), choice] = hi
        self._write(self.y, list(range(self.task.N_out)), levels, self._where(period), add=False)

    def set_mask(self, value: Any, period: str | np.ndarray, channel: Any = None) -> None:
        """Set the loss/scoring weight to ``value`` (a number or one per trial) during ``period``, on every
        output unless ``channel``."""
        channel = list(range(self.task.N_out)) if channel is None else self._channel(channel, "out")
        if isinstance(channel, list) and np.ndim(value) == 1:  # one value per trial, the same on each output
            value = np.repeat(np.asarray(value, dtype=np.float32)[:, None], len(channel), axis=1)
        self._write(self.mask, channel, value, self._where(period), add=False)

    def add_noise(self, sd: Any, rng: np.random.Generator, channels: Sequence[int] | None = None) -> None:
        """Add Gaussian noise with standard deviation ``sd`` (scalar or per trial) to the inputs.

        Draws the noise even where ``sd`` is 0, so what ``rng`` gives afterwards does not depend on the noise
        level (a knob at 0 must not change the trials drawn after it)."""
        sd = np.asarray(sd, dtype=np.float32)
        idx = slice(None) if channels is None else list(channels)
        shape = self.x[:, :, idx].shape
        noise = rng.standard_normal(shape, dtype=np.float32)
        noise *= sd.reshape(-1, 1, 1) if sd.ndim == 1 else sd
        if channels is None:
            self.x += noise
        else:
            self.x[:, :, idx] += noise

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, mask)``: ``(n, N_steps, N_in)``, ``(n, N_steps, N_out)`` twice, float32."""
        return self.x, self.y, self.mask

    # ------------------------------------------------------------------ helpers
    def _where(self, period: str | np.ndarray) -> np.ndarray:
        return self.in_period(period) if isinstance(period, str) else period

    def _channel(self, channel: Any, which: str) -> Any:
        """A name -> its index; a list or tuple of names -> a list of indices; anything else as given."""
        if isinstance(channel, str):
            return self._index(channel, which)
        if isinstance(channel, (list, tuple)) and channel and all(isinstance(c, str) for c in channel):
            return [self._index(c, which) for c in channel]
        return channel

    def _index(self, name: str, which: str) -> int:
        names = self.task.channel_names(which)
        if name not in names:
            kind = "input" if which == "in" else "output"
            raise ValueError(f"{type(self.task).__name__}: no {kind} channel {name!r}; its {kind}s are "
                             f"{', '.join(names)}")
        return names.index(name)

    def _write(self, arr: np.ndarray, channel: Any, value: Any, where: np.ndarray, add: bool) -> None:
        """Add (``add``) or set ``value`` on ``arr``'s ``channel`` (an index, a list of indices or one index per
        trial) at the steps ``where`` ``(n, N_steps)``."""
        val = np.asarray(value, dtype=np.float32)
        if isinstance(channel, list):  # several channels: one column of value each, or one number for all
            writes = [(c, where, val if val.ndim == 0 else val[:, j, None]) for j, c in enumerate(channel)]
        else:
            val = val[:, None] if val.ndim == 1 else val  # one value per trial: (n, 1) against (n, N_steps)
            if np.ndim(channel) == 0:
                writes = [(channel, where, val)]
            else:  # one channel per trial
                ch = np.asarray(channel, dtype=int)
                writes = [(c, where & (ch == c)[:, None], val) for c in np.unique(ch)]
        for c, sel, v in writes:  # masked in-place ufuncs: no temporaries, steps outside sel untouched
            if add:
                np.add(arr[:, :, c], v, out=arr[:, :, c], where=sel)
            else:
                np.copyto(arr[:, :, c], v, where=sel)


def evidence_sides(task: Any) -> dict[str, str]:
    """A task class's (or task's) ``evidence_side`` as an evidence column -> side parameter map: a single name
    (the form before the map) applies to its ``evidence_knob``; ``TypeError`` naming the class otherwise."""
    cls = task if isinstance(task, type) else type(task)
    sides = getattr(cls, "evidence_side", None)
    if sides is None:
        return {}
    if isinstance(sides, str):
        return {cls.evidence_knob: sides} if cls.evidence_knob else {}
    if isinstance(sides, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in sides.items()):
        return dict(sides)
    raise TypeError(f"{cls.__name__}.evidence_side = {sides!r}: expected a map from evidence column to the trial "
                    f"parameter giving its side, e.g. {{'coherence': 'direction'}}")


class Task:
    """Base class of every task (PsychRNN's ``Task`` contract plus knobs, seeds and per-trial scoring).

    Args:
        N_in: number of input channels.
        N_out: number of output channels.
        dt: simulation time step (ms).
        tau: unit time constant (ms); a scalar or one per recurrent unit.
        T: trial duration (ms); ``N_steps = ceil(T / dt)``.
        N_batch: trials per batch.
        seed: an int, a ``numpy.random.Generator`` (an int is drawn from it) or None (an int drawn from NumPy's
            global RNG, so ``np.random.seed(...)`` before building the task reproduces it; kept in
            ``self.seed`` so the stream can be reproduced later).
        **knob_values: initial knob values (see :class:`~shaping.tasks.knobs.Knob`).

    Which path builds a batch: the vectorised one (``sample_params`` + ``build_trials``) when the class
    implements both, unless ``generate_trial_params`` or ``trial_function`` is overridden in a subclass of the
    class that implements them (PsychRNN's way to customise a task, e.g. ``class MyPD(PerceptualDiscrimination)``
    with its own ``trial_function``): such a task, like any task without the pair, runs on the per-step path.

    How a trial is scored (:meth:`score`): by comparing ``choice_from_output`` with ``target_choice``; an exact
    tie between the two highest output channels is no choice (-1, ``no_response``). A task that overrides
    ``accuracy_function`` below the classes defining those two methods (a PsychRNN user's task that defines
    only ``accuracy_function``) is scored with it instead, one trial at a time: ``correct`` when it returns
    >= 0.5. A task with one output channel must define ``accuracy_function`` or the choice methods.

    Class attributes a subclass may set:
        metadata: ``{"paper_name", "paper_link", "tags", "description"}``.
        knobs: tuple of :class:`Knob`.
        input_names / output_names: channel names (default ``in0..``, ``out0..``).
        response_threshold: an output below it in the response window is ``no_response`` (None: never).
        side_knob: the knob giving P(correct choice == 1), moved by bias correction (None: no sides).
        evidence_knob: the knob psychometric curves are plotted against (None: none).
        evidence_side: evidence column -> the trial parameter (0/1) naming the option that evidence supports,
            which signs it on a psychometric curve (a column not listed: the correct choice; ContextDependentDM:
            ``coherence_motion`` -> ``side_motion``, whose evidence decides the choice in one context only).
        psychometric_by: a trial parameter whose values split psychometric curves into one curve each (None:
            one curve), e.g. ContextDependentDM's ``context`` (Mante et al. 2013, Fig. 2) or
            MultiSensoryIntegration's ``modality`` (Raposo et al. 2012, Fig. 2).
        psychometric_labels: names of ``psychometric_by``'s values for legends, e.g. ``{0: "motion context"}``.
    """

    metadata: dict = {}
    knobs: tuple[Knob, ...] = ()
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    response_threshold: float | None = None
    side_knob: str | None = None
    evidence_knob: str | None = None
    evidence_side: Mapping[str, str] = {}
    psychometric_by: str | None = None
    psychometric_labels: Mapping[Any, str] = {}

    def __init__(self, N_in: int, N_out: int, dt: float, tau: Any, T: float, N_batch: int,
                 seed: int | np.random.Generator | None = None, **knob_values: Any):
        name = type(self).__name__
        for arg, val in (("N_in", N_in), ("N_out", N_out), ("N_batch", N_batch)):
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{name}: {arg} must be a positive integer, got {val!r}")
        for arg, val in (("dt", dt), ("T", T)):
            if not isinstance(val, (int, float, np.integer, np.floating)) or isinstance(val, bool) or not val > 0:
                raise ValueError(f"{name}: {arg} must be a positive number of ms, got {val!r}")
        try:
            positive = np.all(np.asarray(tau, dtype=float) > 0)
        except (TypeError, ValueError):
            positive = False
        if not positive:
            raise ValueError(f"{name}: tau must be a positive number of ms (or one per unit), got {tau!r}")
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
        """Restart the task's batch stream from ``seed`` (None: an int drawn from NumPy's global RNG)."""
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(0, 2**63))
        elif seed is None:
            # PsychRNN scripts seed NumPy's global RNG (np.random.seed(2020)) to be reproducible: honour that.
            seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
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
        """Parameters of one trial (PsychRNN API). Tasks with ``sample_params`` derive it from there."""
        if _defined_in(type(self), "sample_params") is Task:
            raise NotImplementedError(f"{type(self).__name__} must implement generate_trial_params")
        return self.sample_params(1, self.rng, self.knob_values).to_dict("records")[0]  # keeps ints ints

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

    def __getstate__(self) -> dict:
        """For copies and pickles: everything but the live generator of :meth:`get_trial_batch`, which cannot
        be copied; a copy's stream continues from the same batch (the position is ``batch_index``)."""
        return {**self.__dict__, "_generator": None}

    def get_trial_batch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The next batch of the persistent generator (PsychRNN API)."""
        if self._generator is None:
            self._generator = self.batch_generator()
        return next(self._generator)

    def get_task_params(self) -> dict:
        """A copy of the task's attributes, as PsychRNN's (which returns its live ``__dict__``): ``N_in, N_out,
        N_batch, dt, tau, T, alpha, N_steps`` and the subclass's own attributes.

        The stream state (``seed``, ``batch_index``, ``rng``, ``knob_values``) is left out: a model built from
        these params (``Basic({**task.get_task_params(), "N_rec": 50})``) must not take the task's seed as its
        own, or every network built from one task would start from the same weights."""
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k not in _STREAM_STATE})

    # ------------------------------------------------------------------ batches
    @property
    def vectorised(self) -> bool:
        """True when the task builds whole batches with array operations (see the class docstring)."""
        cls = type(self)
        pair = [_defined_in(cls, "sample_params"), _defined_in(cls, "build_trials")]
        if Task in pair:
            return False
        lowest = pair[0] if issubclass(pair[0], pair[1]) else pair[1]
        # a PsychRNN-style override below the vectorised pair would be ignored by it: take the per-step path
        return not any(_below(_defined_in(cls, name), lowest)
                       for name in ("generate_trial_params", "trial_function"))

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
        records = None  # a per-step task's own dicts, given back by get_trial_batch as they are
        if self.vectorised:
            params = self._draw_params(n, knob_values, rng, repeat)
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
                x, y, mask, params, records = self._generate_psychrnn(n, batch_id, rng, repeat)
            finally:
                self.knob_values = live
        _add_knob_columns(params, knob_values, n)
        return Batch(np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32),
                     np.ascontiguousarray(mask, dtype=np.float32), params, knob_values, int(batch_id), records)

    def _draw_params(self, n: int, knob_values: Mapping[str, Any], rng: np.random.Generator,
                     repeat: Sequence[Mapping[str, Any]] | None) -> pd.DataFrame:
        """Vectorised path: the params of a batch, the first draws from its ``rng`` (trials are built after)."""
        return apply_repeats(self.sample_params(n, rng, knob_values), repeat, type(self).__name__)

    def draw_for_scoring(self, n: int | None = None, knobs: Mapping[str, Any] | None = None,
                         batch_id: int = 0, repeat: Sequence[Mapping[str, Any]] | None = None) -> Batch:
        """What the task server needs to score batch ``batch_id`` that an agent builds (protocol 2).

        For a task that :attr:`scores_without_trials`, only its params (the same table :meth:`generate` makes
        for the same arguments), without building inputs, targets or mask; for any other task the whole batch.
        """
        if not self.scores_without_trials:
            return self.generate(n, knobs, batch_id, repeat=repeat)
        n = self.N_batch if n is None else int(n)
        knob_values = self.validate_knobs(knobs)
        params = self._draw_params(n, knob_values, self.batch_rng(batch_id), repeat)
        _add_knob_columns(params, knob_values, n)
        return Batch(None, None, None, params, knob_values, int(batch_id))

    def _generate_psychrnn(self, n: int, batch_id: int, rng: np.random.Generator,
                           repeat: Sequence[Mapping[str, Any]] | None = None):
        # A PsychRNN task draws from NumPy's global RNG: seed it from (seed, batch_id) for this batch only.
        # A subclass of a built-in task draws from self.rng: give it the batch's own stream, too. The lock keeps
        # two threads of one process (a server and a client's builder, say) from drawing from it at once.
        with _GLOBAL_RNG:
            return self._generate_psychrnn_locked(n, batch_id, rng, repeat)

    def _generate_psychrnn_locked(self, n: int, batch_id: int, rng: np.random.Generator,
                                  repeat: Sequence[Mapping[str, Any]] | None = None):
        saved, live = np.random.get_state(), self.rng
        np.random.seed(rng.integers(0, 2**32, dtype=np.uint64).item())
        self.rng = rng
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
            self.rng = live
        x, y, mask = (np.stack(a) for a in zip(*trials))
        params = _records_frame(records)
        if repeat:
            params["correction"] = params["correction"].fillna(False).astype(bool)
        return x, y, mask, params, records

    # ------------------------------------------------------------------ scoring
    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        """The correct choice per trial ``(N_batch,)`` int: the target channel with the largest masked sum;
        -1 where withholding a response is correct (the two highest channels tie, e.g. nothing is asked)."""
        return argmax_untied(_time_sum(y, mask))

    def choice_from_output(self, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        """The agent's choice per trial ``(N_batch,)`` int: the output channel with the largest masked mean
        in the response window; -1 (no response) when the two highest channels tie exactly (a silent
        network) or the highest stays below ``response_threshold``."""
        w = np.einsum("ntk->nk", mask)
        return self._choice_from_means(_time_sum(y_hat, mask) / np.maximum(w, 1e-12))

    def _choice_from_means(self, mean: np.ndarray) -> np.ndarray:
        """The default choice rule on each trial's mean output per channel ``(n, N_out)`` (see
        :meth:`choice_from_output`)."""
        choice = argmax_untied(mean)
        if self.response_threshold is not None:
            choice = np.where(mean.max(axis=1) < self.response_threshold, -1, choice)
        return choice

    # ------------------------------------------------------------------ the scoring window (protocol 2)
    def response_window(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
        """Per trial, the steps ``[start, stop)`` in which the mask is 1 on every output channel (and 0 outside
        them), computed from the trial params alone; ``(n,)`` int64 each. None: the task does not say (its
        mask must be built to know). A task that implements it (with target_choice from its params) is
        scored by the server without building its trials: see :attr:`scores_without_trials`."""
        return None

    @property
    def scores_without_trials(self) -> bool:
        """True when a batch can be scored from its params and the outputs in its response window alone: the
        task is vectorised, implements :meth:`response_window` and ``target_choice`` at or below the class
        that builds its trials, and keeps the default choice rule and scoring."""
        cls = type(self)
        if not self.vectorised or _defined_in(cls, "choice_from_output") is not Task \
                or _defined_in(cls, "score") is not Task or self._scores_with_accuracy_function():
            return False
        builder = _defined_in(cls, "build_trials")
        own = [_defined_in(cls, name) for name in ("response_window", "target_choice")]
        return all(c is not Task and (c is builder or _below(c, builder)) for c in own)

    def scoring_window(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Per trial, the steps ``[start, stop)`` of the outputs scoring reads, ``(n,)`` int64 each: the
        :meth:`response_window` where the task declares it, all steps for a task scored by its
        ``accuracy_function``, else the span of the steps where the batch's mask is non-zero."""
        n = len(batch)
        if self._scores_with_accuracy_function():
            return np.zeros(n, dtype=np.int64), np.full(n, self.N_steps, dtype=np.int64)
        if self.scores_without_trials:
            return self.response_window(batch.params)
        return mask_window(batch.mask)

    def window_rows(self, batch: Batch, y_hat: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
        """The outputs scoring reads: each trial's steps of :meth:`scoring_window`, trial after trial,
        ``(rows, N_out)`` in ``dtype`` (what an agent that built ``batch`` sends back in protocol 2).

        Args:
            batch: the batch the agent built. y_hat: its outputs ``(n, N_steps, N_out)``.
        """
        start, stop = self.scoring_window(batch)
        return np.ascontiguousarray(gather_window(np.asarray(y_hat), start, stop), dtype=dtype)

    @property
    def readout(self) -> str:
        """What an agent that built a batch of this task sends back (protocol 2): ``"mean"``, each trial's mean
        output per channel over its response window ``(n, N_out)``, for a task that
        :attr:`scores_without_trials` (its choice rule reads nothing else); else ``"window"``, the outputs of
        every step of each trial's :meth:`scoring_window` ``(rows, N_out)``."""
        return "mean" if self.scores_without_trials else "window"

    def window_mean_outputs(self, batch: Batch, y_hat: np.ndarray) -> np.ndarray:
        """Each trial's mean output per channel over its :meth:`scoring_window`, ``(n, N_out)`` float32: the
        ``"mean"`` :attr:`readout`, computed exactly as :meth:`score` computes it from whole outputs."""
        start, stop = self.scoring_window(batch)
        return window_means(gather_window(np.asarray(y_hat, dtype=np.float32), start, stop), start, stop)

    def score_means(self, batch: Batch, means: np.ndarray, extra: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """:meth:`score` of ``batch`` (one drawn by :meth:`draw_for_scoring` will do) from each trial's mean
        output per channel over its response window, ``(n, N_out)`` (:meth:`window_mean_outputs`), for a task
        that :attr:`scores_without_trials`; ``extra`` as for :meth:`score_rows`."""
        if not self.scores_without_trials:
            raise ValueError(f"{type(self).__name__} is not scored from its window means alone (its readout is "
                             f"{self.readout!r})")
        params = _records_frame(batch.params)
        target = np.array(self.target_choice(None, None, params), dtype=np.int64)
        choice = np.array(self._choice_from_means(np.asarray(means, dtype=np.float32)), dtype=np.int64)
        return score_table(target, choice, params, extra=extra)

    def score_rows(self, batch: Batch, rows: np.ndarray, window: tuple[np.ndarray, np.ndarray] | None = None,
                   extra: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """:meth:`score` of ``batch`` from the outputs in its scoring window (``rows`` from
        :meth:`window_rows`, ``(rows, N_out)``), the same table :meth:`score` makes from the whole outputs.

        ``batch`` may be one drawn by :meth:`draw_for_scoring`; ``window`` is its :meth:`scoring_window` when
        known already; ``extra``: columns (name -> one value for every trial) added where the params lack them."""
        start, stop = self.scoring_window(batch) if window is None else window
        if self.scores_without_trials:
            return self.score_means(batch, window_means(rows, start, stop), extra)
        y_hat = np.zeros(batch.y.shape, dtype=np.float32)
        scatter_window(y_hat, rows, start, stop)
        table = self.score(batch.y, y_hat, batch.mask, batch.params)
        for name, value in (extra or {}).items():
            if name not in table.columns:
                table[name] = value
        return table

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
        self._check_scorable()
        if self._scores_with_accuracy_function():
            target, choice, code = self._score_by_accuracy(y, y_hat, mask, params)
            return score_table(target, choice, params, code)
        if self.scores_without_trials and trial_params is not None:
            # the same computation as the server's for a batch an agent built (score_rows): one rule, one result
            start, stop = mask_window(mask)
            return self.score_rows(Batch(None, y, mask, params), gather_window(y_hat, start, stop), (start, stop))
        target = np.array(self.target_choice(y, mask, params), dtype=np.int64)  # copies: may be a params view
        choice = np.array(self.choice_from_output(y_hat, mask, params), dtype=np.int64)
        return score_table(target, choice, params)

    def _own_choice_methods(self) -> bool:
        """True when the task (or a base class below :class:`Task`) defines a choice method."""
        cls = type(self)
        return any(_defined_in(cls, m) is not Task for m in ("target_choice", "choice_from_output"))

    def _scores_with_accuracy_function(self) -> bool:
        """True when ``accuracy_function`` is overridden below both choice methods (see the class docstring):
        the author's own notion of correct then wins over the inherited argmax rule."""
        cls = type(self)
        acc = _defined_in(cls, "accuracy_function")
        return all(_below(acc, _defined_in(cls, m)) for m in ("target_choice", "choice_from_output"))

    def _check_scorable(self) -> None:
        """``ValueError`` for a task :meth:`score` cannot judge: one output channel (its argmax always wins)
        and neither an ``accuracy_function`` nor choice methods of its own."""
        own_accuracy = _defined_in(type(self), "accuracy_function") is not Task
        if self.N_out == 1 and not self._own_choice_methods() and not own_accuracy:
            raise ValueError(f"{type(self).__name__} has N_out=1: with one output channel the highest channel "
                             f"always wins, so every trial would score correct; implement accuracy_function"
                             f"(correct_output, test_output, output_mask) (PsychRNN's; scored per trial, >= 0.5 is "
                             f"correct) or choice_from_output/target_choice")

    def _score_by_accuracy(self, y: np.ndarray, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(target, choice, code)`` from ``accuracy_function`` called on each trial's
        ``(1, N_steps, N_out)`` slice; target and choice are -1 unless the task has choice methods."""
        n = len(y)
        acc = np.empty(n)
        for i in range(n):
            value = self.accuracy_function(y[i:i + 1], y_hat[i:i + 1], mask[i:i + 1])
            try:
                acc[i] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{type(self).__name__}.accuracy_function returned {value!r} for trial {i}; "
                                 f"expected a number between 0 and 1") from None
        if self._own_choice_methods():
            target = np.array(self.target_choice(y, mask, params), dtype=np.int64)
            choice = np.array(self.choice_from_output(y_hat, mask, params), dtype=np.int64)
        else:
            target, choice = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        silent = (choice < 0) & self._own_choice_methods()
        code = np.where(acc >= 0.5, 0, np.where(silent, 2, 1))
        return target, choice, code

    # ------------------------------------------------------------------ description
    def spec(self) -> dict:
        """Plain-data description of the task (what the server sends agents in WELCOME)."""
        return {
            "task": type(self).__name__, "N_in": self.N_in, "N_out": self.N_out, "dt": self.dt,
            "tau": np.asarray(self.tau).tolist(), "T": self.T, "N_steps": self.N_steps,
            "N_batch": self.N_batch, "seed": self.seed,
            "input_names": list(self.channel_names("in")), "output_names": list(self.channel_names("out")),
            "knobs": {k.name: k.to_dict() for k in self.knobs},
            "evidence_knob": self.evidence_knob, "evidence_side": evidence_sides(type(self)),
            "psychometric_by": self.psychometric_by,
            "psychometric_labels": {str(k): str(v) for k, v in dict(self.psychometric_labels).items()},
        }

    def channel_names(self, which: str) -> tuple[str, ...]:
        if which == "in":
            return tuple(self.input_names or (f"in{i}" for i in range(self.N_in)))
        return tuple(self.output_names or (f"out{i}" for i in range(self.N_out)))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(N_in={self.N_in}, N_out={self.N_out}, dt={self.dt}, tau={self.tau}, "
                f"T={self.T}, N_batch={self.N_batch}, seed={self.seed})")


# what get_task_params leaves out: the batch stream's state, not task parameters (PsychRNN has none of them)
_STREAM_STATE = frozenset({"seed", "batch_index", "rng", "knob_values", "_generator"})


def _defined_in(cls: type, name: str) -> type:
    """The class in ``cls``'s MRO whose own body defines attribute ``name``."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    raise AttributeError(f"{cls.__name__} has no attribute {name!r}")


def _below(cls: type, other: type) -> bool:
    """True when ``cls`` is a strict subclass of ``other``."""
    return cls is not other and issubclass(cls, other)


def argmax_untied(values: np.ndarray) -> np.ndarray:
    """``(n,)`` int64: the column of each row's largest value; -1 where the two largest are exactly equal.

    ``values`` is ``(n, channels)``; with one channel there is nothing to tie with. A silent network (all-zero
    or all-equal outputs) thus makes no choice rather than choosing channel 0."""
    if values.shape[1] == 2:  # the common two-choice case, without a partition (several times faster)
        return np.where(values[:, 0] == values[:, 1], -1, (values[:, 1] > values[:, 0]).astype(np.int64))
    choice = np.argmax(values, axis=1)
    if values.shape[1] > 1:
        top2 = np.partition(values, -2, axis=1)[:, -2:]
        choice = np.where(top2[:, 0] == top2[:, 1], -1, choice)
    return choice


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


def _add_knob_columns(params: pd.DataFrame, knob_values: Mapping[str, Any], n: int) -> None:
    """Every knob value as a column of ``params`` (unless a trial parameter of that name exists)."""
    for key, val in knob_values.items():
        if key not in params.columns:
            params[key] = [val] * n if not np.isscalar(val) else val


def score_table(target: np.ndarray, choice: np.ndarray, params: pd.DataFrame,
                 code: np.ndarray | None = None, extra: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The scored-trials table: ``trial``, ``outcome``, ``choice``, ``target`` and every trial parameter.
    ``code`` (0 correct, 1 error, 2 no response, as indices into OUTCOMES) defaults to the choice rule;
    ``extra`` columns (one value each) are added where the params lack them."""
    if code is None:
        code = np.where(choice == target, 0, np.where(choice < 0, 2, 1))
    # a categorical over OUTCOMES: its codes are the protocol's and the journal's outcome codes, read as they are
    outcome = pd.Categorical.from_codes(np.asarray(code, dtype=np.int8), categories=OUTCOMES)
    columns = {"trial": np.arange(len(target)), "outcome": outcome, "choice": choice,
               "target": target}
    # One DataFrame from a dict of fresh column arrays, taken as they are (copy=False: no consolidating
    # copy); concat/drop and pandas' own copies cost more than the scoring itself. The server waits on this.
    for col, values in params.items():
        # the table never aliases trial_params; a parameter named like a score column (PsychRNN's
        # DelayedDiscrimination draws the correct "choice") is kept as "param.<name>"
        columns[col if col not in SCORE_COLUMNS else PARAM_PREFIX + col] = values.array.copy()
    for name, value in (extra or {}).items():
        if name not in columns:
            columns[name] = np.full(len(target), value)
    return pd.DataFrame(columns, copy=False)


def mask_window(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per trial, the span ``[start, stop)`` of the steps where any output's weight in ``mask``
    ``(n, N_steps, N_out)`` is non-zero; ``(n,)`` int64 each, ``start = stop = 0`` for a trial with none."""
    n, steps, k = mask.shape
    # a sum of absolute weights over the (short, last) channel axis as one matrix product: far faster than
    # .any(axis=-1) on (n, N_steps, 2)
    live = np.matmul(np.abs(mask), np.ones(k, dtype=mask.dtype)) != 0  # (n, N_steps)
    anything = live.any(axis=1)
    start = np.where(anything, np.argmax(live, axis=1), 0)
    stop = np.where(anything, steps - np.argmax(live[:, ::-1], axis=1), 0)
    return start.astype(np.int64), stop.astype(np.int64)


def _row_index(start: np.ndarray, stop: np.ndarray, steps: int) -> np.ndarray:
    """Flat ``trial * steps + step`` indices of every step in each trial's ``[start, stop)``, in order."""
    lengths = stop - start
    first = np.cumsum(lengths) - lengths  # each trial's first row
    total = int(lengths.sum())
    trial_start = np.arange(len(start), dtype=np.int64) * steps + start
    return np.repeat(trial_start - first, lengths) + np.arange(total, dtype=np.int64)


def _as_records(a: np.ndarray) -> np.ndarray:
    """A C-contiguous ``(..., k)`` array as a flat array of k-value records: taking whole rows by index is then
    one copy per row instead of one per value (about 9x faster for k = 2)."""
    k = a.shape[-1]
    return a.reshape(-1, k).view(np.dtype((np.void, k * a.itemsize))).ravel()


def gather_window(a: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """``a[i, start[i]:stop[i]]`` for every trial ``i``, concatenated: ``(n, N_steps, k) -> (rows, k)``."""
    n, steps, k = a.shape
    a = np.ascontiguousarray(a)
    return np.take(_as_records(a), _row_index(start, stop, steps)).view(a.dtype).reshape(-1, k)


def scatter_window(out: np.ndarray, rows: np.ndarray, start: np.ndarray, stop: np.ndarray) -> None:
    """The inverse of :func:`gather_window`: write ``rows`` ``(rows, k)`` into ``out`` ``(n, N_steps, k)``, a
    C-contiguous array."""
    n, steps, k = out.shape
    _as_records(out)[_row_index(start, stop, steps)] = _as_records(np.ascontiguousarray(rows, dtype=out.dtype))


def window_means(rows: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """``(n, k)`` float32: each trial's mean of its ``rows`` (as :func:`gather_window` lays them out); 0 for
    a trial with an empty window."""
    lengths = stop - start
    n, k = len(start), rows.shape[1]
    sums = np.zeros((n, k), dtype=np.float32)
    nonempty = lengths > 0
    if nonempty.any():
        first = (np.cumsum(lengths) - lengths)[nonempty]
        sums[nonempty] = np.add.reduceat(rows, first, axis=0, dtype=np.float32)
    return sums / np.maximum(lengths, 1).astype(np.float32)[:, None]
