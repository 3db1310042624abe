"""Packs: K :class:`~agents.rnn.Basic` networks of the same shape trained in one compiled step.

A sweep trains many small networks (``N_rec`` 50-256) that differ in seed, constraints, noise and learning
rate but share their shape. Trained one per process, each pays TensorFlow's memory (about 570 MB) and, at
these sizes, a training step dominated by per-operation overhead. A :class:`Pack` stacks the K networks'
parameters along a leading axis and runs one step for all of them: every matrix product becomes a batched
product over K. This is the standard "vmap over parameters" trick (JAX's ``jax.vmap`` over a stack of
parameter pytrees, PyTorch's ``torch.func.stack_module_state`` + ``vmap`` for model ensembles), written out
by hand in TensorFlow because each network keeps its own constraints and optimizer state.

The step is exact: network k's loss is its own (the mean over its own batch, plus its own penalties), the
step minimises the *sum* over networks, and no operation mixes networks, so network k's gradient is exactly
the one it would get alone. Its update is TensorFlow 1's Adam, as :class:`agents.optimizers.Adam` applies it,
with its own step count and learning rate. Results match a network trained alone to float32 rounding (the
batched products sum in another order than the single ones).

Shapes (K networks, ``N_batch`` trials, ``N_steps`` steps of ``dt`` ms; ``W[post, pre]`` as in
:mod:`agents.constraints`):

- variables: ``init_state (K, 1, N_rec)``, ``W_in (K, N_rec, N_in)``, ``W_rec (K, N_rec, N_rec)``,
  ``W_out (K, N_out, N_rec)``, ``b_rec (K, N_rec)``, ``b_out (K, N_out)`` and, with ``train_tau``,
  ``tau_raw (K, N_rec)`` (dimensionless; ``tau = dt * (1 + softplus(tau_raw))`` ms);
- per-network constants: connectivity masks ``(K, post, pre)`` (0/1), Dale signs ``(K, pre)`` with a Dale
  flag ``(K,)``, fixed-synapse plasticity masks of each variable's shape, ``alpha = dt / tau``
  ``(K, N_rec)``, the recurrent noise's variance ``rec_noise**2`` ``(K,)``;
- batches: ``(K, N_batch, N_steps, N_in)`` inputs, ``(K, N_batch, N_steps, N_out)`` targets and masks.

Each network's effective matrices are those of its :class:`~agents.constraints.Wiring` (mask, then
``|w| * sign`` under Dale's principle), its recurrent noise is drawn from its own model's seed and noise
counter (which the pack advances as training alone would), and fixed synapses get a zero gradient.

The :class:`~agents.rnn.Basic` models stay the home of everything that is not the live training state:
config, wiring, seed, noise counter, files. While a pack trains, the stack holds the weights and the optimizer
state; :meth:`Pack.sync_to_models` copies them back (then ``model.save()``, ``save_checkpoint()`` and
``get_weights()`` work unchanged) and :meth:`Pack.pull_from_model` loads one network's state from its model
(after ``model.load_checkpoint``, or after training it alone).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import losses, optimizers, regularizers
from ._tf import tf
from .constraints import MATRICES
from .ops import _BACKPROP, _BACKPROP_READS, TRANSFER_FUNCTIONS
from .rnn import _TRAIN_FLAGS, Basic

_VAR_NAMES = ("init_state", "W_in", "W_rec", "W_out", "b_rec", "b_out", "tau_raw")
_LOSSES = (losses.MeanSquaredError, losses.BinaryCrossEntropy)
_PENALTIES = (regularizers.L1, regularizers.L2)
_ADVICE = "train it alone or in another pack"


# ----------------------------------------------------------------------------------- per-network formulas
# The formulas of agents.losses and agents.regularizers, each reduced over every axis but the network axis.
def _loss_per_network(loss: losses.Loss, out: tf.Tensor, y: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """``(K,)`` losses of ``(K, N_batch, N_steps, N_out)`` outputs, as ``loss`` computes each network's."""
    axes = [1, 2, 3]
    if isinstance(loss, losses.MeanSquaredError):
        return tf.reduce_mean(tf.square(mask * (out - y)), axis=axes)
    eps = 1e-7
    p = tf.clip_by_value(out, eps, 1.0 - eps)
    return tf.reduce_mean(mask * -(y * tf.math.log(p + eps) + (1.0 - y) * tf.math.log(1.0 - p + eps)), axis=axes)


def _penalty_mean(cls: type, x: tf.Tensor, axes: list[int]) -> tf.Tensor:
    """``mean(|x|)`` (L1) or ``mean(x**2)`` (L2) over ``axes``: a regularizer's penalty at weight 1."""
    return tf.reduce_mean(tf.abs(x) if cls is regularizers.L1 else tf.square(x), axis=axes)


def stacked_rate_network(x: tf.Tensor, s0: tf.Tensor, W_in: tf.Tensor, W_rec: tf.Tensor, decay: tf.Tensor,
                         W_out: tf.Tensor, transfer: str, noise: tf.Tensor | None = None, with_rates: bool = False,
                         decay_gradient: bool = False, noise_gradient: bool = False) -> list[tf.Tensor]:
    """K rate networks at once, input and output projections included, with a written-out backward pass.

    Every step runs, for each network with its own matrices, :func:`agents.ops.rate_recurrence`'s update
    ``s_t = decay * s_{t-1} + W_rec f(s_{t-1}) + (W_in u_t + noise_t)`` and the output ``W_out f(s_t)``, on
    column vectors: a step's arrays are ``(K, units, N_batch)``, so that every product is a plain batched
    product over K (the layout oneDNN's CPU kernels run fastest at these sizes). The projections run inside the
    loop, on one step's slice while it is in cache: at pack sizes the whole ``(N_steps, K, ...)`` blocks no
    longer fit in the caches, and block-wide products and reductions cost more than the batching over K saves.
    The backward pass is one reverse loop (``lam_t = dL/ds_t``) that accumulates every weight gradient.

    Args:
        x: ``(N_steps, K, N_in + 1, N_batch)``: inputs with a last row of ones (for the bias column of W_in).
        s0: initial states ``(K, N_rec, N_batch)``.
        W_in: ``(K, N_rec, N_in + 1)``: ``alpha * [W_in, b_rec]`` (``alpha`` per postsynaptic unit).
        W_rec: ``(K, N_rec, N_rec)``: ``alpha * W_rec`` (``[post, pre]``).
        decay: ``(K, N_rec, 1)``: ``1 - alpha``.
        W_out: ``(K, N_out, N_rec)``.
        transfer: a name from :data:`agents.ops.TRANSFER_FUNCTIONS`.
        noise: ``(N_steps, K, N_rec, N_batch)``, the scaled recurrent noise added to the drive, or None.
        with_rates: also return the rates (for a penalty on them).
        decay_gradient: differentiate with respect to ``decay`` (trainable time constants).
        noise_gradient: differentiate with respect to ``noise`` (its scale depends on trainable time constants).

    Returns:
        ``[outputs]`` or ``[outputs, rates]``: ``(N_steps, K, N_out, N_batch)`` (without ``b_out``) and
        ``(N_steps, K, N_rec, N_batch)``.
    """
    f = TRANSFER_FUNCTIONS[transfer]
    backprop, reads = _BACKPROP[transfer], _BACKPROP_READS[transfer]

    def network(s0, W_in, W_rec, W_out, *rest):
        decay_ = rest[0] if decay_gradient else decay
        noise_ = rest[-1] if noise_gradient else noise
        n_steps = tf.shape(x)[0]
        # decay as a full (K, N_rec, N_batch) tensor: a same-shape product is several times faster than a
        # broadcast one in TensorFlow's CPU kernels
        dec = tf.broadcast_to(decay_, tf.shape(s0))

        def array():
            return tf.TensorArray(s0.dtype, size=n_steps, element_shape=s0.shape, clear_after_read=False)

        def forward(t, s, r, states, rates, outs):
            drive = tf.matmul(W_in, x[t])
            if noise_ is not None:
                drive = drive + noise_[t]
            s = tf.add_n([dec * s, tf.matmul(W_rec, r), drive])  # (dec * s + W_rec r) + drive, as in ops
            r = f(s)
            return t + 1, s, r, states.write(t, s), rates.write(t, r), outs.write(t, tf.matmul(W_out, r))

        r0 = f(s0)
        outs0 = tf.TensorArray(s0.dtype, size=n_steps)
        _, _, _, states, rates, outs = tf.while_loop(lambda t, *_: t < n_steps, forward,
                                                     (tf.constant(0), s0, r0, array(), array(), outs0))
        results = [outs.stack()] + ([rates.stack()] if with_rates else [])

        def grad(*upstream):
            g_out = tf.convert_to_tensor(upstream[0])
            g_rates = tf.convert_to_tensor(upstream[1]) if with_rates else None
            W_recT = tf.transpose(W_rec, [0, 2, 1])
            W_outT = tf.transpose(W_out, [0, 2, 1])

            def back(t, lam_next, d_rec, d_in, d_out, d_decay, lams):
                r_t = rates.read(t)
                s_t = states.read(t) if ("s" in reads or decay_gradient) else None
                g_r = tf.matmul(W_outT, g_out[t])
                if g_rates is not None:
                    g_r = g_r + g_rates[t]
                lam = backprop(g_r + tf.matmul(W_recT, lam_next), s_t, r_t) + dec * lam_next
                d_rec = d_rec + tf.matmul(lam_next, r_t, transpose_b=True)
                d_out = d_out + tf.matmul(g_out[t], r_t, transpose_b=True)
                d_in = d_in + tf.matmul(lam, x[t], transpose_b=True)
                if decay_gradient:
                    d_decay = d_decay + tf.reduce_sum(lam_next * s_t, axis=2, keepdims=True)
                return t - 1, lam, d_rec, d_in, d_out, d_decay, (lams.write(t, lam) if noise_gradient else lams)

            init = (n_steps - 1, tf.zeros_like(s0), tf.zeros_like(W_rec), tf.zeros_like(W_in),
                    tf.zeros_like(W_out), tf.zeros_like(decay_) if decay_gradient else tf.zeros([]),
                    array() if noise_gradient else tf.zeros([]))
            _, lam0, d_rec, d_in, d_out, d_decay, lams = tf.while_loop(lambda t, *_: t >= 0, back, init)
            d_s0 = backprop(tf.matmul(W_recT, lam0), s0, r0) + dec * lam0
            grads = [d_s0, d_in, d_rec + tf.matmul(lam0, r0, transpose_b=True), d_out]
            if decay_gradient:
                grads.append(d_decay + tf.reduce_sum(lam0 * s0, axis=2, keepdims=True))
            if noise_gradient:
                grads.append(lams.stack())
            return grads

        return results, grad

    extra = ([decay] if decay_gradient else []) + ([noise] if noise_gradient else [])
    return tf.custom_gradient(network)(s0, W_in, W_rec, W_out, *extra)


# --------------------------------------------------------------------------------------- compatibility
def _unsupported(model: Any) -> str | None:
    """What a pack cannot stack in ``model``, or None."""
    if not isinstance(model, Basic) or any(getattr(type(model), m) is not getattr(Basic, m)
                                           for m in ("_forward", "effective", "_penalty", "_make_step")):
        return f"a {getattr(model, 'kind', type(model).__name__)} model (a pack stacks Basic networks only)"
    if model._transfer_name is None:
        return "a custom transfer_function (a pack needs one of the built-in names)"
    if type(model.loss) not in _LOSSES:
        return f"the loss {type(model.loss).__name__} (a pack supports mean_squared_error and binary_cross_entropy)"
    for reg in model.regularizers:
        if type(reg) not in _PENALTIES:
            return f"the regularizer {type(reg).__name__} (a pack supports L1 and L2 penalties)"
    if type(model.optimizer) is not optimizers.Adam:
        return f"the optimizer {type(model.optimizer).__name__} (a pack trains with Adam)"
    return None


def _settings(model: Basic) -> list[tuple[str, Any]]:
    """The settings every network of a pack shares, in the order they are compared."""
    opt = model.optimizer
    return [("N_in", model.N_in), ("N_rec", model.N_rec), ("N_out", model.N_out), ("dt", model.dt),
            ("transfer_function", model._transfer_name), ("loss_function", losses.to_params(model.loss)),
            ("optimizer beta_1", opt.beta_1), ("optimizer beta_2", opt.beta_2), ("optimizer epsilon", opt.epsilon),
            ("clip_grads", model.clip_grads), ("train_tau", model.train_tau),
            *((flag, model.trainable[flag]) for flag in _TRAIN_FLAGS)]


def _check_compatible(models: Sequence[Basic], k: int) -> None:
    """Raise ``ValueError`` naming the first setting in which ``models[k]`` differs from ``models[0]`` (or
    what a pack cannot stack in it)."""
    model = models[k]
    what = _unsupported(model)
    if what is not None:
        raise ValueError(f"Pack: network {k} ({getattr(model, 'name', model)!r}) uses {what}; {_ADVICE}")
    for (key, mine), (_, ref) in zip(_settings(model), _settings(models[0])):
        if mine != ref:
            raise ValueError(f"Pack: network {k} ({model.name!r}) has {key}={mine!r} but network 0 "
                             f"({models[0].name!r}) has {key}={ref!r}; {_ADVICE}")


def _penalty_slots(models: Sequence[Basic]) -> list[tuple[type, str]]:
    """The (class, target) penalty terms of the whole pack, in first-seen order, each term of a network
    in its own order (a network with two L2 penalties on W_rec has two slots)."""
    slots: list[tuple[type, str]] = []
    for model in models:
        seen: dict[tuple[type, str], int] = {}
        for reg in model.regularizers:
            key = (type(reg), reg.target)
            seen[key] = seen.get(key, 0) + 1
            if sum(s == key for s in slots) < seen[key]:
                slots.append(key)
    return slots


# ---------------------------------------------------------------------------------------------- the pack
class Pack:
    """K :class:`~agents.rnn.Basic` networks of the same shape, trained in one compiled step.

    Args:
        models: built ``Basic`` models (each with its own seed, wiring, ``rec_noise``, learning rate and
            optimizer state). They must share ``N_in``, ``N_rec``, ``N_out``, ``dt``, the built-in transfer
            function, the loss, Adam's ``beta_1``/``beta_2``/``epsilon``, ``clip_grads``, ``train_tau`` and the
            ``*_train`` flags. Time constants, Dale's principle, masks, fixed synapses, ``rec_noise``, learning
            rates and L1/L2 penalty weights may differ (a penalty a network does not have has weight 0 for it).

    Raises:
        ValueError: an empty list, a model given twice, a setting that differs (the message names the first
            one), or something a pack cannot stack: a model other than ``Basic``, a custom transfer function,
            loss or regularizer, an optimizer other than Adam.

    Attributes:
        models: the models, in pack order (network k is ``models[k]``).
        K: the number of networks.
        vars: the stacked variables by name (``(K, ...)``, see the module docstring).
    """

    @staticmethod
    def check_compatible(reference: Basic, model: Basic) -> None:
        """Raise ``ValueError`` naming the setting when ``model`` cannot join a pack of ``reference``."""
        _check_compatible([reference], 0)
        _check_compatible([reference, model], 1)

    def __init__(self, models: Sequence[Basic]):
        self.models: list[Basic] = list(models)
        if not self.models:
            raise ValueError("Pack: models is empty; a pack needs at least one Basic network")
        if len({id(m) for m in self.models}) != len(self.models):
            raise ValueError("Pack: the same model object is given twice; each network needs its own model")
        for k in range(len(self.models)):
            _check_compatible(self.models, k)
        m0 = self.models[0]
        self.K = len(self.models)
        self.N_in, self.N_rec, self.N_out = m0.N_in, m0.N_rec, m0.N_out
        self.train_tau = m0.train_tau
        self._transfer = m0._transfer_name
        self._loss = m0.loss
        adam = m0.optimizer
        self._beta_1, self._beta_2, self._epsilon = adam.beta_1, adam.beta_2, adam.epsilon
        self._clip = 1.0 if m0.clip_grads is True else (float(m0.clip_grads) if m0.clip_grads else None)
        self._slots = _penalty_slots(self.models)
        self._names = [n for n in _VAR_NAMES if n in m0.vars]
        self._train_names = list(m0._train_names)
        self._lr_as_set = [m.optimizer.learning_rate for m in self.models]
        rows = [self._network_arrays(k) for k in range(self.K)]
        # Every per-network array is one row of a (K, ...) variable; the constants (masks, signs, plasticity,
        # alpha, noise variance, penalty weights) are variables too, so that pull_from_model can change one
        # network's without a retrace.
        self._stack: dict[str, tf.Variable] = {
            key: tf.Variable(np.stack([row[key] for row in rows]), trainable=key[4:] in self._train_names
                             and key.startswith("var/"), name="pack_" + key.replace("/", "_"))
            for key in rows[0]}
        self.vars: dict[str, tf.Variable] = {n: self._stack[f"var/{n}"] for n in self._names}
        self._m = {n: self._stack[f"m/{n}"] for n in self._train_names}
        self._v = {n: self._stack[f"v/{n}"] for n in self._train_names}
        self._iterations, self._lr = self._stack["iterations"], self._stack["learning_rate"]
        self._mask = {n: self._stack[f"mask/{n}"] for n in MATRICES}
        self._sign = {n: self._stack[f"sign/{n}"] for n in MATRICES}
        self._plastic = {n: self._stack[f"plastic/{n}"] for n in self._train_names}
        self._dale, self._alpha = self._stack["dale"], self._stack["alpha"]
        self._noise_var, self._coef = self._stack["rec_noise_sq"], self._stack["penalty_weights"]
        self._structure = self._structure_now()
        self._step_fn = None

    # ------------------------------------------------------------------------------- models <-> stack
    def _network_arrays(self, k: int) -> dict[str, np.ndarray]:
        """Network k's row of every stacked array, from its model: variables, Adam's state, wiring constants."""
        model = self.models[k]
        opt, wiring = model.optimizer, model.wiring
        out: dict[str, np.ndarray] = {f"var/{n}": model.vars[n].numpy() for n in self._names}
        for i, name in enumerate(model._train_names):
            out[f"m/{name}"] = opt.slots[i]["m"].numpy()
            out[f"v/{name}"] = opt.slots[i]["v"].numpy()
        out["iterations"] = np.int64(opt.iterations.numpy())
        out["learning_rate"] = np.float32(opt.lr.numpy())
        for name in MATRICES:
            mask, *signs = wiring.chain(name)  # Mask, then Signs under Dale: as Wiring.effective applies them
            out[f"mask/{name}"] = np.asarray(mask.mask, np.float32)
            out[f"sign/{name}"] = np.asarray(signs[0].signs if signs else np.ones(mask.mask.shape[1]), np.float32)
        out["dale"] = np.bool_(wiring.dale)
        for name in self._train_names:
            shape = model.vars[name].shape
            fixed = model._fixed.get(name)
            out[f"plastic/{name}"] = np.ones(shape, np.float32) if fixed is None \
                else (~np.broadcast_to(fixed, shape)).astype(np.float32)
        out["alpha"] = np.broadcast_to(np.asarray(model.alpha, np.float32), (self.N_rec,)).copy()
        out["rec_noise_sq"] = np.float32(model.rec_noise ** 2)
        coef = np.zeros(len(self._slots), np.float32)
        seen: dict[tuple[type, str], int] = {}
        for reg in model.regularizers:
            key = (type(reg), reg.target)
            seen[key] = seen.get(key, 0) + 1
            coef[[i for i, slot in enumerate(self._slots) if slot == key][seen[key] - 1]] = np.float32(reg.weight)
        out["penalty_weights"] = coef
        return out

    def _structure_now(self) -> tuple:
        """What the compiled step is specialised to: which networks draw noise, which follow Dale's principle,
        which variables any network fixes."""
        dale = tuple(bool(m.wiring.dale) for m in self.models)
        noisy = tuple(k for k, m in enumerate(self.models) if m.rec_noise > 0)
        fixed = tuple(n for n in self._train_names if any(n in m._fixed for m in self.models))
        return noisy, (any(dale), all(dale)), fixed

    def pull_from_model(self, k: int) -> None:
        """Load network k's weights, optimizer state (moments, step count, learning rate) and fixed synapses
        from ``models[k]`` into the stack: after ``models[k].load_checkpoint(...)`` or after training it alone.
        Its noise counter lives in the model already.

        Raises:
            ValueError: the model no longer fits the pack (see :class:`Pack`); ``IndexError`` for a bad ``k``.
        """
        k = self._index(k)
        _check_compatible(self.models, k)
        if len(_penalty_slots(self.models)) != len(self._slots):
            raise ValueError(f"Pack: network {k} ({self.models[k].name!r}) now has penalties the pack was not "
                             f"built with; {_ADVICE}")
        for key, value in self._network_arrays(k).items():
            self._stack[key][k].assign(value)
        self._lr_as_set[k] = self.models[k].optimizer.learning_rate
        structure = self._structure_now()
        if structure != self._structure:
            self._structure, self._step_fn = structure, None

    def sync_to_models(self) -> None:
        """Copy every network's weights and optimizer state (moments, step count, learning rate) back into its
        model, so that ``model.save()``, ``save_checkpoint()``, ``get_weights()`` and training it alone go on
        from the pack's state. (Noise counters are advanced in the models as the pack trains.)"""
        arrays = {n: v.numpy() for n, v in self.vars.items()}
        m = {n: v.numpy() for n, v in self._m.items()}
        v = {n: x.numpy() for n, x in self._v.items()}
        iterations, lr = self._iterations.numpy(), self._lr.numpy()
        for k, model in enumerate(self.models):
            for name, var in model.vars.items():
                var.assign(arrays[name][k])
            opt = model.optimizer
            for i, name in enumerate(model._train_names):
                opt.slots[i]["m"].assign(m[name][k])
                opt.slots[i]["v"].assign(v[name][k])
            opt.iterations.assign(int(iterations[k]))
            opt.learning_rate = self._lr_as_set[k]
            opt.lr.assign(lr[k])

    @property
    def learning_rates(self) -> np.ndarray:
        """Each network's learning rate ``(K,)`` (float32, as the step uses it)."""
        return self._lr.numpy()

    def set_learning_rate(self, k: int, learning_rate: float) -> None:
        """Set network k's learning rate (in the pack and in its model's optimizer)."""
        k = self._index(k)
        self.models[k].optimizer.learning_rate = learning_rate
        self._lr[k].assign(self.models[k].optimizer.lr.numpy())
        self._lr_as_set[k] = self.models[k].optimizer.learning_rate

    def _index(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < self.K:
            raise IndexError(f"Pack: network index must be an integer in [0, {self.K}), got {k!r}")
        return int(k)

    # -------------------------------------------------------------------------------- the forward pass
    def _effective(self, name: str) -> tf.Tensor:
        """``(K, post, pre)`` effective matrices: ``w * mask``, then ``|.| * sign`` for Dale networks."""
        w = self.vars[name] * self._mask[name]
        any_dale, all_dale = self._structure[1]
        if not any_dale:
            return w
        signed = tf.abs(w) * self._sign[name][:, None, :]
        return signed if all_dale else tf.where(self._dale[:, None, None], signed, w)

    def _forward(self, x: tf.Tensor, seeds: tf.Tensor) -> dict[str, tf.Tensor]:
        """Basic's forward pass for every network: ``x (K, N_batch, N_steps, N_in)`` -> ``outputs (K, N_batch,
        N_steps, N_out)``, ``rates (N_steps, K, N_rec, N_batch)`` (None without a penalty on them) and the
        effective matrices ``(K, post, pre)``."""
        v = self.vars
        W_in, W_rec, W_out = (self._effective(n) for n in MATRICES)
        alpha = 1.0 / (1.0 + tf.nn.softplus(v["tau_raw"])) if self.train_tau else tf.convert_to_tensor(self._alpha)
        n_batch, n_steps = tf.shape(x)[1], tf.shape(x)[2]
        # Step-major with the network axis second and trials last, (N_steps, K, units, N_batch): the loop
        # slices the first axis. The bias is W_in's last column, times a row of ones (sum(W u) + b either way).
        x1 = tf.concat([x, tf.ones(tf.concat([tf.shape(x)[:3], [1]], 0))], axis=3)
        W_in_b = tf.concat([W_in, v["b_rec"][:, :, None]], axis=2) * alpha[:, :, None]
        noise, noisy = None, self._structure[0]
        if noisy:
            idx = tf.constant(noisy, tf.int32)
            sd = tf.sqrt(2.0 * tf.gather(alpha, idx) * tf.gather(self._noise_var, idx)[:, None])  # (n, N_rec)
            draws = tf.map_fn(lambda s: tf.random.stateless_normal([n_steps, n_batch, self.N_rec], seed=s),
                              tf.gather(seeds, idx), fn_output_signature=tf.float32)  # each model's own draw
            draws = tf.transpose(draws * sd[:, None, None, :], [1, 0, 3, 2])          # (N_steps, n, N_rec, B)
            if len(noisy) == self.K:
                noise = draws
            else:
                at = tf.stack(tf.meshgrid(tf.range(n_steps), idx, indexing="ij"), axis=-1)  # (N_steps, n, 2)
                noise = tf.scatter_nd(at, draws, [n_steps, self.K, self.N_rec, n_batch])
        needs_rates = any(target == "rates" for _, target in self._slots)
        results = stacked_rate_network(
            tf.transpose(x1, [2, 0, 3, 1]), tf.tile(tf.transpose(v["init_state"], [0, 2, 1]), [1, 1, n_batch]),
            W_in_b, W_rec * alpha[:, :, None], (1.0 - alpha)[:, :, None], W_out, self._transfer, noise=noise,
            with_rates=needs_rates, decay_gradient=self.train_tau,
            noise_gradient=self.train_tau and noise is not None)
        out = tf.transpose(results[0], [1, 3, 0, 2]) + v["b_out"][:, None, None, :]
        return {"outputs": out, "rates": results[1] if needs_rates else None, "W_in": W_in, "W_rec": W_rec,
                "W_out": W_out}

    def _objective(self, t: dict, y: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        """Each network's regularised loss ``(K,)``: its own loss plus its own penalties."""
        penalty = tf.zeros([self.K])
        for i, (cls, target) in enumerate(self._slots):
            axes = [0, 2, 3] if target == "rates" else [1, 2]
            penalty += self._coef[:, i] * _penalty_mean(cls, t[target], axes)
        return _loss_per_network(self._loss, t["outputs"], y, mask) + penalty

    # ------------------------------------------------------------------------------------------- training
    def _make_step(self):
        names = list(self._train_names)
        variables = [self.vars[n] for n in names]
        fixed = set(self._structure[2])
        b1, b2, eps = (tf.constant(c, tf.float32) for c in (self._beta_1, self._beta_2, self._epsilon))
        K = self.K

        @tf.function(input_signature=[tf.TensorSpec([K, None, None, self.N_in], tf.float32),
                                      tf.TensorSpec([K, None, None, self.N_out], tf.float32),
                                      tf.TensorSpec([K, None, None, self.N_out], tf.float32),
                                      tf.TensorSpec([K, 2], tf.int64), tf.TensorSpec([K], tf.bool)])
        def step(x, y, mask, seeds, active):
            with tf.GradientTape() as tape:
                t = self._forward(x, seeds)
                total = self._objective(t, y, mask)
                objective = tf.reduce_sum(total)  # d objective / d total_k = 1: each network's own gradient
            grads = tape.gradient(objective, variables)
            # TensorFlow 1's Adam (ResourceApplyAdam's formula) with a step count and learning rate per network
            step_t = tf.cast(self._iterations + 1, tf.float32)
            lr_t = self._lr * tf.sqrt(1.0 - tf.pow(b2, step_t)) / (1.0 - tf.pow(b1, step_t))
            for name, g, var in zip(names, grads, variables):
                if name in fixed:
                    g = g * self._plastic[name]
                rank = len(var.shape)
                if self._clip is not None:  # each network's own norm, as tf.clip_by_norm on its variable
                    g = tf.clip_by_norm(g, self._clip, axes=list(range(1, rank)))
                per_net = [K] + [1] * (rank - 1)
                on = tf.reshape(active, per_net)
                m_old, v_old = self._m[name], self._v[name]
                m_new = m_old + (g - m_old) * (1.0 - b1)
                v_new = v_old + (tf.square(g) - v_old) * (1.0 - b2)
                w_new = var - (m_new * tf.reshape(lr_t, per_net)) / (tf.sqrt(v_new) + eps)
                m_old.assign(tf.where(on, m_new, m_old))
                v_old.assign(tf.where(on, v_new, v_old))
                var.assign(tf.where(on, w_new, var))
            self._iterations.assign_add(tf.cast(active, tf.int64))
            return total, t["outputs"]

        return step

    def _stack_batch(self, arrays: Any, width: int, what: str, active: np.ndarray,
                     shape: tuple[int, ...] | None) -> np.ndarray:
        """``arrays`` (K arrays, or one ``(K, N_batch, N_steps, width)`` array) as one float32 block of the
        active networks' common ``(N_batch, N_steps, width)`` shape (``shape`` when given); inactive networks'
        entries become zeros."""
        if isinstance(arrays, (list, tuple)):
            if len(arrays) != self.K:
                raise ValueError(f"Pack: {what} must hold one array per network ({self.K}), got {len(arrays)}")
            given = {k: np.asarray(a, np.float32) for k, a in enumerate(arrays) if active[k]}
        else:
            block = np.asarray(arrays, np.float32)
            if block.ndim != 4 or block.shape[0] != self.K:
                raise ValueError(f"Pack: {what} must be K={self.K} arrays or one (K, N_batch, N_steps, {width}) "
                                 f"array, got shape {block.shape}")
            if active.all() and block.shape[3] == width and shape in (None, block.shape[1:]):
                return np.ascontiguousarray(block)
            given = {k: block[k] for k in range(self.K) if active[k]}
        shapes = {a.shape for a in given.values()}
        common = next(iter(shapes))
        if len(shapes) != 1 or len(common) != 3 or common[2] != width or shape not in (None, common):
            found = {k: a.shape for k, a in given.items()}
            raise ValueError(f"Pack: the active networks' {what} must all have one shape (N_batch, N_steps, {width})"
                             f"{'' if shape is None else f' = {shape}'}; got {found} (train networks whose "
                             f"batches differ in shape by separate calls with complementary active masks)")
        full = np.zeros((self.K, *common), np.float32)
        for k, a in given.items():
            full[k] = a
        return full

    def train_on_batches(self, xs: Any, ys: Any, masks: Any,
                         active: Sequence[bool] | np.ndarray | None = None) -> tuple[np.ndarray, list]:
        """One optimizer step for every active network, each on its own batch.

        Args:
            xs: inputs, K arrays ``(N_batch, N_steps, N_in)`` or one ``(K, N_batch, N_steps, N_in)`` array.
                Every active network's batch has the same shape; an inactive network's entry is ignored (it
                may be None, zeros or a batch of another shape).
            ys: targets, likewise ``(N_batch, N_steps, N_out)`` each. masks: loss weights, the shape of ``ys``.
            active: ``(K,)`` booleans, None for all. An inactive network is not touched: weights, Adam's
                moments and step count, and the noise counter stay as they were.

        Returns:
            ``(losses, outputs)``: each network's regularised loss ``(K,)`` (NaN where inactive) and its outputs
            ``(N_batch, N_steps, N_out)`` from the forward pass the gradient came from (None where inactive).

        Raises:
            ValueError: arrays of the wrong number or shape, or an ``active`` that is not ``(K,)``.
        """
        on = np.ones(self.K, bool) if active is None else np.asarray(active)
        if on.shape != (self.K,) or on.dtype != bool:
            raise ValueError(f"Pack: active must be {self.K} booleans, got {active!r}")
        if not on.any():
            return np.full(self.K, np.nan), [None] * self.K
        x = self._stack_batch(xs, self.N_in, "xs", on, None)
        y = self._stack_batch(ys, self.N_out, "ys", on, (*x.shape[1:3], self.N_out))
        mask = self._stack_batch(masks, self.N_out, "masks", on, (*x.shape[1:3], self.N_out))
        if self._step_fn is None:
            self._step_fn = self._make_step()
        seeds = np.zeros((self.K, 2), np.int64)
        for k in np.flatnonzero(on):
            seeds[k] = self.models[k]._next_seed()  # advances the model's noise stream as training alone does
        total, out = self._step_fn(x, y, mask, seeds, on)
        total, out = total.numpy().astype(np.float64), out.numpy()
        total[~on] = np.nan
        return total, [out[k] if on[k] else None for k in range(self.K)]

    def __repr__(self) -> str:
        return f"Pack(K={self.K}, N_in={self.N_in}, N_rec={self.N_rec}, N_out={self.N_out})"
