"""Losses, regularizers and optimizers: numbers on fixed arrays, config round trips, PsychRNN's custom hooks."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.tf

P = np.array([[[0.2, 0.9], [0.5, 0.1]]], dtype=np.float32)      # (1, 2, 2) predictions
Y = np.array([[[0.0, 1.0], [1.0, 0.0]]], dtype=np.float32)
M = np.array([[[1.0, 1.0], [0.0, 1.0]]], dtype=np.float32)


def psychrnn_style_loss(predictions, y, mask):
    """A module-level custom loss (so its config can name it)."""
    from agents._tf import tf

    return tf.reduce_mean(tf.abs(mask * (predictions - y)))


def test_losses_on_fixed_arrays():
    from agents import losses

    mse = float(losses.MeanSquaredError()(P, Y, M))
    assert mse == pytest.approx(np.mean((M * (P - Y)) ** 2))
    bce = float(losses.BinaryCrossEntropy()(P, Y, M))
    ref = np.mean(M * -(Y * np.log(P + 1e-7) + (1 - Y) * np.log(1 - P + 1e-7)))
    assert bce == pytest.approx(ref, rel=1e-5)
    custom = losses.from_params({"loss_function": "my_loss", "my_loss": psychrnn_style_loss})
    assert float(custom(P, Y, M)) == pytest.approx(np.mean(np.abs(M * (P - Y))))
    with pytest.raises(ValueError, match="loss_function is 'mse'"):
        losses.from_params({"loss_function": "mse"})


def test_regularizers_on_fixed_arrays():
    from agents import regularizers as R

    w = np.array([[1.0, -2.0], [0.0, 3.0]], dtype=np.float32)
    assert float(R.L1(0.5, "W_rec")(w)) == pytest.approx(0.5 * 1.5)
    assert float(R.L2(0.1, "rates")(w)) == pytest.approx(0.1 * 3.5)
    regs = R.from_params({"L1_in": 0.1, "L2_rec": 0.2, "L2_firing_rate": 0.3, "L1_out": 0})
    assert [(type(r).__name__, r.target, r.weight) for r in regs] == [
        ("L1", "W_in", 0.1), ("L2", "W_rec", 0.2), ("L2", "rates", 0.3)]
    with pytest.raises(ValueError, match="target must be one of"):
        R.L1(0.1, "W_xx")
    with pytest.raises(ValueError, match="weight must be a non-negative number, got -1"):
        R.L2(-1)


def _objects():
    from agents import losses, optimizers, regularizers

    return [
        (losses, losses.MeanSquaredError()), (losses, losses.BinaryCrossEntropy()),
        (losses, losses.CustomLoss(psychrnn_style_loss)),
        (regularizers, regularizers.L1(0.3, "W_out")), (regularizers, regularizers.L2(0.2, "rates")),
        (optimizers, optimizers.Adam(2e-3, beta_1=0.8)), (optimizers, optimizers.SGD(0.1, momentum=0.5)),
        (optimizers, optimizers.RMSProp(1e-2, rho=0.8, momentum=0.5, centered=True)),
    ]


def test_config_round_trips():
    for module, obj in _objects():
        again = module.get(json.loads(json.dumps(module.serialize(obj))))
        assert again.get_config() == obj.get_config() and type(again) is type(obj), obj


def test_custom_regularization_sees_the_forward_pass(small_params, batch):
    from agents import Basic
    from agents._tf import tf

    seen = {}

    def keep_w_rec_small(model, params):
        seen["shapes"] = (tuple(model.get_effective_W_rec().shape), tuple(model.states.shape[2:]))
        seen["coef"] = params["coef"]
        return params["coef"] * tf.reduce_sum(tf.square(model.get_effective_W_rec()))

    x, y, mask = batch()
    plain = Basic(small_params())
    reg = Basic(small_params(custom_regularization=keep_w_rec_small, coef=100.0))
    w_init = plain.get_weights()["W_rec"]
    loss_plain, _ = plain.train_on_batch(x, y, mask)
    loss_reg, _ = reg.train_on_batch(x, y, mask)
    assert seen == {"shapes": ((12, 12), (12,)), "coef": 100.0}
    assert loss_reg == pytest.approx(loss_plain + 100.0 * np.sum(np.square(w_init)), rel=1e-4)
    assert np.sum(reg.get_weights()["W_rec"] ** 2) < np.sum(plain.get_weights()["W_rec"] ** 2)


def test_adam_matches_the_textbook_update():
    from agents import optimizers
    from agents._tf import tf

    opt = optimizers.Adam(0.1)
    v = tf.Variable([1.0, -2.0])
    opt.build([v])
    g = tf.constant([0.5, 0.25])
    opt.apply([g], [v])
    opt.apply([g], [v])
    m, s, w = np.zeros(2), np.zeros(2), np.array([1.0, -2.0])
    for t in (1, 2):
        m = 0.9 * m + 0.1 * g.numpy()
        s = 0.999 * s + 0.001 * g.numpy() ** 2
        w = w - 0.1 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(s) + 1e-8)
    np.testing.assert_allclose(v.numpy(), w, rtol=1e-5)
    state = opt.state()
    assert int(state["iterations"]) == 2 and set(state) >= {"0/m", "0/v", "learning_rate"}
    with pytest.raises(ValueError, match=r"or a TensorFlow 1 optimizer object \(AdamOptimizer, "):
        optimizers.from_params(object())


def test_a_misspelt_model_key_is_an_error_not_a_different_network():
    from agents import build_model
    from shaping.tasks import PerceptualDiscrimination

    task_spec = PerceptualDiscrimination(N_batch=8, T=300).spec()
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'dale_ration'.*dale_ratio"):
        build_model({"N_rec": 8, "dale_ration": 0.8}, task_spec)
    model = build_model({"N_rec": 8, "dale_ratio": 0.75, "L2_firing_rate": 0.01, "spec_rad": 1.2}, task_spec)
    assert model.config()["dale_ratio"] == 0.75


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gated_models_honour_the_output_flags_and_refuse_the_others(kind, small_params, batch):
    import agents

    cls = getattr(agents, kind)
    with pytest.raises(ValueError, match="W_rec_train name matrices a .* does not have"):
        cls(small_params(W_rec_train=False))
    model = cls(small_params(W_out_train=False, b_out_train=False))
    before = {k: v.numpy().copy() for k, v in model.vars.items()}
    x, y, mask = batch(4, 20)
    for _ in range(3):
        model.train_on_batch(x, y, mask)
    for name in ("W_out", "b_out"):
        np.testing.assert_array_equal(model.vars[name].numpy(), before[name])
    assert any(not np.array_equal(model.vars[k].numpy(), before[k]) for k in before if k.startswith("W_"))


# PsychRNN's train_params["optimizer"]: TensorFlow 1 optimizer objects, by constructor (name, kwargs)
TF1 = {
    "adam": ("AdamOptimizer", {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.99, "epsilon": 1e-6}),
    "gradient_descent": ("GradientDescentOptimizer", {"learning_rate": 0.1}),
    "momentum": ("MomentumOptimizer", {"learning_rate": 0.1, "momentum": 0.9, "use_nesterov": True}),
    "rms_prop": ("RMSPropOptimizer", {"learning_rate": 0.01, "decay": 0.8, "momentum": 0.5, "epsilon": 1e-6}),
    "rms_prop_centered": ("RMSPropOptimizer", {"learning_rate": 0.01, "centered": True}),
}


@pytest.mark.parametrize("name", TF1.values(), ids=TF1.keys())
def test_tf1_optimizer_objects_are_translated_to_the_same_update(name):
    from agents import optimizers
    from agents._tf import tf

    cls, kwargs = name
    theirs = getattr(tf.compat.v1.train, cls)(**kwargs)
    ours = optimizers.from_params(theirs, learning_rate=0.5)   # the object's own learning rate wins
    assert ours.learning_rate == kwargs["learning_rate"]
    a, b = tf.Variable([1.0, -2.0, 0.5]), tf.Variable([1.0, -2.0, 0.5])
    ours.build([b])
    for k in range(3):
        g = tf.constant([0.5, -0.25, 0.1 * k])
        theirs.apply_gradients([(g, a)])
        ours.apply([g], [b])
    np.testing.assert_array_equal(b.numpy(), a.numpy())
    assert not np.array_equal(b.numpy(), [1.0, -2.0, 0.5])


def test_psychrnn_simple_example_optimizer_trains_and_others_are_refused(small_params, batch):
    from agents import Basic, optimizers
    from agents._tf import tf

    net = Basic(small_params())
    x, y, mask = batch()
    gen = iter([(x, y, mask, None)] * 2)
    net.train(gen, {"training_iters": 16, "verbosity": False, "learning_rate": 1e-3,
                    "optimizer": tf.compat.v1.train.AdamOptimizer(learning_rate=2e-3)})
    assert isinstance(net.optimizer, optimizers.Adam) and net.optimizer.learning_rate == 2e-3
    assert int(net.optimizer.iterations.numpy()) == 2
    with pytest.raises(ValueError, match="AdagradOptimizer is not supported; supported: "
                                         "tf.compat.v1.train.AdamOptimizer, .*RMSPropOptimizer"):
        optimizers.from_params(tf.compat.v1.train.AdagradOptimizer(0.1))


def test_rmsprop_fixed_entries_stay_put(small_params, batch):
    from agents import Basic

    net = Basic(small_params(optimizer="rmsprop", fixed={"W_rec": 0.5}))
    before = net.vars["W_rec"].numpy().copy()
    fixed = net.masks()["fixed_W_rec"]
    x, y, mask = batch()
    for _ in range(3):
        net.train_on_batch(x, y, mask)
    after = net.vars["W_rec"].numpy()
    np.testing.assert_array_equal(after[fixed], before[fixed])
    assert not np.array_equal(after[~fixed], before[~fixed])


@pytest.mark.filterwarnings("ignore:.*is a lambda or local function")
def test_custom_regularization_gets_the_whole_params_dict_arrays_included(small_params, batch, tmp_path):
    from agents import Basic
    from agents._tf import tf

    def wiring_cost(model, params):                       # PsychRNN's idiom: a distance matrix in params
        return params["wiring_weight"] * tf.reduce_sum(tf.abs(model.get_effective_W_rec()) * params["distance"])

    distance = np.abs(np.subtract.outer(np.arange(12), np.arange(12))).astype(np.float32)
    x, y, mask = batch()
    plain = Basic(small_params())
    with pytest.warns(UserWarning, match="custom_regularization .*wiring_cost' is a lambda or local function"):
        wired = Basic(small_params(custom_regularization=wiring_cost, distance=distance, wiring_weight=0.5))
    w = plain.get_weights()["W_rec"]
    loss_plain, loss_wired = plain.train_on_batch(x, y, mask)[0], wired.train_on_batch(x, y, mask)[0]
    assert loss_wired == pytest.approx(loss_plain + 0.5 * np.sum(np.abs(w) * distance), rel=1e-4)
    stored = wired.config()["regularizers"][0]["config"]
    assert "distance" not in stored["params"] and stored["params"]["wiring_weight"] == 0.5
    path = wired.save(tmp_path / "wired")                 # the array is left out of the file's config only
    again = Basic({"load_weights_path": path, "custom_regularization": wiring_cost, "distance": distance})
    assert len(again.regularizers) == 1 and again.regularizers[0].params["wiring_weight"] == 0.5
    assert again.train_on_batch(x, y, mask)[0] == pytest.approx(wired.train_on_batch(x, y, mask)[0], rel=1e-5)
