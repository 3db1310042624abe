"""The multi-region builder: masks, Dale signs and labels from a readable spec."""
from __future__ import annotations

import json

import numpy as np
import pytest

from agents.regions import build_regions

SPEC = {
    "regions": [{"name": "sensory", "N": 6, "dale_ratio": 0.5}, {"name": "motor", "N": 4, "dale_ratio": 0.75}],
    "connections": ["sensory -> sensory", "motor -> motor", "sensory -> motor: 1.0",
                    {"pre": "motor", "post": "sensory", "p": 1.0, "source": "E"}],
    "inputs": ["sensory"],
    "outputs": ["motor"],
}


def test_masks_labels_and_signs():
    r = build_regions(json.loads(json.dumps(SPEC)), N_in=2, N_out=3, seed=0)
    assert r.N_rec == 10 and r.labels == ["sensory"] * 6 + ["motor"] * 4
    np.testing.assert_array_equal(r.sign_rec, [1, 1, 1, -1, -1, -1, 1, 1, 1, -1])
    rec = r.masks["W_rec"]
    assert rec[np.ix_(r.units("motor"), r.units("sensory"))].all()          # sensory -> motor, p = 1
    back = rec[np.ix_(r.units("sensory"), r.units("motor"))]                 # motor -> sensory, E only
    np.testing.assert_array_equal(back, np.tile([1, 1, 1, 0], (6, 1)))
    assert r.masks["W_in"][:6].all() and not r.masks["W_in"][6:].any()
    assert r.masks["W_out"][:, 6:].all() and not r.masks["W_out"][:, :6].any()


def test_defaults_are_within_region_only():
    r = build_regions({"regions": {"a": 3, "b": 2}}, N_in=1, N_out=1)
    rec = r.masks["W_rec"]
    assert rec[:3, :3].all() and rec[3:, 3:].all() and not rec[:3, 3:].any() and not rec[3:, :3].any()
    assert r.sign_rec is None and r.masks["W_in"].all() and r.masks["W_out"].all()


def test_density_channels_and_seed():
    spec = {"regions": {"a": 40, "b": 40}, "connections": [("a", "b", 0.25)],
            "inputs": {"a": [0], "b": [1]}, "outputs": {"b": 0}}
    r1 = build_regions(spec, N_in=2, N_out=1, seed=3)
    r2 = build_regions(spec, N_in=2, N_out=1, seed=3)
    np.testing.assert_array_equal(r1.masks["W_rec"], r2.masks["W_rec"])
    block = r1.masks["W_rec"][40:, :40]
    assert 0.15 < block.mean() < 0.35 and r1.masks["W_rec"][:40].sum() == 0
    np.testing.assert_array_equal(r1.masks["W_in"][:40], np.tile([1, 0], (40, 1)))
    np.testing.assert_array_equal(r1.masks["W_in"][40:], np.tile([0, 1], (40, 1)))


@pytest.mark.parametrize("spec, message", [
    ({"regions": {"a": 3}, "connections": ["a -> c"]}, r"names region 'c'; regions are \['a'\]"),
    ({"regions": {"a": 0}}, "region 'a' needs a positive integer N"),
    ({"regions": {"a": 3}, "connections": ["a -> a: 1.5"]}, "has p=1.5"),
    ({"regions": [{"name": "a", "N": 3, "dale_ratio": 0.5}, {"name": "b", "N": 2}]}, "either every region"),
    ({"regions": {"a": 3}, "connections": [{"pre": "a", "post": "a", "source": "E"}]}, "needs Dale"),
    ({"regions": {"a": 3}, "typo": 1}, r"unknown keys \['typo'\]"),
    ({"regions": {"a": 3}, "connections": ["a => a"]}, "cannot read connection"),
    ({"regions": {"a": 4}, "dale_ratio": 1.0}, "dale_ratio must be a number strictly between 0 and 1"),
])
def test_errors_name_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        build_regions(spec, N_in=1, N_out=1)


def test_model_dale_ratio_applies_to_each_region():
    from agents.constraints import build_wiring

    spec = {"regions": {"A": 12, "B": 8}, "connections": ["A -> A", "A -> B: 0.5", "B -> B"]}
    wiring = build_wiring({"regions": spec, "dale_ratio": 0.75}, 2, 20, 2, seed=0)
    sign = np.diag(wiring.psychrnn_arrays()["Dale_rec"])
    labels = np.asarray(wiring.labels)
    assert (sign[labels == "A"] > 0).sum() == 9 and (sign[labels == "A"] < 0).sum() == 3
    assert (sign[labels == "B"] > 0).sum() == 6 and (sign[labels == "B"] < 0).sum() == 2
    assert wiring.dale_ratio == 0.75
