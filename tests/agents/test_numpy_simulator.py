"""The NumPy simulator: matches TensorFlow, perturbs on schedule, loads without TensorFlow."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from agents.simulate import Cut, Network, Silence, simulate


def _net(N_rec=6):
    rng = np.random.default_rng(0)
    w = {"W_in": rng.normal(size=(N_rec, 2)), "W_rec": rng.normal(size=(N_rec, N_rec)) * 0.3,
         "W_out": rng.normal(size=(2, N_rec)), "b_rec": np.zeros(N_rec), "b_out": np.zeros(2),
         "init_state": np.full((1, N_rec), 0.1)}
    return Network.from_weights(w, dt=10, tau=100, labels=["a"] * 3 + ["b"] * (N_rec - 3))


def test_importing_the_simulator_does_not_import_tensorflow():
    code = "import agents.simulate, agents.constraints, agents.regions, sys; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_psychrnn_fixture(fixture_dir):
    ref = np.load(fixture_dir / "psychrnn_plain.ref.npz")
    out, states = simulate(fixture_dir / "psychrnn_plain.weights.npz", ref["x"], dt=10, tau=100)
    np.testing.assert_allclose(out, ref["outputs"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(states, ref["states"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="pass dt=... and tau="):
        Network.load(fixture_dir / "psychrnn_plain.weights.npz")


def test_silencing_cuts_columns_only_while_active():
    net = _net()
    x = np.ones((2, 30, 2), dtype=np.float32)
    base_out, base_states = net.run(x)
    out, states = net.run(x, [Silence([0, 1], start_ms=100, stop_ms=200)])
    np.testing.assert_array_equal(states[:, :10], base_states[:, :10])          # steps before 100 ms untouched
    assert np.any(states[:, 10:20] != base_states[:, 10:20])
    # while silenced, units 0 and 1 contribute nothing: compare with a network without those columns
    w = {"W_in": net.W_in, "W_rec": net.W_rec.copy(), "W_out": net.W_out.copy(), "b_rec": net.b_rec,
         "b_out": net.b_out, "init_state": net.init_state}
    w["W_rec"][:, :2] = 0
    w["W_out"][:, :2] = 0
    cut_net = Network.from_weights(w, dt=10, tau=100)
    _, cut_states = cut_net.run(x)
    expected_first = (1 - 0.1) * base_states[:, 9] + np.maximum(base_states[:, 9], 0) @ (cut_net.W_rec.T * 0.1) \
        + 0.1 * (x[:, 10] @ net.W_in.T + net.b_rec)
    np.testing.assert_allclose(states[:, 10], expected_first, atol=1e-6)


def test_cut_region_to_region_and_errors():
    net = _net()
    x = np.ones((1, 20, 2), dtype=np.float32)
    base, _ = net.run(x)
    out, states = net.run(x, [Cut("a", "b")])
    w = net.W_rec.copy()
    w[3:, :3] = 0
    ref = Network(net.W_in, w, net.W_out, net.b_rec, net.b_out, net.init_state, 10.0, 100.0)
    np.testing.assert_allclose(out, ref.run(x)[0], atol=1e-6)
    assert np.any(out != base)
    with pytest.raises(ValueError, match=r"no region 'c'; regions are \['a', 'b'\]"):
        net.run(x, [Silence("c")])
    with pytest.raises(ValueError, match="Silence: stop_ms=1 is before start_ms=5"):
        Silence([0], start_ms=5, stop_ms=1)


@pytest.mark.tf
def test_matches_tensorflow_model_with_constraints_and_regions(small_params, batch, tmp_path):
    from agents import Basic

    regions = {"regions": {"a": 6, "b": 6}, "connections": ["a -> a", "b -> b", "a -> b: 0.7", "b -> a: 0.3"],
               "dale_ratio": 0.67}
    model = Basic(small_params(regions=regions, autapses=False, tau=list(np.linspace(50, 150, 12)),
                               transfer_function="tanh"))
    x, y, mask = batch(4, 40)
    model.train_on_batch(x, y, mask)
    path = model.save(tmp_path / "m")
    net = Network.load(path)
    assert net.labels == model.region_labels and net.transfer_function == "tanh"
    out, states = net.run(x)
    tf_out, tf_states = model.test(x)
    np.testing.assert_allclose(out, tf_out, atol=1e-5)
    np.testing.assert_allclose(states, tf_states, atol=1e-5)


def test_units_as_a_boolean_mask():
    net = _net()
    x = np.ones((2, 20, 2), dtype=np.float32)
    is_b = np.asarray(net.labels) == "b"                           # the NumPy idiom for a region's units
    np.testing.assert_array_equal(net.units(is_b), [3, 4, 5])
    np.testing.assert_array_equal(net.run(x, [Silence(is_b)])[0], net.run(x, [Silence("b")])[0])
    np.testing.assert_array_equal(net.run(x, [Cut(~is_b, is_b)])[0], net.run(x, [Cut("a", "b")])[0])
    with pytest.raises(ValueError, match=r"a boolean unit mask must have shape \(6,\), got \(4,\)"):
        net.units(np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="units must be integer indices, a boolean mask"):
        net.units(np.array([0.0, 2.5]))


@pytest.mark.tf
def test_a_numpy_transfer_function_runs_a_file_saved_with_a_lambda(tmp_path, batch):
    from agents import Basic
    from agents._tf import tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                            # "... loading the file will need it passed again"
        model = Basic({"N_in": 2, "N_rec": 8, "N_out": 2, "dt": 10, "tau": 100, "seed": 0,
                       "transfer_function": lambda s: tf.nn.relu(s) ** 2})
        path = model.save(tmp_path / "square")
    with pytest.raises(ValueError, match="or a NumPy callable, got 'not-importable:"):
        Network.load(path)
    x = batch(3, 25)[0]
    out, _ = Network.load(path, transfer_function=lambda s: np.maximum(s, 0.0) ** 2).run(x)
    np.testing.assert_allclose(out, model.test(x)[0], atol=1e-5)

