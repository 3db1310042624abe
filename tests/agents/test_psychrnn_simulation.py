"""PsychRNN's simulator API (agents.simulation): PsychRNN's own outputs, t_connectivity, rnn_step, LSTM, errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from agents.simulation import BasicSimulator, LSTMSimulator, relu
from agents.weights import load_weights, save_weights

ATOL = 1e-5  # float32 precision over 100 steps (the fixture's README: about 1e-5)


@pytest.fixture(scope="module")
def ref(fixture_dir):
    with np.load(fixture_dir / "psychrnn_plain.ref.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def plain(fixture_dir):
    """The fixture's weights file and its arrays."""
    path = fixture_dir / "psychrnn_plain.weights.npz"
    return path, load_weights(path)[0]


def _relu(s):
    return np.maximum(s, 0.0)


def _close(actual, expected, atol=ATOL):
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)


def test_importing_needs_no_tensorflow():
    code = ("import sys, agents.simulation; from agents import BasicSimulator, LSTMSimulator, Simulator; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_lazy_exports_are_the_module_classes():
    import agents
    import agents.simulation as sim

    assert agents.BasicSimulator is sim.BasicSimulator and agents.LSTMSimulator is sim.LSTMSimulator
    assert agents.Simulator is sim.Simulator
    with pytest.raises(TypeError):                      # the base class is not a simulator, as in PsychRNN
        sim.Simulator(weights={})


@pytest.mark.parametrize("params", [{"dt": 10, "tau": 100}, {"alpha": 0.1}, "task"], ids=["dt_tau", "alpha", "task"])
def test_weights_path_reproduces_psychrnn(plain, ref, params):
    if params == "task":                                # a task's whole params dict, as PsychRNN scripts pass
        params = {**json.loads(str(ref["meta"])), "alpha": 0.1, "N_batch": 64}
    sim = BasicSimulator(params=params, weights_path=plain[0])
    outputs, states = sim.run_trials(ref["x"])
    assert outputs.shape == (64, 100, 2) and states.shape == (64, 100, 40)
    _close(outputs, ref["outputs"])
    _close(states, ref["states"])


def test_weights_dict_reproduces_psychrnn(plain, ref):
    path, arrays = plain
    for weights in (arrays, np.load(path)):             # PsychRNN's idiom: np.load without allow_pickle
        outputs, states = BasicSimulator(params={"dt": 10, "tau": 100}, weights=weights).run_trials(ref["x"])
        _close(outputs, ref["outputs"])
        _close(states, ref["states"])


def test_our_file_supplies_the_params_and_its_kind_is_checked(plain, ref, tmp_path):
    arrays = plain[1]
    cfg = {"model": "Basic", "dt": 10, "tau": 100, "transfer_function": "relu", "rec_noise": 0.0}
    ours = save_weights(tmp_path / "ours", arrays, {"config": cfg})
    outputs, _ = BasicSimulator(weights_path=ours).run_trials(ref["x"])
    _close(outputs, ref["outputs"])
    assert BasicSimulator(weights_path=ours, params={"rec_noise": 0.2}).rec_noise == 0.2   # params win
    tanh = save_weights(tmp_path / "tanh", arrays, {"config": {**cfg, "transfer_function": "tanh"}})
    with pytest.raises(ValueError, match="transfer_function='relu' does not match the network's transfer "
                                         "function 'tanh'"):
        BasicSimulator(weights_path=tanh, transfer_function="relu")
    gru = save_weights(tmp_path / "gru", arrays, {"config": {**cfg, "model": "GRU"}})
    with pytest.raises(ValueError, match="BasicSimulator runs Basic models; .*gru.npz holds a GRU"):
        BasicSimulator(weights_path=gru)


@pytest.mark.tf
def test_rnn_model_reproduces_psychrnn(plain, ref):
    from agents import Basic

    model = Basic({"load_weights_path": plain[0], "dt": 10, "tau": 100})
    sim = BasicSimulator(rnn_model=model)
    assert sim.rec_noise == 0.0 and np.isclose(sim.alpha, 0.1)
    outputs, states = sim.run_trials(ref["x"])
    _close(outputs, ref["outputs"])
    _close(states, ref["states"])
    with pytest.raises(ValueError, match="params= is not used with rnn_model="):
        BasicSimulator(rnn_model=model, params={"dt": 10, "tau": 100})


@pytest.mark.tf
def test_rnn_model_with_constraints_matches_tensorflow(small_params, batch):
    from agents import Basic

    model = Basic(small_params(dale_ratio=0.75, autapses=False, tau=list(np.linspace(50, 150, 12)),
                               transfer_function="tanh"))
    x, y, mask = batch(4, 40)
    model.train_on_batch(x, y, mask)
    sim = BasicSimulator(rnn_model=model)
    outputs, states = sim.run_trials(x)
    tf_outputs, tf_states = model.test(x)
    _close(outputs, tf_outputs)
    _close(states, tf_states)
    assert sim.alpha.shape == (12,)
    with pytest.raises(ValueError, match="transfer_function='relu' does not match the network's transfer "
                                         "function 'tanh'"):
        BasicSimulator(rnn_model=model, transfer_function=relu)          # PsychRNN's default, a callable
    with pytest.raises(ValueError, match="transfer_function='relu' does not match"):
        BasicSimulator(rnn_model=model, transfer_function="relu")
    np.testing.assert_array_equal(BasicSimulator(rnn_model=model, transfer_function=np.tanh).run_trials(x)[0],
                                  outputs)


def test_all_ones_connectivity_equals_none(plain, ref):
    sim = BasicSimulator(params={"dt": 10, "tau": 100}, weights_path=plain[0])
    outputs, states = sim.run_trials(ref["x"])
    ones_out, ones_states = sim.run_trials(ref["x"], t_connectivity=np.ones((100, 40, 40)))
    np.testing.assert_array_equal(ones_out, outputs)
    np.testing.assert_array_equal(ones_states, states)


def test_zeroing_a_column_hides_the_unit_from_the_others_during_the_window(plain, ref):
    path, arrays = plain
    sim = BasicSimulator(params={"dt": 10, "tau": 100}, weights_path=path)
    x = ref["x"]
    base_out, base = sim.run_trials(x)
    start, stop, alpha = 30, 60, 0.1
    j = int(np.argmax(_relu(base[:, start - 1]).mean(axis=0)))            # the most active unit then
    tc = np.ones((100, 40, 40), dtype=np.float32)
    tc[start:stop, :, j] = 0.0
    out, states = sim.run_trials(x, t_connectivity=tc)

    np.testing.assert_array_equal(states[:, :start], base[:, :start])     # untouched before the window
    W_rec, W_in, W_out = (arrays[k].astype(np.float64) for k in ("W_rec", "W_in", "W_out"))
    # first masked step: the others lose exactly unit j's input, alpha * W_rec[:, j] * f(x_j)
    lost = -alpha * _relu(base[:, start - 1, j]).astype(np.float64)[:, None] * W_rec[:, j][None, :]
    assert np.abs(lost).max() > 1e-2
    _close(states[:, start] - base[:, start], lost)
    # every step from then on is PsychRNN's update with W_rec * t_connectivity[t] (all ones after the window)
    for t in range(start, 100):
        prev = states[:, t - 1].astype(np.float64)
        expected = (1 - alpha) * prev + alpha * (_relu(prev) @ (W_rec * tc[t]).T + x[:, t] @ W_in.T + arrays["b_rec"])
        _close(states[:, t], expected)
    # the outputs still read unit j: W_out is not masked
    _close(out[:, start:stop], _relu(states[:, start:stop].astype(np.float64)) @ W_out.T + arrays["b_out"])
    assert np.abs(out - base_out).max() > 1e-3


def test_editing_the_simulators_W_rec_equals_masking_it_throughout(plain, ref):
    arrays = plain[1]
    sim = BasicSimulator(params={"dt": 10, "tau": 100}, weights=arrays)
    tc = np.ones((100, 40, 40), dtype=np.float32)
    tc[:, :, :5] = 0.0
    masked = sim.run_trials(ref["x"], t_connectivity=tc)
    sim.W_rec[:, :5] = 0.0                               # PsychRNN users edit the arrays in place
    edited = sim.run_trials(ref["x"])
    np.testing.assert_array_equal(edited[1], masked[1])
    assert np.any(arrays["W_rec"][:, :5] != 0)           # the source dict is left alone
    with pytest.raises(ValueError, match=r"W_rec must have shape \(40, 40\), got \(40, 39\)"):
        sim.W_rec = np.zeros((40, 39))


def test_rnn_step_iterated_equals_run_trials(plain, ref):
    sim = BasicSimulator(params={"dt": 10, "tau": 100}, weights_path=plain[0])
    x = ref["x"][:16]
    tc = np.ones((100, 40, 40), dtype=np.float32)
    tc[20:50] = (np.random.default_rng(0).random((40, 40)) < 0.5)
    for mask in (None, tc):
        outputs, states = sim.run_trials(x, t_connectivity=mask)
        state = np.repeat(sim.init_state, len(x), axis=0)
        for t in range(100):
            out, state = sim.rnn_step(state, x[:, t], None if mask is None else mask[t])
            _close(state, states[:, t], atol=1e-6)
            _close(out, outputs[:, t], atol=1e-6)


def test_noise_level_seed_and_global_seed(plain, ref):
    x = ref["x"]
    quiet = BasicSimulator(params={"dt": 10, "tau": 100}, weights_path=plain[0])
    noisy = BasicSimulator(params={"dt": 10, "tau": 100, "rec_noise": 0.1}, weights_path=plain[0], seed=3)
    assert noisy.rec_noise == 0.1
    first, again = noisy.run_trials(x)[1], noisy.run_trials(x)[1]
    assert not np.array_equal(first, again)                                     # a stream, not one draw
    twin = BasicSimulator(params={"dt": 10, "tau": 100, "rec_noise": 0.1}, weights_path=plain[0], seed=3)
    np.testing.assert_array_equal(twin.run_trials(x)[1], first)
    # the first step's difference is the noise alone: sd = sqrt(2 alpha) rec_noise
    kick = first[:, 0] - quiet.run_trials(x)[1][:, 0]
    assert abs(kick.std() / (np.sqrt(2 * 0.1) * 0.1) - 1) < 0.1
    unseeded = BasicSimulator(params={"dt": 10, "tau": 100, "rec_noise": 0.1}, weights_path=plain[0])
    np.random.seed(7)                                                           # PsychRNN's idiom
    a = unseeded.run_trials(x)[1]
    np.random.seed(7)
    np.testing.assert_array_equal(unseeded.run_trials(x)[1], a)
    noisy.rec_noise = 0.0
    np.testing.assert_array_equal(noisy.run_trials(x)[1], quiet.run_trials(x)[1])


@pytest.mark.parametrize("call, message", [
    (lambda s, x: s.run_trials(x[:, :, :1]),
     r"trial_input must be \(N_batch, N_steps, N_in\) with N_in=2, got shape \(64, 100, 1\)"),
    (lambda s, x: s.run_trials(x[0]), r"trial_input must be .* got shape \(100, 2\)"),
    (lambda s, x: s.run_trials(x, t_connectivity=np.ones((99, 40, 40))),
     r"t_connectivity must be \(N_steps, N_rec, N_rec\) = \(100, 40, 40\) .* got shape \(99, 40, 40\)"),
    (lambda s, x: s.run_trials(x, t_connectivity=np.ones((40, 40))), r"t_connectivity .* got shape \(40, 40\)"),
    (lambda s, x: s.rnn_step(np.zeros((64, 39)), x[:, 0]),
     r"state must be \(N_batch, N_rec\) with N_rec=40, got shape \(64, 39\)"),
    (lambda s, x: s.rnn_step(np.zeros((64, 40)), x[:8, 0]),
     r"rnn_in must be \(N_batch, N_in\) = \(64, 2\) .* got shape \(8, 2\)"),
    (lambda s, x: s.rnn_step(np.zeros((64, 40)), x[:, 0], np.ones((40, 39))),
     r"t_connectivity must be \(N_rec, N_rec\) = \(40, 40\) for one step, got shape \(40, 39\)"),
], ids=["input_channels", "input_2d", "tc_steps", "tc_2d", "step_state", "step_input", "step_tc"])
def test_bad_shapes_name_the_argument_and_the_shapes(plain, ref, call, message):
    sim = BasicSimulator(params={"dt": 10, "tau": 100}, weights_path=plain[0])
    with pytest.raises(ValueError, match=message):
        call(sim, ref["x"])


def test_bad_weights_and_arguments(plain):
    path, arrays = plain
    bad = {**arrays, "W_rec": arrays["W_rec"][:, :39]}
    with pytest.raises(ValueError, match=r"weights\['W_rec'\] has shape \(40, 39\), expected \(N_rec, N_rec\) = "
                                         r"\(40, 40\)"):
        BasicSimulator(params={"dt": 10, "tau": 100}, weights=bad)
    with pytest.raises(ValueError, match="weights has no 'b_out' array"):
        BasicSimulator(params={"dt": 10, "tau": 100}, weights={k: v for k, v in arrays.items() if k != "b_out"})
    with pytest.raises(ValueError, match=r"does not say dt or tau: pass params=\{'dt': \.\.\., 'tau': \.\.\.\}"):
        BasicSimulator(weights_path=path)
    with pytest.raises(ValueError, match="pass exactly one of rnn_model=, weights_path= or weights=, got none"):
        BasicSimulator(params={"dt": 10, "tau": 100})
    with pytest.raises(ValueError, match="got weights_path, weights"):
        BasicSimulator(params={"dt": 10, "tau": 100}, weights_path=path, weights=arrays)
    with pytest.raises(ValueError, match="transfer_function must be one of relu, tanh"):
        BasicSimulator(params={"dt": 10, "tau": 100}, weights=arrays, transfer_function="rectify")
    with pytest.raises(ValueError, match=r"tau must be a positive number or one per unit \(40,\) in ms, got shape "
                                         r"\(3,\)"):
        BasicSimulator(params={"dt": 10, "tau": [100, 100, 100]}, weights=arrays)


# ------------------------------------------------------------------------------------------------ LSTM
def _lstm_weights(N_in=2, N_rec=5, N_out=1, seed=0):
    rng = np.random.default_rng(seed)
    w = {f"W_{g}": 0.5 * rng.standard_normal((N_rec + N_in, N_rec)) for g in "fico"}
    w.update({f"b_{g}": rng.standard_normal(N_rec) for g in "fico"})
    w.update(init_hidden=0.1 * rng.standard_normal((1, N_rec)), init_cell=0.1 * rng.standard_normal((1, N_rec)),
             W_out=rng.standard_normal((N_out, N_rec)), b_out=rng.standard_normal(N_out))
    return w


def test_lstm_step_is_the_textbook_cell():
    w = _lstm_weights()
    sim = LSTMSimulator(weights=w)
    u = np.random.default_rng(1).random((3, 2))
    h0, c0 = np.repeat(w["init_hidden"], 3, axis=0), np.repeat(w["init_cell"], 3, axis=0)
    out, h, c = sim.rnn_step(h0, c0, u)
    def sig(z):
        return 1 / (1 + np.exp(-z))

    gate = {g: np.concatenate([h0, u], axis=1) @ w[f"W_{g}"] + w[f"b_{g}"] for g in "fico"}
    c_hand = sig(gate["f"]) * c0 + sig(gate["i"]) * np.tanh(gate["c"])
    h_hand = sig(gate["o"]) * np.tanh(c_hand)
    _close(c, c_hand, atol=1e-6)
    _close(h, h_hand, atol=1e-6)
    _close(out, h_hand @ w["W_out"].T + w["b_out"], atol=1e-6)
    outputs, states = sim.run_trials(u[:, None, :])
    _close(states[:, 0], h, atol=1e-6)
    _close(outputs[:, 0], out, atol=1e-6)


def test_lstm_refuses_psychrnns_lstm_and_bad_shapes(tmp_path):
    w = _lstm_weights()
    per_trial = {**w, "init_hidden": np.zeros((8, 5)), "init_cell": np.zeros((8, 5))}
    with pytest.raises(ValueError, match=r"weights\['init_hidden'\] has shape \(8, 5\), one initial state per trial"):
        LSTMSimulator(weights=per_trial)
    np.savez(tmp_path / "psychrnn_lstm.npz", **per_trial)
    with pytest.raises(ValueError, match="psychrnn_lstm.npz is a PsychRNN weights file; PsychRNN's LSTM"):
        LSTMSimulator(weights_path=tmp_path / "psychrnn_lstm.npz")
    with pytest.raises(ValueError, match="psychrnn_lstm.npz holds a PsychRNN LSTM's weights, not a Basic"):
        BasicSimulator(weights_path=tmp_path / "psychrnn_lstm.npz", params={"dt": 10, "tau": 100})
    with pytest.raises(ValueError, match=r"weights\['W_c'\] has shape \(7, 4\), expected \(N_rec \+ N_in, N_rec\) "
                                         r"= \(7, 5\)"):
        LSTMSimulator(weights={**w, "W_c": w["W_c"][:, :4]})
    sim = LSTMSimulator(weights=w)
    with pytest.raises(ValueError, match=r"trial_input must be \(N_batch, N_steps, N_in\) with N_in=2, got shape "
                                         r"\(3, 10, 4\)"):
        sim.run_trials(np.zeros((3, 10, 4)))
    with pytest.raises(ValueError, match=r"cell must have shape \(3, 5\) \(N_batch from hidden \(3, 5\)\), got "
                                         r"\(2, 5\)"):
        sim.rnn_step(np.zeros((3, 5)), np.zeros((2, 5)), np.zeros((3, 2)))


@pytest.mark.tf
def test_lstm_simulator_matches_our_tensorflow_lstm(small_params, batch, tmp_path):
    from agents import LSTM

    model = LSTM(small_params())
    x, y, mask = batch(4, 40)
    model.train_on_batch(x, y, mask)
    tf_outputs, tf_states = model.test(x)
    path = model.save(tmp_path / "lstm")
    for sim in (LSTMSimulator(rnn_model=model), LSTMSimulator(weights_path=path)):
        outputs, states = sim.run_trials(x)
        _close(outputs, tf_outputs)
        _close(states, tf_states)
    h, c = np.repeat(sim.init_hidden, 4, axis=0), np.repeat(sim.init_cell, 4, axis=0)
    for t in range(40):
        out, h, c = sim.rnn_step(h, c, x[:, t])
        _close(h, states[:, t], atol=1e-6)
        _close(out, outputs[:, t], atol=1e-6)
    with pytest.raises(ValueError, match="BasicSimulator runs Basic models; rnn_model is a LSTM"):
        BasicSimulator(rnn_model=model)
    with pytest.raises(ValueError, match="BasicSimulator runs Basic models; .*lstm.npz holds a LSTM"):
        BasicSimulator(weights_path=path)
