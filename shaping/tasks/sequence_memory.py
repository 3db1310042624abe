"""Memory for the recent past of a bit stream: N-delayed match-to-sample and N-parity.

A stream of bits (0 or 1, one per time step, on one input channel) ends at a step the network cannot predict;
at that last step it must answer about the last ``N`` bits. ``NDelayedMatch`` (N-DMS): is the newest bit the
same as the one ``N - 1`` steps before it? ``NParity``: is the number of ones among the last ``N`` bits odd?
Khajehabdollahi, Zeraati, Giannakakis, Schäfer, Martius & Levina 2024, "Emergent mechanisms for long timescales
depend on training curriculum and affect performance in memory tasks", ICLR 2024
(https://arxiv.org/abs/2309.12927), as their code builds the tasks (LevinaLab/rnn_timescale_public,
``src/tasks/tasks.py`` and ``training/train.py``):

- **the labels**, for a stream ``s[0 .. L-1]``: N-parity ``sum(s[L-N:]) % 2`` (the last N bits, the newest
  included); N-DMS ``s[L-N] == s[L-1]`` (their ``vec[-N] == vec[-1]``: N = 2 compares neighbours, so N = 1 would
  compare the newest bit with itself). Both start at N = 2, and so does the knob here.
- **the bits**: N-DMS draws each bit with P(1) = 0.5; N-parity first draws P(1) = ``p_one`` ~ U(0, 1) per
  stream, then each bit with that probability.
- **the length**: ``L`` ~ U{N + 2, ..., 4N + 1} (``np.random.randint(N + 2, 4N + 2)``), one per batch, drawn
  with the largest N asked for (their ``Ns[-1]``: a multi-head batch's newest head).
- **the answer**: per head, two output units (class 0 and 1), trained with cross-entropy on the class and
  read by argmax at the stream's last step. Here the pair's target is one-hot (1 on the class, 0 on the other)
  at that step, the only step the mask opens, and the agent's own loss trains it.
- **heads**: ``heads="single"`` has one output pair, answering for the batch's N. ``heads="multi"`` has one pair
  per n = 2 .. ``N_max``; the heads n <= N are trained and scored together (their curriculum adds a head
  at a time); the others are masked out, so the output layer never changes size as N grows.

Channels: input ``bit`` (the stream, 0 after it). Outputs, single-head: NDelayedMatch ``nonmatch, match``,
NParity ``even, odd`` (channel = class); multi-head: ``head2_<class 0>, head2_<class 1>, head3_..., up to
head<N_max>_<class 1>`` (head n on channels ``2 (n - 2)`` and ``2 (n - 2) + 1``, e.g. ``head2_even,
head2_odd``). Their defaults are discrete time, as in the paper: ``dt = tau = 10`` ms (one bit per 10 ms step,
``alpha = 1``; any ``dt`` and ``tau`` are allowed), ``N_batch`` 256.

Scoring, per trial: ``target`` is the trial's ``N``; ``choice`` is the longest memory span shown: the largest n
such that every scored head up to n answered right (single-head: ``N`` when its head is right), 0 when the
first scored head is wrong, -1 (no response) when every scored head is silent (its two outputs tie exactly).
So a trial is correct when its head N (single) or every active head 2 .. N (multi) is right. The scored table
adds ``head_{n}_correct`` for n = 2 .. ``N_max``: 1.0 / 0.0 where head n was scored on the trial, NaN elsewhere
(single-head: the one head answers for the trial's N, so its column is ``head_{N}_correct``); their means give
the accuracy per n (the paper's per-head accuracies; forgetting of small N). The outcome is stricter than the
paper's curriculum step (mean accuracy over heads and the newest head's both above 98 %): a policy reads one
outcome per trial, and "every head right" is the one that cannot pass while some head fails.

Psychometric axis: ``evidence_knob = "N"``. Since ``target`` (= N) is never 0 or 1, the scoring module plots
P(correct) against N for these tasks (its two-alternative branch signs evidence by a 0/1 target); its fitted
curves assume accuracy rising with the evidence, so against N (harder when higher) read the points, accuracy
per N. A curriculum stage holds one N, which the readout reports as one level (no fit) with its accuracy; a
stage that draws N from a list (``N = [2, 4, 8, 16]``) gives accuracy per N from one span.

Deviations:

- **Padding.** PsychRNN batches are fixed-size, so ``N_steps`` is ``4 N_max + 1`` (the longest stream, by
  default; a longer ``T`` pads more) and a stream occupies steps ``[0, L)``, its answer read at step ``L - 1``;
  the input after it is 0 and nothing after it is trained or scored. The paper's batches are exactly ``L`` long.
- **Stream parameters.** A trial records its stream (``stream0, stream1, ...``: 63 bits per int64 word, step
  ``63 k + i`` in bit ``i`` of word ``k``), ``length`` (L, steps), ``p_one`` and ``N``, so the per-step path
  and correction trials rebuild it from the row alone.
- **N drawn per trial.** A knob value that is a list or range gives each trial its own N (the paper's N is
  one per batch); the batch's length is then drawn with its largest N, as the paper does for multi-head.
- **No noise, no fixation, no response period**: none in the paper either.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import Task, argmax_untied
from .common import knob_samples, param_column
from .knobs import Knob
from .registry import register

__all__ = ["NDelayedMatch", "NParity", "BitStreamTask"]

N_MIN = 2  # the shortest memory either task asks for (N-DMS with N = 1 compares a bit with itself)
DEFAULT_N_MAX = 20
WORD_BITS = 63  # stream bits per int64 parameter column (the sign bit stays clear)
HEADS = ("single", "multi")


def n_knob(N_max: int) -> Knob:
    """The ``N`` knob of a task whose largest N is ``N_max``."""
    return Knob("N", float(N_MIN), float(N_max), float(N_MIN), "lower", "bits", integer=True,
                doc="how far back the answer reaches: the last N bits (multi-head: heads 2..N are scored)")


class _InstanceKnob:
    """``task.knob(name)`` reading the instance's knobs, whose ``N`` ends at its own ``N_max``
    (:meth:`Task.knob` is a classmethod and would read the class's, built with the default ``N_max``); on
    the class, the class's."""

    def __get__(self, obj: Any, owner: type):
        source = owner if obj is None else obj

        def knob(name: str) -> Knob:
            for k in source.knobs:
                if k.name == name:
                    return k
            names = ", ".join(k.name for k in source.knobs) or "none"
            raise ValueError(f"{owner.__name__} has no knob {name!r}; its knobs are: {names}")

        return knob


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """``(n, steps)`` 0/1 -> ``(n, ceil(steps / 63))`` int64 words, step ``63 k + i`` in bit ``i`` of word ``k``."""
    n, steps = bits.shape
    words = -(-steps // WORD_BITS)
    padded = np.zeros((n, words * WORD_BITS), dtype=np.int64)
    padded[:, :steps] = bits
    return (padded.reshape(n, words, WORD_BITS) << np.arange(WORD_BITS, dtype=np.int64)).sum(axis=2)


def unpack_bits(words: np.ndarray, steps: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``(n, words)`` int64 -> ``(n, steps)`` int8."""
    words = np.asarray(words, dtype=np.int64)
    bits = (words[:, :, None] >> np.arange(WORD_BITS, dtype=np.int64)) & 1
    return bits.reshape(len(words), -1)[:, :steps].astype(np.int8)


class BitStreamTask(Task):
    """Shared machinery of :class:`NDelayedMatch` and :class:`NParity` (see the module docstring).

    Args:
        dt: time step (ms); one bit per step. tau: unit time constant (ms); ``dt = tau`` is discrete time.
        T: trial duration (ms); default ``(4 N_max + 1) dt``, the longest stream; a longer one pads more.
        N_batch: trials per batch.
        N_max: the largest N (>= 2); fixes ``N_steps`` and, multi-head, the number of heads.
        heads: ``"single"`` (one output pair) or ``"multi"`` (a pair per n = 2 .. ``N_max``).
        seed: see :class:`~shaping.tasks.base.Task`.
        **knobs: initial knob values (``N``).

    A subclass sets ``answer_names`` (its two classes) and writes :meth:`draw_stream` and :meth:`labels`.
    """

    knobs = (n_knob(DEFAULT_N_MAX),)
    knob = _InstanceKnob()
    input_names = ("bit",)
    side_knob = None
    evidence_knob = "N"
    answer_names: tuple[str, str] = ("class0", "class1")

    def __init__(self, dt: float = 10, tau: float = 10, T: float | None = None, N_batch: int = 256,
                 N_max: int = DEFAULT_N_MAX, heads: str = "single", seed: int | np.random.Generator | None = None,
                 **knobs: Any):
        name = type(self).__name__
        if not isinstance(N_max, (int, np.integer)) or isinstance(N_max, bool) or N_max < N_MIN:
            raise ValueError(f"{name}: N_max must be an integer >= {N_MIN}, got {N_max!r}")
        if heads not in HEADS:
            raise ValueError(f"{name}: heads must be 'single' or 'multi', got {heads!r}")
        self.N_max = int(N_max)
        self.heads = heads
        self.knobs = (n_knob(self.N_max),)  # N's range ends at this task's N_max
        ns = range(N_MIN, self.N_max + 1) if heads == "multi" else ()
        self.output_names = (tuple(f"head{n}_{a}" for n in ns for a in self.answer_names) if ns
                             else tuple(self.answer_names))
        longest = 4 * self.N_max + 1  # L < 4 N + 2
        numbers = (int, float, np.integer, np.floating)
        dt_ok = isinstance(dt, numbers) and not isinstance(dt, bool) and dt > 0  # else Task.__init__ says so
        if T is None:
            T = longest * dt if dt_ok else 1.0
        elif dt_ok and isinstance(T, numbers) and not isinstance(T, bool) and np.ceil(T / dt) < longest:
            raise ValueError(f"{name}: T = {T!r} ms holds {int(np.ceil(T / dt))} steps of dt = {dt!r} ms; the "
                             f"longest stream for N_max = {self.N_max} needs {longest} (4 N_max + 1): raise T "
                             f"or leave it out")
        super().__init__(1, len(self.output_names), dt, tau, T, N_batch, seed=seed, **knobs)

    # ------------------------------------------------------------------ what a subclass defines
    def draw_stream(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(bits (n, N_steps) bool, p_one (n,))``: every step's bit, drawn whatever the length."""
        raise NotImplementedError

    @staticmethod
    def labels(bits: np.ndarray, length: np.ndarray, N: np.ndarray) -> np.ndarray:
        """``(n,)`` int64: the correct class of each stream ``bits[i, :length[i]]`` for memory ``N[i]``
        (``2 <= N[i] <= length[i]``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ trials
    def sample_params(self, n: int, rng: np.random.Generator, knobs: Mapping[str, Any]) -> pd.DataFrame:
        N = knob_samples(self, knobs, n, rng)["N"].astype(np.int64)
        longest = int(N.max()) if n else N_MIN
        length = int(rng.integers(longest + 2, 4 * longest + 2))  # one per batch: U{N+2 .. 4N+1}
        bits, p_one = self.draw_stream(n, rng)
        bits[:, length:] = False
        words = pack_bits(bits)
        columns: dict[str, Any] = {"N": N, "length": np.full(n, length, dtype=np.int64), "p_one": p_one}
        columns.update({f"stream{k}": words[:, k] for k in range(words.shape[1])})
        return pd.DataFrame(columns)

    def stream(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(bits (n, N_steps) int8, length (n,) int64)`` of the trials in ``params``."""
        words = np.stack([param_column(params, f"stream{k}", self, np.int64)
                          for k in range(-(-self.N_steps // WORD_BITS))], axis=1)
        return unpack_bits(words, self.N_steps), param_column(params, "length", self, np.int64)

    def head_labels(self, params: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per trial and head: ``(labels, active, n)``, each ``(n_trials, heads)``: the correct class (-1 where
        the head is not scored), whether the head is scored, and the memory N it answers for."""
        bits, length = self.stream(params)
        N = param_column(params, "N", self, np.int64)
        if self.heads == "single":
            ns = N[:, None]
        else:
            ns = np.broadcast_to(np.arange(N_MIN, self.N_max + 1), (len(N), self.N_max - 1))
        active = ns <= N[:, None]
        labels = np.full(ns.shape, -1, dtype=np.int64)
        for h in range(ns.shape[1]):
            rows = np.flatnonzero(active[:, h])
            labels[rows, h] = self.labels(bits[rows], length[rows], ns[rows, h])
        return labels, active, np.array(ns)

    def build_trials(self, params: pd.DataFrame, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        bits, length = self.stream(params)
        labels, active, _ = self.head_labels(params)
        n = len(params)
        x = np.zeros((n, self.N_steps, 1), dtype=np.float32)
        x[:, :, 0] = bits
        y = np.zeros((n, self.N_steps, self.N_out), dtype=np.float32)
        mask = np.zeros_like(y)
        rows, h = np.nonzero(active)
        answer_step = length[rows] - 1
        y[rows, answer_step, 2 * h + labels[rows, h]] = 1.0
        mask[rows, answer_step, 2 * h] = 1.0
        mask[rows, answer_step, 2 * h + 1] = 1.0
        return x, y, mask

    def trial_function(self, t: float, params: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        row = pd.DataFrame([params])
        bits, length = self.stream(row)
        i = int(round(t / self.dt))
        x_t = np.array([bits[0, i]], dtype=float)  # 0 after the stream
        y_t = np.zeros(self.N_out)
        mask_t = np.zeros(self.N_out)
        if i == length[0] - 1:
            labels, active, _ = self.head_labels(row)
            for h in np.flatnonzero(active[0]):
                y_t[2 * h + labels[0, h]] = 1.0
                mask_t[2 * h:2 * h + 2] = 1.0
        return x_t, y_t, mask_t

    # ------------------------------------------------------------------ scoring
    @staticmethod
    def head_answers(out: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``(n, heads)`` int64: each head's class, the unit of its pair with the larger masked sum over time;
        -1 where the pair is masked out or its two units tie exactly (a silent head)."""
        n = out.shape[0]
        sums = np.einsum("ntk,ntk->nk", out, mask).reshape(n, -1, 2)
        scored = mask.any(axis=1).reshape(n, -1, 2).any(axis=2)
        answer = argmax_untied(sums.reshape(-1, 2)).reshape(n, -1)
        return np.where(scored, answer, -1)

    def judge(self, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(right, active, n, silent)``: per trial and head ``(n_trials, heads)``, whether the head answered
        right, whether it is scored, the N it answers for; per trial ``(n_trials,)``, whether every scored head
        was silent."""
        labels, active, ns = self.head_labels(params)
        answer = self.head_answers(np.asarray(y_hat, np.float32), np.asarray(mask, np.float32))
        right = active & (answer == labels)
        silent = ~(active & (answer >= 0)).any(axis=1)
        return right, active, ns, silent

    def target_choice(self, y: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        """The trial's ``N`` (``(n,)`` int64)."""
        return param_column(params, "N", self, np.int64)

    def choice_from_output(self, y_hat: np.ndarray, mask: np.ndarray, params: pd.DataFrame) -> np.ndarray:
        """The longest memory span shown (``(n,)`` int64; see the module docstring): the largest n whose heads
        up to n all answered right, 0 when the first scored head is wrong, -1 when every one is silent."""
        right, active, ns, silent = self.judge(y_hat, mask, params)
        leading = np.cumprod(right | ~active, axis=1) & active  # scored heads right, from the first one on
        reached = np.where(leading, ns, 0).max(axis=1)
        return np.where(silent, -1, reached).astype(np.int64)

    def accuracy_function(self, correct_output: np.ndarray, test_output: np.ndarray,
                          output_mask: np.ndarray) -> float:
        """PsychRNN API from arrays alone: the fraction of trials on which every scored head's class (argmax of
        its pair) is the target's."""
        target = self.head_answers(np.asarray(correct_output, np.float32), np.asarray(output_mask, np.float32))
        answer = self.head_answers(np.asarray(test_output, np.float32), np.asarray(output_mask, np.float32))
        scored = target >= 0
        return float(np.mean(np.all((answer == target) | ~scored, axis=1) & scored.any(axis=1)))

    def score(self, y: np.ndarray, y_hat: np.ndarray, mask: np.ndarray,
              trial_params: pd.DataFrame | None = None) -> pd.DataFrame:
        """:meth:`Task.score` plus ``head_{n}_correct`` for n = 2 .. ``N_max``: 1.0 / 0.0 where head n was scored on
        the trial, NaN elsewhere."""
        scored = super().score(y, y_hat, mask, trial_params)
        right, active, ns, _ = self.judge(y_hat, mask, scored)  # the table carries every trial parameter
        per_n = np.full((len(scored), self.N_max - N_MIN + 1), np.nan)
        rows, h = np.nonzero(active)
        per_n[rows, ns[rows, h] - N_MIN] = right[rows, h]
        for j, n in enumerate(range(N_MIN, self.N_max + 1)):
            scored[f"head_{n}_correct"] = per_n[:, j]
        return scored


PAPER = {  # both tasks' metadata: the paper and its tags
    "paper_name": "Khajehabdollahi et al. 2024, Emergent mechanisms for long timescales depend on training "
                  "curriculum and affect performance in memory tasks (ICLR)",
    "paper_link": "https://arxiv.org/abs/2309.12927",
    "tags": ["working memory", "sequence", "curriculum", "multi-head"],
}

@register
class NDelayedMatch(BitStreamTask):
    """N-delayed match-to-sample on a bit stream: at its last step, is the newest bit the same as the one
    ``N - 1`` steps before it (``s[L-N] == s[L-1]``)? Class 1 (``match``) if so.

    Bits are drawn with P(1) = 0.5 (``p_one`` 0.5). Arguments as :class:`BitStreamTask`.
    """

    metadata = {
        "description": "N-delayed match-to-sample on a bit stream: does the newest bit match the one N-1 steps "
                       "before it?",
        **PAPER,
    }
    answer_names = ("nonmatch", "match")

    def draw_stream(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return rng.random((n, self.N_steps)) < 0.5, np.full(n, 0.5)

    @staticmethod
    def labels(bits: np.ndarray, length: np.ndarray, N: np.ndarray) -> np.ndarray:
        rows = np.arange(len(bits))
        return (bits[rows, length - N] == bits[rows, length - 1]).astype(np.int64)


@register
class NParity(BitStreamTask):
    """N-parity on a bit stream: at its last step, is the number of ones among the last ``N`` bits
    (``s[L-N:]``) odd? Class 1 (``odd``) if so.

    Each stream draws its own P(1) = ``p_one`` ~ U(0, 1), then its bits. Arguments as :class:`BitStreamTask`.
    """

    metadata = {
        "description": "N-parity on a bit stream: is the number of ones among the last N bits odd?",
        **PAPER,
    }
    answer_names = ("even", "odd")

    def draw_stream(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p_one = rng.random(n)
        return rng.random((n, self.N_steps)) < p_one[:, None], p_one

    @staticmethod
    def labels(bits: np.ndarray, length: np.ndarray, N: np.ndarray) -> np.ndarray:
        ones = np.concatenate([np.zeros((len(bits), 1), np.int64), np.cumsum(bits, axis=1, dtype=np.int64)],
                              axis=1)  # ones[i, k] = sum(bits[i, :k])
        rows = np.arange(len(bits))
        return (ones[rows, length] - ones[rows, length - N]) % 2
