"""Loss functions: ``loss(predictions, y, mask) -> scalar``, all arrays ``(N_batch, N_steps, N_out)``.

The same formulas as PsychRNN 1.0.0 (``psychrnn/backend/loss_functions.py``): the mean is taken over every
element (trials, steps and outputs), masked elements count as zeros.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from ._registry import Registry, Serializable, callable_ref, import_callable
from ._tf import tf


class Loss(Serializable):
    """Base class: ``__call__(predictions, y, mask) -> scalar tensor``."""

    def __call__(self, predictions: tf.Tensor, y: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError


_registry = Registry("loss", Loss)
register = _registry.register
get = _registry.get
serialize = _registry.serialize


@register
class MeanSquaredError(Loss):
    """``mean((mask * (predictions - y))**2)`` (PsychRNN's ``mean_squared_error``)."""

    def __call__(self, predictions, y, mask):
        return tf.reduce_mean(tf.square(mask * (predictions - y)))


@register
class BinaryCrossEntropy(Loss):
    """``mean(mask * -(y log p + (1 - y) log(1 - p)))`` with ``p`` clipped to ``[eps, 1 - eps]``, eps = 1e-7
    (PsychRNN's ``binary_cross_entropy``; targets are 0/1 probabilities)."""

    def __call__(self, predictions, y, mask):
        eps = 1e-7
        p = tf.clip_by_value(predictions, eps, 1.0 - eps)
        return tf.reduce_mean(mask * -(y * tf.math.log(p + eps) + (1.0 - y) * tf.math.log(1.0 - p + eps)))


@register
class CustomLoss(Loss):
    """A user's function ``fn(predictions, y, mask) -> scalar`` (TensorFlow ops).

    Args:
        fn: the callable, or its import path ``"module:function"`` (what the config stores; a lambda or
            local function is stored as ``"not-importable:..."`` and must be passed again as ``loss_function``).
    """

    def __init__(self, fn: Callable | str):
        self.fn = import_callable(fn, "loss_function") if isinstance(fn, str) else fn
        if not callable(self.fn):
            raise ValueError(f"CustomLoss: fn must be callable or 'module:function', got {fn!r}")

    def __call__(self, predictions, y, mask):
        return self.fn(predictions, y, mask)

    def get_config(self) -> dict:
        return {"fn": callable_ref(self.fn)}


_PSYCHRNN_NAMES = {"mean_squared_error": MeanSquaredError, "binary_cross_entropy": BinaryCrossEntropy}


def from_params(params: Mapping[str, Any]) -> Loss:
    """The loss a PsychRNN parameter dict asks for.

    ``params["loss_function"]`` is ``"mean_squared_error"`` (default), ``"binary_cross_entropy"``, another
    name whose function is ``params[name]`` (PsychRNN's custom-loss convention), a registered class name, a
    ``{"class_name", "config"}`` dict, a :class:`Loss` or a callable.
    """
    spec = params.get("loss_function", "mean_squared_error")
    if isinstance(spec, str):
        if spec in _PSYCHRNN_NAMES:
            return _PSYCHRNN_NAMES[spec]()
        if callable(params.get(spec)):
            return CustomLoss(params[spec])
        try:
            return get(spec)
        except ValueError:
            raise ValueError(f"loss_function is {spec!r}, which is neither 'mean_squared_error' nor "
                             f"'binary_cross_entropy', nor a key of params holding a function") from None
    if callable(spec) and not isinstance(spec, Loss):
        return CustomLoss(spec)
    return get(spec)


def to_params(loss: Loss) -> Any:
    """The ``loss_function`` value that rebuilds ``loss`` (a PsychRNN name where there is one)."""
    for name, cls in _PSYCHRNN_NAMES.items():
        if type(loss) is cls:
            return name
    return serialize(loss)
