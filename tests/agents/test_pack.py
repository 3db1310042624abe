"""Packs (:class:`agents.pack.Pack`): K Basic networks trained in one compiled step give, network by network, what
each gives trained alone (weights, Adam's state, losses, outputs, noise streams), to float32 rounding; inactive
networks are untouched; shape groups, checkpoints and incompatible models.

Tolerances: weights and Adam's moments ``rtol=1e-5, atol=1e-6``; losses and outputs ``rtol=1e-5, atol=1e-6``.
A pack's batched products sum in another order than a single network's, so results differ in the last bits
of float32 (about 1e-8 on these weights after 5 updates), never more.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

RTOL, ATOL = 1e-5, 1e-6
BASE = {"N_in": 3, "N_rec": 24, "N_out": 2, "dt": 10, "tau": 100}
REGIONS = {"regions": {"A": 16, "B": 8}, "connections": ["A -> A", "A -> B: 0.5", "B -> B", "B -> A: 0.5"]}


def _configs() -> list[dict]:
    """Three networks of one shape: plain; Dale's principle with regions, sparse inputs and no autapses; fixed
    synapses with recurrent noise, an L2 penalty, per-unit time constants and its own learning rate."""
    return [
        dict(BASE, name="plain", seed=11),
        dict(BASE, name="dale", seed=12, dale_ratio=0.75, regions=REGIONS, autapses=False, input_density=0.7),
        dict(BASE, name="fixed_noisy", seed=13, fixed={"W_rec": 0.3, "W_in": 0.2}, rec_noise=0.1, L2_rec=0.05,
             learning_rate=3e-3, tau=list(np.linspace(50.0, 200.0, BASE["N_rec"]))),
    ]


def _batches(n_steps: int, n_nets: int, N_batch: int = 8, T: int = 30, seed: int = 0) -> list[list[tuple]]:
    """``batches[step][network] = (x, y, mask)``, float32 ``(N_batch, T, .)``."""
    rng = np.random.default_rng(seed)

    def one():
        return (rng.random((N_batch, T, BASE["N_in"]), dtype=np.float32),
                rng.random((N_batch, T, BASE["N_out"]), dtype=np.float32),
                (rng.random((N_batch, T, BASE["N_out"])) < 0.7).astype(np.float32))

    return [[one() for _ in range(n_nets)] for _ in range(n_steps)]


def _columns(batches: list[tuple]) -> tuple[list, list, list]:
    """One step's per-network ``(x, y, mask)`` as the three lists ``train_on_batches`` takes."""
    return [b[0] for b in batches], [b[1] for b in batches], [b[2] for b in batches]


def _assert_same_network(alone, packed, exact: bool = False) -> None:
    """Weights (effective, as get_weights gives them), Adam's state and the noise stream of two models."""
    wa, wp = alone.get_weights(), packed.get_weights()
    assert wa.keys() == wp.keys()
    for key in wa:
        if wa[key] is None or np.ndim(wa[key]) == 0:  # dale_ratio
            assert wp[key] == wa[key], key
        elif exact:
            np.testing.assert_array_equal(wp[key], wa[key], err_msg=f"{alone.name}: {key}")
        else:
            np.testing.assert_allclose(wp[key], wa[key], rtol=RTOL, atol=ATOL, err_msg=f"{alone.name}: {key}")
    sa, sp = alone.optimizer.state(), packed.optimizer.state()
    assert sa.keys() == sp.keys()
    for key in sa:
        compare = np.testing.assert_array_equal if exact or key == "iterations" else (
            lambda a, b, err_msg: np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=err_msg))
        compare(sp[key], sa[key], err_msg=f"{alone.name}: optimizer {key}")
    assert packed.noise_counter == alone.noise_counter
    assert packed._noise_seed == alone._noise_seed


def _train_alone(cfgs: list[dict], schedule: list[list[tuple | None]]):
    """Each network trained by itself on its batches (None: no step); returns models, losses, outputs."""
    from agents.rnn import Basic

    models = [Basic(c) for c in cfgs]
    losses, outputs = [], []
    for step in schedule:
        results = [None if b is None else m.train_on_batch(*b) for m, b in zip(models, step)]
        losses.append([np.nan if r is None else r[0] for r in results])
        outputs.append([None if r is None else r[1] for r in results])
    return models, np.array(losses), outputs


# -------------------------------------------------------------------------------------------- equivalence
def test_a_pack_trains_each_network_as_it_trains_alone():
    """Plain, Dale + regions + masks + no autapses, fixed synapses + noise + L2 + own tau and learning rate:
    5 updates in a pack equal 5 updates alone, network by network."""
    from agents.pack import Pack
    from agents.rnn import Basic

    cfgs = _configs()
    batches = _batches(5, len(cfgs))
    alone, losses_alone, outputs_alone = _train_alone(cfgs, batches)

    pack = Pack([Basic(c) for c in cfgs])
    initial = [m.get_weights() for m in pack.models]
    for step, batch in enumerate(batches):
        losses, outputs = pack.train_on_batches(*_columns(batch))
        np.testing.assert_allclose(losses, losses_alone[step], rtol=RTOL, atol=ATOL)
        for k in range(len(cfgs)):
            np.testing.assert_allclose(outputs[k], outputs_alone[step][k], rtol=RTOL, atol=ATOL)
    pack.sync_to_models()
    for a, p in zip(alone, pack.models):
        _assert_same_network(a, p)

    # the constraints hold in the pack's result: Dale's signs and masks, fixed synapses bit-identical
    dale = pack.models[1].get_weights()
    signs = np.diag(dale["Dale_rec"])
    assert np.all(dale["W_rec"][:, signs > 0] >= 0) and np.all(dale["W_rec"][:, signs < 0] <= 0)
    assert np.all(dale["W_rec"][dale["rec_connectivity"] == 0] == 0) and np.all(np.diag(dale["W_rec"]) == 0)
    assert np.all(dale["W_in"][dale["input_connectivity"] == 0] == 0) and np.all(dale["W_in"] >= 0)
    fixed = pack.models[2].masks()
    after = pack.models[2].get_weights()
    for name in ("W_rec", "W_in"):
        held = fixed[f"fixed_{name}"]
        assert held.any() and np.array_equal(after[name][held], initial[2][name][held])
        assert not np.array_equal(after[name][~held], initial[2][name][~held])
    assert pack.models[2].noise_counter == 5 and pack.models[0].noise_counter == 0


# ---------------------------------------------------------------------------------------- active networks
def test_an_inactive_network_is_untouched_and_then_continues_as_if_alone():
    """Step 2 leaves network 1 out: its weights, moments, step count and noise counter stay bit for bit;
    step 3 trains it on from there, as if it had only ever seen steps 1 and 3."""
    from agents.pack import Pack
    from agents.rnn import Basic

    cfgs = _configs()[1:]  # Dale; fixed + noisy (the inactive one: its noise counter must not move)
    batches = _batches(3, 2, seed=1)
    pack = Pack([Basic(c) for c in cfgs])
    pack.train_on_batches(*_columns(batches[0]))

    def state_of_1():
        out = {f"var/{n}": v.numpy()[1] for n, v in pack.vars.items()}
        out.update({f"m/{n}": v.numpy()[1] for n, v in pack._m.items()})
        out.update({f"v/{n}": v.numpy()[1] for n, v in pack._v.items()})
        out["iterations"] = pack._iterations.numpy()[1]
        out["noise_counter"] = pack.models[1].noise_counter
        return out

    before = state_of_1()
    x, y, mask = _columns(batches[1])
    losses, outputs = pack.train_on_batches(x, y, [mask[0], None], active=[True, False])
    assert np.isnan(losses[1]) and outputs[1] is None and np.isfinite(losses[0])
    after = state_of_1()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    pack.train_on_batches(*(np.stack(arrays) for arrays in _columns(batches[2])))  # one (K, ...) block each
    pack.sync_to_models()

    alone, _, _ = _train_alone(cfgs, [batches[0], [batches[1][0], None], batches[2]])
    for a, p in zip(alone, pack.models):
        _assert_same_network(a, p)


def test_two_shape_groups_train_by_complementary_active_masks():
    """Networks 0 and 2 see 20-step trials, network 1 30-step ones: two calls per round, with complementary
    active masks, equal training each alone, and the compiled step is traced once."""
    from agents.pack import Pack
    from agents.rnn import Basic

    cfgs = _configs()
    short, long = _batches(3, 3, T=20, seed=2), _batches(3, 3, T=30, seed=3)
    pack = Pack([Basic(c) for c in cfgs])
    for rnd in range(3):
        l02, _ = pack.train_on_batches(*_columns(short[rnd]), active=np.array([True, False, True]))
        l1, _ = pack.train_on_batches(*_columns(long[rnd]), active=np.array([False, True, False]))
        assert np.isnan(l02[1]) and np.isnan(l1[[0, 2]]).all()
    assert pack._step_fn.experimental_get_tracing_count() == 1
    pack.sync_to_models()

    schedule = [[short[r][0], long[r][1], short[r][2]] for r in range(3)]
    alone, _, _ = _train_alone(cfgs, schedule)
    for a, p in zip(alone, pack.models):
        _assert_same_network(a, p)

    with pytest.raises(ValueError, match="complementary active masks"):
        pack.train_on_batches(*_columns([short[0][0], long[0][1], short[0][2]]))


# ------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_after_sync_then_pull_into_a_fresh_pack_continues_identically(tmp_path):
    """sync_to_models + save_checkpoint, fresh models load_checkpoint, pull_from_model: the next updates are
    bit-identical to those of the pack that never stopped."""
    from agents.pack import Pack
    from agents.rnn import Basic

    cfgs = _configs()
    batches = _batches(5, 3, seed=4)
    pack = Pack([Basic(c) for c in cfgs])
    for batch in batches[:3]:
        pack.train_on_batches(*_columns(batch))
    pack.sync_to_models()
    paths = [m.save_checkpoint(tmp_path / f"net{k}.ckpt.npz") for k, m in enumerate(pack.models)]
    for batch in batches[3:]:
        reference = pack.train_on_batches(*_columns(batch))
    pack.sync_to_models()

    resumed = Pack([Basic(c) for c in cfgs])  # fresh models, then each one's checkpoint
    for k, path in enumerate(paths):
        resumed.models[k].load_checkpoint(path)
        resumed.pull_from_model(k)
    for batch in batches[3:]:
        losses, outputs = resumed.train_on_batches(*_columns(batch))
    np.testing.assert_array_equal(losses, reference[0])
    for k in range(3):
        np.testing.assert_array_equal(outputs[k], reference[1][k])
    resumed.sync_to_models()
    for a, p in zip(pack.models, resumed.models):
        _assert_same_network(a, p, exact=True)


# ----------------------------------------------------------------------------------------- compatibility
def relu_of_my_own(s):
    """A user's transfer function (module level, so that configs can name it)."""
    from agents._tf import tf

    return tf.nn.relu(s)


def rate_penalty_of_my_own(model, params):
    """A user's PsychRNN-style custom regularization."""
    from agents._tf import tf

    return 0.0 * tf.reduce_mean(model.states)


@pytest.mark.parametrize("override, message", [
    ({"N_rec": 20}, "has N_rec=20 but network 0"),
    ({"N_in": 2}, "has N_in=2"),
    ({"dt": 5}, "has dt=5.0"),
    ({"transfer_function": "tanh"}, "transfer_function='tanh'"),
    ({"loss_function": "binary_cross_entropy"}, "loss_function='binary_cross_entropy'"),
    ({"optimizer": {"class_name": "Adam", "config": {"beta_1": 0.8}}}, "optimizer beta_1=0.8"),
    ({"clip_grads": False}, "clip_grads=False"),
    ({"train_tau": True}, "train_tau=True"),
    ({"W_in_train": False}, "W_in_train=False"),
    ({"optimizer": "sgd"}, "uses the optimizer SGD"),
    ({"transfer_function": relu_of_my_own}, "custom transfer_function"),
    ({"custom_regularization": rate_penalty_of_my_own}, "regularizer CustomRegularizer"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_an_incompatible_network_is_refused_naming_the_setting(override, message):
    from agents.pack import Pack
    from agents.rnn import Basic

    ok = Basic(dict(BASE, seed=1))
    other = Basic({**BASE, "seed": 2, **override})
    with pytest.raises(ValueError, match="network 1 .*" + message.replace("(", r"\(").replace(")", r"\)")) as err:
        Pack([ok, other])
    assert "train it alone or in another pack" in str(err.value)


def test_differences_a_pack_allows_and_models_it_refuses():
    """Seeds, Dale, masks, noise, time constants, learning rates and penalty weights may differ; a gated
    model, the same model twice or no model at all may not."""
    from agents.gated import LSTM
    from agents.pack import Pack
    from agents.rnn import Basic

    Pack([Basic(c) for c in _configs()])
    with pytest.raises(ValueError, match=r"network 1 .*uses a LSTM model.*train it alone or in another pack"):
        Pack([Basic(dict(BASE, seed=1)), LSTM(dict(BASE, seed=2))])
    model = Basic(dict(BASE, seed=1))
    with pytest.raises(ValueError, match="given twice"):
        Pack([model, model])
    with pytest.raises(ValueError, match="at least one"):
        Pack([])
