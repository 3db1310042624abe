"""Where a Basic's initial weights come from: PsychRNN's initial arrays in the params, Dale's exact zeros (which
must still learn) and PsychRNN's initializer objects."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf

ROOT = Path(__file__).resolve().parents[2]
PSYCHRNN_DIR = ROOT / ".bench" / "psychrnn"
P = {"N_in": 2, "N_rec": 10, "N_out": 2, "dt": 10, "tau": 100, "seed": 0}
TASK = {"N_in": 2, "N_out": 2, "dt": 10, "tau": 100}
SHAPES = {"W_in": (10, 2), "W_rec": (10, 10), "W_out": (2, 10), "b_rec": (10,), "b_out": (2,),
          "init_state": (1, 10)}
TWO_REGIONS = {"regions": {"A": 6, "B": 4}, "connections": ["A -> A", "B -> B"], "outputs": ["B"]}


def _alpha_identity(**kw) -> dict:
    return {**P, "dale_ratio": 0.8, "initializer": {"class_name": "AlphaIdentity", "config": {"alpha": 0.5}}, **kw}


# ------------------------------------------------------------------------------- initial arrays in params
@pytest.mark.parametrize("key", list(SHAPES))
def test_each_initial_array_given_is_used_and_the_others_drawn(key):
    from agents import build_model

    value = np.full(SHAPES[key], 0.25, dtype=np.float32)
    ref = build_model({"N_rec": 10, "seed": 0}, TASK).get_weights()
    net = build_model({"N_rec": 10, "seed": 0, key: value.tolist()}, TASK)   # lists: what a TOML config holds
    weights = net.get_weights()
    np.testing.assert_array_equal(weights[key], value)
    for other in SHAPES.keys() - {key}:
        np.testing.assert_array_equal(weights[other], ref[other], err_msg=other)
    assert net.config()["initial_arrays"] == [key]


def test_initial_arrays_keep_regions_densities_dale_and_fixed_synapses():
    from agents import Basic

    base = {**P, "dale_ratio": 0.8, "regions": TWO_REGIONS, "rec_density": 0.3, "fixed": {"W_rec": 0.5}}
    rng = np.random.default_rng(0)
    given = {"W_in": rng.random((10, 2)), "W_rec": rng.random((10, 10)), "W_out": rng.random((2, 10))}
    ref, net = Basic(base), Basic({**base, **given})
    masks = net.masks()
    for name, mask in ref.masks().items():
        np.testing.assert_array_equal(masks[name], mask, err_msg=name)
    assert net.region_labels == ref.region_labels
    w = net.get_weights()
    sign = np.diag(masks["Dale_rec"])
    np.testing.assert_allclose(w["W_rec"], np.abs(given["W_rec"] * masks["rec_connectivity"]) * sign, rtol=1e-6)
    assert not w["W_rec"][6:, :6].any() and not w["W_out"][:, :6].any()    # no A -> B, A does not drive outputs
    cfg = net.config()
    assert cfg["rec_density"] == 0.3 and cfg["regions"] == TWO_REGIONS and cfg["initial_arrays"] == sorted(given)
    np.testing.assert_array_equal(Basic({**cfg, **given}).get_weights()["W_rec"], w["W_rec"])
    with pytest.raises(ValueError, match=r"made from initial arrays \['W_in', 'W_out', 'W_rec'\], which configs "
                                         r"do not hold"):
        Basic(cfg)


def test_initial_arrays_are_checked_and_refused_where_they_cannot_apply(tmp_path):
    from agents import Basic, build_model

    with pytest.raises(ValueError, match=r"params\['W_rec'\] has shape \(3, 3\); a Basic with N_in=2, N_rec=10, "
                                         r"N_out=2 needs \(10, 10\)"):
        Basic({**P, "W_rec": np.eye(3)})
    with pytest.raises(ValueError, match=r"params\['W_in'\] holds NaN"):
        Basic({**P, "W_in": np.full((10, 2), np.nan)})
    with pytest.raises(ValueError, match=r"params\['b_out'\] must be an array of numbers of shape \(2,\)"):
        Basic({**P, "b_out": [[1.0], [1.0, 2.0]]})
    flat = Basic({**P, "init_state": np.full(10, 0.3)})                     # PsychRNN draws it (N_rec,)
    np.testing.assert_array_equal(flat.get_weights()["init_state"], np.full((1, 10), 0.3, np.float32))
    path = Basic(P).save(tmp_path / "w")
    with pytest.raises(ValueError, match=r"initial arrays \['W_rec'\] given alongside load_weights_path"):
        Basic({"load_weights_path": path, "W_rec": np.eye(10)})
    with pytest.raises(ValueError, match=r"GRU: initial arrays \['W_out'\] are Basic's variables"):
        build_model({"model": "GRU", "N_rec": 10, "W_out": np.ones((2, 10))}, TASK)
    given = build_model({"N_rec": 10, "seed": 0, "W_rec": 0.1 * np.eye(10)}, TASK)  # its config, with its file
    again = build_model({**given.config(), "load_weights_path": str(given.save(tmp_path / "given"))}, TASK)
    np.testing.assert_array_equal(again.get_weights()["W_rec"], given.get_weights()["W_rec"])


# ------------------------------------------------------------------------------ Dale's principle and zeros
@pytest.mark.parametrize("source", ["AlphaIdentity", "array"])
@pytest.mark.parametrize("autapses", [True, False])
def test_zero_weights_under_dale_learn(source, autapses, batch):
    from agents import Basic

    params = _alpha_identity(autapses=autapses, learning_rate=0.01)
    if source == "array":                                                    # a user's array with zeros
        params = {**P, "dale_ratio": 0.8, "autapses": autapses, "learning_rate": 0.01, "W_rec": 0.5 * np.eye(10)}
    net = Basic(params)
    off = ~np.eye(10, dtype=bool)
    before = net.vars["W_rec"].numpy()[off]
    x, y, mask = batch(4, 20)
    for _ in range(5):
        net.train_on_batch(x, y, mask)
    assert np.all(net.vars["W_rec"].numpy()[off] != before)                 # every one of them was updated
    assert np.abs(net.get_weights()["W_rec"][off]).mean() > 1e-3            # from about 1e-9


def test_unsticking_dale_zeros_does_not_change_the_network(batch):
    from agents import Basic, Network

    net = Basic(_alpha_identity())
    w = net.get_weights()
    off = ~np.eye(10, dtype=bool)
    assert np.all(w["W_rec"][off] != 0) and np.abs(w["W_rec"][off]).max() < 1e-8
    exact = Network.from_weights({**w, "W_rec": np.where(off, 0.0, w["W_rec"])}, dt=10, tau=100)
    x = batch(4, 40)[0]
    np.testing.assert_allclose(net.test(x)[0], exact.run(x)[0], atol=1e-6, rtol=0)
    frozen = Basic(_alpha_identity(W_rec_train=False))                       # a frozen matrix keeps its zeros
    assert not frozen.vars["W_rec"].numpy()[off].any()


# ---------------------------------------------------------------------------- PsychRNN initializer objects
class _PsychRNNStyleInitializer:
    """What PsychRNN 1.0.0's initializers hand a model: arrays in ``initializations``, with its default
    ``Dale_out`` equal to ``Dale_rec`` (so inhibitory units would drive the outputs with a negative sign)."""

    def __init__(self, N_in: int, N_rec: int, N_out: int, dale_ratio: float, seed: int = 0):
        rng = np.random.default_rng(seed)
        signs = np.diag(np.where(np.arange(N_rec) < int(dale_ratio * N_rec), 1.0, -1.0))
        self.initializations = {
            "input_connectivity": np.ones((N_rec, N_in)), "rec_connectivity": 1.0 - np.eye(N_rec),
            "output_connectivity": np.ones((N_out, N_rec)), "dale_ratio": dale_ratio, "Dale_rec": signs,
            "Dale_out": signs, "W_in": rng.normal(size=(N_rec, N_in)), "W_rec": rng.normal(size=(N_rec, N_rec)),
            "W_out": rng.normal(size=(N_out, N_rec)), "b_rec": np.zeros(N_rec), "b_out": np.zeros(N_out),
            "init_state": 0.1 + 0.01 * rng.standard_normal(N_rec)}


def test_a_psychrnn_initializer_object_gives_the_weights_but_inhibitory_units_never_drive_outputs():
    from agents import Basic

    init = _PsychRNNStyleInitializer(2, 10, 2, dale_ratio=0.8)
    net = Basic({**P, "initializer": init, "rec_density": 0.5})
    w, masks = net.get_weights(), net.masks()
    np.testing.assert_array_equal(np.diag(masks["Dale_out"]), [1.0] * 8 + [0.0] * 2)
    assert not w["W_out"][:, 8:].any() and np.all(w["W_out"][:, :8] > 0)
    source = init.initializations
    np.testing.assert_allclose(w["W_rec"], np.abs(source["W_rec"] * masks["rec_connectivity"])
                               * np.diag(source["Dale_rec"]), rtol=1e-6)
    rec = masks["rec_connectivity"]                                           # its mask, the density on top
    assert not np.diag(rec).any() and rec.mean() < 0.7


def _run_fresh(code: str, *paths: Path) -> list[str]:
    """Run ``code`` in a fresh interpreter (eager execution is process-wide state) and return its output lines."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, paths), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


def test_a_model_turns_eager_execution_back_on_or_says_why_it_cannot():
    lines = _run_fresh("""
        import warnings
        import numpy as np
        from agents import Basic
        from agents._tf import tf

        P = {"N_in": 2, "N_rec": 10, "N_out": 2, "dt": 10, "tau": 100, "seed": 0}
        x = np.ones((2, 5, 2), np.float32)
        tf.compat.v1.disable_eager_execution()           # what importing psychrnn.backend does
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net = Basic(P)
        print(any("eager execution was off" in str(w.message) for w in caught))
        print(np.isfinite(net.train_on_batch(x, x, x)[0]) and net.get_weights()["W_rec"].shape == (10, 10))
        tf.compat.v1.disable_eager_execution()           # a graph exists now: TensorFlow will not turn it on
        try:
            Basic(P)
        except RuntimeError as err:
            print("separate processes" in str(err))
        """)
    assert lines == ["True", "True", "True"]


def test_psychrnns_own_initializer_objects():
    if not (PSYCHRNN_DIR / "psychrnn" / "__init__.py").exists():
        pytest.skip("PsychRNN 1.0.0 is not under .bench/psychrnn (make bench-psychrnn)")
    lines = _run_fresh("""
        import warnings
        import numpy as np
        from psychrnn.backend.initializations import GaussianSpectralRadius   # turns eager execution off
        from agents import Basic

        np.random.seed(0)
        init = GaussianSpectralRadius(N_in=2, N_rec=10, N_out=2, autapses=False, dale_ratio=0.8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = Basic({"N_in": 2, "N_rec": 10, "N_out": 2, "dt": 10, "tau": 100, "seed": 0, "initializer": init})
        w = net.get_weights()
        x = np.ones((2, 5, 2), np.float32)
        print(net.config()["dale_ratio"], np.diag(w["W_rec"]).any(), w["W_out"][:, 8:].any(), w["W_out"][:, :8].all())
        print(np.isfinite(net.train_on_batch(x, x, x)[0]))
        """, PSYCHRNN_DIR)
    assert lines == ["0.8", "False", "False", "True", "True"]
