"""Constraint objects on fixed arrays, their registry round trip, Dale validation and the wiring builder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from agents import constraints

W = np.array([[0.5, -1.0, 2.0],
              [-0.3, 0.7, -0.2],
              [1.5, -2.5, 0.1]], dtype=np.float32)

CONSTRAINTS = {
    "mask": constraints.Mask([[1, 0, 1], [1, 1, 0], [0, 1, 1]]),
    "random_mask": constraints.RandomMask((3, 3), density=0.5, seed=3, autapses=False),
    "no_autapses": constraints.NoAutapses(3),
    "signs": constraints.Signs([1, -1, 0]),
    "dale_rec": constraints.Dale(0.67, 3, "W_rec"),
    "dale_in": constraints.Dale(0.67, 3, "W_in"),
    "dale_out": constraints.Dale(0.67, 3, "W_out"),
    "fixed_fraction": constraints.FixedSynapses((3, 3), fraction=0.5, seed=2),
    "fixed_mask": constraints.FixedSynapses((3, 3), mask=np.eye(3)),
}


@pytest.mark.parametrize("obj", CONSTRAINTS.values(), ids=CONSTRAINTS.keys())
def test_config_round_trip(obj):
    cfg = constraints.serialize(obj)
    again = constraints.get(json.loads(json.dumps(cfg)))
    assert again == obj
    assert again.get_config() == obj.get_config()
    np.testing.assert_array_equal(again(W), obj(W))


def test_registry_names_and_errors():
    assert {"Mask", "RandomMask", "NoAutapses", "Signs", "Dale", "FixedSynapses"} <= set(constraints.names())
    assert isinstance(constraints.get({"class_name": "no_autapses", "config": {"N": 3}}), constraints.NoAutapses)
    with pytest.raises(ValueError, match="unknown constraint 'Dal'.*Dale"):
        constraints.get("Dal")
    with pytest.raises(TypeError, match="cannot interpret 3"):
        constraints.get(3)
    assert constraints.get(None) is None


def test_mask_zeroes_missing_synapses():
    out = CONSTRAINTS["mask"](W)
    np.testing.assert_array_equal(out, W * np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1]]))
    with pytest.raises(ValueError, match="only 0 .* and 1"):
        constraints.Mask([[0.5, 1], [1, 1]])


def test_no_autapses_zero_diagonal():
    out = constraints.NoAutapses(3)(W)
    assert np.all(np.diag(out) == 0)
    np.testing.assert_array_equal(out, W - np.diag(np.diag(W)))


def test_random_mask_density_and_seed():
    a = constraints.RandomMask((200, 200), density=0.3, seed=5)
    b = constraints.RandomMask((200, 200), density=0.3, seed=5)
    c = constraints.RandomMask((200, 200), density=0.3, seed=6)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert np.any(a.mask != c.mask)
    assert abs(a.mask.mean() - 0.3) < 0.02
    assert np.all(np.diag(constraints.RandomMask((5, 5), 1.0, autapses=False).mask) == 0)
    with pytest.raises(ValueError, match="density must be a probability"):
        constraints.RandomMask((3, 3), 1.5)


def test_dale_signs_by_presynaptic_column():
    rec = constraints.Dale(0.67, 3, "W_rec")(W)     # floor(0.67 * 3) = 2 excitatory units: columns 0, 1
    assert np.all(rec[:, :2] >= 0) and np.all(rec[:, 2] <= 0)
    np.testing.assert_array_equal(np.abs(rec), np.abs(W))
    assert np.all(constraints.Dale(0.67, 3, "W_in")(W) >= 0)
    out = constraints.Dale(0.67, 3, "W_out")(W)
    assert np.all(out[:, :2] >= 0) and np.all(out[:, 2] == 0)   # inhibitory units do not reach the outputs


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.2, 0.0, 1.0, "0.5", True])
def test_invalid_dale_ratio_is_a_clear_error(ratio):
    with pytest.raises(ValueError, match="dale_ratio must be a number strictly between 0 and 1"):
        constraints.validate_dale_ratio(ratio)


def test_dale_ratio_leaving_no_inhibitory_unit():
    with pytest.raises(ValueError, match="gives 0 excitatory and 4 inhibitory"):
        constraints.validate_dale_ratio(0.2, 4)
    assert constraints.validate_dale_ratio(None) is None
    assert constraints.n_excitatory(0.29, 100) == 29     # not 28 (0.29 * 100 = 28.999999999999996)


def test_fixed_synapses_zero_gradient():
    fs = constraints.FixedSynapses((3, 3), mask=[[1, 0, 0], [0, 0, 0], [0, 0, 1]])
    g = fs(np.ones((3, 3), dtype=np.float32))
    assert g[0, 0] == 0 and g[2, 2] == 0 and g.sum() == 7
    assert fs.kind == "gradient mask" and constraints.Mask([[1]]).kind == "reparametrisation"
    frac = constraints.FixedSynapses((100, 100), fraction=0.25, seed=1)
    assert abs(frac.fixed.mean() - 0.25) < 0.02


def test_build_wiring_psychrnn_keys_and_densities():
    rec = np.ones((6, 6))
    rec[0, 1] = 0
    w = constraints.build_wiring({"rec_connectivity": rec, "autapses": False, "dale_ratio": 0.5, "input_density": 0.5},
                       N_in=3, N_rec=6, N_out=2, seed=0)
    assert w.rec_connectivity[0, 1] == 0 and np.all(np.diag(w.rec_connectivity) == 0)
    assert 0 < w.input_connectivity.sum() < 18
    np.testing.assert_array_equal(w.sign_rec, [1, 1, 1, -1, -1, -1])
    np.testing.assert_array_equal(w.sign_out, [1, 1, 1, 0, 0, 0])
    eff = w.effective("W_rec", -np.ones((6, 6), dtype=np.float32))
    assert np.all(eff[:, :3] >= 0) and np.all(eff[:, 3:] <= 0) and eff[0, 1] == 0
    arrays = w.psychrnn_arrays()
    assert arrays["Dale_rec"].shape == (6, 6) and np.diag(arrays["Dale_out"]).tolist() == [1, 1, 1, 0, 0, 0]
    same = constraints.build_wiring({"input_density": 0.5}, 3, 6, 2, seed=0)
    np.testing.assert_array_equal(same.input_connectivity, w.input_connectivity)


def test_unstick_zeros_touches_only_exact_zeros_of_plastic_dale_synapses():
    from agents.initializers import GaussianSpectralRadius

    wiring = constraints.build_wiring({"dale_ratio": 0.75, "rec_density": 0.5, "fixed": {"W_rec": 0.3}},
                                      2, 8, 2, seed=0)
    w = np.zeros((8, 8), dtype=np.float32)
    w[0, 0] = 2.0
    out = wiring.unstick_zeros("W_rec", w)
    plastic_zeros = (wiring.rec_connectivity == 1) & ~wiring.fixed["W_rec"] & (w == 0)
    np.testing.assert_array_equal(out != w, plastic_zeros)
    assert np.all(out[plastic_zeros] == np.float32(2.0 * 2 ** -24 / 8))
    w_out = wiring.unstick_zeros("W_out", np.zeros((2, 8), dtype=np.float32))
    assert np.all(w_out[:, :6] > 0) and not w_out[:, 6:].any()       # inhibitory units have no output synapses
    assert constraints.build_wiring({}, 2, 8, 2, seed=0).unstick_zeros("W_rec", w) is w     # without Dale zeros learn
    gauss = GaussianSpectralRadius()(2, 8, 2, wiring, np.random.default_rng(0))  # no zeros: seeded draws unchanged
    assert all(wiring.unstick_zeros(m, gauss[m]) is gauss[m] for m in constraints.MATRICES)


def test_build_wiring_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"rec_connectivity must have shape \(4, 4\)"):
        constraints.build_wiring({"rec_connectivity": np.ones((3, 3))}, 2, 4, 2, seed=0)
    with pytest.raises(ValueError, match="fixed: unknown matrix 'W_x'"):
        constraints.build_wiring({"fixed": {"W_x": 0.1}}, 2, 4, 2, seed=0)
    with pytest.raises(ValueError, match="Dale_rec must be diagonal"):
        constraints.build_wiring({"dale_ratio": 0.5, "Dale_rec": np.ones((4, 4))}, 2, 4, 2, seed=0, strict=False)
