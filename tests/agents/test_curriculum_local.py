"""PsychRNN's Curriculum in local training: ``Basic.train(task, {"curriculum": Curriculum([...])})``."""
import numpy as np
import pytest

from agents import Basic, Curriculum
from shaping.tasks import PerceptualDiscrimination

pytestmark = pytest.mark.tf


def _tasks():
    return [PerceptualDiscrimination(dt=10, tau=100, T=500, N_batch=32, coherence=c, seed=i)
            for i, c in enumerate((0.7, 0.3))]


def test_curriculum_advances_at_its_thresholds_and_stops(tmp_path):
    tasks = _tasks()
    seen = []

    def metric(params, x, y, mask, out, epoch, losses, verbosity):
        acc = params["accuracies"][params["stage"]](y, out, mask)
        seen.append((epoch, params["stage"], acc))
        return acc >= params["thresholds"][params["stage"]], acc

    cur = Curriculum(tasks, metric=metric, thresholds=[0.7, 0.6], metric_epoch=4,
                     output_file=str(tmp_path / "metric.npy"))
    model = Basic({**tasks[0].get_task_params(), "N_rec": 24, "seed": 2, "learning_rate": 0.01})
    model.train(None, {"curriculum": cur, "training_iters": 32 * 400})
    assert cur.stop_training and cur.stage == 2
    assert all(epoch % 4 == 0 for epoch, _, _ in seen)  # tested every metric_epoch batches only
    advanced = [i for i in range(1, len(seen)) if seen[i][1] != seen[i - 1][1]]
    assert len(advanced) == 1 and seen[advanced[0] - 1][2] >= 0.7  # stage 0 -> 1 when 0.7 was reached
    assert seen[-1][2] >= 0.6
    saved = np.load(tmp_path / "metric.npy")
    assert saved.shape == (len(seen), 2) and saved[-1, 1] == 1


def test_curriculum_validates_its_arguments():
    with pytest.raises(ValueError, match="thresholds has 1 entries for 2 tasks"):
        Curriculum(_tasks(), thresholds=[0.9])
    with pytest.raises(ValueError, match="metric_epoch"):
        Curriculum(_tasks(), metric_epoch=0)
