"""Optimizers whose whole state (moments, step count, learning rate) is a set of ``tf.Variable`` s we own.

We use TensorFlow's fused training ops (``ResourceApplyAdam`` is the op behind PsychRNN's
``tf.compat.v1.train.AdamOptimizer``, so an update is bit-for-bit PsychRNN's) rather than Keras optimizers:
no Keras import, and :meth:`Optimizer.state` / :meth:`Optimizer.set_state` give a checkpoint everything
needed to continue exactly. The learning rate is a variable, so changing it never retraces a step.
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


class Optimizer(Serializable):
    """Base class. ``build(variables)`` once, then ``apply(grads, variables)`` inside a ``tf.function``.

    Attributes:
        slot_names: names of the per-variable slots (e.g. Adam's ``m``, ``v``).
        iterations: number of updates applied (an int64 variable).
    """

    slot_names: tuple[str, ...] = ()

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
        self.slots = [{s: tf.Variable(tf.zeros_like(v), trainable=False, name=f"{v.name.split(':')[0]}_{s}")
                       for s in self.slot_names} for v in variables]

    def apply(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable]) -> None:
        raise NotImplementedError

    def clear(self, index: int, where: np.ndarray) -> None:
        """Zero the slots of variable ``index`` where ``where`` is True (so those entries stop moving)."""
        keep = tf.constant(~np.asarray(where, dtype=bool), dtype=tf.float32)
        for slot in self.slots[index].values():
            slot.assign(slot * tf.reshape(keep, slot.shape))

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


def from_params(spec: Any, learning_rate: float | None = None) -> Optimizer:
    """An optimizer from a name (``"adam"``, ``"sgd"``), a ``{"class_name", "config"}`` dict or an instance;
    ``learning_rate`` (when given) overrides the spec's."""
    if spec is None:
        spec = "Adam"
    if not isinstance(spec, (str, dict, Optimizer)):
        raise ValueError(f"optimizer must be a name ({', '.join(_registry.names())}), a "
                         f"{{'class_name', 'config'}} dict or an agents.optimizers.Optimizer; TensorFlow 1 "
                         f"optimizer objects (PsychRNN's) are not supported, got {type(spec).__name__}")
    if isinstance(spec, str):
        name = {"adam": "Adam", "sgd": "SGD"}.get(spec.lower(), spec)
        opt = _registry.lookup(name)(**({} if learning_rate is None else {"learning_rate": learning_rate}))
        return opt
    opt = get(spec)
    if learning_rate is not None and isinstance(spec, dict):
        opt.learning_rate = learning_rate
    return opt
