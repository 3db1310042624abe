"""Initializers: spectral radius on the effective matrix, E/I balance, PsychRNN's schemes, round trips."""
from __future__ import annotations

import json

import numpy as np
import pytest

from agents import constraints, initializers

INITIALIZERS = {
    "gauss": initializers.GaussianSpectralRadius(1.3),
    "gauss_unif": initializers.GaussianSpectralRadius(0.9, which_rand_init="glorot_unif"),
    "alpha_identity": initializers.AlphaIdentity(0.5),
    "random": initializers.RandomInit("const_unif", init_minval=-0.2, init_maxval=0.2),
    "from_file": initializers.FromWeights(path="weights.npz"),
}


@pytest.mark.parametrize("obj", INITIALIZERS.values(), ids=INITIALIZERS.keys())
def test_config_round_trip(obj):
    again = initializers.get(json.loads(json.dumps(initializers.serialize(obj))))
    assert again == obj and again.get_config() == obj.get_config()


def _wiring(**params):
    return constraints.build_wiring(params, N_in=3, N_rec=40, N_out=2, seed=0)


@pytest.mark.parametrize("params", [{}, {"dale_ratio": 0.8}, {"dale_ratio": 0.8, "rec_density": 0.3,
                                                           "autapses": False}],
                         ids=["plain", "dale", "dale_sparse"])
def test_spectral_radius_is_reached_on_the_effective_matrix(params):
    wiring = _wiring(**params)
    w = initializers.GaussianSpectralRadius(1.5)(3, 40, 2, wiring, np.random.default_rng(0))
    assert {k: v.shape for k, v in w.items()} == {"W_in": (40, 3), "W_out": (2, 40), "b_rec": (40,),
                                                 "b_out": (2,), "init_state": (1, 40), "W_rec": (40, 40)}
    assert all(v.dtype == np.float32 for v in w.values())
    assert initializers.spectral_radius(wiring.effective("W_rec", w["W_rec"])) == pytest.approx(1.5, rel=1e-4)


def test_dale_initialisation_balances_each_unit():
    wiring = _wiring(dale_ratio=0.8, rec_density=0.5)
    weights = initializers.GaussianSpectralRadius()(3, 40, 2, wiring, np.random.default_rng(1))
    W = wiring.effective("W_rec", weights["W_rec"])
    assert np.all(W[:, :32] >= 0) and np.all(W[:, 32:] <= 0)
    has_both = (W[:, :32] > 0).any(axis=1) & (W[:, 32:] < 0).any(axis=1)
    np.testing.assert_allclose(W.sum(axis=1)[has_both], 0.0, atol=1e-5)


def test_alpha_identity_and_psychrnn_init_state():
    w = initializers.AlphaIdentity(0.7)(3, 40, 2, _wiring(), np.random.default_rng(0))
    np.testing.assert_array_equal(w["W_rec"], 0.7 * np.eye(40, dtype=np.float32))
    assert abs(w["init_state"].mean() - 0.1) < 0.01 and w["b_rec"].sum() == 0


def test_from_weights_checks_shapes():
    init = initializers.FromWeights(weights={"W_in": np.ones((40, 3)), "W_rec": np.ones((40, 40)),
                                             "W_out": np.ones((2, 7))})
    with pytest.raises(ValueError, match=r"W_out has shape \(2, 7\), the network needs \(2, 40\)"):
        init(3, 40, 2, _wiring(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="exactly one of path"):
        initializers.FromWeights()


@pytest.mark.parametrize("value", [-1, 0, float("nan"), float("inf"), "1.1", True])
def test_spectral_radius_must_be_a_positive_finite_number(value):
    with pytest.raises(ValueError, match=f"spec_rad must be a positive finite number, got {value!r}"):
        initializers.GaussianSpectralRadius(value)


def test_bad_arguments():
    with pytest.raises(ValueError, match="alpha must be a finite number, got nan"):
        initializers.AlphaIdentity(float("nan"))
    with pytest.raises(ValueError, match="which_rand_init must be one of"):
        initializers.GaussianSpectralRadius(which_rand_init="xavier")


@pytest.mark.tf
def test_psychrnn_keywords_sizes_are_checked_and_constraints_become_model_params():
    from agents import Basic

    p = {"N_in": 2, "N_rec": 10, "N_out": 2, "dt": 10, "tau": 100, "seed": 0}
    init = initializers.GaussianSpectralRadius(N_in=2, N_rec=10, N_out=2, autapses=False, dale_ratio=0.8, spec_rad=1.2)
    assert init.get_config() == {"spec_rad": 1.2, "which_rand_init": "glorot_gauss", "init_minval": -0.1,
                                 "init_maxval": 0.1, "N_in": 2, "N_rec": 10, "N_out": 2, "autapses": False,
                                 "dale_ratio": 0.8}
    assert initializers.get(json.loads(json.dumps(initializers.serialize(init)))) == init
    net = Basic({**p, "initializer": init})                 # as in PsychRNN, the initializer carries Dale
    cfg = net.config()
    assert cfg["dale_ratio"] == 0.8 and cfg["autapses"] is False and np.all(np.diag(net.get_weights()["W_rec"]) == 0)
    again = Basic(cfg)
    np.testing.assert_array_equal(again.get_weights()["W_rec"], net.get_weights()["W_rec"])
    mask = np.ones((10, 10))
    mask[:, :5] = 0
    alpha_identity = initializers.AlphaIdentity(N_in=2, N_rec=10, N_out=2, alpha=0.5, rec_connectivity=mask)
    masked = Basic({**p, "initializer": alpha_identity})
    np.testing.assert_array_equal(masked.masks()["rec_connectivity"], mask)
    with pytest.raises(ValueError, match=r"GaussianSpectralRadius was made for \{'N_rec': 10\}, the network has "
                                         r"\{'N_rec': 12\}"):
        Basic({**p, "N_rec": 12, "initializer": init})
    with pytest.raises(ValueError, match=r"the initializer was given dale_ratio=0.8 but params\['dale_ratio'\] is "
                                         r"0.5; dale_ratio is a model param here"):
        Basic({**p, "dale_ratio": 0.5, "initializer": init})
    with pytest.raises(ValueError, match=r"W_rec is an initial array: give it in the model's params "
                                         r"\(params\['W_rec'\] = array\) or use FromWeights"):
        initializers.GaussianSpectralRadius(W_rec=np.eye(10))
    with pytest.warns(UserWarning, match=r"AlphaIdentity ignores \['spec_radius'\]"):
        initializers.AlphaIdentity(spec_radius=1.1, name="m", dt=10)    # PsychRNN's own params keys pass silently
