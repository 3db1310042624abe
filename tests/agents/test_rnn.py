"""Models: PsychRNN's equations and files, any batch size, seeds, config round trips, LSTM/GRU."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.tf


def _numpy_basic(w, x, dt, tau, f=lambda s: np.maximum(s, 0)):
    """PsychRNN's update written out in NumPy float64 (reference for the TensorFlow model)."""
    alpha = dt / np.asarray(tau, dtype=np.float64)
    s = np.repeat(w["init_state"].astype(np.float64), len(x), axis=0)
    outs, states = [], []
    for t in range(x.shape[1]):
        s = (1 - alpha) * s + alpha * (f(s) @ w["W_rec"].T + x[:, t] @ w["W_in"].T + w["b_rec"])
        states.append(s)
        outs.append(f(s) @ w["W_out"].T + w["b_out"])
    return np.stack(outs, 1), np.stack(states, 1)


def test_psychrnn_fixture_reproduces_outputs_and_states(fixture_dir):
    from agents import Basic

    ref = np.load(fixture_dir / "psychrnn_plain.ref.npz")
    meta = json.loads(str(ref["meta"]))
    model = Basic({"name": "fixture", "N_in": meta["N_in"], "N_rec": meta["N_rec"], "N_out": meta["N_out"],
                   "dt": meta["dt"], "tau": meta["tau"], "N_steps": meta["N_steps"], "N_batch": 64,
                   "load_weights_path": str(fixture_dir / "psychrnn_plain.weights.npz")})
    outputs, states = model.test(ref["x"])
    np.testing.assert_allclose(outputs, ref["outputs"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(states, ref["states"], atol=1e-5, rtol=0)
    few, _ = model.test(ref["x"][:3])                      # PsychRNN requires exactly N_batch trials
    np.testing.assert_allclose(few, ref["outputs"][:3], atol=1e-5, rtol=0)


@pytest.mark.parametrize("tau", [100.0, list(np.linspace(50, 200, 12))], ids=["scalar_tau", "per_unit_tau"])
def test_equations_match_numpy_reference(tau, small_params, batch):
    from agents import Basic

    model = Basic(small_params(tau=tau, dale_ratio=0.75, rec_density=0.6))
    x, _, _ = batch(5, 40)
    outputs, states = model.test(x)
    ref_out, ref_states = _numpy_basic(model.get_weights(), x, 10.0, tau)
    np.testing.assert_allclose(states, ref_states, atol=2e-5)
    np.testing.assert_allclose(outputs, ref_out, atol=2e-5)
    assert model.test(x[:1, :7])[0].shape == (1, 7, 2)   # any batch size and length


@pytest.mark.parametrize("transfer", ["tanh", "sigmoid", "softplus", "linear", "retanh"])
def test_written_out_gradient_equals_automatic_gradient(transfer, small_params, batch):
    from agents import Basic
    from agents._tf import tf

    fn = {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "softplus": tf.nn.softplus, "linear": tf.identity,
          "retanh": lambda s: tf.nn.relu(tf.tanh(s))}[transfer]
    a = Basic(small_params(transfer_function=transfer, spec_rad=0.9))
    b = Basic(small_params(transfer_function=lambda s: fn(s), spec_rad=0.9))  # a callable: automatic gradient
    x, y, mask = batch(4, 25)
    for _ in range(3):
        la, oa = a.train_on_batch(x, y, mask)
        lb, ob = b.train_on_batch(x, y, mask)
        assert la == pytest.approx(lb, rel=1e-5)
        np.testing.assert_allclose(oa, ob, atol=1e-5)
    for name in a.vars:
        np.testing.assert_allclose(a.vars[name].numpy(), b.vars[name].numpy(), atol=1e-6, err_msg=name)


def test_relu_gradient_equals_automatic_gradient(small_params, batch):
    from agents import Basic
    from agents._tf import tf

    a = Basic(small_params(rec_noise=0.05, L2_firing_rate=0.1, L1_rec=0.01))
    b = Basic(small_params(rec_noise=0.05, L2_firing_rate=0.1, L1_rec=0.01, transfer_function=lambda s: tf.nn.relu(s)))
    x, y, mask = batch(4, 25)
    for _ in range(3):
        la, _ = a.train_on_batch(x, y, mask)
        lb, _ = b.train_on_batch(x, y, mask)
        assert la == pytest.approx(lb, rel=1e-5)
    np.testing.assert_allclose(a.vars["W_rec"].numpy(), b.vars["W_rec"].numpy(), atol=1e-6)


def _state_penalty(model, params):
    from agents._tf import tf

    return 0.05 * tf.reduce_mean(tf.square(model.states))


@pytest.mark.parametrize("transfer", ["relu", "tanh"])
def test_written_out_gradient_with_a_penalty_on_states(transfer, small_params, batch):
    """A custom regularizer on the states sends a gradient into the states themselves, not only the rates."""
    from agents import Basic
    from agents._tf import tf

    fn = {"relu": tf.nn.relu, "tanh": tf.tanh}[transfer]
    a = Basic(small_params(transfer_function=transfer, custom_regularization=_state_penalty))
    b = Basic(small_params(transfer_function=lambda s: fn(s), custom_regularization=_state_penalty))
    c = Basic(small_params(transfer_function=transfer))
    x, y, mask = batch(4, 25)
    for _ in range(3):
        la, _ = a.train_on_batch(x, y, mask)
        lb, _ = b.train_on_batch(x, y, mask)
        c.train_on_batch(x, y, mask)
        assert la == pytest.approx(lb, rel=1e-5)
    for name in a.vars:
        np.testing.assert_allclose(a.vars[name].numpy(), b.vars[name].numpy(), atol=1e-6, err_msg=name)
    assert np.abs(a.vars["W_rec"].numpy() - c.vars["W_rec"].numpy()).max() > 1e-5   # the penalty mattered


@pytest.mark.parametrize("which", ["states", "rates"])
def test_written_out_gradient_takes_a_sparse_gradient(which):
    """A loss that gathers some steps of the states or rates sends IndexedSlices into the backward pass."""
    from agents._tf import tf
    from agents.ops import rate_recurrence

    rng = np.random.default_rng(0)
    s0 = tf.constant(rng.normal(0, 0.5, (3, 6)), tf.float32)
    drive = tf.constant(rng.normal(0, 0.5, (12, 3, 6)), tf.float32)
    Wa = tf.Variable(rng.normal(0, 0.3, (6, 6)).astype(np.float32))

    def grad(transfer):
        with tf.GradientTape() as tape:
            states, rates = rate_recurrence(s0, drive, Wa, 0.9, transfer)
            picked = tf.gather(states if which == "states" else rates, [0, 4, 11])
            loss = tf.reduce_sum(tf.square(picked))
        return tape.gradient(loss, Wa)

    np.testing.assert_allclose(grad("tanh").numpy(), grad(lambda s: tf.tanh(s)).numpy(), rtol=1e-5, atol=1e-6)


def test_seed_makes_init_and_noise_reproducible(small_params, batch):
    from agents import Basic

    x, _, _ = batch(3, 20)
    a, b, c = (Basic(small_params(seed=s, rec_noise=0.1)) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.vars["W_rec"].numpy(), b.vars["W_rec"].numpy())
    assert np.any(a.vars["W_rec"].numpy() != c.vars["W_rec"].numpy())
    out_a1, out_b1 = a.test(x)[0], b.test(x)[0]
    np.testing.assert_array_equal(out_a1, out_b1)
    assert np.any(a.test(x)[0] != out_a1)                 # a new noise draw on each call
    quiet = Basic(small_params(seed=7))
    np.testing.assert_array_equal(quiet.test(x)[0], quiet.test(x)[0])
    assert Basic(small_params(seed=None)).seed is not None


def test_config_round_trip_rebuilds_the_same_network(small_params):
    from agents import Basic, build_model

    params = small_params(dale_ratio=0.75, autapses=False, rec_density=0.5, rec_noise=0.02,
                          regularizers=[{"class_name": "L2", "config": {"weight": 0.1, "target": "rates"}}],
                          L1_rec=0.01, fixed={"W_rec": 0.2}, learning_rate=3e-3, optimizer="adam",
                          initializer={"class_name": "GaussianSpectralRadius", "config": {"spec_rad": 1.3}})
    model = Basic(params)
    cfg = model.config()
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["dale_ratio"] == 0.75 and cfg["autapses"] is False and cfg["rec_density"] == 0.5
    assert cfg["optimizer"]["config"]["learning_rate"] == 3e-3 and len(cfg["regularizers"]) == 2
    task_spec = {"N_in": 2, "N_out": 2, "dt": 10, "tau": 100, "T": 300, "N_steps": 30, "N_batch": 8}
    again = build_model(cfg, task_spec)
    for name, var in model.vars.items():
        np.testing.assert_array_equal(var.numpy(), again.vars[name].numpy(), err_msg=name)
    for key, mask in model.masks().items():
        np.testing.assert_array_equal(mask, again.masks()[key], err_msg=key)
    assert again.config() == cfg
    regions = {"regions": [{"name": "a", "N": 8, "dale_ratio": 0.75}, {"name": "b", "N": 4, "dale_ratio": 0.5}],
               "connections": ["a -> a: 0.5", "b -> b", "a -> b: 0.5"]}
    multi = Basic(small_params(regions=regions))
    rebuilt = build_model(multi.config(), task_spec)
    for key, mask in multi.masks().items():
        np.testing.assert_array_equal(mask, rebuilt.masks()[key], err_msg=key)
    assert rebuilt.region_labels == multi.region_labels == ["a"] * 8 + ["b"] * 4
    with pytest.raises(ValueError, match="model spec has N_in=3 but the task has N_in=2"):
        build_model({**cfg, "N_in": 3}, task_spec)
    with pytest.raises(ValueError, match="unknown model 'Vanilla'"):
        build_model({"model": "Vanilla", "N_rec": 4}, task_spec)
    # a config made from explicit masks cannot rebuild without them (it used to, silently unmasked)
    masked = Basic(small_params(rec_connectivity=np.triu(np.ones((12, 12), dtype=np.float32))))
    with pytest.raises(ValueError, match=r"explicit masks \['rec_connectivity'\]"):
        build_model(masked.config(), task_spec)


def test_save_writes_psychrnn_keys_and_reloads_alone(tmp_path, small_params, batch):
    from agents import Basic

    regions = {"regions": {"a": 8, "b": 4}, "connections": ["a -> a", "b -> b", "a -> b: 0.5"],
               "dale_ratio": 0.75, "outputs": ["b"]}
    model = Basic(small_params(regions=regions, autapses=False, fixed={"W_in": 0.5}))
    x, y, mask = batch()
    model.train_on_batch(x, y, mask)
    path = model.save(tmp_path / "net")
    with np.load(path) as f:                              # no allow_pickle needed
        keys = set(f.files)
    assert {"W_in", "W_rec", "W_out", "b_rec", "b_out", "init_state", "Dale_rec", "Dale_out",
            "input_connectivity", "rec_connectivity", "output_connectivity", "dale_ratio", "W_rec/Adam",
            "W_rec/Adam_1", "skinnerbox"} <= keys
    again = Basic({"load_weights_path": str(path)})
    assert again.region_labels == ["a"] * 8 + ["b"] * 4 and again.seed == model.seed
    np.testing.assert_allclose(again.test(x)[0], model.test(x)[0], atol=1e-6)
    for key, m in model.masks().items():
        np.testing.assert_array_equal(m, again.masks()[key], err_msg=key)
    w = model.get_weights()
    assert w["dale_ratio"] == 0.75 and np.all(w["W_out"][:, model.wiring.sign_rec < 0] == 0)


def test_bad_inputs_are_clear_errors(small_params, batch):
    from agents import Basic

    model = Basic(small_params())
    with pytest.raises(ValueError, match=r"trial_batch must be \(N_batch, N_steps, N_in=2\), got shape \(3, 5\)"):
        model.test(np.zeros((3, 5)))
    x, y, mask = batch()
    with pytest.raises(ValueError, match="y and mask must be"):
        model.train_on_batch(x, y[:, :5], mask)
    with pytest.raises(ValueError, match=r"params\['N_rec'\] must be a positive integer, got 0"):
        Basic(small_params(N_rec=0))
    with pytest.raises(ValueError, match="dale_ratio must be a number strictly between 0 and 1"):
        Basic(small_params(dale_ratio=1.0))
    with pytest.raises(ValueError, match="unknown transfer_function 'relux'"):
        Basic(small_params(transfer_function="relux"))


@pytest.mark.parametrize("bad", [{"seed": 1.7}, {"seed": -1}, {"seed": "3"}, {"rec_noise": float("nan")},
                                 {"rec_noise": float("inf")}, {"rec_noise": -0.1}, {"rec_noise": "0.1"}],
                         ids=lambda bad: f"{next(iter(bad))}={next(iter(bad.values()))}")
def test_seed_and_rec_noise_are_checked(bad, small_params):
    from agents import Basic

    with pytest.raises(ValueError, match=rf"{next(iter(bad))} must be a non-negative (integer|finite number), got"):
        Basic(small_params(**bad))


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gated_build_model_from_a_weights_file_alone(kind, tmp_path):
    from agents import build_model

    net = build_model({"model": kind, "N_rec": 6, "seed": 1}, {"N_in": 2, "N_out": 1, "dt": 10, "tau": 100})
    again = build_model({"load_weights_path": str(net.save(tmp_path / "gated"))}, {})
    assert again.kind == kind and again.config()["seed"] == 1


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("penalty", [{"L2_rec": 0.1}, {"L1_in": 0.1},
                                     {"regularizers": [{"class_name": "L2", "config": {"weight": 0.1}}]}])
def test_gated_models_refuse_penalties_on_matrices_they_lack_when_built(kind, penalty, small_params):
    import agents

    with pytest.raises(ValueError, match=f"{kind}: L[12] penalises 'W_(rec|in)', which a {kind} does not have.*"
                                         f"it may penalise W_out, rates"):
        getattr(agents, kind)(small_params(**penalty))
    assert getattr(agents, kind)(small_params(L2_out=0.1, L2_firing_rate=0.1)).regularizers


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_gated_models_train_save_and_reload(kind, tmp_path, small_params, batch):
    import agents

    cls = getattr(agents, kind)
    model = cls(small_params())
    x, y, mask = batch()
    first, _ = model.train_on_batch(x, y, mask)
    for _ in range(15):
        loss, out = model.train_on_batch(x, y, mask)
    assert loss < first and out.shape == (8, 30, 2)
    outputs, states = model.test(x[:3])
    assert outputs.shape == (3, 30, 2) and states.shape == (3, 30, 12)
    again = cls({"load_weights_path": str(model.save(tmp_path / kind))})
    np.testing.assert_allclose(again.test(x)[0], model.test(x)[0], atol=1e-6)
    with pytest.raises(ValueError, match=f"{kind} does not support biological constraints"):
        cls(small_params(dale_ratio=0.8))
    with pytest.raises(ValueError, match="rec_noise is only implemented for Basic"):
        cls(small_params(rec_noise=0.1))


def test_psychrnn_lstm_file_is_refused_with_both_reasons(tmp_path):
    from agents import LSTM, Basic

    rng = np.random.default_rng(0)
    n, n_in, trials = 10, 2, 8                            # PsychRNN's LSTM keys; init states per trial
    arrays = {k: rng.standard_normal((trials, n)) for k in ("init_hidden", "init_cell")}
    arrays.update({f"W_{g}": rng.standard_normal((n + n_in, n)) for g in "fico"})
    arrays.update({f"b_{g}": np.ones(n) for g in "fico"})
    arrays.update(W_out=rng.standard_normal((2, n)), b_out=np.zeros(2), W_in=rng.standard_normal((n, n_in)),
                  W_rec=rng.standard_normal((n, n)), init_state=np.zeros((1, n)))
    np.savez(tmp_path / "psy_lstm.npz", **{k: v.astype(np.float32) for k, v in arrays.items()})
    for cls in (LSTM, Basic):
        with pytest.raises(ValueError, match=r"PsychRNN LSTM weights file.*one initial hidden and cell state per "
                                             r"trial.*\(8, 10\).*sigmoid.*PsychRNN's own LSTM"):
            cls({"load_weights_path": tmp_path / "psy_lstm.npz", "dt": 10, "tau": 100, "N_in": 2, "N_out": 2,
                 "N_rec": 10})


def test_gated_weights_files_are_shape_checked(tmp_path, small_params):
    from agents import GRU, LSTM

    path = LSTM(small_params()).save(tmp_path / "lstm")
    with pytest.raises(ValueError, match=r"lstm.npz: init_hidden has shape \(1, 12\), a LSTM with N_in=2, N_rec=8, "
                                         r"N_out=2 needs \(1, 8\)"):
        LSTM({"load_weights_path": path, "N_rec": 8})
    with np.load(GRU(small_params()).save(tmp_path / "full_gru")) as f:
        np.savez(tmp_path / "gru.npz", **{k: f[k] for k in f.files if k not in ("W_z", "skinnerbox")})
    with pytest.raises(ValueError, match=r"gru.npz: a GRU with N_in=2, N_rec=12, N_out=2 needs 'W_z' \(14, 12\), "
                                         r"which is missing"):
        GRU({"load_weights_path": tmp_path / "gru.npz", "dt": 10, "tau": 100, "N_in": 2, "N_out": 2, "N_rec": 12})


def _rectified_quadratic(s):
    """An importable custom transfer function."""
    from agents._tf import tf

    return tf.nn.relu(s) ** 2


@pytest.mark.filterwarnings("ignore:.*is a lambda or local function")
def test_a_lambda_transfer_function_saves_and_loads_when_passed_again(tmp_path, small_params, batch):
    from agents import Basic
    from agents._tf import tf

    square = lambda s: tf.nn.relu(s) ** 2  # noqa: E731
    with pytest.warns(UserWarning, match="loading the file will need it passed again .*'transfer_function'"):
        model = Basic(small_params(transfer_function=square, spec_rad=0.5))
    x, y, mask = batch()
    model.train(iter([(x, y, mask, None)]), {"training_iters": 8, "verbosity": False,
                                             "save_weights_path": tmp_path / "trained"})
    path = model.save(tmp_path / "lam")
    with np.load(path) as f:                              # every PsychRNN key is there
        keys = set(f.files)
    assert {"W_in", "W_rec", "W_out", "b_rec", "b_out", "init_state", "Dale_rec", "rec_connectivity"} <= keys
    assert model.config()["transfer_function"] == "not-importable:test_rnn:" + square.__qualname__
    with pytest.raises(ValueError, match=r"transfer_function was .*<lambda>'.*pass the function again: "
                                         r"params\['transfer_function'\]"):
        Basic({"load_weights_path": path})
    again = Basic({"load_weights_path": path, "transfer_function": square})
    np.testing.assert_allclose(again.test(x)[0], model.test(x)[0], atol=1e-6)
    importable = Basic(small_params(transfer_function=_rectified_quadratic))
    assert importable.config()["transfer_function"] == "test_rnn:_rectified_quadratic"
    rebuilt = Basic(importable.config())
    np.testing.assert_array_equal(rebuilt.test(x)[0], importable.test(x)[0])


@pytest.mark.filterwarnings("ignore:.*is a lambda or local function")
def test_a_lambda_loss_saves_and_loads_when_passed_again(tmp_path, small_params, batch):
    from agents import Basic
    from agents._tf import tf

    l1 = lambda p, y, m: tf.reduce_mean(tf.abs(m * (p - y)))  # noqa: E731
    with pytest.warns(UserWarning, match="loss_function"):
        model = Basic(small_params(loss_function=l1))
    path = model.save(tmp_path / "loss")
    with pytest.raises(ValueError, match=r"loss_function was .*<lambda>'.*params\['loss_function'\]"):
        Basic({"load_weights_path": path})
    x, y, mask = batch()
    again = Basic({"load_weights_path": path, "loss_function": l1})
    assert again.train_on_batch(x, y, mask)[0] == pytest.approx(model.train_on_batch(x, y, mask)[0], rel=1e-6)


def test_numpy_global_seed_makes_unseeded_models_reproducible(small_params):
    from agents import Basic

    runs = []
    for _ in range(2):
        np.random.seed(2020)                              # PsychRNN's idiom at the top of a script
        runs.append(Basic(small_params(seed=None, dale_ratio=0.8, rec_density=0.5)))
    assert runs[0].seed == runs[1].seed
    np.testing.assert_array_equal(runs[0].get_weights()["W_rec"], runs[1].get_weights()["W_rec"])
    assert Basic(small_params(seed=None)).seed != runs[0].seed   # the global stream moves on


def test_lstm_is_the_standard_cell(small_params):
    from agents import LSTM

    model = LSTM(small_params(N_rec=3, N_in=1, N_out=1))
    x = np.full((1, 1, 1), 0.5, dtype=np.float32)
    v = {k: w.numpy() for k, w in model.vars.items()}
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    z = np.concatenate([v["init_hidden"], x[0]], axis=1)
    f, i, g, o = (z @ v[f"W_{k}"] + v[f"b_{k}"] for k in "fico")
    c = sig(f) * v["init_cell"] + sig(i) * np.tanh(g)
    h = sig(o) * np.tanh(c)
    np.testing.assert_allclose(model.test(x)[1][0, 0], h[0], atol=1e-6)


@pytest.mark.gpu
def test_gpu_training_step_matches_cpu(small_params, batch):
    from agents import Basic
    from agents._tf import tf

    x, y, mask = batch(16, 40)
    results = []
    for device in ("/CPU:0", "/GPU:0"):
        with tf.device(device):
            model = Basic(small_params(N_rec=64, dale_ratio=0.8, rec_noise=0.0))
            results.append([model.train_on_batch(x, y, mask) for _ in range(3)] + [model.get_weights()["W_rec"]])
    for (lc, oc), (lg, og) in zip(results[0][:3], results[1][:3]):
        assert lc == pytest.approx(lg, rel=1e-4)
        np.testing.assert_allclose(oc, og, atol=1e-4)
    np.testing.assert_allclose(results[0][3], results[1][3], atol=1e-5)
