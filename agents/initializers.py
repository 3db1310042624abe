"""Initial weights of a rate network, drawn under its constraints.

An initializer is called with the network's sizes, its :class:`~agents.constraints.Wiring` and a NumPy
generator, and returns the *trainable* arrays ``W_in (N_rec, N_in)``, ``W_rec (N_rec, N_rec)``,
``W_out (N_out, N_rec)``, ``b_rec (N_rec,)``, ``b_out (N_out,)`` and ``init_state (1, N_rec)``. (Keras
initializers take ``(shape, dtype)``; ours need the masks and Dale signs, because what they control, the
spectral radius, is a property of the *effective* matrix.) NumPy only, float32 results.

Unlike PsychRNN 1.0.0, whose ``GaussianSpectralRadius`` scales the raw matrix and so lands elsewhere once
masks and Dale's absolute value are applied, ours reach the spectral radius asked for on the effective
``W_rec`` and, under Dale's principle, balance each unit's excitatory and inhibitory input exactly.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

from ._registry import Registry, Serializable
from .constraints import Wiring

RAND_INITS = ("glorot_gauss", "glorot_unif", "const_gauss", "const_unif")

# PsychRNN's initializers take the model's params as keywords (it calls GaussianSpectralRadius(**params)).
# Here sizes are checked against the network, constraints become model params, initial arrays moved.
PSYCHRNN_SIZES = ("N_in", "N_rec", "N_out")
PSYCHRNN_CONSTRAINTS = ("autapses", "dale_ratio", "input_connectivity", "rec_connectivity",
                        "output_connectivity", "Dale_rec", "Dale_out")
_MOVED = {**{k: "an initial array: give it in the model's params (params[{k!r}] = array) or use "
                "FromWeights(weights={{...}})" for k in ("W_in", "W_rec", "W_out", "b_rec", "b_out", "init_state")},
          "load_weights_path": "a model param here: params['load_weights_path'] = path (or FromWeights(path=...))"}
# Keys of a PsychRNN params dict (model and task) that PsychRNN's initializers do not read either.
_IGNORED = {"name", "N_batch", "N_steps", "dt", "tau", "T", "rec_noise", "transfer_function", "loss_function",
            "L1_in", "L1_rec", "L1_out", "L2_in", "L2_rec", "L2_out", "L2_firing_rate", "custom_regularization",
            "W_in_train", "W_rec_train", "W_out_train", "b_rec_train", "b_out_train", "init_state_train",
            "which_rand_W_rec_init", "seed", "initializer"}


class Initializer(Serializable):
    """Base class: ``__call__(N_in, N_rec, N_out, wiring, rng) -> dict of float32 arrays``."""

    def __call__(self, N_in: int, N_rec: int, N_out: int, wiring: Wiring,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError


_registry = Registry("initializer", Initializer)
register = _registry.register
get = _registry.get
serialize = _registry.serialize


def variable_shapes(N_in: int, N_rec: int, N_out: int) -> dict[str, tuple[int, ...]]:
    """The shape of each trainable array of a rate network (``[post, pre]`` matrices)."""
    return {"W_in": (N_rec, N_in), "W_rec": (N_rec, N_rec), "W_out": (N_out, N_rec),
            "b_rec": (N_rec,), "b_out": (N_out,), "init_state": (1, N_rec)}


def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.number)) and bool(np.isfinite(value))


def _rand(kind: str, mask: np.ndarray, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    """PsychRNN's random initialisations; the Glorot fans count only existing synapses."""
    if kind == "const_gauss":
        return rng.standard_normal(mask.shape)
    if kind == "const_unif":
        return rng.uniform(lo, hi, mask.shape)
    fans = mask.sum(axis=1, keepdims=True) + mask.sum(axis=0, keepdims=True)
    fans = np.maximum(fans, 1.0)
    if kind == "glorot_gauss":
        return rng.standard_normal(mask.shape) * np.sqrt(2.0 / fans)
    limit = np.sqrt(6.0 / fans)
    return rng.uniform(-limit, limit)


def spectral_radius(W: np.ndarray) -> float:
    """Largest absolute eigenvalue of a square matrix."""
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(W, dtype=np.float64)))))


def balance(W_abs: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """Scale each row's inhibitory magnitudes so its excitatory and inhibitory sums are equal.

    Rows without excitatory or without inhibitory inputs are left as they are.
    """
    exc = sign > 0
    e = W_abs[:, exc].sum(axis=1)
    i = W_abs[:, ~exc].sum(axis=1)
    scale = np.where((e > 0) & (i > 0), e / np.where(i > 0, i, 1.0), 1.0)
    out = W_abs.copy()
    out[:, ~exc] *= scale[:, None]
    return out


def _scale_to_radius(W_raw: np.ndarray, wiring: Wiring, spec_rad: float) -> np.ndarray:
    rho = spectral_radius(wiring.effective("W_rec", W_raw))
    if rho < 1e-6:
        warnings.warn("the effective W_rec is nilpotent (e.g. purely feed-forward regions): its spectral "
                      "radius is 0 and cannot be scaled; weights are left at unit scale", RuntimeWarning,
                      stacklevel=3)
        return W_raw
    return W_raw * (spec_rad / rho)


class _Base(Initializer):
    """Shared parameters: the random scheme of ``W_in``/``W_out`` (PsychRNN's ``which_rand_init``) and
    PsychRNN's keywords.

    PsychRNN's keywords are accepted: ``N_in``, ``N_rec``, ``N_out`` are checked against the network the
    initializer is used in; ``autapses``, ``dale_ratio`` and the masks (``input_connectivity``,
    ``rec_connectivity``, ``output_connectivity``, ``Dale_rec``, ``Dale_out``) are model params here, and a
    model built with this initializer takes them as its own (:attr:`constraints`). Initial arrays and
    ``load_weights_path`` are refused with where they go now; other keys of a PsychRNN params dict are ignored,
    as PsychRNN's initializers ignore them; an unknown key is ignored with a warning.
    """

    def __init__(self, which_rand_init: str = "glorot_gauss", init_minval: float = -0.1,
                 init_maxval: float = 0.1, **psychrnn: Any):
        if which_rand_init not in RAND_INITS:
            raise ValueError(f"{type(self).__name__}: which_rand_init must be one of {RAND_INITS}, got "
                             f"{which_rand_init!r}")
        self.which_rand_init = which_rand_init
        self.init_minval = float(init_minval)
        self.init_maxval = float(init_maxval)
        self.sizes: dict[str, int] = {}
        self.constraints: dict[str, Any] = {}
        self._psychrnn_keywords(psychrnn)

    def _psychrnn_keywords(self, kwargs: Mapping[str, Any]) -> None:
        cls = type(self).__name__
        for key, value in kwargs.items():
            if key in _MOVED:
                raise ValueError(f"{cls}: {key} is {_MOVED[key].format(k=key)}")
            if key in PSYCHRNN_SIZES:
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                    raise ValueError(f"{cls}: {key} must be a positive integer, got {value!r}")
                self.sizes[key] = int(value)
            elif key in PSYCHRNN_CONSTRAINTS:
                if value is not None:
                    self.constraints[key] = value if np.ndim(value) == 0 else np.asarray(value)
        unknown = sorted(set(kwargs) - set(_MOVED) - set(PSYCHRNN_SIZES) - set(PSYCHRNN_CONSTRAINTS) - _IGNORED)
        if unknown:
            warnings.warn(f"{cls} ignores {unknown}: neither its own arguments nor PsychRNN's params",
                          UserWarning, stacklevel=4)

    def _check_sizes(self, N_in: int, N_rec: int, N_out: int) -> None:
        network = {"N_in": N_in, "N_rec": N_rec, "N_out": N_out}
        wrong = {k: v for k, v in self.sizes.items() if network[k] != v}
        if wrong:
            raise ValueError(f"{type(self).__name__} was made for {wrong}, the network has "
                             f"{ {k: network[k] for k in wrong} }")

    def _common(self, N_in, N_rec, N_out, wiring, rng) -> dict[str, np.ndarray]:
        self._check_sizes(N_in, N_rec, N_out)
        lo, hi = self.init_minval, self.init_maxval
        return {
            "W_in": _rand(self.which_rand_init, wiring.input_connectivity, rng, lo, hi),
            "W_out": _rand(self.which_rand_init, wiring.output_connectivity, rng, lo, hi),
            "b_rec": np.zeros(N_rec), "b_out": np.zeros(N_out),
            "init_state": 0.1 + 0.01 * rng.standard_normal((1, N_rec)),  # PsychRNN's default
        }

    def get_config(self) -> dict:
        # PsychRNN's keywords as given, minus masks (configs hold no arrays; the model's config records them)
        scalars = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self.constraints.items()
                   if np.ndim(v) == 0}
        return {"which_rand_init": self.which_rand_init, "init_minval": self.init_minval,
                "init_maxval": self.init_maxval, **self.sizes, **scalars}


def _f32(d: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float32) for k, v in d.items()}


@register
class GaussianSpectralRadius(_Base):
    """Gaussian recurrent weights scaled to spectral radius ``spec_rad`` on the effective matrix.

    Without Dale: ``W_rec ~ N(0, 1)`` masked, then scaled. With Dale: magnitudes ``|N(0, 1)|`` masked,
    inhibitory inputs of each unit scaled so that they cancel its excitatory inputs, then scaled.

    Args:
        spec_rad: target spectral radius of the effective ``W_rec`` (PsychRNN's default 1.1).
        which_rand_init, init_minval, init_maxval: ``W_in``/``W_out`` scheme (PsychRNN's names).
        **psychrnn: PsychRNN's keywords (``N_in``, ``N_rec``, ``N_out``, ``autapses``, ``dale_ratio``, masks;
            see ``_Base``).
    """

    def __init__(self, spec_rad: float = 1.1, which_rand_init: str = "glorot_gauss",
                 init_minval: float = -0.1, init_maxval: float = 0.1, **psychrnn: Any):
        super().__init__(which_rand_init, init_minval, init_maxval, **psychrnn)
        if not _finite_number(spec_rad) or spec_rad <= 0:
            raise ValueError(f"GaussianSpectralRadius: spec_rad must be a positive finite number, got {spec_rad!r}")
        self.spec_rad = float(spec_rad)

    def __call__(self, N_in, N_rec, N_out, wiring, rng):
        out = self._common(N_in, N_rec, N_out, wiring, rng)
        W = rng.standard_normal((N_rec, N_rec)) * wiring.rec_connectivity
        if wiring.dale:
            W = balance(np.abs(W), wiring.sign_rec)
        out["W_rec"] = _scale_to_radius(W, wiring, self.spec_rad)
        return _f32(out)

    def get_config(self) -> dict:
        return {"spec_rad": self.spec_rad, **super().get_config()}


@register
class AlphaIdentity(_Base):
    """``W_rec = alpha * I`` (Le et al. 2015's identity initialisation, PsychRNN's ``AlphaIdentity``).

    Under Dale's principle the effective diagonal carries each unit's sign, and the model makes the zero
    off-diagonal weights tiny and positive so that they can learn
    (:meth:`~agents.constraints.Wiring.unstick_zeros`); without autapses the diagonal is masked, so the
    effective matrix starts at zero (tiny under Dale).

    Args:
        alpha: the diagonal value.
        which_rand_init, init_minval, init_maxval, **psychrnn: as :class:`GaussianSpectralRadius`.
    """

    def __init__(self, alpha: float = 1.0, which_rand_init: str = "glorot_gauss",
                 init_minval: float = -0.1, init_maxval: float = 0.1, **psychrnn: Any):
        super().__init__(which_rand_init, init_minval, init_maxval, **psychrnn)
        if not _finite_number(alpha):
            raise ValueError(f"AlphaIdentity: alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)

    def __call__(self, N_in, N_rec, N_out, wiring, rng):
        out = self._common(N_in, N_rec, N_out, wiring, rng)
        out["W_rec"] = np.eye(N_rec) * self.alpha
        return _f32(out)

    def get_config(self) -> dict:
        return {"alpha": self.alpha, **super().get_config()}


@register
class RandomInit(_Base):
    """PsychRNN's plain ``WeightInitializer``: every matrix from ``which_rand_init`` (``W_rec`` from
    ``which_rand_W_rec_init``), with no control of the spectral radius."""

    def __init__(self, which_rand_init: str = "glorot_gauss", which_rand_W_rec_init: str | None = None,
                 init_minval: float = -0.1, init_maxval: float = 0.1, **psychrnn: Any):
        super().__init__(which_rand_init, init_minval, init_maxval, **psychrnn)
        rec = which_rand_W_rec_init or which_rand_init
        if rec not in RAND_INITS:
            raise ValueError(f"RandomInit: which_rand_W_rec_init must be one of {RAND_INITS}, got {rec!r}")
        self.which_rand_W_rec_init = which_rand_W_rec_init

    def __call__(self, N_in, N_rec, N_out, wiring, rng):
        out = self._common(N_in, N_rec, N_out, wiring, rng)
        kind = self.which_rand_W_rec_init or self.which_rand_init
        out["W_rec"] = _rand(kind, wiring.rec_connectivity, rng, self.init_minval, self.init_maxval)
        return _f32(out)

    def get_config(self) -> dict:
        return {**super().get_config(), "which_rand_W_rec_init": self.which_rand_W_rec_init}


@register
class FromWeights(Initializer):
    """Weights from a weights file (ours or PsychRNN's) or from arrays (PsychRNN's ``get_weights`` dict).

    The file's (or dict's) ``W_in``, ``W_rec``, ``W_out`` are used as they are: for files written by
    ``save`` they are already the effective matrices, and applying the masks and Dale's absolute value again
    leaves them unchanged. Missing biases default to zero and a missing ``init_state`` to PsychRNN's
    ``0.1 + 0.01 N(0, 1)``.

    Args:
        path: a ``.npz`` file (what the config stores).
        weights: arrays instead of a file (not serialisable: save the model and use the file).
    """

    def __init__(self, path: str | None = None, weights: Mapping[str, Any] | None = None):
        if (path is None) == (weights is None):
            raise ValueError("FromWeights: give exactly one of path (a .npz file) or weights (a dict of "
                             "arrays); weights given as arrays are not stored in configs")
        self.path = None if path is None else str(path)
        self._weights = None if weights is None else dict(weights)

    def arrays(self) -> dict[str, Any]:
        """The source arrays (the file is read on each call)."""
        if self._weights is not None:
            return self._weights
        from .weights import load_weights

        return load_weights(self.path)[0]

    def __call__(self, N_in, N_rec, N_out, wiring, rng):
        src = self.arrays()
        shapes = variable_shapes(N_in, N_rec, N_out)
        defaults = {"b_rec": np.zeros(N_rec), "b_out": np.zeros(N_out),
                    "init_state": 0.1 + 0.01 * rng.standard_normal((1, N_rec))}
        out = {}
        for key, shape in shapes.items():
            if src.get(key) is None:
                if key not in defaults:
                    raise ValueError(f"FromWeights: the weights have no {key!r}")
                out[key] = defaults[key]
                continue
            arr = np.asarray(src[key], dtype=np.float32)
            if arr.size != int(np.prod(shape)):
                raise ValueError(f"FromWeights: {key} has shape {arr.shape}, the network needs {shape}")
            out[key] = arr.reshape(shape)
        return _f32(out)

    def get_config(self) -> dict:
        return {"path": self.path}
