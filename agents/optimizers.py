"""Optimizers whose whole state (moments, step count, learning rate) is a set of ``tf.Variable`` s we own.

We use TensorFlow's fused training ops (``ResourceApplyAdam`` is the op behind PsychRNN's
``tf.compat.v1.train.AdamOptimizer``, so an update is bit-for-bit PsychRNN's) rather than Keras optimizers:
no Keras import, and :meth:`Optimizer.state` / :meth:`Optimizer.set_state` give a checkpoint everything
needed to continue exactly. The learning rate is a variable, so changing it never retraces a step.

PsychRNN's ``train_params["optimizer"]`` is a TensorFlow 1 optimizer object
(``tf.compat.v1.train.AdamOptimizer(learning_rate=...)``); :func:`from_tf1` translates the supported ones
(:data:`TF1_OPTIMIZERS`) into ours with the same settings and the same update.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._registry import Registry, Serializable
from ._tf import tf


def _check_positive(value: Any, name: str, cls: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{cls}: {name} must be a {'non-negative' if allow_zero else 'positive'} number, "
                         f"got {value!r}")
    return float(value)


def check_clip_grads(value: Any) -> bool | float:
    """PsychRNN's ``clip_grads``: True (each gradient clipped to norm 1), False, 0 or None (no clipping, as
    PsychRNN reads a falsy flag) or a positive finite norm (returned as a float).

    Raises:
        ValueError: anything else; a negative norm would zero every gradient and a string is not a flag.
    """
    if value is None or isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.number)) and np.isfinite(value) and value >= 0:
        return float(value) if value > 0 else False  # PsychRNN reads the flag as `if clip_grads:`
    raise ValueError(f"clip_grads must be true (clip each gradient to norm 1), false (no clipping) or a positive "
                     f"number (that norm), got {value!r}")


class Optimizer(Serializable):
    """Base class. ``build(variables)`` once, then ``apply(grads, variables)`` inside a ``tf.function``.

    Attributes:
        slot_names: names of the per-variable slots (e.g. Adam's ``m``, ``v``).
        iterations: number of updates applied (an int64 variable).
    """

    slot_names: tuple[str, ...] = ()
    slot_initial: dict[str, float] = {}  # a slot's value before the first update (0 when not listed)

    def __init__(self, learning_rate: float = 1e-3):
        self._learning_rate = _check_positive(learning_rate, "learning_rate", type(self).__name__)
        self.lr = tf.Variable(self._learning_rate, dtype=tf.float32, trainable=False, name="learning_rate")
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.slots: list[dict[str, tf.Variable]] = []

    @property
    def learning_rate(self) -> float:
        """The learning rate as set (the variable holds it rounded to float32)."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._learning_rate = _check_positive(value, "learning_rate", type(self).__name__)
        self.lr.assign(self._learning_rate)

    def build(self, variables: Sequence[tf.Variable]) -> None:
        """Create zeroed slots for ``variables`` (in order)."""
        self.slots = [{s: tf.Variable(tf.fill(tf.shape(v), tf.cast(self.slot_initial.get(s, 0.0), v.dtype)),
                                      trainable=False, name=f"{v.name.split(':')[0]}_{s}")
                       for s in self.slot_names} for v in variables]

    def apply(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable]) -> None:
        raise NotImplementedError

    def clear(self, index: int, where: np.ndarray) -> None:
        """Reset the slots of variable ``index`` to their initial values where ``where`` is True (so those
        entries, whose gradient is zeroed, stop moving)."""
        keep = ~np.asarray(where, dtype=bool)
        for name, slot in self.slots[index].items():
            initial = tf.cast(self.slot_initial.get(name, 0.0), slot.dtype)
            slot.assign(tf.where(tf.constant(keep.reshape(slot.shape)), slot, initial))

    def state(self) -> dict[str, np.ndarray]:
        """Every state variable as NumPy arrays, keyed ``"iterations"``, ``"learning_rate"``, ``"<i>/<slot>"``."""
        out = {"iterations": self.iterations.numpy(), "learning_rate": self.lr.numpy(),
               "learning_rate_as_set": np.float64(self._learning_rate)}
        for i, slots in enumerate(self.slots):
            out.update({f"{i}/{name}": v.numpy() for name, v in slots.items()})
        return out

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned (after :meth:`build`)."""
        self.iterations.assign(int(state["iterations"]))
        self.lr.assign(float(state["learning_rate"]))
        self._learning_rate = float(state.get("learning_rate_as_set", state["learning_rate"]))
        for i, slots in enumerate(self.slots):
            for name, v in slots.items():
                v.assign(np.asarray(state[f"{i}/{name}"], dtype=np.float32).reshape(v.shape))


_registry = Registry("optimizer", Optimizer)
register = _registry.register
get = _registry.get
serialize = _registry.serialize


@register
class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) in TensorFlow 1's form, as PsychRNN uses it:
    ``lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)``, ``w -= lr_t * m / (sqrt(v) + epsilon)``.

    Args:
        learning_rate: step size. beta_1, beta_2: moment decay rates. epsilon: denominator offset.
    """

    slot_names = ("m", "v")

    def __init__(self, learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8):
        super().__init__(learning_rate)
        for name, val in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= float(val) < 1.0:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {val!r}")
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = _check_positive(epsilon, "epsilon", "Adam")

    def apply(self, grads, variables):
        t = tf.cast(self.iterations + 1, tf.float32)
        b1p, b2p = tf.pow(self.beta_1, t), tf.pow(self.beta_2, t)
        for g, v, s in zip(grads, variables, self.slots):
            if g is None:
                continue
            tf.raw_ops.ResourceApplyAdam(var=v.handle, m=s["m"].handle, v=s["v"].handle, beta1_power=b1p,
                                         beta2_power=b2p, lr=self.lr, beta1=self.beta_1, beta2=self.beta_2,
                                         epsilon=self.epsilon, grad=g)
        self.iterations.assign_add(1)

    def get_config(self) -> dict:
        return {"learning_rate": self._learning_rate, "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


@register
class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum: ``a = momentum * a + g``,
    ``w -= lr * a``.

    Args:
        learning_rate: step size. momentum: in [0, 1); 0 is plain SGD. nesterov: Nesterov's variant.
    """

    def __init__(self, learning_rate: float = 1e-2, momentum: float = 0.0, nesterov: bool = False):
        super().__init__(learning_rate)
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum else ()

    def apply(self, grads, variables):
        for g, v, s in zip(grads, variables, self.slots):
            if g is None:
                continue
            if self.momentum:
                tf.raw_ops.ResourceApplyMomentum(var=v.handle, accum=s["momentum"].handle, lr=self.lr, grad=g,
                                                 momentum=self.momentum, use_nesterov=self.nesterov)
            else:
                tf.raw_ops.ResourceApplyGradientDescent(var=v.handle, alpha=self.lr, delta=g)
        self.iterations.assign_add(1)

    def get_config(self) -> dict:
        return {"learning_rate": self._learning_rate, "momentum": self.momentum, "nesterov": self.nesterov}


@register
class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton 2012) in TensorFlow 1's form (``tf.compat.v1.train.RMSPropOptimizer``):
    ``ms = rho * ms + (1 - rho) * g^2`` with ``ms`` starting at 1, ``mom = momentum * mom + lr * g /
    sqrt(ms + epsilon)``, ``w -= mom``; centered, ``ms - mg^2`` replaces ``ms`` (``mg`` the mean gradient).

    Args:
        learning_rate: step size. rho: decay of the moving averages (TensorFlow 1's ``decay``).
        momentum: in [0, 1). epsilon: added under the square root. centered: normalise by the variance.
    """

    slot_initial = {"ms": 1.0}

    def __init__(self, learning_rate: float = 1e-3, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-10, centered: bool = False):
        super().__init__(learning_rate)
        for name, val in (("rho", rho), ("momentum", momentum)):
            if isinstance(val, bool) or not isinstance(val, (int, float, np.number)) or not 0.0 <= val < 1.0:
                raise ValueError(f"RMSProp: {name} must be in [0, 1), got {val!r}")
        self.rho, self.momentum = float(rho), float(momentum)
        self.epsilon = _check_positive(epsilon, "epsilon", "RMSProp")
        self.centered = bool(centered)
        self.slot_names = ("ms", "mom", "mg") if self.centered else ("ms", "mom")

    def apply(self, grads, variables):
        for g, v, s in zip(grads, variables, self.slots):
            if g is None:
                continue
            if self.centered:
                tf.raw_ops.ResourceApplyCenteredRMSProp(var=v.handle, mg=s["mg"].handle, ms=s["ms"].handle,
                                                        mom=s["mom"].handle, lr=self.lr, rho=self.rho,
                                                        momentum=self.momentum, epsilon=self.epsilon, grad=g)
            else:
                tf.raw_ops.ResourceApplyRMSProp(var=v.handle, ms=s["ms"].handle, mom=s["mom"].handle, lr=self.lr,
                                                rho=self.rho, momentum=self.momentum, epsilon=self.epsilon, grad=g)
        self.iterations.assign_add(1)

    def get_config(self) -> dict:
        return {"learning_rate": self._learning_rate, "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


# TensorFlow 1 optimizer classes (tf.compat.v1.train) we translate: our class and, per constructor argument
# of ours, the attribute of the TF1 object that holds its value. The updates are the same fused ops.
TF1_OPTIMIZERS: dict[str, tuple[type, dict[str, str]]] = {
    "AdamOptimizer": (Adam, {"learning_rate": "_lr", "beta_1": "_beta1", "beta_2": "_beta2",
                             "epsilon": "_epsilon"}),
    "GradientDescentOptimizer": (SGD, {"learning_rate": "_learning_rate"}),
    "MomentumOptimizer": (SGD, {"learning_rate": "_learning_rate", "momentum": "_momentum",
                                "nesterov": "_use_nesterov"}),
    "RMSPropOptimizer": (RMSProp, {"learning_rate": "_learning_rate", "rho": "_decay", "momentum": "_momentum",
                                   "epsilon": "_epsilon", "centered": "_centered"}),
}


def _is_tf1(obj: Any) -> bool:
    return isinstance(obj, tf.compat.v1.train.Optimizer)


def from_tf1(opt: Any) -> Optimizer:
    """Our optimizer with the settings of a TensorFlow 1 optimizer object (PsychRNN's
    ``train_params["optimizer"]``), e.g. ``tf.compat.v1.train.AdamOptimizer(learning_rate=1e-3)`` -> ``Adam(1e-3)``.

    Raises:
        ValueError: a TF1 class other than those of :data:`TF1_OPTIMIZERS`, or a setting that is not a number
            (a schedule, a tensor that is not a constant).
    """
    name = type(opt).__name__
    supported = ", ".join(f"tf.compat.v1.train.{k}" for k in TF1_OPTIMIZERS)
    if name not in TF1_OPTIMIZERS or type(opt) is not getattr(tf.compat.v1.train, name):
        raise ValueError(f"optimizer: TensorFlow 1 optimizer {name} is not supported; supported: {supported} "
                         f"(or one of ours: {', '.join(_registry.names())})")
    cls, attrs = TF1_OPTIMIZERS[name]
    kwargs = {}
    for arg, attr in attrs.items():
        value = getattr(opt, attr)
        if isinstance(value, bool):
            kwargs[arg] = value
            continue
        try:
            kwargs[arg] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"optimizer: {name}'s {arg} is {value!r}; only plain numbers can be translated "
                             f"(a learning-rate schedule is not)") from None
    return cls(**kwargs)


def from_params(spec: Any, learning_rate: float | None = None) -> Optimizer:
    """An optimizer from a name (``"adam"``, ``"sgd"``, ``"rmsprop"``), a ``{"class_name", "config"}`` dict,
    an instance or a TensorFlow 1 optimizer object (PsychRNN's; :func:`from_tf1`). ``learning_rate`` (when
    given) overrides a name's or a dict's; an object keeps its own, as PsychRNN uses the object's."""
    if spec is None:
        spec = "Adam"
    if _is_tf1(spec):
        return from_tf1(spec)
    if not isinstance(spec, (str, dict, Optimizer)):
        raise ValueError(f"optimizer must be a name ({', '.join(_registry.names())}), a "
                         f"{{'class_name', 'config'}} dict, an agents.optimizers.Optimizer or a TensorFlow 1 "
                         f"optimizer object ({', '.join(TF1_OPTIMIZERS)}); got {type(spec).__name__}")
    if isinstance(spec, str):
        name = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSProp"}.get(spec.lower(), spec)
        opt = _registry.lookup(name)(**({} if learning_rate is None else {"learning_rate": learning_rate}))
        return opt
    opt = get(spec)
    if learning_rate is not None and isinstance(spec, dict):
        opt.learning_rate = learning_rate
    return opt
