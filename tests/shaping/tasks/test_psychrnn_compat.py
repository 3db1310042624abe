"""What a PsychRNN user does with a task, and gets back as in PsychRNN 1.0.0: their own accuracy_function scores
their trials, overrides of a built-in task's methods are used, get_task_params holds no seed, the global NumPy
seed makes a script reproducible, trial params come back as generated, and assigned attributes are honoured."""
from __future__ import annotations

import numpy as np
import pytest
from user_tasks import Flash  # README's go/no-go task

from shaping.tasks import PerceptualDiscrimination, Task, catalog, check_task, make, register, registry


def test_a_user_accuracy_function_scores_each_trial():
    task = Flash(seed=0)
    x, y, mask, params = task.get_trial_batch()
    go = np.array([p["go"] for p in params])
    assert 0 < go.sum() < len(go)
    for y_hat in (np.zeros_like(y), 1 - y, y):
        scored = task.score(y, y_hat, mask, params)
        per_trial = [task.accuracy_function(y[i:i + 1], y_hat[i:i + 1], mask[i:i + 1]) for i in range(len(y))]
        assert np.array_equal(scored["outcome"] == "correct", np.array(per_trial) >= 0.5)
        assert (scored["outcome"] == "correct").mean() == pytest.approx(task.accuracy_function(y, y_hat, mask))
    silent = task.score(y, np.zeros_like(y), mask, params)
    assert np.array_equal(silent["outcome"] == "correct", ~go)  # silence is right on no-go trials only
    assert set(silent["outcome"]) == {"correct", "error"} and (silent["choice"] == -1).all()
    assert (task.score(y, 1 - y, mask, params)["outcome"] == "error").all()


def test_one_output_channel_without_a_way_to_score_is_refused():
    class Bare(Task):
        def __init__(self, **kw):
            super().__init__(N_in=1, N_out=1, dt=10, tau=100, T=200, N_batch=4, **kw)

        def generate_trial_params(self, batch, trial):
            return {}

        def trial_function(self, t, p):
            return np.zeros(1), np.ones(1), np.ones(1)

    task = Bare(seed=0)  # building it is fine: PsychRNN's local training needs no scoring
    b = task.generate()
    expected = r"Bare has N_out=1.*implement accuracy_function.*or choice_from_output/target_choice"
    with pytest.raises(ValueError, match=expected):
        task.score(b.y, b.y, b.mask, b.params)
    register(Bare)
    try:
        with pytest.raises(ValueError, match=expected):
            make("Bare", seed=0)  # a task to serve is checked when it is built
    finally:
        registry._REGISTRY.pop("Bare"), registry._REGISTRY.pop("bare")


def test_accuracy_function_overridden_on_a_builtin_subclass_decides_the_outcome():
    class Lenient(PerceptualDiscrimination):
        def accuracy_function(self, correct_output, test_output, output_mask):
            return 1.0  # every answer is fine

    task = Lenient(T=500, N_batch=16, seed=0)
    b = task.generate()
    scored = task.score(b.y, b.y[:, :, ::-1], b.mask, b.params)
    assert (scored["outcome"] == "correct").all()
    assert (scored["choice"] == 1 - scored["target"]).all()  # the choice is still PerceptualDiscrimination's


def test_overriding_generate_trial_params_of_a_builtin_is_honoured():
    class FixedOnset(PerceptualDiscrimination):
        def generate_trial_params(self, batch, trial):
            params = super().generate_trial_params(batch, trial)
            params.update(onset_time=100.0, stim_duration=200.0, coherence=0.05)
            return params

    task = FixedOnset(dt=10, tau=100, T=1000, N_batch=4, seed=0)
    assert not task.vectorised
    x, y, mask, params = task.get_trial_batch()
    assert [p["onset_time"] for p in params] == [100.0] * 4 and [p["coherence"] for p in params] == [0.05] * 4
    assert all(type(p["direction"]) is int for p in params)
    stim = (np.arange(task.N_steps) * 10 > 100) & (np.arange(task.N_steps) * 10 < 300)
    assert np.allclose(x[:, ~stim].mean(), 0, atol=0.05) and x[:, stim].mean() > 0.9
    again = FixedOnset(dt=10, tau=100, T=1000, N_batch=4, seed=0).get_trial_batch()
    assert x.tobytes() == again[0].tobytes()  # the per-step path is seeded from (seed, batch) too


def test_overriding_trial_function_of_a_builtin_is_honoured():
    class NoTarget(PerceptualDiscrimination):
        def trial_function(self, t, params):
            x, y, m = super().trial_function(t, params)
            return x, np.zeros_like(y), m

    task = NoTarget(dt=10, tau=100, T=500, N_batch=4, seed=0)
    assert not task.vectorised and PerceptualDiscrimination(seed=0).vectorised
    x, y, mask, params = task.get_trial_batch()
    assert y.max() == 0.0 and mask.max() == 1.0


def test_get_task_params_are_psychrnns():
    task = PerceptualDiscrimination(dt=10, tau=100, T=500, N_batch=8, coherence=0.3)
    params = task.get_task_params()
    # PsychRNN 1.0.0's PerceptualDiscrimination.__dict__, and nothing of our stream state
    assert {"N_batch", "N_in", "N_out", "dt", "tau", "T", "alpha", "N_steps", "coherence", "direction", "lo",
            "hi"} <= set(params)
    assert params["coherence"] == 0.3 and "seed" not in params


def test_global_numpy_seed_makes_unseeded_tasks_reproducible():
    def run(global_seed):
        np.random.seed(global_seed)
        task = PerceptualDiscrimination(dt=10, tau=100, T=500, N_batch=8)
        return task.seed, task.get_trial_batch()[0]

    (seed_a, x_a), (seed_b, x_b), (seed_c, x_c) = run(2020), run(2020), run(2021)
    assert seed_a == seed_b and x_a.tobytes() == x_b.tobytes()
    assert seed_a != seed_c and x_a.tobytes() != x_c.tobytes()


def test_trial_params_come_back_as_generate_trial_params_made_them():
    class WithCatch(Task):
        def __init__(self):
            super().__init__(2, 2, 10, 100, 300, 6)

        def generate_trial_params(self, batch, trial):
            p = {"onset": 100.0, "label": "catch" if trial % 3 == 0 else "go"}
            if trial % 3:  # every third trial is a catch trial without a direction
                p["direction"] = int(np.random.choice([0, 1]))
            return p

        def trial_function(self, t, p):
            x, y = np.zeros(2), np.zeros(2)
            if "direction" in p and t >= p["onset"]:
                x[p["direction"]] = y[p["direction"]] = 1
            return x, y, np.ones(2)

    task = WithCatch()
    task.reseed(0)
    x, y, mask, params = task.get_trial_batch()
    assert "direction" not in params[0] and "direction" not in params[3]
    assert all(type(p["direction"]) is int for p in params if "direction" in p)
    assert [x[i, -1, p["direction"]] for i, p in enumerate(params) if "direction" in p] == [1.0] * 4
    scored = task.score(y, y, mask, params)  # the table (for the journal) still has every key
    assert scored["direction"].isna().sum() == 2


def test_builtin_trial_params_hold_python_ints():
    task = PerceptualDiscrimination(T=500, N_batch=4, seed=0)
    params = task.get_trial_batch()[3]
    assert all(type(p["direction"]) is int and type(p["coherence"]) is float for p in params)
    assert type(task.generate_trial_params(1, 0)["direction"]) is int


def test_assigning_coherence_changes_the_trials_that_follow():
    task = PerceptualDiscrimination(dt=10, tau=100, T=500, N_batch=16, coherence=0.7, seed=0)
    assert task.coherence == 0.7
    task.coherence = 0.1
    assert {p["coherence"] for p in task.get_trial_batch()[3]} == {0.1}
    assert task.knob_values["coherence"] == 0.1
    task.coherence = None  # PsychRNN's None: draw from {0.1, 0.3, 0.5, 0.7}
    assert task.coherence is None and task.knob_values["coherence"] == [0.1, 0.3, 0.5, 0.7]
    with pytest.raises(ValueError, match="knob 'coherence' = 5 is outside its range"):
        task.coherence = 5.0


def test_module_class_names_a_user_task(tmp_path, monkeypatch):
    (tmp_path / "fb_user_tasks.py").write_text(
        "import numpy as np\n"
        "from shaping.tasks import Task\n"
        "class Two(Task):\n"
        "    def __init__(self, dt=10, tau=100, T=200, N_batch=4, **kw):\n"
        "        super().__init__(2, 2, dt, tau, T, N_batch, **kw)\n"
        "    def generate_trial_params(self, batch, trial):\n"
        "        return {'d': int(np.random.choice([0, 1]))}\n"
        "    def trial_function(self, t, p):\n"
        "        return np.eye(2)[p['d']], np.eye(2)[p['d']], np.ones(2)\n"
        "not_a_task = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    task = make("fb_user_tasks:Two", T=300, seed=1)
    assert type(task).__name__ == "Two" and task.N_steps == 30
    check_task(task)
    with pytest.raises(ValueError, match=r"'fb_user_tasks.Two' \(did you mean 'fb_user_tasks:Two'\?\).*"
                                         r"'module:Class'"):
        make("fb_user_tasks.Two")
    with pytest.raises(ValueError, match="unknown task 'Two';.*'module:Class'"):
        make("Two")
    with pytest.raises(ValueError, match="not a subclass of shaping.tasks.Task"):
        make("fb_user_tasks:not_a_task")
    with pytest.raises(ValueError, match="has no attribute 'Nope'"):
        make("fb_user_tasks:Nope")
    with pytest.raises(ValueError, match="cannot import module 'fb_no_such_module'.*sys.path"):
        make("fb_no_such_module:Two")


def test_catalog_skips_a_registered_class_that_needs_arguments():
    @register
    class NeedsArgs(Task):  # PsychRNN's own tasks take dt, tau, T, N_batch without defaults
        def __init__(self, dt, tau, T, N_batch):
            super().__init__(2, 2, dt, tau, T, N_batch)

    try:
        names = set(catalog()["name"])
        assert "NeedsArgs" not in names and "PerceptualDiscrimination" in names
        assert type(make("NeedsArgs", dt=10, tau=100, T=100, N_batch=2)) is NeedsArgs
    finally:
        registry._REGISTRY.pop("NeedsArgs"), registry._REGISTRY.pop("needs_args")


def test_evidence_side_as_a_single_name_still_means_the_evidence_knobs_side():
    from shaping.tasks import PerceptualDiscrimination
    from shaping.tasks.base import evidence_sides

    class Named(PerceptualDiscrimination):
        evidence_side = "direction"  # the form before the column -> side map

    class Broken(PerceptualDiscrimination):
        evidence_side = ["direction"]

    assert Named(seed=0).spec()["evidence_side"] == {"coherence": "direction"} == evidence_sides(Named)
    with pytest.raises(TypeError, match=r"Broken.evidence_side = \['direction'\]: expected a map"):
        Broken(seed=0).spec()
