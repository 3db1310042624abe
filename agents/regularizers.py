"""Regularizers: each adds ``weight * penalty(tensor)`` to the loss; the formulas are PsychRNN 1.0.0's
(``psychrnn/backend/regularizations.py``): means, not sums, over the *effective* weight matrices.

``target`` names the tensor: ``"W_in"``, ``"W_rec"``, ``"W_out"`` (effective matrices) or ``"rates"``
(``f(states)``, ``(N_batch, N_steps, N_rec)``). A :class:`CustomRegularizer` receives the whole forward
pass instead (PsychRNN's ``custom_regularization(model, params)``).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from ._registry import NOT_IMPORTABLE, Registry, Serializable, callable_ref, import_callable
from ._tf import tf

TARGETS = ("W_in", "W_rec", "W_out", "rates")


def _check_weight(weight: Any, cls: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) or not weight >= 0:
        raise ValueError(f"{cls}: weight must be a non-negative number, got {weight!r}")
    return float(weight)


class Regularizer(Serializable):
    """Base class: ``__call__(x) -> scalar`` for the tensor named by ``target``."""

    target = "W_rec"

    def __call__(self, x: Any) -> tf.Tensor:
        raise NotImplementedError


_registry = Registry("regularizer", Regularizer)
register = _registry.register
get = _registry.get
serialize = _registry.serialize


class _Norm(Regularizer):
    def __init__(self, weight: float, target: str = "W_rec"):
        self.weight = _check_weight(weight, type(self).__name__)
        if target not in TARGETS:
            raise ValueError(f"{type(self).__name__}: target must be one of {TARGETS}, got {target!r}")
        self.target = target

    def get_config(self) -> dict:
        return {"weight": self.weight, "target": self.target}


@register
class L1(_Norm):
    """``weight * mean(|x|)`` (PsychRNN's ``L1_in``, ``L1_rec``, ``L1_out``).

    Args:
        weight: the coefficient (>= 0). target: "W_in", "W_rec", "W_out" or "rates".
    """

    def __call__(self, x):
        return self.weight * tf.reduce_mean(tf.abs(x))


@register
class L2(_Norm):
    """``weight * mean(x**2)`` (PsychRNN's ``L2_in``, ``L2_rec``, ``L2_out``; ``L2_firing_rate`` is
    ``L2(weight, "rates")``).

    Args:
        weight: the coefficient (>= 0). target: "W_in", "W_rec", "W_out" or "rates".
    """

    def __call__(self, x):
        return self.weight * tf.reduce_mean(tf.square(x))


@register
class CustomRegularizer(Regularizer):
    """A user's ``fn(model, params) -> scalar`` (PsychRNN's ``custom_regularization``).

    ``model`` is a view of the forward pass with PsychRNN's names: ``get_effective_W_in()``,
    ``get_effective_W_rec()``, ``get_effective_W_out()``, ``states``, ``predictions``, ``x``, ``y``,
    ``output_mask``, ``transfer_function``, ``W_in``, ``W_rec``, ``W_out``, ``b_rec``, ``b_out``.

    Args:
        fn: the callable or its import path ``"module:function"`` (a lambda or local function is stored as
            ``"not-importable:..."`` and must be passed again as ``custom_regularization``).
        params: the dict passed to ``fn`` as its second argument: the model's whole parameter dict, as in
            PsychRNN, arrays included. The config keeps only its plain entries (numbers, strings, None).
    """

    target = "model"

    def __init__(self, fn: Callable | str, params: Mapping[str, Any] | None = None):
        self.fn = import_callable(fn, "custom_regularization") if isinstance(fn, str) else fn
        if not callable(self.fn):
            raise ValueError(f"CustomRegularizer: fn must be callable or 'module:function', got {fn!r}")
        self.params = dict(params or {})

    def __call__(self, model):
        return self.fn(model, self.params)

    def get_config(self) -> dict:
        return {"fn": callable_ref(self.fn), "params": _plain(self.params)}


def _is_plain(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str, type(None), np.bool_, np.integer, np.floating))


def _plain(params: Mapping[str, Any]) -> dict:
    """The entries a JSON config can hold (arrays, functions and objects are left out)."""
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items() if _is_plain(v)}


PSYCHRNN_KEYS = {"L1_in": (L1, "W_in"), "L1_rec": (L1, "W_rec"), "L1_out": (L1, "W_out"),
                  "L2_in": (L2, "W_in"), "L2_rec": (L2, "W_rec"), "L2_out": (L2, "W_out"),
                  "L2_firing_rate": (L2, "rates")}


def _records(spec: Any, live: Regularizer) -> bool:
    """True when a stored ``spec`` is the config of the custom regularizer ``live`` (same function name)."""
    if not (isinstance(spec, dict) and spec.get("class_name") == "CustomRegularizer"
            and isinstance(live, CustomRegularizer)):
        return False
    stored = spec.get("config", {}).get("fn")
    return isinstance(stored, str) and _fn_name(stored) == _fn_name(callable_ref(live.fn))


def _fn_name(ref: str) -> str:
    return ref[len(NOT_IMPORTABLE):] if ref.startswith(NOT_IMPORTABLE) else ref


def from_params(params: Mapping[str, Any]) -> list[Regularizer]:
    """The regularizers of a parameter dict: PsychRNN's keys (``L1_in`` ... ``L2_firing_rate``,
    ``custom_regularization``) and ours (``regularizers``: a list of names, configs or instances).

    ``custom_regularization`` receives the whole of ``params``, arrays included (PsychRNN passes its params
    dict). A stored config of a custom regularizer gets back the arrays its config could not hold from
    ``params``; ``custom_regularization`` given alongside a stored config of the same function replaces it
    (how a model saved with a lambda is loaded: the function is passed again).
    """
    out: list[Regularizer] = []
    for key, (cls, target) in PSYCHRNN_KEYS.items():
        w = params.get(key, 0)
        if w:
            out.append(cls(w, target))
    custom = params.get("custom_regularization")
    live = None
    if custom is not None:
        live = custom if isinstance(custom, Regularizer) else CustomRegularizer(custom, params)
    stored = list(params.get("regularizers") or [])
    replaced = next((i for i, spec in enumerate(stored) if live is not None and _records(spec, live)), None)
    if live is not None and replaced is None:
        out.append(live)
    if replaced is not None and live is not custom:  # the stored plain params stay; the live ones win
        live.params = {**stored[replaced].get("config", {}).get("params", {}), **live.params}
    for i, spec in enumerate(stored):
        reg = live if i == replaced else get(spec)
        if isinstance(reg, CustomRegularizer) and reg is not live:
            reg.params.update({k: v for k, v in params.items() if k not in reg.params and not _is_plain(v)})
        out.append(reg)
    return out
