"""Recurrent network models with PsychRNN's user API: :class:`RNN` (the shared machinery) and :class:`Basic`.

``Basic`` is PsychRNN's continuous-time rate network (Song, Yang & Wang 2016; Ehrlich et al. 2021), with row
vectors (``N_batch`` x units), ``alpha = dt / tau`` and transfer function ``f`` (relu by default)::

    x_t = (1 - alpha) x_{t-1} + alpha (f(x_{t-1}) W_rec^T + u_t W_in^T + b_rec) + sqrt(2 alpha rec_noise^2) xi_t
    y_t = f(x_t) W_out^T + b_out

``x_0`` is a trainable initial state; ``states`` are the pre-activations ``x_t`` after each update and
``tau`` may be one value per unit. With ``train_tau`` each unit's ``tau`` is a trainable variable, kept above
``dt`` by a reparametrisation (``tau = dt * (1 + softplus(tau_raw))``; :class:`Basic`). The weight matrices
are the *effective* ones under the constraints of :mod:`agents.constraints` (masks, Dale's principle). Arrays
are ``(N_batch, N_steps, channels)``, times in ms.

PsychRNN's API (``Basic(params)``, ``train``, ``test``, ``get_weights``, ``save``, ``destruct``,
``params['load_weights_path']``) works with PsychRNN's parameter keys, minus its traps: a second ``train``
continues from the current weights and optimizer state, ``test`` takes any batch size, no batch is thrown
away and ``training_iters`` is honoured exactly. For the closed loop a model also offers
``train_on_batch``, ``save_checkpoint``/``load_checkpoint``, ``config``, ``masks`` and ``region_labels``.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from . import constraints, initializers, losses, optimizers, regularizers
from ._registry import NOT_IMPORTABLE, callable_ref, import_callable
from ._tf import ensure_eager, tf
from .ops import TRANSFER_FUNCTIONS, rate_recurrence, transfer_name
from .weights import load_weights, package_version, read_npz, save_weights, write_npz

_TRAIN_FLAGS = ("W_in_train", "W_rec_train", "W_out_train", "b_rec_train", "b_out_train", "init_state_train")
_CONSTRAINT_KEYS = ("input_connectivity", "rec_connectivity", "output_connectivity", "Dale_rec", "Dale_out")
# PsychRNN's initial arrays: each one given in the params is used, the others are drawn
_INITIAL_ARRAYS = ("W_in", "W_rec", "W_out", "b_rec", "b_out", "init_state")
# PsychRNN's initialisation keys (and initial arrays) a model accepts besides those of its config()
_PSYCHRNN_INIT_KEYS = ("spec_rad", "which_rand_init", "init_minval", "init_maxval", "load_weights_path",
                       *_INITIAL_ARRAYS)


def _fresh_seed() -> int:
    """A seed from NumPy's global generator, so PsychRNN's idiom ``np.random.seed(2020)`` at the top of a
    script gives the same network (weights, masks, noise) on every run, as it does in PsychRNN."""
    return int(np.random.randint(0, 2 ** 63 - 1, dtype=np.int64))


def _check_seed(seed: Any) -> int:
    """``seed`` as a non-negative integer (``ValueError`` otherwise: a fractional seed is not truncated)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


# Trainable time constants are stored as tau_raw, dimensionless, with tau = dt * (1 + softplus(tau_raw)): tau > dt
# always and the gradient reaches every unit. Khajehabdollahi et al. (ICLR 2024; LevinaLab/rnn_timescale_public,
# src/models/RNN_Stack.py) clamp tau at 1 step in the forward pass instead, which stops the gradient of a unit
# whose tau went below 1 step for good. A tau given within this many steps of dt (a draw at the range's lower
# end, a learned value saved as float32) starts that far above it, where softplus^-1 is finite.
_TAU_MIN_EXCESS_STEPS = 1e-6


def _tau_raw_of(tau_ms: np.ndarray, dt: float) -> np.ndarray:
    """``tau_raw`` with ``dt * (1 + softplus(tau_raw)) = tau_ms`` (float32, the shape of ``tau_ms``)."""
    excess = np.maximum(np.asarray(tau_ms, dtype=np.float64) / dt - 1.0, _TAU_MIN_EXCESS_STEPS)
    return (excess + np.log(-np.expm1(-excess))).astype(np.float32)  # softplus^-1, stable for any excess > 0


def _check_tau_init_range(value: Any, dt: float) -> list[float]:
    """``tau_init_range`` as ``[low, high]`` ms with ``dt <= low <= high`` (``ValueError`` otherwise); None gives
    ``[dt, 2 dt]``, the paper's 1-2 steps."""
    if value is None:
        return [dt, 2.0 * dt]
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"tau_init_range must be [low, high] in ms, got {value!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and dt <= low <= high):
        raise ValueError(f"tau_init_range must be [low, high] ms with dt={dt} <= low <= high (finite), "
                         f"got {value!r}")
    return [low, high]


def _check_rec_noise(rec_noise: Any) -> float:
    """``rec_noise`` as a non-negative finite float (``ValueError`` otherwise)."""
    if isinstance(rec_noise, bool) or not isinstance(rec_noise, (int, float, np.number)) \
            or not 0 <= rec_noise < np.inf:
        raise ValueError(f"rec_noise must be a non-negative finite number, got {rec_noise!r}")
    return float(rec_noise)


def _psychrnn_lstm_message(path: Any, arrays: Mapping[str, Any]) -> str:
    shape = tuple(np.shape(arrays["init_cell"]))
    return (f"{os.fspath(path)} is a PsychRNN LSTM weights file, which a skinnerbox model cannot run as "
            f"PsychRNN did: (1) PsychRNN's LSTM keeps one initial hidden and cell state per trial "
            f"(init_hidden and init_cell are (N_batch, N_rec) = {shape}, so it runs batches of exactly "
            f"{shape[0]} trials), ours one (1, N_rec) state shared by every trial; (2) PsychRNN's LSTM squashes "
            f"the cell with a sigmoid (h = o * sigmoid(c)), ours is the textbook cell (h = o * tanh(c)). Load it "
            f"with PsychRNN's own LSTM (psychrnn.backend.models.lstm), or train a skinnerbox LSTM")


def _initializer_constraints(init: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """The constraint keywords a PsychRNN-style initializer was given (``dale_ratio``, masks, ...), which are
    model params here.

    Raises:
        ValueError: the model params set the same key to another value.
    """
    def show(v: Any) -> str:
        return repr(v) if np.ndim(v) == 0 else f"an array of shape {np.shape(v)}"

    given = dict(getattr(init, "constraints", None) or {})
    for key, value in given.items():
        mine = params.get(key)
        if mine is not None and not np.array_equal(np.asarray(mine), np.asarray(value)):
            raise ValueError(f"the initializer was given {key}={show(value)} but params[{key!r}] is {show(mine)}; "
                             f"{key} is a model param here: set it once, in the model's params")
    return given


class _ForwardView:
    """What a PsychRNN ``custom_regularization(model, params)`` sees of one forward pass."""

    def __init__(self, model: "RNN", tensors: dict, x, y, mask):
        self._t = tensors
        self.x, self.y, self.output_mask = x, y, mask
        self.states, self.predictions = tensors["states"], tensors["outputs"]
        self.transfer_function = model.transfer
        for name, var in model.vars.items():
            setattr(self, name, var)

    def get_effective_W_in(self):
        return self._t["W_in"]

    def get_effective_W_rec(self):
        return self._t["W_rec"]

    def get_effective_W_out(self):
        return self._t["W_out"]


class RNN:
    """Shared machinery of every model: parameters, optimizer, compiled steps, files, PsychRNN's API.

    Args:
        params: PsychRNN's parameter dict (start from ``task.get_task_params()``, add ``N_rec`` and
            ``name``) or a dict from :meth:`config`. Required: ``N_in, N_rec, N_out, dt, tau`` (ms), unless
            ``load_weights_path`` names one of our files. Optional: see :meth:`config` for every key.

    Subclasses set ``kind`` and implement ``_init_arrays``, ``_forward`` and ``_weights_dict``.
    """

    kind = "RNN"
    supports_constraints = False
    # what a regularizer may penalise: the keys of the forward pass (``"model"``: a custom regularizer)
    regularizer_targets: tuple[str, ...] = ("W_in", "W_rec", "W_out", "rates", "model")

    def __init__(self, params: Mapping[str, Any]):
        ensure_eager()
        params, file_arrays, meta = self._resolve_params(dict(params))
        self.params = params
        self.name = str(params.get("name", self.kind))
        self._sizes(params, file_arrays)
        self._check_time_constants(params, file_arrays)
        self.seed = _fresh_seed() if params.get("seed") is None else _check_seed(params["seed"])
        self.transfer_function = params.get("transfer_function", "relu")
        if isinstance(self.transfer_function, str) and ":" in self.transfer_function:
            self.transfer_function = import_callable(self.transfer_function, "transfer_function")
        self._transfer_name = transfer_name(self.transfer_function)
        if self._transfer_name is None and not callable(self.transfer_function):
            raise ValueError(f"transfer_function must be a name ({', '.join(TRANSFER_FUNCTIONS)}) or a "
                             f"callable, got {self.transfer_function!r}")
        self.transfer = TRANSFER_FUNCTIONS[self._transfer_name] if self._transfer_name else self.transfer_function
        self.rec_noise = _check_rec_noise(params.get("rec_noise", 0.0))
        self.trainable = {flag: bool(params.get(flag, True)) for flag in _TRAIN_FLAGS}
        self.wiring = self._build_wiring(params, file_arrays)
        self.initializer = self._build_initializer(params, file_arrays)
        self.loss = losses.from_params(params)
        self.regularizers = regularizers.from_params(params)
        self._check_regularizer_targets()
        self.clip_grads = optimizers.check_clip_grads(params.get("clip_grads", True))
        self.optimizer = optimizers.from_params(params.get("optimizer"), params.get("learning_rate"))
        self._warn_unimportable()
        self._explicit = sorted(k for k in _CONSTRAINT_KEYS if isinstance(params.get(k), np.ndarray)
                                or isinstance(params.get(k), (list, tuple)))
        self._given = self._given_arrays(params, file_arrays)
        for key, what in (("explicit_masks", "explicit masks"), ("initial_arrays", "initial arrays")):
            missing = [k for k in params.get(key) or [] if params.get(k) is None]
            if missing and file_arrays is None:
                raise ValueError(f"this config was made from {what} {missing}, which configs do not hold; "
                                 f"pass them as arrays or load the model's weights file")
        rng = np.random.default_rng(constraints.sub_seed(self.seed, "init"))
        arrays = self._init_arrays(rng)
        self.vars: dict[str, tf.Variable] = {
            name: tf.Variable(arr, dtype=tf.float32, name=name, trainable=self._is_trainable(name))
            for name, arr in arrays.items()}
        self._train_names = [n for n, v in self.vars.items() if v.trainable]
        self.optimizer.build([self.vars[n] for n in self._train_names])
        self._fixed: dict[str, np.ndarray] = self._own_fixed()
        self.noise_counter = 0
        self._noise_seed = constraints.sub_seed(self.seed, "noise") % (2 ** 31)
        self._step_fn = None
        self._test_fn = None
        self._clear_fixed_slots()

    # ------------------------------------------------------------------------------------- construction
    def _resolve_params(self, params: dict) -> tuple[dict, dict | None, dict | None]:
        """Merge a weights file named by ``load_weights_path`` into ``params``."""
        path = params.get("load_weights_path")
        init = params.get("initializer")
        if path is None and init is not None and hasattr(init, "initializations"):
            # A PsychRNN initializer object: its arrays hold the weights and the constraints. Its Dale_out is
            # PsychRNN 1.0.0's default, Dale_rec (inhibitory units drive the outputs): derived from the signs.
            return params, {k: v for k, v in init.initializations.items() if k != "Dale_out"}, None
        if path is None:
            if init is not None and self.supports_constraints:
                params["initializer"] = init = initializers.get(init)
                params.update(_initializer_constraints(init, params))
            return params, None, None
        arrays, meta = load_weights(path)
        if meta is None and "init_cell" in arrays:
            raise ValueError(_psychrnn_lstm_message(path, arrays))
        if meta is not None:
            cfg = dict(meta.get("config", {}))
            if cfg.get("model", self.kind) != self.kind:
                raise ValueError(f"{path} holds a {cfg['model']} model, not a {self.kind}")
            for k in ("initializer", "load_weights_path"):
                cfg.pop(k, None)
            params = {**cfg, **params}
            params.setdefault("_region_labels", meta.get("region_labels"))
        return params, arrays, meta

    def _sizes(self, params: dict, file_arrays: dict | None) -> None:
        guess = {}
        if file_arrays is not None and "W_in" in file_arrays and "W_out" in file_arrays:
            guess = {"N_rec": file_arrays["W_in"].shape[0], "N_in": file_arrays["W_in"].shape[1],
                     "N_out": file_arrays["W_out"].shape[0]}
        for key in ("N_in", "N_rec", "N_out"):
            val = params.get(key, guess.get(key))
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ValueError(f"{self.kind}: params[{key!r}] must be a positive integer, got {val!r}")
            setattr(self, key, int(val))
        for key in ("dt", "tau"):
            if key not in params:
                raise ValueError(f"{self.kind}: params needs {key!r} (ms)")
        self.dt = float(params["dt"])
        tau = np.asarray(params["tau"], dtype=np.float32)
        if tau.ndim > 1 or (tau.ndim == 1 and tau.shape != (self.N_rec,)) or not np.all(tau > 0) or self.dt <= 0:
            raise ValueError(f"{self.kind}: dt must be > 0 and tau a positive number or one per unit "
                             f"({self.N_rec},) in ms; got dt={params['dt']!r}, tau shape {tau.shape}")
        self._tau = float(tau) if tau.ndim == 0 else tau
        self._alpha = np.float32(self.dt) / tau
        self.N_steps = params.get("N_steps")
        self.N_batch = params.get("N_batch")

    def _check_time_constants(self, params: dict, file_arrays: dict | None) -> None:
        """``train_tau``, ``tau_init_range`` and a weights file's per-unit ``tau`` (which gives the initial
        trainable values, or the fixed ones when ``train_tau`` is off)."""
        train = params.get("train_tau", False)
        if not isinstance(train, (bool, np.bool_)):
            raise ValueError(f"train_tau must be true or false, got {train!r}")
        self.train_tau = bool(train)
        if self.train_tau and not self.supports_constraints:
            raise ValueError(f"{self.kind}: train_tau is for Basic (a rate network's time constants); a "
                             f"{self.kind} has none")
        self.tau_init_range = (_check_tau_init_range(params.get("tau_init_range"), self.dt) if self.train_tau
                               else None)
        self._file_tau = None
        if file_arrays is not None and file_arrays.get("tau") is not None:
            tau = np.asarray(file_arrays["tau"], dtype=np.float32)
            if tau.shape != (self.N_rec,) or not np.all(tau >= self.dt):
                raise ValueError(f"the weights' tau must be ({self.N_rec},) values >= dt={self.dt} ms, got shape "
                                 f"{tau.shape}")
            self._file_tau = tau
            if not self.train_tau:
                self._tau, self._alpha = tau, np.float32(self.dt) / tau

    @property
    def tau(self) -> float | np.ndarray:
        """Time constant(s), ms: a number or ``(N_rec,)``; with ``train_tau`` the current learned values."""
        return self.time_constants() if self.train_tau else self._tau

    @property
    def alpha(self) -> Any:
        """``dt / tau`` (float32, per unit when ``tau`` is); with ``train_tau`` from the current values."""
        return (np.float32(self.dt) / self.time_constants()).astype(np.float32) if self.train_tau \
            else self._alpha

    def time_constants(self) -> np.ndarray:
        """Every unit's time constant now, ms, ``(N_rec,)`` float32 (the fixed ``tau`` broadcast, or the learned
        ``dt * (1 + softplus(tau_raw))``)."""
        if not self.train_tau:
            return np.broadcast_to(np.asarray(self._tau, dtype=np.float32), (self.N_rec,)).copy()
        return (np.float32(self.dt) * (1.0 + tf.nn.softplus(self.vars["tau_raw"]))).numpy()

    def _build_wiring(self, params: dict, file_arrays: dict | None) -> constraints.Wiring | None:
        if not self.supports_constraints:
            given = [k for k in ("dale_ratio", "regions", *_CONSTRAINT_KEYS[:3]) if params.get(k) is not None]
            given += [k for k in ("input_density", "rec_density", "output_density") if params.get(k, 1.0) != 1.0]
            given += ["autapses"] if params.get("autapses", True) is False else []
            given += ["fixed"] if params.get("fixed") else []
            if given:
                raise ValueError(f"{self.kind} does not support biological constraints; remove {given} "
                                 f"(use Basic)")
            return None
        if file_arrays is None:
            return constraints.build_wiring(params, self.N_in, self.N_rec, self.N_out, self.seed)
        src = {**params, **{k: file_arrays[k] for k in (*_CONSTRAINT_KEYS, "dale_ratio") if k in file_arrays}}
        if params.get("load_weights_path") is None:
            # a PsychRNN initializer object's masks, with the params' densities, regions and fixed synapses
            return constraints.build_wiring(src, self.N_in, self.N_rec, self.N_out, self.seed, strict=False)
        # a weights file: its masks already hold the densities and regions its config records
        src.update(regions=None, input_density=1.0, rec_density=1.0, output_density=1.0, fixed=None)
        wiring = constraints.build_wiring(src, self.N_in, self.N_rec, self.N_out, self.seed, strict=False)
        wiring.labels = params.get("_region_labels")
        fixed = dict(params.get("fixed") or {})
        fixed.update({k[6:]: v for k, v in file_arrays.items() if k.startswith("fixed_")})
        if fixed:
            wiring.fixed = constraints.build_wiring({"fixed": fixed}, self.N_in, self.N_rec, self.N_out,
                                                    self.seed).fixed
        return wiring

    def _build_initializer(self, params: dict, file_arrays: dict | None) -> initializers.Initializer:
        init = params.get("initializer")
        if file_arrays is not None and params.get("load_weights_path") is not None:
            return initializers.FromWeights(path=os.fspath(params["load_weights_path"]))
        if file_arrays is not None:
            return initializers.FromWeights(weights=file_arrays)
        if init is not None:
            return initializers.get(init)
        return initializers.GaussianSpectralRadius(
            spec_rad=params.get("spec_rad", 1.1), which_rand_init=params.get("which_rand_init", "glorot_gauss"),
            init_minval=params.get("init_minval", -0.1), init_maxval=params.get("init_maxval", 0.1))

    def _is_trainable(self, name: str) -> bool:
        return self.trainable.get(f"{name}_train", True)

    def _given_arrays(self, params: dict, file_arrays: dict | None) -> dict[str, np.ndarray]:
        """The initial arrays given in ``params`` (PsychRNN's way; arrays or nested lists), float32 and of
        their variable's shape (``init_state`` may be ``(N_rec,)``, as PsychRNN draws it).

        Raises:
            ValueError: a wrong shape or a non-finite value, a model without these variables, or arrays given
                alongside a weights file or PsychRNN initializer object (which hold every weight already).
        """
        given = [k for k in _INITIAL_ARRAYS if params.get(k) is not None]
        if not given:
            return {}
        if not self.supports_constraints:
            raise ValueError(f"{self.kind}: initial arrays {given} are Basic's variables; a {self.kind} takes its "
                             f"initial weights from a weights file (load_weights_path)")
        if file_arrays is not None:
            source = "load_weights_path" if params.get("load_weights_path") is not None else "the initializer"
            raise ValueError(f"initial arrays {given} given alongside {source}, which holds every weight already; "
                             f"give one or the other")
        shapes = initializers.variable_shapes(self.N_in, self.N_rec, self.N_out)
        out = {}
        for key in given:
            try:
                arr = np.asarray(params[key], dtype=np.float32)
            except (TypeError, ValueError):
                raise ValueError(f"params[{key!r}] must be an array of numbers of shape {shapes[key]}, got "
                                 f"{type(params[key]).__name__}") from None
            if key == "init_state" and arr.shape == (self.N_rec,):
                arr = arr[None, :]
            if arr.shape != shapes[key]:
                raise ValueError(f"params[{key!r}] has shape {arr.shape}; a {self.kind} with N_in={self.N_in}, "
                                 f"N_rec={self.N_rec}, N_out={self.N_out} needs {shapes[key]} ([post, pre])")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"params[{key!r}] holds NaN or infinite values")
            out[key] = arr
        return out

    def _check_regularizer_targets(self) -> None:
        """Refuse, when the model is built, a penalty on something this kind of model does not have."""
        for reg in self.regularizers:
            if reg.target not in self.regularizer_targets:
                raise ValueError(f"{self.kind}: {type(reg).__name__} penalises {reg.target!r}, which a {self.kind} "
                                 f"does not have (from L1_*/L2_* keys or regularizers); it may penalise "
                                 f"{', '.join(t for t in self.regularizer_targets if t != 'model')}")

    def _own_fixed(self) -> dict[str, np.ndarray]:
        """The model's own fixed-synapse masks (without a ``train`` call's temporary ``fixed_weights``)."""
        return dict(self.wiring.fixed) if self.wiring else {}

    def _warn_unimportable(self) -> None:
        """Warn, once per model, of each function a saved file can record by name only."""
        fns = [("transfer_function", None if self._transfer_name else self.transfer_function),
               ("loss_function", getattr(self.loss, "fn", None))]
        fns += [("custom_regularization", getattr(r, "fn", None)) for r in self.regularizers]
        for param, fn in fns:
            if fn is not None and callable_ref(fn).startswith(NOT_IMPORTABLE):
                warnings.warn(f"{param} {callable_ref(fn)[len(NOT_IMPORTABLE):]!r} is a lambda or local function: "
                              f"save() records it by name only, so loading the file will need it passed again "
                              f"(params[{param!r}] = <the function>); define it at module level to avoid this",
                              UserWarning, stacklevel=3)

    # ------------------------------------------------------------------------------- subclass interface
    def _init_arrays(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _forward(self, x: tf.Tensor, seed: tf.Tensor, batch_major_states: bool = True) -> dict[str, tf.Tensor]:
        """``{"outputs": (B, T, N_out), "states": (B, T, N_rec) or None, "rates": f(states) in any axis
        order, "W_in"/"W_rec"/"W_out": effective matrices (where the model has them)}``."""
        raise NotImplementedError

    def _weights_dict(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # ----------------------------------------------------------------------------------- compiled steps
    def _signature(self) -> list[tf.TensorSpec]:
        return [tf.TensorSpec([None, None, self.N_in], tf.float32),
                tf.TensorSpec([None, None, self.N_out], tf.float32),
                tf.TensorSpec([None, None, self.N_out], tf.float32),
                tf.TensorSpec([2], tf.int64)]

    def _penalty(self, t: dict, x, y, mask) -> tf.Tensor:
        total = tf.constant(0.0)
        for reg in self.regularizers:  # targets checked when the model was built
            view = _ForwardView(self, t, x, y, mask) if reg.target == "model" else t[reg.target]
            total += reg(view)
        return total

    def _make_step(self):
        names = list(self._train_names)
        variables = [self.vars[n] for n in names]
        plastic = {n: tf.constant(~m, dtype=tf.float32) for n, m in self._fixed.items() if n in names}
        clip = 1.0 if self.clip_grads is True else (float(self.clip_grads) if self.clip_grads else None)
        needs_states = any(r.target == "model" for r in self.regularizers)

        @tf.function(input_signature=self._signature())
        def step(x, y, mask, seed):
            with tf.GradientTape() as tape:
                t = self._forward(x, seed, batch_major_states=needs_states)
                total = self.loss(t["outputs"], y, mask) + self._penalty(t, x, y, mask)
            grads = tape.gradient(total, variables)
            grads = [g * plastic[n] if (g is not None and n in plastic) else g for g, n in zip(grads, names)]
            if clip is not None:
                grads = [None if g is None else tf.clip_by_norm(g, clip) for g in grads]
            self.optimizer.apply(grads, variables)
            return total, t["outputs"]

        return step

    def _make_test(self):
        @tf.function(input_signature=[self._signature()[0], self._signature()[3]])
        def test(x, seed):
            t = self._forward(x, seed)
            return t["outputs"], t["states"]

        return test

    def _next_seed(self) -> np.ndarray:
        seed = np.array([self._noise_seed, self.noise_counter], dtype=np.int64)
        if self.rec_noise > 0:
            self.noise_counter += 1
        return seed

    def _check_x(self, x: Any, what: str = "x") -> np.ndarray:
        arr = np.ascontiguousarray(x, dtype=np.float32)
        if arr.ndim != 3 or arr.shape[2] != self.N_in or arr.shape[1] < 1:
            raise ValueError(f"{what} must be (N_batch, N_steps, N_in={self.N_in}), got shape {arr.shape}")
        return arr

    # ----------------------------------------------------------------------------------- closed loop API
    def train_on_batch(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, np.ndarray]:
        """One optimizer step on a batch of any size.

        Args:
            x: inputs ``(N_batch, N_steps, N_in)``. y: targets ``(N_batch, N_steps, N_out)``. mask: loss weights,
                same shape as ``y``.

        Returns:
            ``(loss, outputs)``: the regularised loss and the outputs ``(N_batch, N_steps, N_out)`` of the
            forward pass the gradient came from (the behaviour before learning from these trials).
        """
        x = self._check_x(x)
        y = np.ascontiguousarray(y, dtype=np.float32)
        mask = np.ascontiguousarray(mask, dtype=np.float32)
        want = (x.shape[0], x.shape[1], self.N_out)
        if y.shape != want or mask.shape != want:
            raise ValueError(f"y and mask must be {want} to match x {x.shape}; got y {y.shape}, mask {mask.shape}")
        if self._step_fn is None:
            self._step_fn = self._make_step()
        loss, out = self._step_fn(x, y, mask, self._next_seed())
        return float(loss), out.numpy()

    def masks(self) -> dict[str, np.ndarray]:
        """Connectivity and Dale masks (PsychRNN's names and shapes) and fixed-synapse masks ``fixed_<W>``."""
        if self.wiring is None:
            return {}
        out = {k: v.copy() for k, v in self.wiring.psychrnn_arrays().items()}
        out.update({f"fixed_{k}": v.copy() for k, v in self._own_fixed().items()})
        return out

    @property
    def region_labels(self) -> list[str] | None:
        """The region of each recurrent unit, or None for a single-region network."""
        return None if self.wiring is None or self.wiring.labels is None else list(self.wiring.labels)

    def config(self) -> dict:
        """Every model and constraint setting as JSON-able data; ``type(model)(model.config())`` (or
        :func:`build_model`) rebuilds the same network from the same seed."""
        p = self.params
        tf_name = self._transfer_name or callable_ref(self.transfer_function)
        fixed = {k: (v if np.ndim(v) == 0 else "explicit") for k, v in (p.get("fixed") or {}).items()}
        cfg = {
            "model": self.kind, "name": self.name, "N_in": self.N_in, "N_rec": self.N_rec,
            "N_out": self.N_out, "dt": self.dt,
            "tau": self._tau if isinstance(self._tau, float) else self._tau.tolist(),
            "train_tau": self.train_tau, "tau_init_range": self.tau_init_range,
            "N_steps": None if self.N_steps is None else int(self.N_steps),
            "N_batch": None if self.N_batch is None else int(self.N_batch),
            "transfer_function": tf_name, "rec_noise": self.rec_noise,
            "dale_ratio": (p.get("dale_ratio") if p.get("regions") is not None or self.wiring is None
                           else self.wiring.dale_ratio),
            "autapses": bool(p.get("autapses", True)),
            "input_density": float(p.get("input_density", 1.0)), "rec_density": float(p.get("rec_density", 1.0)),
            "output_density": float(p.get("output_density", 1.0)), "regions": p.get("regions"),
            "fixed": fixed, **self.trainable,
            "initializer": initializers.serialize(self.initializer),
            "regularizers": [regularizers.serialize(r) for r in self.regularizers],
            "loss_function": losses.to_params(self.loss),
            "optimizer": optimizers.serialize(self.optimizer), "learning_rate": self.optimizer.learning_rate,
            "clip_grads": self.clip_grads, "seed": self.seed, "version": package_version(),
        }
        if self._explicit:
            cfg["explicit_masks"] = self._explicit
        if self._given:
            cfg["initial_arrays"] = sorted(self._given)
        if p.get("load_weights_path") is not None:
            cfg["load_weights_path"] = os.fspath(p["load_weights_path"])
        return json.loads(json.dumps(cfg))

    # ------------------------------------------------------------------------------------ PsychRNN's API
    def test(self, trial_batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on inputs of any batch size and length.

        Args:
            trial_batch: inputs ``(N_batch, N_steps, N_in)``.

        Returns:
            ``(outputs, states)``: ``(N_batch, N_steps, N_out)`` and ``(N_batch, N_steps, N_rec)``. With
            ``rec_noise > 0`` each call draws fresh noise (and advances the model's noise stream).
        """
        x = self._check_x(trial_batch, "trial_batch")
        if self._test_fn is None:
            self._test_fn = self._make_test()
        out, states = self._test_fn(x, self._next_seed())
        return out.numpy(), states.numpy()

    def train(self, trial_batch_generator: Any, train_params: Mapping[str, Any] | None = None):
        """Train as PsychRNN does (see :func:`agents.trainer.train` for every key of ``train_params``).

        Returns:
            ``(losses, training_time, initialization_time)``.
        """
        from .trainer import train

        return train(self, trial_batch_generator, train_params or {})

    def train_curric(self, train_params: Mapping[str, Any]) -> tuple[list[float], float, float]:
        """PsychRNN's curriculum entry point: :meth:`train` on ``train_params["curriculum"]``'s tasks.

        Returns:
            ``(losses, training_time, initialization_time)``, as :meth:`train`.

        Raises:
            ValueError: ``train_params`` has no ``curriculum``.
        """
        if train_params.get("curriculum") is None:
            raise ValueError("train_curric needs train_params['curriculum'] (an agents.Curriculum); got none. "
                             "Pass a curriculum, or call train(task, train_params)")
        return self.train(None, train_params)

    def get_weights(self) -> dict[str, Any]:
        """PsychRNN's weights dict: effective ``W_in, W_rec, W_out`` (masked and signed), biases, initial
        state, connectivity and Dale matrices, ``dale_ratio``; with ``train_tau`` also ``tau`` ``(N_rec,)`` ms."""
        return self._weights_dict()

    def save(self, save_path: str | os.PathLike) -> Path:
        """Write a weights file PsychRNN can read and that rebuilds this model with no other input
        (see :mod:`agents.weights`); ``.npz`` is appended when missing."""
        arrays = self.get_weights()
        if isinstance(self.optimizer, optimizers.Adam):
            for name, slots in zip(self._train_names, self.optimizer.slots):
                arrays[f"{name}/Adam"] = slots["m"].numpy()
                arrays[f"{name}/Adam_1"] = slots["v"].numpy()
        arrays.update({f"fixed_{k}": v.astype(np.uint8) for k, v in self._own_fixed().items()})
        meta = {"config": self.config(), "region_labels": self.region_labels, "seed": self.seed,
                "version": package_version()}
        return save_weights(save_path, arrays, meta)

    def destruct(self) -> None:
        """Release the compiled functions (PsychRNN's call to free a model's graph); the model stays usable."""
        self._step_fn = None
        self._test_fn = None

    # ------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write everything needed to continue exactly: raw variables, optimizer state (moments, step count,
        learning rate), the noise stream's position, fixed-synapse masks and the config. Atomic."""
        arrays: dict[str, Any] = {f"var/{k}": v.numpy() for k, v in self.vars.items()}
        arrays.update({f"opt/{k}": v for k, v in self.optimizer.state().items()})
        arrays.update({f"fixed/{k}": v for k, v in self._own_fixed().items()})
        arrays.update({f"mask/{k}": v for k, v in self.masks().items() if not k.startswith("fixed_")})
        arrays["noise_seed"] = np.int64(self._noise_seed)
        arrays["noise_counter"] = np.int64(self.noise_counter)
        arrays["config"] = np.array(json.dumps(self.config()))
        return write_npz(path, arrays)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` of a model with the same structure.

        Raises:
            ValueError: the checkpoint is of a different kind or size of model.
        """
        data = read_npz(path)
        cfg = json.loads(str(data["config"]))
        for key in ("model", "N_in", "N_rec", "N_out", "train_tau"):
            mine = self.kind if key == "model" else getattr(self, key)
            if cfg.get(key, False if key == "train_tau" else None) != mine:
                raise ValueError(f"{path}: checkpoint has {key}={cfg.get(key)!r}, this model has {mine!r}")
        for key, mask in self.masks().items():
            if f"mask/{key}" in data and not np.array_equal(data[f"mask/{key}"], mask):
                raise ValueError(f"{path}: the checkpoint's {key} differs from this model's; build the model "
                                 f"from the checkpoint's config (same seed)")
        for name, var in self.vars.items():
            var.assign(data[f"var/{name}"])
        self.optimizer.set_state({k[4:]: v for k, v in data.items() if k.startswith("opt/")})
        fixed = {k[6:]: np.asarray(v, dtype=bool) for k, v in data.items() if k.startswith("fixed/")}
        if self.wiring is not None:
            self.wiring.fixed = dict(fixed)
        if set(fixed) != set(self._fixed) or any(np.any(fixed[k] != self._fixed[k]) for k in fixed):
            self._fixed = fixed
            self._step_fn = None
        self._noise_seed = int(data["noise_seed"])
        self.noise_counter = int(data["noise_counter"])

    def set_fixed(self, fixed: Mapping[str, Any] | None) -> None:
        """Hold the entries where ``fixed[name]`` is nonzero at their current values (PsychRNN's
        ``fixed_weights``); None restores the model's own fixed synapses."""
        new = self._own_fixed()
        for name, m in (fixed or {}).items():
            if name == "tau" and "tau_raw" in self.vars:  # get_weights' tau is the variable tau_raw, per unit
                name = "tau_raw"
            if name not in self.vars:
                if name in _CONSTRAINT_KEYS or name == "dale_ratio":
                    continue  # PsychRNN accepts any get_weights key; only variables can be fixed
                raise ValueError(f"fixed_weights names {name!r}; this {self.kind} has {list(self.vars)}")
            m = np.broadcast_to(np.asarray(m).astype(bool), self.vars[name].shape)
            new[name] = new.get(name, np.zeros_like(m)) | m
        if set(new) != set(self._fixed) or any(np.any(new[k] != self._fixed[k]) for k in new):
            self._fixed = new
            self._step_fn = None
        self._clear_fixed_slots()

    def _clear_fixed_slots(self) -> None:
        for i, name in enumerate(self._train_names):
            if name in self._fixed and self.optimizer.slots:
                self.optimizer.clear(i, self._fixed[name])

    def __repr__(self) -> str:
        return f"{self.kind}(N_in={self.N_in}, N_rec={self.N_rec}, N_out={self.N_out}, seed={self.seed})"


class Basic(RNN):
    """PsychRNN's continuous-time rate network with biological constraints (see the module docstring).

    Trainable variables: ``init_state (1, N_rec)``, ``W_in (N_rec, N_in)``, ``W_rec (N_rec, N_rec)``,
    ``W_out (N_out, N_rec)``, ``b_rec (N_rec,)``, ``b_out (N_out,)``; the network uses the effective
    matrices of its :class:`~agents.constraints.Wiring`. With ``train_tau``, also ``tau_raw (N_rec,)``,
    dimensionless: ``tau = dt * (1 + softplus(tau_raw))`` ms, so ``alpha = dt / tau = 1 / (1 + softplus(tau_raw))``
    per unit, in ``(0, 1)``. It starts at ``tau`` drawn uniformly in ``tau_init_range`` (ms, default
    ``[dt, 2 dt]``: the 1-2 steps of Khajehabdollahi et al., ICLR 2024) from the model's seed, or at a weights
    file's ``tau``; weight files hold ``tau`` in ms, not ``tau_raw``.
    """

    kind = "Basic"
    supports_constraints = True

    def _init_arrays(self, rng):
        """The initializer's arrays, replaced by those given in the params; under Dale, exact zeros of
        plastic synapses made tiny so that they can learn (:meth:`~agents.constraints.Wiring.unstick_zeros`)."""
        arrays = {**self.initializer(self.N_in, self.N_rec, self.N_out, self.wiring, rng), **self._given}
        for name in constraints.MATRICES:
            if self._is_trainable(name):
                arrays[name] = self.wiring.unstick_zeros(name, arrays[name])
        order = ("init_state", "W_in", "W_rec", "W_out", "b_rec", "b_out")
        out = {k: arrays[k] for k in order}
        if self.train_tau:
            tau = self._file_tau
            if tau is None:  # init's second sub-stream: the other arrays are drawn as without train_tau
                low, high = self.tau_init_range
                rng_tau = np.random.default_rng(constraints.sub_seed(self.seed, "init", index=1))
                tau = rng_tau.uniform(low, high, self.N_rec)
            out["tau_raw"] = _tau_raw_of(tau, self.dt)
        return out

    def effective(self, name: str) -> tf.Tensor:
        """The effective ``W_in``, ``W_rec`` or ``W_out`` (masked and signed)."""
        return self.wiring.effective(name, self.vars[name])

    def _forward(self, x, seed, batch_major_states=True):
        v = self.vars
        W_in, W_rec, W_out = (self.effective(n) for n in constraints.MATRICES)
        # alpha = dt / tau: with train_tau per unit, 1 / (1 + softplus(tau_raw)), and differentiated
        alpha = 1.0 / (1.0 + tf.nn.softplus(v["tau_raw"])) if self.train_tau else tf.constant(self._alpha, tf.float32)
        n_batch, n_steps = tf.shape(x)[0], tf.shape(x)[1]
        # Work time-major, (T, B, units): the loop slices the first axis.
        x_tm = tf.transpose(x, [1, 0, 2])
        # alpha * (u_t @ W_in.T + b_rec) with alpha folded into the small weights: one pass over the block
        drive = tf.reshape(tf.nn.bias_add(tf.matmul(tf.reshape(x_tm, [-1, self.N_in]), tf.transpose(W_in) * alpha),
                                          v["b_rec"] * alpha), [n_steps, n_batch, self.N_rec])
        if self.rec_noise > 0:
            sd = tf.sqrt(2.0 * alpha * self.rec_noise ** 2)
            drive += sd * tf.random.stateless_normal([n_steps, n_batch, self.N_rec], seed=seed)
        s0 = tf.tile(v["init_state"], [n_batch, 1])
        Wa = tf.transpose(W_rec) * alpha                                            # [pre, post] * alpha_post
        states_tm, rates_tm = rate_recurrence(s0, drive, Wa, 1.0 - alpha, self._transfer_name or self.transfer,
                                              decay_gradient=self.train_tau)
        out_tm = tf.reshape(tf.matmul(tf.reshape(rates_tm, [-1, self.N_rec]), W_out, transpose_b=True),
                            [n_steps, n_batch, self.N_out]) + v["b_out"]
        # Means over all elements (losses, rate penalties) do not care about the axis order: the big
        # (T, B, N_rec) arrays are transposed only when someone needs them batch-major.
        return {"outputs": tf.transpose(out_tm, [1, 0, 2]), "rates": rates_tm,
                "states": tf.transpose(states_tm, [1, 0, 2]) if batch_major_states else None,
                "W_in": W_in, "W_rec": W_rec, "W_out": W_out}

    def _weights_dict(self):
        out = {k: v.numpy() for k, v in self.vars.items() if k != "tau_raw"}
        if self.train_tau:
            out["tau"] = self.time_constants()
        for name in constraints.MATRICES:
            out[name] = np.asarray(self.wiring.effective(name, out[name]), dtype=np.float32)
        out.update(self.wiring.psychrnn_arrays())
        out["dale_ratio"] = self.wiring.dale_ratio
        return out


def _file_kind(path: str | os.PathLike | None) -> str:
    """The model kind a weights file records (``"Basic"`` without a file, and for PsychRNN's files)."""
    if path is None:
        return "Basic"
    meta = load_weights(path)[1]
    return str((meta or {}).get("config", {}).get("model", "Basic"))
