"""Run a saved ``Basic`` network in NumPy (no TensorFlow), optionally perturbing its recurrent weights.

The same equations as :class:`agents.rnn.Basic`, in float32, with the same effective matrices (the
constraint objects of :mod:`agents.constraints` work on NumPy arrays too), so outputs match the TensorFlow
model to float32 precision. Useful for analysis: silencing units or cutting region-to-region connections
during chosen time windows, on any inputs, with any batch size.

Example::

    net = Network.load("weights.npz")
    out, states = net.run(x)                                             # x: (N_batch, N_steps, N_in)
    silence = Silence(units=np.arange(10), start_ms=500, stop_ms=800)
    cut = Cut("PFC", "PPC")                                              # the PFC -> PPC synapses, always
    out, states = net.run(x, perturbations=[silence, cut])
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from . import constraints
from .weights import load_weights

#: Slope of ``"leaky_relu"`` below zero (here and in :mod:`agents.ops`): PyTorch's ``nn.LeakyReLU()`` default,
#: which Khajehabdollahi et al. (ICLR 2024; LevinaLab/rnn_timescale_public, ``src/models/RNN_Stack.py``) use.
#: TensorFlow's ``tf.nn.leaky_relu`` defaults to 0.2, so that function is not recognised as this name.
LEAKY_RELU_SLOPE = 0.01

# a transfer function: a name from NUMPY_TRANSFER or a NumPy callable, float32 array -> array of its shape
Transfer = Union[str, Callable[[np.ndarray], np.ndarray]]

NUMPY_TRANSFER = {
    "relu": lambda s: np.maximum(s, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda s: 1.0 / (1.0 + np.exp(-s)),
    "softplus": lambda s: np.logaddexp(0.0, s).astype(s.dtype),
    "linear": lambda s: s,
    "retanh": lambda s: np.maximum(np.tanh(s), 0.0),
    "leaky_relu": lambda s: np.where(s > 0, s, np.float32(LEAKY_RELU_SLOPE) * s),
}


class Perturbation:
    """Base class: a multiplicative gain on the effective ``W_rec`` (and ``W_out``) during a time window.

    Args:
        start_ms: first time affected (inclusive; step ``i`` is at ``i * dt`` ms). stop_ms: end (exclusive);
            None = until the end of the trial.
    """

    def __init__(self, start_ms: float = 0.0, stop_ms: float | None = None):
        if stop_ms is not None and stop_ms < start_ms:
            raise ValueError(f"{type(self).__name__}: stop_ms={stop_ms} is before start_ms={start_ms}")
        self.start_ms = float(start_ms)
        self.stop_ms = None if stop_ms is None else float(stop_ms)

    def active(self, t_ms: np.ndarray) -> np.ndarray:
        """Boolean per step: is the perturbation on at these times?"""
        on = t_ms >= self.start_ms
        return on if self.stop_ms is None else on & (t_ms < self.stop_ms)

    def gains(self, net: "Network") -> tuple[np.ndarray, np.ndarray | None]:
        """``(gain on W_rec (N_rec, N_rec), gain on W_out (N_out, N_rec) or None)`` while active."""
        raise NotImplementedError


class Silence(Perturbation):
    """Silence recurrent units: their outgoing synapses (their columns of ``W_rec`` and ``W_out``) are cut,
    so the rest of the network and the outputs no longer see them.

    Args:
        units: indices of the units, a boolean mask ``(N_rec,)`` or a region name (needs the network's region
            labels).
    """

    def __init__(self, units: Sequence[int] | np.ndarray | str, start_ms: float = 0.0, stop_ms: float | None = None):
        super().__init__(start_ms, stop_ms)
        self.units = units

    def gains(self, net):
        idx = net.units(self.units)
        g_rec = np.ones((net.N_rec, net.N_rec), dtype=np.float32)
        g_rec[:, idx] = 0.0
        g_out = np.ones((net.N_out, net.N_rec), dtype=np.float32)
        g_out[:, idx] = 0.0
        return g_rec, g_out


class Cut(Perturbation):
    """Cut the synapses from units ``pre`` to units ``post`` (indices, boolean masks ``(N_rec,)`` or region
    names).

    Args:
        pre: presynaptic units or region. post: postsynaptic units or region.
        gain: what the synapses are multiplied by (0 = cut; 0.5 = halved).
    """

    def __init__(self, pre: Sequence[int] | str, post: Sequence[int] | str, start_ms: float = 0.0,
                 stop_ms: float | None = None, gain: float = 0.0):
        super().__init__(start_ms, stop_ms)
        self.pre, self.post, self.gain = pre, post, float(gain)

    def gains(self, net):
        g = np.ones((net.N_rec, net.N_rec), dtype=np.float32)
        g[np.ix_(net.units(self.post), net.units(self.pre))] = self.gain
        return g, None


@dataclass
class Network:
    """A ``Basic`` network's effective weights and dynamics parameters, in NumPy.

    Attributes:
        W_in, W_rec, W_out: effective matrices ``[post, pre]``. b_rec, b_out: biases. init_state: ``(1, N_rec)``.
        dt, tau: ms (tau a scalar or per unit). transfer_function: a name from :data:`NUMPY_TRANSFER` or a
            NumPy callable (float32 array in, array of the same shape out).
        rec_noise: recurrent noise level. labels: region label per unit, or None. seed: the model's seed.
    """

    W_in: np.ndarray
    W_rec: np.ndarray
    W_out: np.ndarray
    b_rec: np.ndarray
    b_out: np.ndarray
    init_state: np.ndarray
    dt: float
    tau: Any
    transfer_function: Transfer = "relu"
    rec_noise: float = 0.0
    labels: list[str] | None = None
    seed: int | None = None

    @property
    def N_rec(self) -> int:
        return self.W_rec.shape[0]

    @property
    def N_in(self) -> int:
        return self.W_in.shape[1]

    @property
    def N_out(self) -> int:
        return self.W_out.shape[0]

    @classmethod
    def load(cls, path: str | os.PathLike, dt: float | None = None, tau: Any = None,
             transfer_function: Transfer | None = None, rec_noise: float | None = None) -> "Network":
        """A network from a weights file: ours (everything is in it) or PsychRNN's (give ``dt`` and ``tau``;
        ``transfer_function`` defaults to relu and ``rec_noise`` to 0). Arguments given override the file.
        A file of a ``train_tau`` model holds its learned ``tau`` ``(N_rec,)`` ms, which is used.

        A file saved with a custom transfer function (a TensorFlow callable, stored by name) needs
        ``transfer_function``: a name from :data:`NUMPY_TRANSFER` or the NumPy equivalent as a callable.
        """
        arrays, meta = load_weights(path)
        cfg = (meta or {}).get("config", {})
        if cfg.get("model", "Basic") != "Basic":
            raise ValueError(f"{path}: the NumPy simulator runs Basic networks, this file holds a {cfg['model']}")
        dt = cfg.get("dt") if dt is None else dt
        if tau is None:
            tau = arrays["tau"] if arrays.get("tau") is not None else cfg.get("tau")
        if dt is None or tau is None:
            raise ValueError(f"{path} is a PsychRNN file without dt and tau: pass dt=... and tau=... (ms)")
        return cls.from_weights(arrays, dt, tau, transfer_function or cfg.get("transfer_function", "relu"),
                                cfg.get("rec_noise", 0.0) if rec_noise is None else rec_noise,
                                labels=(meta or {}).get("region_labels"), seed=cfg.get("seed"))

    @classmethod
    def from_weights(cls, weights: Mapping[str, Any], dt: float, tau: Any, transfer_function: Transfer = "relu",
                     rec_noise: float = 0.0, labels: list[str] | None = None,
                     seed: int | None = None) -> "Network":
        """A network from PsychRNN's weights dict (``model.get_weights()``); the masks and Dale signs in it
        are applied again, which leaves effective matrices unchanged. ``transfer_function``: a name from
        :data:`NUMPY_TRANSFER` or a NumPy callable."""
        W_in = np.asarray(weights["W_in"], dtype=np.float32)
        N_rec, N_in = W_in.shape
        N_out = np.asarray(weights["W_out"]).shape[0]
        wiring = constraints.build_wiring({k: weights.get(k) for k in ("input_connectivity", "rec_connectivity",
                                                              "output_connectivity", "Dale_rec", "Dale_out",
                                                              "dale_ratio")},
                                N_in, N_rec, N_out, seed=0, strict=False)
        if not callable(transfer_function) and transfer_function not in NUMPY_TRANSFER:
            raise ValueError(f"the NumPy simulator needs transfer_function= one of {', '.join(NUMPY_TRANSFER)} "
                             f"or a NumPy callable, got {transfer_function!r} (a custom function is stored by "
                             f"name: pass its NumPy equivalent)")
        f32 = lambda k, shape: np.asarray(weights[k], dtype=np.float32).reshape(shape)  # noqa: E731
        return cls(wiring.effective("W_in", W_in), wiring.effective("W_rec", f32("W_rec", (N_rec, N_rec))),
                   wiring.effective("W_out", f32("W_out", (N_out, N_rec))), f32("b_rec", (N_rec,)),
                   f32("b_out", (N_out,)), f32("init_state", (1, N_rec)), float(dt), tau, transfer_function,
                   float(rec_noise), labels, seed)

    def units(self, which: Sequence[int] | np.ndarray | str) -> np.ndarray:
        """Unit indices from indices, a boolean mask ``(N_rec,)`` or a region name."""
        if isinstance(which, str):
            if self.labels is None:
                raise ValueError(f"region {which!r} named, but this network has no region labels")
            idx = np.flatnonzero(np.asarray(self.labels) == which)
            if idx.size == 0:
                raise ValueError(f"no region {which!r}; regions are {sorted(set(self.labels))}")
            return idx
        arr = np.asarray(which)
        if arr.dtype == bool:
            if arr.shape != (self.N_rec,):
                raise ValueError(f"a boolean unit mask must have shape ({self.N_rec},), got {arr.shape}")
            return np.flatnonzero(arr)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"units must be integer indices, a boolean mask ({self.N_rec},) or a region name, "
                             f"got an array of {arr.dtype}")
        idx = arr.astype(int).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.N_rec):
            raise ValueError(f"unit indices must be in 0..{self.N_rec - 1}, got {idx.min()}..{idx.max()}")
        return idx

    def run(self, x: np.ndarray, perturbations: Sequence[Perturbation] = (), rec_noise: float | None = None,
            seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Simulate.

        Args:
            x: inputs ``(N_batch, N_steps, N_in)``.
            perturbations: applied together while active (their gains multiply).
            rec_noise: overrides the network's noise level (0: deterministic).
            seed: seed of the noise (NumPy's stream; it does not reproduce TensorFlow's noise draws).

        Returns:
            ``(outputs (N_batch, N_steps, N_out), states (N_batch, N_steps, N_rec))``.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[2] != self.N_in:
            raise ValueError(f"x must be (N_batch, N_steps, N_in={self.N_in}), got shape {x.shape}")
        n_batch, n_steps, _ = x.shape
        f = self.transfer_function if callable(self.transfer_function) else NUMPY_TRANSFER[self.transfer_function]
        alpha = (np.float32(self.dt) / np.asarray(self.tau, dtype=np.float32)).astype(np.float32)
        noise = self.rec_noise if rec_noise is None else float(rec_noise)
        rng = np.random.default_rng(seed)
        drive = alpha * (x @ self.W_in.T + self.b_rec)                              # (B, T, N_rec)
        t_ms = np.arange(n_steps) * self.dt
        gains = [(p.active(t_ms), *p.gains(self)) for p in perturbations]
        s = np.repeat(self.init_state, n_batch, axis=0).astype(np.float32)
        states = np.empty((n_batch, n_steps, self.N_rec), dtype=np.float32)
        rates_out = np.empty((n_batch, n_steps, self.N_out), dtype=np.float32)
        Wa_base = (self.W_rec.T * alpha).astype(np.float32)
        key, Wa, W_out = None, Wa_base, self.W_out
        for i in range(n_steps):
            now = tuple(j for j, (on, _, _) in enumerate(gains) if on[i])
            if now != key:  # rebuild the matrices only when the set of active perturbations changes
                key = now
                g_rec = np.ones_like(self.W_rec)
                g_out = np.ones_like(self.W_out)
                for j in now:
                    g_rec = g_rec * gains[j][1]
                    if gains[j][2] is not None:
                        g_out = g_out * gains[j][2]
                Wa = ((self.W_rec * g_rec).T * alpha).astype(np.float32)
                W_out = (self.W_out * g_out).astype(np.float32)
            s = (1.0 - alpha) * s + f(s) @ Wa + drive[:, i]
            if noise > 0:
                s = s + np.sqrt(2.0 * alpha * noise ** 2) * rng.standard_normal(s.shape, dtype=np.float32)
            states[:, i] = s
            rates_out[:, i] = f(s) @ W_out.T
        return rates_out + self.b_out, states


def simulate(weights: str | os.PathLike | Mapping[str, Any], x: np.ndarray,
             perturbations: Sequence[Perturbation] = (), **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """One call: load ``weights`` (a file or PsychRNN's weights dict; ``dt``, ``tau``, ... as keyword
    arguments where the file lacks them) and run ``x``. See :meth:`Network.run`."""
    run_keys = {"rec_noise", "seed"}
    run_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in run_keys and k != "rec_noise"}
    if isinstance(weights, Mapping):
        net = Network.from_weights(weights, **kwargs)
    else:
        net = Network.load(weights, **kwargs)
    return net.run(x, perturbations, **run_kw)
