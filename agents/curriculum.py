"""PsychRNN's ``Curriculum`` for local training (``model.train(task, {"curriculum": c})``).

PsychRNN 1.0.0 (Ehrlich et al. 2021; ``psychrnn/backend/curriculum.py``): a list of tasks trained in order;
every ``metric_epoch`` batches the metric is computed on a fresh batch of the current task (as PsychRNN's
``train`` draws one) and, when it says
*advance*, training moves to the next task; after the last one ``stop_training`` is set. The default metric is
the stage's accuracy function (the task's ``accuracy_function``) against the stage's threshold (default 0.9).
A PsychRNN user's curriculum runs unchanged with its import changed to ``from agents import Curriculum``.

The same procedure runs on the task server as the ``curriculum`` policy kind
(:mod:`shaping.policies.curriculum`), where the agent is scored by the server instead of grading itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def default_metric(curriculum_params: dict, input_data: np.ndarray, correct_output: np.ndarray,
                   output_mask: np.ndarray, output: np.ndarray, epoch: int, losses: list,
                   verbosity: bool) -> tuple[bool, float]:
    """Advance when the stage's accuracy function reaches the stage's threshold; returns
    ``(advance, accuracy)``."""
    stage = curriculum_params["stage"]
    accuracy = float(curriculum_params["accuracies"][stage](correct_output, output, output_mask))
    if verbosity:
        print(f"Accuracy: {accuracy}")
    return accuracy >= curriculum_params["thresholds"][stage], accuracy


class Curriculum:
    """A sequence of tasks with one advancement criterion each (PsychRNN's semantics and keywords).

    Args:
        tasks: the tasks, in training order.
        metric: ``metric(curriculum_params, input_data, correct_output, output_mask, output, epoch, losses,
            verbosity) -> (advance, value)``; default :func:`default_metric`.
        accuracies: one accuracy function per task (default: each task's ``accuracy_function``).
        thresholds: one threshold per task (default 0.9 each).
        metric_epoch: test every this many training batches (default 10).
        output_file: where to save ``metric_values`` (``[value, stage]`` rows, ``.npy``) when training ends.
    """

    def __init__(self, tasks: Sequence[Any], metric: Callable | None = None,
                 accuracies: Sequence[Callable] | None = None, thresholds: Sequence[float] | None = None,
                 metric_epoch: int = 10, output_file: str | None = None):
        if not tasks:
            raise ValueError("Curriculum: tasks must not be empty")
        self.tasks = list(tasks)
        self.metric = metric or default_metric
        self.accuracies = list(accuracies) if accuracies is not None else [t.accuracy_function for t in tasks]
        self.thresholds = list(thresholds) if thresholds is not None else [0.9] * len(tasks)
        for name, values in (("accuracies", self.accuracies), ("thresholds", self.thresholds)):
            if len(values) != len(self.tasks):
                raise ValueError(f"Curriculum: {name} has {len(values)} entries for {len(self.tasks)} tasks")
        if not isinstance(metric_epoch, int) or metric_epoch < 1:
            raise ValueError(f"Curriculum: metric_epoch must be a positive integer, got {metric_epoch!r}")
        self.metric_epoch = metric_epoch
        self.output_file = output_file
        self.stage = 0
        self.stop_training = False
        self.metric_values: list[list[float]] = []

    def metric_test(self, input_data: np.ndarray, correct_output: np.ndarray, output_mask: np.ndarray,
                    test_output: np.ndarray, epoch: int, losses: list, verbosity: bool = False) -> bool:
        """Compute the metric on a batch; advance (and return True) when it says so."""
        params = {k: v for k, v in self.__dict__.items()}
        advance, value = self.metric(params, input_data, correct_output, output_mask, test_output, epoch,
                                     losses, verbosity)
        self.metric_values.append([float(value), self.stage])
        if not advance:
            return False
        self.stage += 1
        if self.stage == len(self.tasks):
            self.stop_training = True  # stage == len(tasks) from here on, as in PsychRNN
            if self.output_file is not None:
                path = Path(self.output_file)
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.asarray(self.metric_values))
        if verbosity:
            print(f"Stage {self.stage}")
        return True

    def get_generator_function(self):
        """The batch generator of the current stage's task."""
        return self.tasks[self.stage].batch_generator()
