"""Gated networks with the same API as :class:`~agents.rnn.Basic`: standard :class:`LSTM` and :class:`GRU` cells.

Weights follow PsychRNN's LSTM layout: each gate's matrix is ``(N_rec + N_in, N_rec)`` and multiplies
``[h_{t-1}, u_t]`` (hidden units first). The cells are the textbook ones (Hochreiter & Schmidhuber 1997 with
a forget gate; Cho et al. 2014), so PsychRNN's LSTM, which squashes the cell with a sigmoid instead of tanh,
is not reproduced. Initial hidden (and cell) states are trainable ``(1, N_rec)`` vectors, so any batch size
works (PsychRNN's are ``(N_batch, N_rec)``, one per trial). For both reasons a PsychRNN LSTM weights file is
refused with a ``ValueError`` that says so; a weights file whose arrays do not fit the model is refused with
the array, its shape and the shape needed. ``states`` are the hidden states ``h_t``. Biological constraints
and recurrent noise apply to ``Basic`` only; asking for them here is a ``ValueError``.
"""
from __future__ import annotations

import numpy as np

from ._tf import tf
from .rnn import RNN


class _Gated(RNN):
    gates: tuple[str, ...] = ()
    gate_bias = 0.0
    regularizer_targets = ("W_out", "rates", "model")

    def __init__(self, params):
        if float(params.get("rec_noise", 0.0)) != 0.0:
            raise ValueError(f"{self.kind}: rec_noise is only implemented for Basic, got "
                             f"rec_noise={params['rec_noise']}")
        frozen = [f for f in ("W_in_train", "W_rec_train", "b_rec_train", "init_state_train")
                  if params.get(f, True) is False]
        if frozen:
            raise ValueError(f"{self.kind}: {', '.join(frozen)} name matrices a {self.kind} does not have (its gates "
                             f"have W_<gate> and b_<gate>); of the *_train flags it honours W_out_train and "
                             f"b_out_train")
        super().__init__(params)

    def _random_arrays(self, rng):
        n, n_cat = self.N_rec, self.N_rec + self.N_in
        arrays = {name: 0.1 * rng.standard_normal((1, n)) for name in self._initial_states()}
        for g in self.gates:
            arrays[f"W_{g}"] = 0.1 * rng.standard_normal((n_cat, n))
        for g in self.gates:
            arrays[f"b_{g}"] = np.full(n, self.gate_bias)
        arrays["W_out"] = 0.1 * rng.standard_normal((self.N_out, n))
        arrays["b_out"] = np.zeros(self.N_out)
        return {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}

    def _build_initializer(self, params, file_arrays):
        if file_arrays is not None:
            return super()._build_initializer(params, file_arrays)  # weights from a file
        if params.get("initializer") is not None:
            raise ValueError(f"{self.kind} draws its own initial weights (N(0, 0.1^2)); remove 'initializer'")
        return None

    def _init_arrays(self, rng):
        if self.initializer is None:
            return self._random_arrays(rng)
        src = self.initializer.arrays()
        where = self.initializer.path or "the weights"
        sizes = f"a {self.kind} with N_in={self.N_in}, N_rec={self.N_rec}, N_out={self.N_out}"
        out = {}
        for key, arr in self._random_arrays(rng).items():
            if src.get(key) is None:
                raise ValueError(f"{where}: {sizes} needs {key!r} {arr.shape}, which is missing (the file "
                                 f"has {sorted(k for k in src if '/' not in k)})")
            if np.shape(src[key]) != arr.shape:
                raise ValueError(f"{where}: {key} has shape {np.shape(src[key])}, {sizes} needs {arr.shape}")
            out[key] = np.asarray(src[key], dtype=np.float32)
        return out

    def _initial_states(self) -> tuple[str, ...]:
        return ("init_hidden",)

    def _is_trainable(self, name):
        return self.trainable.get(f"{name}_train", True)  # W_out_train, b_out_train; the gates always learn

    def _kernels(self, x):
        """Input projections of every gate for all steps ``(T, B, G*N_rec)`` and the recurrent kernel."""
        n = self.N_rec
        W = tf.concat([self.vars[f"W_{g}"] for g in self.gates], axis=1)        # (N_rec + N_in, G*N_rec)
        b = tf.concat([self.vars[f"b_{g}"] for g in self.gates], axis=0)
        x_tm = tf.transpose(x, [1, 0, 2])
        steps, batch = tf.shape(x)[1], tf.shape(x)[0]
        xp = tf.reshape(tf.matmul(tf.reshape(x_tm, [-1, self.N_in]), W[n:]), [steps, batch, -1]) + b
        return xp, W[:n]

    def _readout(self, hidden_tm, x):
        states = tf.transpose(hidden_tm, [1, 0, 2])
        batch, steps = tf.shape(x)[0], tf.shape(x)[1]
        out = tf.reshape(tf.matmul(tf.reshape(states, [-1, self.N_rec]), self.vars["W_out"], transpose_b=True),
                         [batch, steps, self.N_out]) + self.vars["b_out"]
        return {"outputs": out, "states": states, "rates": states, "W_out": self.vars["W_out"]}

    def _weights_dict(self):
        return {k: v.numpy() for k, v in self.vars.items()}


class LSTM(_Gated):
    """Long short-term memory network: ``c_t = f * c_{t-1} + i * tanh(.)``, ``h_t = o * tanh(c_t)``.

    Variables: ``init_hidden``, ``init_cell`` ``(1, N_rec)``; ``W_f, W_i, W_c, W_o`` ``(N_rec + N_in, N_rec)``;
    ``b_f, b_i, b_c, b_o`` (initialised to 1, PsychRNN's choice); ``W_out (N_out, N_rec)``, ``b_out``.
    """

    kind = "LSTM"
    gates = ("f", "i", "c", "o")
    gate_bias = 1.0

    def _initial_states(self):
        return ("init_hidden", "init_cell")

    def _forward(self, x, seed, batch_major_states=True):
        xp, Wh = self._kernels(x)
        batch = tf.shape(x)[0]
        h0 = tf.tile(self.vars["init_hidden"], [batch, 1])
        c0 = tf.tile(self.vars["init_cell"], [batch, 1])

        def step(carry, xp_t):
            h, c = carry
            f, i, g, o = tf.split(xp_t + tf.matmul(h, Wh), 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            return tf.sigmoid(o) * tf.tanh(c), c

        hidden, _ = tf.scan(step, xp, initializer=(h0, c0))
        return self._readout(hidden, x)


class GRU(_Gated):
    """Gated recurrent unit: ``h_t = z * h_{t-1} + (1 - z) * tanh(W_h [r * h_{t-1}, u_t] + b_h)``.

    Variables: ``init_hidden (1, N_rec)``; ``W_z, W_r, W_h`` ``(N_rec + N_in, N_rec)``; ``b_z, b_r, b_h``
    (zeros); ``W_out (N_out, N_rec)``, ``b_out``.
    """

    kind = "GRU"
    gates = ("z", "r", "h")

    def _forward(self, x, seed, batch_major_states=True):
        xp, Wh = self._kernels(x)
        n = self.N_rec
        batch = tf.shape(x)[0]
        h0 = tf.tile(self.vars["init_hidden"], [batch, 1])
        Wzr, Whh = Wh[:, :2 * n], Wh[:, 2 * n:]

        def step(h, xp_t):
            z, r = tf.split(tf.sigmoid(xp_t[:, :2 * n] + tf.matmul(h, Wzr)), 2, axis=1)
            cand = tf.tanh(xp_t[:, 2 * n:] + tf.matmul(r * h, Whh))
            return z * h + (1.0 - z) * cand

        hidden = tf.scan(step, xp, initializer=h0)
        return self._readout(hidden, x)
