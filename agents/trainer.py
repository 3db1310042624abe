"""PsychRNN's training loop (``RNN.train``) on a local task, a batch generator or a curriculum.

Semantics are PsychRNN 1.0.0's (``psychrnn/backend/rnn.py`` ``train``), with its traps fixed:

- A second ``train`` continues from the current weights *and* optimizer state (PsychRNN re-initialises
  every variable). A new ``learning_rate`` is applied to the existing optimizer; a new ``optimizer`` replaces it.
- The first batch is trained on (PsychRNN draws one batch only to read its size and discards it).
- ``training_iters`` is honoured exactly: training stops after that many trials; the last batch is cut to
  the trials still owed (PsychRNN stops one batch early: ``while epoch * batch_size < training_iters``).
- ``losses`` holds the regularised loss of every ``loss_epoch``-th batch, from the forward pass its update
  used (PsychRNN runs that batch a second time after the update to report it).
- ``fixed_weights`` holds entries bit-identical (gradient zeroed and optimizer moments cleared) for the
  duration of the call; the model's own fixed synapses always stay fixed.
"""
from __future__ import annotations

import inspect
import os
import time
from typing import Any, Iterator, Mapping

import numpy as np

_KEYS = {"learning_rate", "training_iters", "loss_epoch", "verbosity", "save_weights_path",
         "save_training_weights_epoch", "training_weights_path", "curriculum", "optimizer", "clip_grads",
         "fixed_weights", "performance_cutoff", "performance_measure"}


def batches(source: Any) -> Iterator:
    """A batch iterator from a task (``batch_generator()``), a generator or any iterator of
    ``(x, y, mask, params)``."""
    if inspect.isgenerator(source) or (hasattr(source, "__next__") and not hasattr(source, "batch_generator")):
        return source
    if hasattr(source, "batch_generator"):
        return source.batch_generator()
    raise TypeError(f"cannot train on {type(source).__name__}: expected a Task (with batch_generator()), a "
                    "generator of (x, y, mask, params) or a curriculum in train_params['curriculum']")


def train(model: Any, source: Any, train_params: Mapping[str, Any]) -> tuple[list[float], float, float]:
    """Train ``model`` on batches from ``source`` (PsychRNN's ``RNN.train``).

    Args:
        model: a :class:`~agents.rnn.RNN`.
        source: a task, a generator of ``(x, y, mask, params)``, or None when ``curriculum`` is given.
        train_params: PsychRNN's keys: ``learning_rate`` (default 1e-3 for a new optimizer),
            ``training_iters`` (trials, default 50000), ``loss_epoch`` (10), ``verbosity`` (True),
            ``save_weights_path``, ``save_training_weights_epoch`` (100), ``training_weights_path``,
            ``curriculum`` (an object with PsychRNN's Curriculum interface: ``metric_test(trial_batch,
            trial_y, output_mask, output, epoch, losses, verbosity) -> bool`` (stage advanced),
            ``get_generator_function()``, ``metric_epoch``, ``stop_training``), ``optimizer`` (a name, a
            config dict or an :class:`~agents.optimizers.Optimizer`), ``clip_grads`` (True: each gradient
            clipped to norm 1; a positive number: that norm; False: none), ``fixed_weights`` (``{name: mask}``, nonzero
            = fixed), ``performance_cutoff`` and ``performance_measure`` (``f(trial_batch, trial_y,
            output_mask, output, epoch, losses, verbosity) -> float``, evaluated on a fresh batch after each
            update; training stops once it reaches the cutoff).

    Returns:
        ``(losses, training_time, initialization_time)``, times in seconds.

    Raises:
        ValueError: an unknown key, only one of ``performance_cutoff`` / ``performance_measure``, or a
            ``clip_grads`` that is neither a flag nor a positive number.
    """
    t0 = time.perf_counter()
    unknown = set(train_params) - _KEYS
    if unknown:
        raise ValueError(f"unknown train_params {sorted(unknown)}; known keys: {sorted(_KEYS)}")
    p = dict(train_params)
    training_iters = int(p.get("training_iters", 50000))
    loss_epoch = max(int(p.get("loss_epoch", 10)), 1)
    verbosity = bool(p.get("verbosity", True))
    save_every = max(int(p.get("save_training_weights_epoch", 100)), 1)
    cutoff, measure = p.get("performance_cutoff"), p.get("performance_measure")
    if (cutoff is None) != (measure is None):
        raise ValueError("performance_cutoff and performance_measure go together: give both or neither")
    curriculum = p.get("curriculum")
    _configure(model, p)
    gen = batches(curriculum.get_generator_function() if curriculum is not None else source)
    t1 = time.perf_counter()

    losses: list[float] = []
    trials, epoch = 0, 1
    performance = None
    try:
        while trials < training_iters:
            x, y, mask, _ = next(gen)
            owed = training_iters - trials
            if len(x) > owed:
                x, y, mask = x[:owed], y[:owed], mask[:owed]
            loss, _ = model.train_on_batch(x, y, mask)
            trials += len(x)
            if epoch % loss_epoch == 0:
                losses.append(loss)
                if verbosity:
                    print(f"Iter {trials}, Minibatch Loss= {loss:.6f}")
            if curriculum is not None and epoch % getattr(curriculum, "metric_epoch", 10) == 0:
                tb, ty, tm, _ = next(gen)
                output, _ = model.test(tb)
                if curriculum.metric_test(tb, ty, tm, output, epoch, losses, verbosity):
                    if getattr(curriculum, "stop_training", False):
                        break
                    gen = batches(curriculum.get_generator_function())
            path = p.get("training_weights_path")
            if path is not None and epoch % save_every == 0:
                model.save(f"{path}{epoch}")
                if verbosity:
                    print(f"Training weights saved in file: {path}{epoch}")
            if measure is not None:
                tb, ty, tm, _ = next(gen)
                output, _ = model.test(tb)
                performance = measure(tb, ty, tm, output, epoch, losses, verbosity)
                if verbosity:
                    print(f"performance: {performance}")
                if performance >= cutoff:
                    break
            epoch += 1
    finally:
        if p.get("fixed_weights") is not None:
            model.set_fixed(None)
    t2 = time.perf_counter()
    if verbosity:
        print("Optimization finished!")
    if p.get("save_weights_path") is not None:
        saved = model.save(p["save_weights_path"])
        if verbosity:
            print(f"Model saved in file: {os.fspath(saved)}")
    return losses, t2 - t1, t1 - t0


def _configure(model: Any, p: Mapping[str, Any]) -> None:
    """Apply the optimizer, learning rate, gradient clipping and fixed weights of one ``train`` call."""
    from . import optimizers

    clip = optimizers.check_clip_grads(p["clip_grads"]) if "clip_grads" in p else model.clip_grads
    if "optimizer" in p and p["optimizer"] is not None:
        model.optimizer = optimizers.from_params(p["optimizer"], p.get("learning_rate"))
        model.optimizer.build([model.vars[n] for n in model._train_names])
        model._step_fn = None
    elif "learning_rate" in p:
        model.optimizer.learning_rate = float(p["learning_rate"])
    if clip != model.clip_grads:
        model.clip_grads = clip
        model._step_fn = None
    if p.get("fixed_weights") is not None:
        model.set_fixed({k: np.asarray(v) for k, v in p["fixed_weights"].items()})
