"""PsychRNN's Curriculum semantics: one threshold per task, checked every metric_epoch batches on that
batch's accuracy; advancing past the last task stops training."""
import numpy as np
import pytest
from policy_specs import CURRICULUM

from shaping.policies import from_spec
from shaping.policies.simulate import Observer, run
from shaping.policies.window import batch_accuracy


def psychrnn_stages(accuracies, thresholds, metric_epoch):
    """The epochs at which PsychRNN's Curriculum.metric_test advances (its loop, restated)."""
    stage, advanced = 0, []
    for epoch, acc in enumerate(accuracies, start=1):
        if epoch % metric_epoch == 0 and stage < len(thresholds) and acc >= thresholds[stage]:
            advanced.append(epoch)
            stage += 1
    return advanced


def test_advances_at_its_thresholds_on_metric_epochs(task):
    policy = from_spec(CURRICULUM, task, seed=0)
    result = run(policy, task, Observer(alpha=0.6, alpha_final=0.05, tau_trials=1500), 20_000)
    accuracies = [batch_accuracy(s) for s in result.scored]
    expected = psychrnn_stages(accuracies, CURRICULUM["thresholds"], CURRICULUM["metric_epoch"])
    assert [e["epoch"] for e in result.events] == expected and len(expected) == 3
    assert [e["event"] for e in result.events] == ["graduated", "graduated", "complete"]
    assert policy.complete and policy.epoch == expected[-1] == len(result.scored)
    for e in result.events:
        assert e["epoch"] % 3 == 0 and e["value"] == pytest.approx(accuracies[e["epoch"] - 1])
    # a batch above threshold off the metric epoch never advanced the stage
    off = [i + 1 for i, a in enumerate(accuracies) if (i + 1) % 3 and a >= 0.85]
    assert off, "the learner should pass a threshold off a metric epoch at least once"


def test_each_stage_runs_its_task(task):
    policy = from_spec(CURRICULUM, task, seed=0)
    assert policy.stages == ["0:PerceptualDiscrimination", "1:PerceptualDiscrimination", "hard"]
    tasks, coherence = [], []
    for stage in range(3):
        policy.set_stage(stage)
        c = policy.conditions()
        tasks.append(c["task"])
        coherence.append(c["knobs"]["coherence"])
    assert tasks == [{"name": "PerceptualDiscrimination", "coherence": 0.7}, None,
                     {"name": "PerceptualDiscrimination", "coherence": 0.1}]
    assert coherence == [0.7, 0.3, 0.1]


def test_defaults_are_psychrnns(task):
    policy = from_spec({"kind": "curriculum", "tasks": [{"knobs": {"coherence": 0.5}}] * 2}, task)
    assert policy.thresholds == [0.9, 0.9] and policy.metric_epoch == 10
    result = run(policy, task, Observer(alpha=0.05), 32 * 9)
    assert not result.events  # perfect, but no check before the 10th batch
    (event,) = run(policy, task, Observer(alpha=0.05), 32).events
    assert event["epoch"] == 10 and event["to_stage"] == "1:PerceptualDiscrimination"
    assert np.isclose(event["value"], 1.0, atol=0.1)
