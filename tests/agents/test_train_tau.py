"""Trainable time constants (``train_tau``) and the leaky-ReLU transfer function: gradients against TensorFlow's
automatic ones, a tau that learns in the direction a task needs, weight files, checkpoints, the NumPy simulator,
MLflow and the dashboards' connectivity view."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

DT = 10.0


def leaky_relu_callable(s):
    """A user's own leaky ReLU (a callable: TensorFlow's automatic gradient), at the paper's slope."""
    from agents._tf import tf

    return tf.nn.leaky_relu(s, alpha=0.01)


def _params(**overrides) -> dict:
    """A tiny train_tau network (N_in=2, N_rec=6, N_out=2, dt=10 ms) with leaky-ReLU units."""
    params = {"N_in": 2, "N_rec": 6, "N_out": 2, "dt": DT, "tau": 100.0, "seed": 4, "train_tau": True,
              "transfer_function": "leaky_relu"}
    params.update(overrides)
    return params


def _reference_forward(tf, model, x):
    """Basic's equations written out step by step in TensorFlow, from the model's variables: tau = dt (1 +
    softplus(tau_raw)) and alpha = dt / tau per unit (differentiated by TensorFlow itself)."""
    v = model.vars
    W_in, W_rec, W_out = (model.effective(n) for n in ("W_in", "W_rec", "W_out"))
    tau = DT * (1.0 + tf.nn.softplus(v["tau_raw"]))
    alpha = DT / tau
    f = model.transfer
    s = tf.tile(v["init_state"], [x.shape[0], 1])
    outs = []
    for t in range(x.shape[1]):
        s = (1.0 - alpha) * s + alpha * (tf.matmul(f(s), W_rec, transpose_b=True)
                                         + tf.matmul(x[:, t], W_in, transpose_b=True) + v["b_rec"])
        outs.append(tf.matmul(f(s), W_out, transpose_b=True) + v["b_out"])
    return tf.stack(outs, 1)


# ---------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("transfer", ["relu", "leaky_relu", "tanh", "softplus", "retanh"])
@pytest.mark.parametrize("per_unit", [True, False], ids=["per_unit_decay", "scalar_decay"])
def test_recurrence_gradient_with_decay_equals_the_tape(transfer, per_unit):
    """ops.rate_recurrence's written-out backward pass, decay included, against an unrolled loop on the tape."""
    from agents._tf import tf
    from agents.ops import TRANSFER_FUNCTIONS, rate_recurrence

    rng = np.random.default_rng(0)
    n_steps, n_batch, n = 7, 3, 5
    s0 = tf.constant(rng.normal(size=(n_batch, n)), tf.float32)
    drive = tf.constant(rng.normal(0, 0.5, (n_steps, n_batch, n)), tf.float32)
    Wa = tf.constant(rng.normal(0, 0.4, (n, n)), tf.float32)
    decay = tf.constant(rng.uniform(0.1, 0.9, n if per_unit else ()), tf.float32)
    g_states = tf.constant(rng.normal(size=(n_steps, n_batch, n)), tf.float32)
    g_rates = tf.constant(rng.normal(size=(n_steps, n_batch, n)), tf.float32)
    f = TRANSFER_FUNCTIONS[transfer]
    inputs = [s0, drive, Wa, decay]

    def loss(states, rates):
        return tf.reduce_sum(states * g_states) + tf.reduce_sum(rates * g_rates)

    with tf.GradientTape() as tape:
        tape.watch(inputs)
        states, rates = rate_recurrence(s0, drive, Wa, decay, transfer, decay_gradient=True)
        mine = loss(states, rates)
    got = tape.gradient(mine, inputs)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        s, ref_states = s0, []
        for t in range(n_steps):
            s = decay * s + tf.matmul(f(s), Wa) + drive[t]
            ref_states.append(s)
        ref_states = tf.stack(ref_states)
        ref = loss(ref_states, f(ref_states))
    want = tape.gradient(ref, inputs)
    np.testing.assert_allclose(states.numpy(), ref_states.numpy(), atol=1e-6)
    for name, g, w in zip(("s0", "drive", "Wa", "decay"), got, want):
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)


def test_model_gradient_with_respect_to_tau_equals_the_tape():
    """Every variable's gradient, tau_raw included, through Basic's fast path equals the tape's through the
    equations written out (a per-unit alpha in the input drive, the recurrent weights and the decay)."""
    from agents import Basic
    from agents._tf import tf

    model = Basic(_params(dale_ratio=0.5, autapses=False, L2_firing_rate=0.05))
    rng = np.random.default_rng(1)
    x = tf.constant(rng.random((4, 9, 2)), tf.float32)
    y = tf.constant(rng.random((4, 9, 2)), tf.float32)
    variables = list(model.vars.values())
    assert model.vars["tau_raw"].trainable and model.vars["tau_raw"].shape == (6,)
    with tf.GradientTape() as tape:
        out = model._forward(x, tf.constant([0, 0], tf.int64))["outputs"]
        mine = tf.reduce_mean((out - y) ** 2)
    got = tape.gradient(mine, variables)
    with tf.GradientTape() as tape:
        ref_out = _reference_forward(tf, model, x)
        ref = tf.reduce_mean((ref_out - y) ** 2)
    want = tape.gradient(ref, variables)
    np.testing.assert_allclose(out.numpy(), ref_out.numpy(), atol=1e-6)
    for name, g, w in zip(model.vars, got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    assert np.abs(got[list(model.vars).index("tau_raw")].numpy()).max() > 0


def test_named_and_callable_leaky_relu_train_alike():
    """The written-out gradient ("leaky_relu") and TensorFlow's automatic one (a callable) give the same
    trajectory, time constants and noise included."""
    from agents import Basic

    a = Basic(_params(rec_noise=0.05))
    b = Basic(_params(rec_noise=0.05, transfer_function=leaky_relu_callable))
    rng = np.random.default_rng(2)
    x, y = rng.random((5, 12, 2), dtype=np.float32), rng.random((5, 12, 2), dtype=np.float32)
    mask = np.ones_like(y)
    for _ in range(3):
        la, _ = a.train_on_batch(x, y, mask)
        lb, _ = b.train_on_batch(x, y, mask)
        assert la == pytest.approx(lb, rel=1e-5)
    for name in a.vars:
        np.testing.assert_allclose(a.vars[name].numpy(), b.vars[name].numpy(), atol=1e-6, err_msg=name)
    assert not np.allclose(a.tau, Basic(_params()).tau)  # the time constants moved


# ---------------------------------------------------------------------------------------------- learning
def _memory_batch(rng, n=32, steps=30):
    """Hold a pulse given at step 0 from step 10 to the end: slow units help."""
    u = rng.uniform(0.5, 1.5, n).astype(np.float32)
    x = np.zeros((n, steps, 1), np.float32)
    x[:, 0, 0] = u
    y = np.repeat(u[:, None, None], steps, axis=1)
    mask = np.zeros_like(y)
    mask[:, 10:] = 1.0
    return x, y, mask


def _follow_batch(rng, n=32, steps=30):
    """Repeat a fresh random input at every step: fast units help."""
    x = rng.uniform(0, 1, (n, steps, 1)).astype(np.float32)
    return x, x.copy(), np.ones_like(x)


@pytest.mark.parametrize("task, init, slower", [(_memory_batch, None, True), (_follow_batch, [15.0, 25.0], False)],
                         ids=["memory_lengthens_tau", "following_shortens_tau"])
def test_tau_learns_in_the_direction_the_task_needs(task, init, slower):
    """With W_rec frozen at zero, a unit's time constant is the network's only memory: holding a pulse makes
    tau longer, following a fresh input every step makes it shorter, never below dt; the loss falls."""
    from agents import Basic

    model = Basic({"N_in": 1, "N_rec": 8, "N_out": 1, "dt": DT, "tau": DT, "seed": 3, "train_tau": True,
                   "transfer_function": "leaky_relu", "W_rec": np.zeros((8, 8)), "W_rec_train": False,
                   "learning_rate": 0.02, "tau_init_range": init})
    low, high = model.tau_init_range
    tau0 = model.tau.copy()
    assert np.all((tau0 >= low) & (tau0 <= high)) and (low, high) == ((DT, 2 * DT) if init is None else tuple(init))
    rng = np.random.default_rng(0)
    losses = [model.train_on_batch(*task(rng))[0] for _ in range(300)]
    tau = model.tau
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])
    assert np.all(tau >= DT)
    if slower:
        assert tau.mean() > 1.5 * tau0.mean()
    else:
        assert tau.mean() < 0.85 * tau0.mean()


# ---------------------------------------------------------------------------------------------- settings
def test_off_by_default_and_refused_where_it_means_nothing():
    from agents import Basic, build_model

    plain = Basic(_params(train_tau=False, tau_init_range=[10, 30]))
    assert "tau_raw" not in plain.vars and "tau" not in plain.get_weights()
    assert plain.config()["train_tau"] is False and plain.config()["tau_init_range"] is None
    assert plain.tau == 100.0 and np.all(plain.time_constants() == 100.0)
    default = Basic({k: v for k, v in _params().items() if k != "train_tau"})
    assert default.train_tau is False
    for bad in ([5.0, 20.0], [20.0, 10.0], [10.0], "fast", [10.0, float("inf")]):
        with pytest.raises(ValueError, match="tau_init_range"):
            Basic(_params(tau_init_range=bad))
    with pytest.raises(ValueError, match="train_tau"):
        Basic(_params(train_tau="yes"))
    with pytest.raises(ValueError, match="train_tau is for Basic"):
        build_model({"model": "LSTM", **_params(transfer_function="relu")}, {})


def test_initial_tau_is_uniform_in_its_range_from_the_seed():
    from agents import Basic, build_model

    a = Basic(_params(N_rec=400, tau_init_range=[20.0, 60.0]))
    assert np.all((a.tau >= 20.0) & (a.tau <= 60.0)) and a.tau.std() > 8  # uniform on [20, 60]: sd 11.5
    assert np.array_equal(Basic(_params(N_rec=400, tau_init_range=[20.0, 60.0])).tau, a.tau)
    assert not np.array_equal(Basic(_params(N_rec=400, seed=5, tau_init_range=[20.0, 60.0])).tau, a.tau)
    assert np.allclose(a.alpha, DT / a.tau)
    # the other weights are drawn as without train_tau
    off = Basic(_params(N_rec=400, train_tau=False))
    for name in off.vars:
        assert np.array_equal(off.vars[name].numpy(), a.vars[name].numpy()), name
    # config() rebuilds the same network; build_model knows the keys
    again = build_model({**a.config()}, {})
    assert np.array_equal(again.tau, a.tau) and again.config()["tau_init_range"] == [20.0, 60.0]


# ---------------------------------------------------------------------------------------------- files
def test_weight_file_round_trip_and_numpy_simulator(tmp_path):
    from agents import Basic, BasicSimulator
    from agents.simulate import Network
    from shaping.weights import load_weights

    model = Basic(_params(dale_ratio=0.5, rec_noise=0.0))
    rng = np.random.default_rng(3)
    x, y = rng.random((4, 15, 2), dtype=np.float32), rng.random((4, 15, 2), dtype=np.float32)
    for _ in range(5):
        model.train_on_batch(x, y, np.ones_like(y))
    path = model.save(tmp_path / "tau.npz")
    arrays, meta = load_weights(path)
    assert arrays["tau"].shape == (6,) and np.array_equal(arrays["tau"], model.tau)
    assert "tau_raw" not in arrays and meta["config"]["train_tau"] is True
    assert meta["config"]["tau_init_range"] == [DT, 2 * DT]

    loaded = Basic({"load_weights_path": str(path)})
    # tau_raw comes back through softplus^-1 of the float32 tau: equal to a float32 rounding
    assert loaded.train_tau and np.allclose(loaded.tau, model.tau, rtol=1e-6, atol=0)
    out, states = model.test(x)
    out2, states2 = loaded.test(x)
    np.testing.assert_allclose(out2, out, atol=1e-6)
    np.testing.assert_allclose(states2, states, atol=1e-6)

    net = Network.load(path)
    assert np.array_equal(net.tau, model.tau) and net.transfer_function == "leaky_relu"
    out3, states3 = net.run(x)
    np.testing.assert_allclose(out3, out, atol=1e-5)
    np.testing.assert_allclose(states3, states, atol=1e-5)
    from_dict = BasicSimulator(weights=arrays, params={"dt": DT}, transfer_function="leaky_relu")
    for sim in (BasicSimulator(rnn_model=model), BasicSimulator(weights_path=path), from_dict):  # the file's tau
        sim_out, _ = sim.run_trials(x)
        np.testing.assert_allclose(sim_out, out, atol=1e-5)

    frozen = Basic({"load_weights_path": str(path), "train_tau": False})  # the file's tau, fixed
    assert "tau_raw" not in frozen.vars and np.array_equal(frozen.tau, model.tau)
    np.testing.assert_allclose(frozen.test(x)[0], out, atol=1e-6)


def test_files_without_train_tau_hold_no_tau(tmp_path):
    from agents import Basic
    from shaping.weights import load_weights

    path = Basic(_params(train_tau=False, transfer_function="relu")).save(tmp_path / "plain.npz")
    arrays, meta = load_weights(path)
    assert "tau" not in arrays and not any(k.startswith("tau") for k in arrays)
    assert meta["config"]["train_tau"] is False


def test_checkpoint_continues_exactly_and_refuses_a_mismatch(tmp_path):
    from agents import Basic

    rng = np.random.default_rng(4)
    x, y = rng.random((4, 10, 2), dtype=np.float32), rng.random((4, 10, 2), dtype=np.float32)
    mask = np.ones_like(y)
    a = Basic(_params())
    a.train_on_batch(x, y, mask)
    ckpt = a.save_checkpoint(tmp_path / "ckpt.npz")
    b = Basic(_params())
    b.load_checkpoint(ckpt)
    for _ in range(2):
        assert a.train_on_batch(x, y, mask)[0] == b.train_on_batch(x, y, mask)[0]
    assert np.array_equal(a.tau, b.tau)
    with pytest.raises(ValueError, match="train_tau"):
        Basic(_params(train_tau=False)).load_checkpoint(ckpt)


# ---------------------------------------------------------------------------------------------- provenance
def test_mlflow_logs_the_setting_and_each_snapshots_tau(tmp_path):
    from mlflow import MlflowClient

    from agents import Basic
    from agents.tracking import AgentTracker
    from shaping import tracking

    model = Basic(_params(N_rec=10))
    uri = tracking.default_tracking_uri(tmp_path / "store")
    lab = tracking.LabRun.start(uri, "tau", {"lab": "train_tau test"})
    child = lab.child("agent")
    tracker = AgentTracker(child, background=False)
    tracker.log_model_config(model.config())
    path = model.save(tmp_path / "agent.npz")
    tracker.log_connectivity(path, model.get_weights(), step=640, tag="final")
    tracker.log_connectivity(None, model.get_weights(), step=900, tag=None)  # metrics with untagged ones too
    assert tracker.flush(timeout_s=60)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(child["run_id"])
    assert run.data.params["model.train_tau"] == "true"
    assert run.data.params["model.tau_init_range"] == f"[{DT}, {2 * DT}]"
    steps = model.tau / DT
    for stat, fn in (("mean", np.mean), ("median", np.median), ("min", np.min), ("max", np.max)):
        history = sorted(client.get_metric_history(child["run_id"], f"tau/{stat}_steps"), key=lambda m: m.step)
        assert [m.step for m in history] == [640, 900]
        assert history[0].value == pytest.approx(float(fn(steps)), rel=1e-6)
    names = {f.path for f in client.list_artifacts(child["run_id"], "connectivity/final")}
    assert "connectivity/final/tau.png" in names
    lab.end()


def test_dashboard_connectivity_shows_the_files_tau(tmp_path):
    from agents import Basic
    from dashboards import data as lab_data
    from shaping import figures

    model = Basic(_params())
    c = lab_data.load_connectivity(model.save(tmp_path / "a.npz"))
    assert c.dt == DT and np.allclose(c.tau, model.tau) and np.allclose(c.tau_steps, model.tau / DT)
    fig = figures.tau_histogram(c.tau_steps)
    assert sum(p.get_height() for p in fig.axes[0].patches) == model.N_rec
    plain = lab_data.load_connectivity(Basic(_params(train_tau=False)).save(tmp_path / "b.npz"))
    assert plain.tau is None and plain.tau_steps is None
