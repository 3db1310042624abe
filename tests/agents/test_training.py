"""Training: constraints hold during and after real updates, PsychRNN's train() minus its traps, checkpoints."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def _check_constraints(model, fixed_before=None):
    w = model.get_weights()
    exc = model.wiring.sign_rec > 0
    assert np.all(w["W_rec"][:, exc] >= 0) and np.all(w["W_rec"][:, ~exc] <= 0)
    assert np.all(w["W_in"] >= 0)
    assert np.all(w["W_out"][:, ~exc] == 0) and np.all(w["W_out"][:, exc] >= 0)
    for name, key in (("W_in", "input_connectivity"), ("W_rec", "rec_connectivity"),
                      ("W_out", "output_connectivity")):
        assert np.all(w[name][model.masks()[key] == 0] == 0), name
    assert np.all(np.diag(w["W_rec"]) == 0)
    for name, before in (fixed_before or {}).items():
        now = model.vars[name].numpy()[model.masks()[f"fixed_{name}"]]
        np.testing.assert_array_equal(now, before, err_msg=f"fixed entries of {name} moved")


def test_constraints_hold_during_and_after_training(small_params, batch):
    from agents import Basic

    regions = {"regions": {"a": 8, "b": 8}, "connections": ["a -> a", "b -> b", "a -> b: 0.5",
                                                            {"pre": "b", "post": "a", "source": "E"}],
               "dale_ratio": 0.75, "inputs": ["a"], "outputs": ["b"]}
    model = Basic(small_params(N_rec=16, regions=regions, autapses=False, rec_density=0.8,
                               fixed={"W_rec": 0.3, "W_out": 0.5}, learning_rate=0.05))
    fixed_before = {n: model.vars[n].numpy()[model.masks()[f"fixed_{n}"]] for n in ("W_rec", "W_out")}
    assert all(v.size for v in fixed_before.values())
    w0 = model.get_weights()
    x, y, mask = batch(8, 30, seed=3)
    for i in range(6):
        model.train_on_batch(x, y, mask)
        _check_constraints(model, fixed_before)
    w1 = model.get_weights()
    plastic = (model.masks()["rec_connectivity"] == 1) & ~model.masks()["fixed_W_rec"]
    assert np.any(w1["W_rec"][plastic] != w0["W_rec"][plastic])          # the rest did learn
    assert model.region_labels == ["a"] * 8 + ["b"] * 8


def test_trainable_flags_freeze_whole_variables(small_params, batch):
    from agents import Basic

    model = Basic(small_params(W_rec_train=False, b_out_train=False, init_state_train=False))
    before = {k: v.numpy().copy() for k, v in model.vars.items()}
    model.train_on_batch(*batch())
    for name in ("W_rec", "b_out", "init_state"):
        np.testing.assert_array_equal(model.vars[name].numpy(), before[name], err_msg=name)
    assert np.any(model.vars["W_in"].numpy() != before["W_in"])


class _Counting:
    """A generator of fixed batches that records how many it handed out."""

    def __init__(self, batch, n=8):
        self.x, self.y, self.mask = batch(n, 20)
        self.served = 0

    def __iter__(self):
        return self

    def __next__(self):
        self.served += 1
        return self.x, self.y, self.mask, None


def test_training_iters_is_exact_and_no_batch_is_thrown_away(small_params, batch, capsys):
    from agents import Basic

    model = Basic(small_params())
    gen = _Counting(batch)
    losses, train_time, init_time = model.train(gen, {"training_iters": 20, "loss_epoch": 1, "verbosity": True})
    assert gen.served == 3 and len(losses) == 3                   # 8 + 8 + 4 trials: the last batch is cut
    assert int(model.optimizer.iterations.numpy()) == 3
    assert "Iter 20, Minibatch Loss=" in capsys.readouterr().out
    assert train_time > 0 and init_time >= 0


def test_second_train_continues_weights_and_optimizer(small_params, batch):
    from agents import Basic

    model = Basic(small_params())
    gen = _Counting(batch)
    model.train(gen, {"training_iters": 16, "verbosity": False})
    w = model.vars["W_rec"].numpy().copy()
    m = model.optimizer.slots[model._train_names.index("W_rec")]["m"].numpy().copy()
    assert np.any(m != 0)
    model.train(gen, {"training_iters": 8, "verbosity": False, "learning_rate": 1e-4})
    assert int(model.optimizer.iterations.numpy()) == 3 and model.optimizer.learning_rate == 1e-4
    delta = np.abs(model.vars["W_rec"].numpy() - w).max()
    assert 0 < delta < 2e-4                                        # a small step from where it was


def test_fixed_weights_of_one_train_call_stay_bit_identical(small_params, batch):
    from agents import Basic

    model = Basic(small_params())
    gen = _Counting(batch)
    model.train(gen, {"training_iters": 16, "verbosity": False})   # moments are nonzero everywhere now
    fixed = np.zeros((12, 12), dtype=bool)
    fixed[:, :4] = True
    before = model.vars["W_rec"].numpy().copy()
    model.train(gen, {"training_iters": 24, "verbosity": False, "fixed_weights": {"W_rec": fixed, "Dale_rec": 1}})
    after = model.vars["W_rec"].numpy()
    np.testing.assert_array_equal(after[fixed], before[fixed])
    assert np.any(after[~fixed] != before[~fixed])
    assert "fixed_W_rec" not in model.masks()                      # only for the duration of the call
    with pytest.raises(ValueError, match="fixed_weights names 'W_bogus'"):
        model.train(gen, {"training_iters": 8, "verbosity": False, "fixed_weights": {"W_bogus": fixed}})


def test_files_written_during_a_call_hold_the_models_own_fixed_synapses_only(small_params, batch, tmp_path):
    from agents import Basic

    model = Basic(small_params(fixed={"W_out": 0.5}))
    own = model.masks()["fixed_W_out"]

    class _CheckpointMidCall(_Counting):
        def __next__(self):
            if self.served == 1:
                model.save_checkpoint(tmp_path / "mid")
            return super().__next__()

    model.train(_CheckpointMidCall(batch), {"training_iters": 16, "verbosity": False,
                                            "fixed_weights": {"W_rec": np.ones((12, 12))},
                                            "training_weights_path": str(tmp_path / "during_"),
                                            "save_training_weights_epoch": 1})
    checkpoint = np.load(tmp_path / "mid.npz")
    assert sorted(k for k in checkpoint if k.startswith("fixed/")) == ["fixed/W_out"]
    again = Basic({"load_weights_path": tmp_path / "during_1.npz"})
    assert [k for k in again.masks() if k.startswith("fixed_")] == ["fixed_W_out"]
    np.testing.assert_array_equal(again.masks()["fixed_W_out"], own)
    before = again.vars["W_rec"].numpy().copy()
    again.train_on_batch(*batch(4, 20))
    assert np.all(again.vars["W_rec"].numpy() != before)                # W_rec was fixed for that call only


def test_clip_grads_falsy_values_mean_no_clipping_as_in_psychrnn(small_params):
    from agents import Basic
    from agents.optimizers import check_clip_grads

    for off in (0, 0.0, None, np.int64(0), False):  # PsychRNN tests `if clip_grads:`
        assert check_clip_grads(off) is False
    assert Basic(small_params(clip_grads=0)).clip_grads is False


@pytest.mark.parametrize("clip", [-1.0, float("nan"), float("inf"), "1.0", "false"])
def test_clip_grads_is_a_flag_or_a_positive_norm(clip, small_params, batch):
    from agents import Basic

    message = "clip_grads must be true .* or a positive number"
    with pytest.raises(ValueError, match=message):
        Basic(small_params(clip_grads=clip))
    model = Basic(small_params())
    with pytest.raises(ValueError, match=message):
        model.train(_Counting(batch), {"training_iters": 8, "verbosity": False, "clip_grads": clip})
    assert model.optimizer.iterations.numpy() == 0 and model.clip_grads is True
    assert Basic(small_params(clip_grads=2)).config()["clip_grads"] == 2.0


class _Curriculum:
    """PsychRNN's Curriculum interface: two stages, advance when metric_test is called twice per stage."""

    metric_epoch = 2

    def __init__(self, batch):
        self.batch, self.stage, self.calls, self.stop_training = batch, 0, 0, False
        self.generators = []

    def get_generator_function(self):
        gen = _Counting(self.batch)
        self.generators.append(gen)
        return gen

    def metric_test(self, trial_batch, trial_y, output_mask, output, epoch, losses, verbosity):
        assert output.shape == trial_y.shape
        self.calls += 1
        if self.calls % 2 == 0:
            self.stage += 1
            self.stop_training = self.stage == 2
            return True
        return False


def test_curriculum_switches_generators_and_stops(small_params, batch):
    from agents import Basic

    model = Basic(small_params())
    cur = _Curriculum(batch)
    model.train(None, {"curriculum": cur, "training_iters": 10_000, "verbosity": False})
    assert cur.stage == 2 and cur.calls == 4 and len(cur.generators) == 2
    assert int(model.optimizer.iterations.numpy()) == 8


def test_train_curric_is_psychrnns_curriculum_entry_point(small_params, batch):
    from agents import Basic

    model = Basic(small_params())
    cur = _Curriculum(batch)
    losses, _, _ = model.train_curric({"curriculum": cur, "training_iters": 10_000, "verbosity": False,
                                       "loss_epoch": 1})
    assert cur.stage == 2 and len(cur.generators) == 2 and len(losses) == 8
    with pytest.raises(ValueError, match=r"train_curric needs train_params\['curriculum'\]"):
        model.train_curric({"training_iters": 8})


def test_performance_cutoff_and_saving(small_params, batch, tmp_path):
    from agents import Basic

    model = Basic(small_params())
    seen = []

    def measure(trial_batch, trial_y, output_mask, output, epoch, losses, verbosity):
        seen.append(epoch)
        return epoch / 3

    model.train(_Counting(batch), {"training_iters": 10_000, "verbosity": False, "performance_measure": measure,
                                   "performance_cutoff": 1.0, "save_weights_path": str(tmp_path / "final"),
                                   "training_weights_path": str(tmp_path / "ep"),
                                   "save_training_weights_epoch": 2})
    assert seen == [1, 2, 3]
    assert (tmp_path / "final.npz").exists() and (tmp_path / "ep2.npz").exists()
    with pytest.raises(ValueError, match="give both or neither"):
        model.train(_Counting(batch), {"performance_cutoff": 0.9})
    with pytest.raises(ValueError, match=r"unknown train_params \['learning_rat'\]"):
        model.train(_Counting(batch), {"learning_rat": 0.1})


def test_train_on_a_task_with_sgd(small_params):
    from agents import Basic
    from shaping.tasks import PerceptualDiscrimination

    task = PerceptualDiscrimination(dt=10, tau=100, T=200, N_batch=16, seed=0)
    params = task.get_task_params()
    params.update(small_params(), N_steps=task.N_steps)
    model = Basic(params)
    losses, _, _ = model.train(task, {"training_iters": 64, "loss_epoch": 1, "verbosity": False,
                                      "optimizer": {"class_name": "SGD", "config": {"momentum": 0.9}},
                                      "learning_rate": 0.01, "clip_grads": False})
    assert len(losses) == 4 and type(model.optimizer).__name__ == "SGD" and task.batch_index == 4


def test_checkpoint_continues_exactly(small_params, batch, tmp_path):
    from agents import Basic

    params = small_params(rec_noise=0.1, dale_ratio=0.75, fixed={"W_rec": 0.2})
    data = [batch(8, 20, seed=s) for s in range(6)]
    a = Basic(params)
    for x, y, m in data[:3]:
        a.train_on_batch(x, y, m)
    a.save_checkpoint(tmp_path / "ck")
    cont = [a.train_on_batch(*d) for d in data[3:]]
    b = Basic({**params, "seed": 99})                               # different init and noise, then restored
    b.load_checkpoint(tmp_path / "ck.npz")
    again = [b.train_on_batch(*d) for d in data[3:]]
    for (la, oa), (lb, ob) in zip(cont, again):
        assert la == lb
        np.testing.assert_array_equal(oa, ob)
    for name in a.vars:
        np.testing.assert_array_equal(a.vars[name].numpy(), b.vars[name].numpy(), err_msg=name)
    with pytest.raises(ValueError, match="checkpoint has N_rec=12, this model has 10"):
        Basic(small_params(N_rec=10)).load_checkpoint(tmp_path / "ck.npz")
