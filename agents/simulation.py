"""PsychRNN's NumPy simulators (``psychrnn.backend.simulation``) over our simulator, :class:`agents.simulate.Network`.

A PsychRNN analysis script changes one import and keeps its calls::

    from psychrnn.backend.simulation import BasicSimulator     # PsychRNN 1.0.0
    from agents.simulation import BasicSimulator                # skinnerbox (or: from agents import ...)

    sim = BasicSimulator(weights_path="dm.npz", params={"dt": 10, "tau": 100})
    outputs, states = sim.run_trials(x)                         # (N_batch, N_steps, N_out), (..., N_rec)
    outputs, states = sim.run_trials(x, t_connectivity=masks)   # masks (N_steps, N_rec, N_rec)

The names, arguments and meanings are those of PsychRNN 1.0.0's ``psychrnn/backend/simulation.py``
(murraylab/PsychRNN, tag v1.0.0), read for this module and re-implemented, not copied:

- one weight source: ``weights`` (a dict of arrays, or ``np.load(path)``), ``weights_path`` (a ``.npz``,
  PsychRNN's or ours) or ``rnn_model`` (a model with ``get_weights()``: our ``agents.Basic``/``LSTM``, or
  PsychRNN's own ``Basic``). With ``rnn_model`` the time constant, noise and transfer function come from the
  model; otherwise from ``params`` (``alpha``, or ``dt`` and ``tau`` in ms; ``rec_noise``, default 0), and
  our own files supply what ``params`` leaves out.
- the weights are used as given: ``W_in, W_rec, W_out`` are the effective matrices (``get_weights()`` and
  both file formats hold them masked and signed), so a dict edited by hand runs as edited.
- ``t_connectivity``: one ``(N_rec, N_rec)`` mask ``[post, pre]`` per time step, multiplying ``W_rec``
  elementwise at that step only (``W_in`` and ``W_out`` untouched), PsychRNN's ablation tool. Zeroing
  column ``j`` during a window hides unit ``j`` from the other units then, while the outputs still read it
  (to hide it from the outputs too, use :class:`agents.simulate.Silence`).
- the update is PsychRNN's Euler step, noise included:
  ``x_t = (1 - alpha) x_{t-1} + alpha (f(x_{t-1}) (W_rec * C_t)^T + u_t W_in^T + b_rec) + sqrt(2 alpha
  rec_noise^2) N(0, 1)`` and ``y_t = f(x_t) W_out^T + b_out``; ``states`` are the ``x_t``.

Where it differs from PsychRNN 1.0.0:

- a bad argument is a ``ValueError`` naming it. Two weight sources, or ``params`` with ``rnn_model``, are
  refused as in PsychRNN, which raises ``UserWarning`` for them.
- arrays are float32, as the TensorFlow model's; outputs match it to float32 precision.
- noise: NumPy's stream. Without ``seed`` each run draws its seed from NumPy's global generator, so
  ``np.random.seed(...)`` at the top of a script reproduces a run, as in PsychRNN (the draws differ from
  PsychRNN's and from TensorFlow's); ``seed=`` gives the simulator a stream of its own.
- :class:`LSTMSimulator` runs our LSTM (see its docstring), not PsychRNN's.

NumPy only: importing this module does not import TensorFlow.
"""
from __future__ import annotations

import abc
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .simulate import NUMPY_TRANSFER, Network, Perturbation, Transfer
from .weights import load_weights

__all__ = ["BasicSimulator", "LSTMSimulator", "Simulator", "relu", "sigmoid"]


def relu(x: np.ndarray) -> np.ndarray:
    """Rectified linear transfer function, ``max(x, 0)`` (PsychRNN's default)."""
    return np.maximum(x, 0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-x))``, written with tanh so that it cannot overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


_LSTM_GATES = ("f", "i", "c", "o")


class Simulator(abc.ABC):
    """Base class of the simulators (not a simulator itself): resolves the weights and the parameters.

    Args:
        rnn_model: a model with ``get_weights()`` (``agents.Basic``/``LSTM``, or PsychRNN's ``Basic``); its
            weights, time constant, noise level and transfer function are used.
        params: without ``rnn_model``: ``alpha`` (dt / tau), or ``dt`` and ``tau`` (ms; ``tau`` a scalar or one
            per unit ``(N_rec,)``); ``rec_noise`` (default 0). Other keys (a task's params) are ignored. For
            our own weights files the file's values fill in what ``params`` leaves out.
        weights_path: a ``.npz`` weights file, PsychRNN's or ours (``.npz`` may be left off).
        weights: a mapping of arrays (``get_weights()``, :func:`agents.load_weights`' arrays, ``np.load(path)``).
        transfer_function: a name from :data:`agents.simulate.NUMPY_TRANSFER` or a NumPy callable; default: the
            model's or file's, else relu. A name that differs from the one the model or file records is a
            ``ValueError``.

    Exactly one of ``rnn_model``, ``weights_path`` and ``weights`` is given.

    Attributes:
        weights: the weights mapping (as given, as loaded, or the model's ``get_weights()``).
        params: the parameters in use: the model's or file's record, updated by ``params``.
        N_in, N_rec, N_out: sizes.

    Raises:
        ValueError: no weight source or more than one, ``params`` with ``rnn_model``, a model or file of
            another kind, an array of the wrong shape (named, with the shape expected), missing parameters.
    """

    kind = "RNN"  # the model kind this simulator runs (a model's ``kind``, a file's ``config["model"]``)

    N_in: int
    N_rec: int
    N_out: int

    def __init__(self, rnn_model: Any = None, params: Mapping[str, Any] | None = None,
                 weights_path: str | os.PathLike | None = None, weights: Mapping[str, Any] | None = None,
                 transfer_function: Transfer | None = None):
        name = type(self).__name__
        given = [arg for arg, val in (("rnn_model", rnn_model), ("weights_path", weights_path),
                                      ("weights", weights)) if val is not None]
        if len(given) != 1:
            raise ValueError(f"{name}: pass exactly one of rnn_model=, weights_path= or weights=, got "
                             f"{', '.join(given) if given else 'none'}")
        if rnn_model is not None and params is not None:
            raise ValueError(f"{name}: params= is not used with rnn_model= (the model's dt, tau and rec_noise "
                             f"are); pass weights=rnn_model.get_weights() with params= to override them")
        if params is not None and not isinstance(params, Mapping):
            raise ValueError(f"{name}: params must be a dict, got {type(params).__name__}")
        self._labels: list[str] | None = None
        self._seed_recorded: int | None = None
        recorded: dict[str, Any] = {}
        if rnn_model is not None:
            self._where = "rnn_model.get_weights()"
            kind = getattr(rnn_model, "kind", None)
            if kind is not None and kind != self.kind:
                raise ValueError(f"{name} runs {self.kind} models; rnn_model is a {kind}")
            if not callable(getattr(rnn_model, "get_weights", None)):
                raise ValueError(f"{name}: rnn_model must have get_weights() (an agents.{self.kind}), got "
                                 f"{type(rnn_model).__name__}")
            self.weights = rnn_model.get_weights()
            recorded = {k: getattr(rnn_model, k) for k in ("dt", "tau", "alpha", "rec_noise")
                        if getattr(rnn_model, k, None) is not None}
            recorded["transfer_function"] = _transfer_label(getattr(rnn_model, "transfer_function", None))
            self._labels = getattr(rnn_model, "region_labels", None)
            self._seed_recorded = getattr(rnn_model, "seed", None)
            self._check_model(rnn_model)
        elif weights_path is not None:
            self._where = os.fspath(weights_path)
            self.weights, meta = load_weights(weights_path)
            if meta is not None:
                recorded = dict(meta.get("config", {}))
                if recorded.get("model", self.kind) != self.kind:
                    raise ValueError(f"{name} runs {self.kind} models; {os.fspath(weights_path)} holds a "
                                     f"{recorded['model']}")
                self._labels = meta.get("region_labels")
                self._seed_recorded = recorded.get("seed")
            self._check_file(weights_path, meta)
        else:
            self._where = "weights"
            if not hasattr(weights, "__getitem__"):
                raise ValueError(f"{name}: weights must be a mapping of arrays (get_weights(), np.load(path)), "
                                 f"got {type(weights).__name__}")
            self.weights = weights
        if "tau" in self.weights and not {"tau", "alpha"} & set(params or {}):
            recorded["tau"] = np.asarray(self.weights["tau"], dtype=np.float64)  # per unit, as learned (train_tau)
            recorded.pop("alpha", None)
        self.params: dict[str, Any] = {**recorded, **(params or {})}
        self._recorded_transfer = recorded.get("transfer_function")
        self._transfer_arg = transfer_function

    # ------------------------------------------------------------------------ hooks for the subclasses
    def _check_model(self, rnn_model: Any) -> None:
        """Refuse a model this simulator cannot reproduce (a hook; the base accepts any)."""

    def _check_file(self, path: str | os.PathLike, meta: dict | None) -> None:
        """Refuse a file this simulator cannot reproduce (a hook; the base accepts any)."""

    def _array(self, key: str, shape: tuple[int, ...], what: str, accept: Sequence[tuple[int, ...]] = ()) -> np.ndarray:
        """``weights[key]`` as float32 of ``shape`` (also from a shape in ``accept``, reshaped).

        Raises:
            ValueError: the key is missing or the shape is neither, naming key, shape and ``what`` it should be.
        """
        try:
            raw = self.weights[key]
        except KeyError:
            raise ValueError(f"{type(self).__name__}: {self._where} has no {key!r} array "
                             f"(a {self.kind} needs it: {what})") from None
        arr = np.array(raw, dtype=np.float32)  # a copy: editing the simulator's arrays leaves the source alone
        if arr.shape == shape:
            return arr
        if arr.shape in accept:
            return arr.reshape(shape)
        raise ValueError(f"{type(self).__name__}: {self._where}[{key!r}] has shape {arr.shape}, expected "
                         f"{what} = {shape}")

    def _check_input(self, trial_input: Any) -> np.ndarray:
        x = np.asarray(trial_input, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != self.N_in:
            raise ValueError(f"trial_input must be (N_batch, N_steps, N_in) with N_in={self.N_in}, got shape "
                             f"{x.shape}")
        return x

    # -------------------------------------------------------------------------------- PsychRNN's API
    @abc.abstractmethod
    def rnn_step(self, *args: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """One time step for a batch (signature per subclass)."""

    @abc.abstractmethod
    def run_trials(self, trial_input: np.ndarray, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(outputs (N_batch, N_steps, N_out), states (N_batch, N_steps, N_rec))`` for inputs
        ``(N_batch, N_steps, N_in)``."""


class _StepMask(Perturbation):
    """A ``t_connectivity`` mask held over a run of steps: a gain on ``W_rec`` only, on given step indices."""

    def __init__(self, on: np.ndarray, mask: np.ndarray):
        super().__init__()
        self._on, self._mask = on, mask

    def active(self, t_ms: np.ndarray) -> np.ndarray:
        return self._on

    def gains(self, net: Network) -> tuple[np.ndarray, None]:
        return self._mask, None


class BasicSimulator(Simulator):
    """PsychRNN's ``BasicSimulator``: a ``Basic`` rate network run in NumPy by :class:`agents.simulate.Network`.

    See :class:`Simulator` for the arguments (and the module docstring for the equations).

    Args:
        seed: keyword only: the noise stream's seed (None: each run draws one from ``np.random``).

    Attributes:
        network: the :class:`~agents.simulate.Network` that runs (its region labels, when the model or file
            has them, make :class:`~agents.simulate.Silence` by region name work on it).
        W_in, W_rec, W_out, b_rec, b_out, init_state: the network's float32 arrays (``init_state`` is
            ``(1, N_rec)``); assigning one replaces it for later runs.
        alpha: ``dt / tau`` (float32, per unit when ``tau`` is). rec_noise: the noise level (settable).
        transfer_function: the NumPy transfer function, a callable.
    """

    kind = "Basic"

    def __init__(self, rnn_model: Any = None, params: Mapping[str, Any] | None = None,
                 weights_path: str | os.PathLike | None = None, weights: Mapping[str, Any] | None = None,
                 transfer_function: Transfer | None = None, *, seed: int | None = None):
        super().__init__(rnn_model, params, weights_path, weights, transfer_function)
        W_in = np.array(self._array_any("W_in"), dtype=np.float32)
        if W_in.ndim != 2:
            raise ValueError(f"BasicSimulator: {self._where}['W_in'] has shape {W_in.shape}, expected "
                             f"(N_rec, N_in)")
        self.N_rec, self.N_in = W_in.shape
        W_out = np.array(self._array_any("W_out"), dtype=np.float32)
        if W_out.ndim != 2 or W_out.shape[1] != self.N_rec:
            raise ValueError(f"BasicSimulator: {self._where}['W_out'] has shape {W_out.shape}, expected "
                             f"(N_out, N_rec) with N_rec={self.N_rec} (from W_in {W_in.shape})")
        self.N_out = W_out.shape[0]
        n, m = self.N_rec, self.N_out
        W_rec = self._array("W_rec", (n, n), "(N_rec, N_rec)")
        b_rec = self._array("b_rec", (n,), "(N_rec,)", accept=[(1, n)])
        b_out = self._array("b_out", (m,), "(N_out,)", accept=[(1, m)])
        init_state = self._array("init_state", (1, n), "(1, N_rec)", accept=[(n,)])
        dt, tau = self._time_constants()
        transfer = _numpy_transfer(self._transfer_arg, self._recorded_transfer,
                                   self.params.get("transfer_function"))
        self.network = Network(W_in, W_rec, W_out, b_rec, b_out, init_state, dt, tau, transfer,
                               _rec_noise(self.params.get("rec_noise")), self._labels, self._seed_recorded)
        self.transfer_function: Callable[[np.ndarray], np.ndarray] = (
            transfer if callable(transfer) else NUMPY_TRANSFER[transfer])
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    def _check_file(self, path: str | os.PathLike, meta: dict | None) -> None:
        if meta is None and "init_cell" in self.weights:
            raise ValueError(f"BasicSimulator: {os.fspath(path)} holds a PsychRNN LSTM's weights, not a Basic "
                             f"network's (and PsychRNN's LSTM is not reproduced here: see LSTMSimulator)")

    def _array_any(self, key: str) -> Any:
        try:
            return self.weights[key]
        except KeyError:
            raise ValueError(f"BasicSimulator: {self._where} has no {key!r} array (a Basic network's weights: "
                             f"W_in, W_rec, W_out, b_rec, b_out, init_state)") from None

    def _time_constants(self) -> tuple[float, Any]:
        """``(dt, tau)`` for the network. ``alpha`` in params wins over ``dt``/``tau`` that disagree with it (as in
        PsychRNN); given alone, time is counted in steps (``dt = 1``, ``tau = 1 / alpha``)."""
        p = self.params
        dt, tau, alpha = p.get("dt"), p.get("tau"), p.get("alpha")
        if tau is not None:
            tau = np.asarray(tau, dtype=np.float64)
            if not (tau.ndim == 0 or tau.shape == (self.N_rec,)) or not np.all(tau > 0):
                raise ValueError(f"BasicSimulator: tau must be a positive number or one per unit ({self.N_rec},) "
                                 f"in ms, got shape {tau.shape}")
        if dt is not None and not float(dt) > 0:
            raise ValueError(f"BasicSimulator: dt must be > 0 ms, got {dt!r}")
        if alpha is not None:
            alpha = np.asarray(alpha, dtype=np.float64)
            if not (alpha.ndim == 0 or alpha.shape == (self.N_rec,)) or not np.all(alpha > 0):
                raise ValueError(f"BasicSimulator: alpha must be a positive number or one per unit "
                                 f"({self.N_rec},), got shape {alpha.shape}")
            if dt is None or tau is None or not np.allclose(np.float32(dt) / tau.astype(np.float32), alpha,
                                                            rtol=1e-6, atol=0):
                return 1.0, _scalar_or_array(1.0 / alpha)
        if dt is None or tau is None:
            missing = [k for k, v in (("dt", dt), ("tau", tau)) if v is None]
            raise ValueError(f"BasicSimulator: {self._where} does not say {' or '.join(missing)}: pass "
                             f"params={{'dt': ..., 'tau': ...}} (ms) or params={{'alpha': dt / tau}}")
        return float(dt), _scalar_or_array(tau)

    # ------------------------------------------------------------------------------ PsychRNN's attributes
    W_in = property(lambda self: self.network.W_in, lambda self, v: self._set("W_in", v))
    W_rec = property(lambda self: self.network.W_rec, lambda self, v: self._set("W_rec", v))
    W_out = property(lambda self: self.network.W_out, lambda self, v: self._set("W_out", v))
    b_rec = property(lambda self: self.network.b_rec, lambda self, v: self._set("b_rec", v))
    b_out = property(lambda self: self.network.b_out, lambda self, v: self._set("b_out", v))
    init_state = property(lambda self: self.network.init_state, lambda self, v: self._set("init_state", v))

    def _set(self, key: str, value: Any) -> None:
        """Replace one of the network's arrays (a copy, as float32), keeping its shape."""
        shape = getattr(self.network, key).shape
        arr = np.array(value, dtype=np.float32)
        if arr.shape not in (shape, tuple(d for d in shape if d != 1)):
            raise ValueError(f"{key} must have shape {shape}, got {arr.shape}")
        setattr(self.network, key, arr.reshape(shape))

    @property
    def alpha(self) -> Any:
        """``dt / tau`` in float32, as the network computes it (an array ``(N_rec,)`` when tau is per unit)."""
        return (np.float32(self.network.dt) / np.asarray(self.network.tau, dtype=np.float32)).astype(np.float32)

    @property
    def rec_noise(self) -> float:
        """The recurrent noise level (0: deterministic)."""
        return self.network.rec_noise

    @rec_noise.setter
    def rec_noise(self, value: float) -> None:
        self.network.rec_noise = _rec_noise(value)

    # ---------------------------------------------------------------------------------- PsychRNN's API
    def run_trials(self, trial_input: np.ndarray,
                   t_connectivity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on a batch of trials, optionally with time-varying recurrent connectivity.

        Args:
            trial_input: inputs ``(N_batch, N_steps, N_in)`` (zeros to run the network autonomously).
            t_connectivity: ``(N_steps, N_rec, N_rec)``: at step ``i``, ``W_rec * t_connectivity[i]`` is used
                (``[post, pre]``: zeroing column ``j`` hides unit ``j`` from the others). None: all ones.

        Returns:
            ``(outputs, states)``: ``(N_batch, N_steps, N_out)`` and ``(N_batch, N_steps, N_rec)``, float32.

        Raises:
            ValueError: ``trial_input`` or ``t_connectivity`` of the wrong shape (both shapes named).
        """
        x = self._check_input(trial_input)
        masks = () if t_connectivity is None else self._step_masks(t_connectivity, x.shape[1])
        return self.network.run(x, masks, rec_noise=self.rec_noise, seed=self._run_seed())

    def rnn_step(self, state: np.ndarray, rnn_in: np.ndarray,
                 t_connectivity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One time step: iterating it from ``init_state`` reproduces :meth:`run_trials` (without noise: with
        noise the draws come from the same kind of stream, not the same numbers).

        Args:
            state: ``(N_batch, N_rec)``, the state ``x_{t-1}``.
            rnn_in: ``(N_batch, N_in)``, the input ``u_t``.
            t_connectivity: ``(N_rec, N_rec)``, the mask on ``W_rec`` for this step (None: all ones).

        Returns:
            ``(output (N_batch, N_out), new_state (N_batch, N_rec))``, float32.

        Raises:
            ValueError: an argument of the wrong shape (its shape and the one expected named).
        """
        s = np.asarray(state, dtype=np.float32)
        u = np.asarray(rnn_in, dtype=np.float32)
        if s.ndim != 2 or s.shape[1] != self.N_rec:
            raise ValueError(f"state must be (N_batch, N_rec) with N_rec={self.N_rec}, got shape {s.shape}")
        if u.shape != (s.shape[0], self.N_in):
            raise ValueError(f"rnn_in must be (N_batch, N_in) = ({s.shape[0]}, {self.N_in}) (N_batch from state "
                             f"{s.shape}), got shape {u.shape}")
        net, alpha, f = self.network, self.alpha, self.transfer_function
        W_rec = net.W_rec
        if t_connectivity is not None:
            mask = np.asarray(t_connectivity, dtype=np.float32)
            if mask.shape != (self.N_rec, self.N_rec):
                raise ValueError(f"t_connectivity must be (N_rec, N_rec) = ({self.N_rec}, {self.N_rec}) for one "
                                 f"step, got shape {mask.shape}")
            W_rec = W_rec * mask
        # the same operations, in the same order, as Network.run
        Wa = (W_rec.T * alpha).astype(np.float32)
        new = (1.0 - alpha) * s + f(s) @ Wa + alpha * (u @ net.W_in.T + net.b_rec)
        if self.rec_noise > 0:
            draw = (self._rng.standard_normal(new.shape, dtype=np.float32) if self._rng is not None
                    else np.random.standard_normal(new.shape).astype(np.float32))
            new = new + np.sqrt(2.0 * alpha * self.rec_noise ** 2) * draw
        new = new.astype(np.float32)
        return (f(new) @ net.W_out.T + net.b_out).astype(np.float32), new

    # --------------------------------------------------------------------------------------- helpers
    def _step_masks(self, t_connectivity: Any, n_steps: int) -> list[_StepMask]:
        """``t_connectivity`` as perturbations of the network: one per run of identical steps not all ones."""
        tc = np.asarray(t_connectivity, dtype=np.float32)
        expected = (n_steps, self.N_rec, self.N_rec)
        if tc.shape != expected:
            raise ValueError(f"t_connectivity must be (N_steps, N_rec, N_rec) = {expected} (N_steps from "
                             f"trial_input), got shape {tc.shape}")
        plain = np.all(tc == 1.0, axis=(1, 2))
        same_as_previous = np.zeros(n_steps, dtype=bool)
        same_as_previous[1:] = np.all(tc[1:] == tc[:-1], axis=(1, 2))
        masks: list[_StepMask] = []
        for i in range(n_steps):
            if plain[i]:
                continue
            if masks and same_as_previous[i] and masks[-1]._on[i - 1]:
                masks[-1]._on[i] = True
                continue
            on = np.zeros(n_steps, dtype=bool)
            on[i] = True
            masks.append(_StepMask(on, tc[i]))
        return masks

    def _run_seed(self) -> int | None:
        if self.rec_noise == 0:
            return None
        if self._rng is not None:
            return int(self._rng.integers(0, 2 ** 63 - 1))
        return int(np.random.randint(0, 2 ** 63 - 1, dtype=np.int64))


class LSTMSimulator(Simulator):
    """PsychRNN's ``LSTMSimulator``, for our :class:`agents.LSTM` (see :class:`Simulator` for the arguments;
    ``params`` and ``transfer_function`` are not used: an LSTM has neither time constant nor noise).

    Our LSTM is the textbook cell, and PsychRNN's is not, so this runs ours:
    ``[f, i, g, o] = [h_{t-1}, u_t] W_{f,i,c,o} + b``, ``c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)``,
    ``h_t = sigmoid(o) tanh(c_t)``, ``y_t = h_t W_out^T + b_out``. The weight layout is PsychRNN's (gate
    matrices ``(N_rec + N_in, N_rec)``, hidden units first; ``W_out (N_out, N_rec)``); the differences:

    - PsychRNN's cell gives ``h_t = sigmoid(o) sigmoid(c_t)`` (a sigmoid where ours has tanh);
    - PsychRNN keeps one initial state per trial (``init_hidden``, ``init_cell`` ``(N_batch, N_rec)``, and its
      simulator uses the first row); ours are ``(1, N_rec)``, shared by all trials.

    A PsychRNN LSTM weights file or model is therefore refused (``ValueError``), and so is a weights dict
    whose initial states have more than one row. ``states`` are the hidden states ``h_t``.

    Attributes:
        init_hidden, init_cell: ``(1, N_rec)``. W_f, W_i, W_c, W_o: ``(N_rec + N_in, N_rec)``.
        b_f, b_i, b_c, b_o: ``(N_rec,)``. W_out: ``(N_out, N_rec)``. b_out: ``(N_out,)``. All float32.
    """

    kind = "LSTM"

    def __init__(self, rnn_model: Any = None, params: Mapping[str, Any] | None = None,
                 weights_path: str | os.PathLike | None = None, weights: Mapping[str, Any] | None = None):
        super().__init__(rnn_model, params, weights_path, weights)
        try:
            W_out = np.array(self.weights["W_out"], dtype=np.float32)
            n_cat = np.shape(self.weights["W_f"])[0]
        except KeyError as err:
            raise ValueError(f"LSTMSimulator: {self._where} has no {err.args[0]!r} array (an LSTM's weights: "
                             f"init_hidden, init_cell, W_f, W_i, W_c, W_o, b_f, b_i, b_c, b_o, W_out, b_out)") from None
        if W_out.ndim != 2:
            raise ValueError(f"LSTMSimulator: {self._where}['W_out'] has shape {W_out.shape}, expected (N_out, N_rec)")
        self.N_out, self.N_rec = W_out.shape
        self.N_in = int(n_cat) - self.N_rec
        if self.N_in < 1:
            raise ValueError(f"LSTMSimulator: {self._where}['W_f'] has {n_cat} rows, expected N_rec + N_in with "
                             f"N_rec={self.N_rec} (from W_out {W_out.shape}) and N_in >= 1")
        n = self.N_rec
        for key in ("init_hidden", "init_cell"):
            try:
                rows = np.shape(self.weights[key])
            except KeyError:
                rows = ()  # _array names the missing key
            if len(rows) == 2 and rows[0] > 1 and rows[1] == n:
                raise ValueError(f"LSTMSimulator: {self._where}[{key!r}] has shape {rows}, one initial state per "
                                 f"trial as PsychRNN's LSTM keeps them; ours is (1, N_rec) = (1, {n}), and "
                                 f"PsychRNN's cell (a sigmoid where ours has tanh) is not reproduced")
            setattr(self, key, self._array(key, (1, n), "(1, N_rec)", accept=[(n,)]))
        for g in _LSTM_GATES:
            setattr(self, f"W_{g}", self._array(f"W_{g}", (n + self.N_in, n), "(N_rec + N_in, N_rec)"))
        for g in _LSTM_GATES:
            setattr(self, f"b_{g}", self._array(f"b_{g}", (n,), "(N_rec,)", accept=[(1, n)]))
        self.W_out = W_out
        self.b_out = self._array("b_out", (self.N_out,), "(N_out,)", accept=[(1, self.N_out)])

    def _check_model(self, rnn_model: Any) -> None:
        if getattr(rnn_model, "kind", None) != "LSTM":
            raise ValueError(f"LSTMSimulator runs agents.LSTM models; {type(rnn_model).__module__}."
                             f"{type(rnn_model).__name__} is not one (PsychRNN's LSTM, whose cell has a sigmoid "
                             f"where ours has tanh, is not reproduced)")

    def _check_file(self, path: str | os.PathLike, meta: dict | None) -> None:
        if meta is None:
            raise ValueError(f"LSTMSimulator: {os.fspath(path)} is a PsychRNN weights file; PsychRNN's LSTM (a "
                             f"sigmoid where ours has tanh, one initial state per trial) is not reproduced: "
                             f"run it with PsychRNN's own simulator, or train an agents.LSTM")

    def _kernels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(W_h (N_rec, 4 N_rec), W_u (N_in, 4 N_rec), b (4 N_rec,))``, gates in the order f, i, c, o."""
        W = np.concatenate([getattr(self, f"W_{g}") for g in _LSTM_GATES], axis=1)
        b = np.concatenate([getattr(self, f"b_{g}") for g in _LSTM_GATES])
        return W[:self.N_rec], W[self.N_rec:], b

    def _cell(self, h: np.ndarray, c: np.ndarray, pre: np.ndarray, W_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, i, g, o = np.split(pre + h @ W_h, 4, axis=1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c

    def rnn_step(self, hidden: np.ndarray, cell: np.ndarray,
                 rnn_in: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One time step (PsychRNN's argument order).

        Args:
            hidden: ``(N_batch, N_rec)``, ``h_{t-1}``. cell: ``(N_batch, N_rec)``, ``c_{t-1}``.
            rnn_in: ``(N_batch, N_in)``, ``u_t``.

        Returns:
            ``(output (N_batch, N_out), new_hidden (N_batch, N_rec), new_cell (N_batch, N_rec))``, float32.

        Raises:
            ValueError: an argument of the wrong shape (its shape and the one expected named).
        """
        h = np.asarray(hidden, dtype=np.float32)
        c = np.asarray(cell, dtype=np.float32)
        u = np.asarray(rnn_in, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.N_rec:
            raise ValueError(f"hidden must be (N_batch, N_rec) with N_rec={self.N_rec}, got shape {h.shape}")
        for arg, arr, shape in (("cell", c, h.shape), ("rnn_in", u, (h.shape[0], self.N_in))):
            if arr.shape != shape:
                raise ValueError(f"{arg} must have shape {shape} (N_batch from hidden {h.shape}), got {arr.shape}")
        W_h, W_u, b = self._kernels()
        h, c = self._cell(h, c, u @ W_u + b, W_h)
        return h @ self.W_out.T + self.b_out, h, c

    def run_trials(self, trial_input: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on a batch of trials.

        Args:
            trial_input: inputs ``(N_batch, N_steps, N_in)``.

        Returns:
            ``(outputs (N_batch, N_steps, N_out), states (N_batch, N_steps, N_rec))``: states are ``h_t``.

        Raises:
            ValueError: ``trial_input`` of the wrong shape (its shape and the one expected named).
        """
        x = self._check_input(trial_input)
        n_batch, n_steps, _ = x.shape
        W_h, W_u, b = self._kernels()
        pre = x @ W_u + b                                                        # (B, T, 4 N_rec)
        h = np.repeat(self.init_hidden, n_batch, axis=0)
        c = np.repeat(self.init_cell, n_batch, axis=0)
        states = np.empty((n_batch, n_steps, self.N_rec), dtype=np.float32)
        for t in range(n_steps):
            h, c = self._cell(h, c, pre[:, t], W_h)
            states[:, t] = h
        return (states @ self.W_out.T + self.b_out).astype(np.float32), states


# ------------------------------------------------------------------------------------------- helpers
def _scalar_or_array(v: Any) -> Any:
    arr = np.asarray(v, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr


def _rec_noise(value: Any) -> float:
    value = 0.0 if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 <= value < np.inf:
        raise ValueError(f"rec_noise must be a non-negative finite number, got {value!r}")
    return float(value)


def _transfer_label(fn: Any) -> str | None:
    """A transfer function's name: the string itself, or a callable's ``__name__`` (``tf.nn.relu`` -> relu)."""
    if fn is None or isinstance(fn, str):
        return fn
    return getattr(fn, "__name__", None)


def _numpy_transfer(given: Transfer | None, recorded: str | None, from_params: Any) -> Transfer:
    """The NumPy transfer function: ``given``, else the model's or file's ``recorded`` name, else a name in
    ``params``, else relu.

    Raises:
        ValueError: an unknown name; ``given`` named differently from a known ``recorded`` one (PsychRNN
            refuses that too); a recorded custom function (stored by reference) and nothing given.
    """
    known = recorded if recorded in NUMPY_TRANSFER else None
    if given is None:
        if known is not None:
            return known
        if recorded is not None:
            raise ValueError(f"the network's transfer function is {recorded!r}, which NumPy cannot run: pass "
                             f"transfer_function= its NumPy equivalent (a callable, array -> array)")
        if isinstance(from_params, str) and from_params in NUMPY_TRANSFER:
            return from_params
        return "relu"
    if isinstance(given, str):
        if given not in NUMPY_TRANSFER:
            raise ValueError(f"transfer_function must be one of {', '.join(NUMPY_TRANSFER)} or a NumPy callable, "
                             f"got {given!r}")
        name = given
    elif callable(given):
        name = getattr(given, "__name__", None)
    else:
        raise ValueError(f"transfer_function must be a name or a NumPy callable, got {given!r}")
    if known is not None and name != known:
        raise ValueError(f"transfer_function={name!r} does not match the network's transfer function {known!r}; "
                         f"pass {known!r} (or a NumPy callable named {known!r}), or leave it out")
    return given
