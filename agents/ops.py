"""TensorFlow kernels of the rate network: transfer functions and the recurrent loop with its gradient.

The loop is one ``tf.scan`` (a ``tf.while_loop``), so tracing costs the same at 200 or 1000 time steps.
Everything that does not depend on the previous state (input projection, bias, noise) is computed for the
whole ``(N_steps, N_batch, N_rec)`` block before the loop, and the outputs after it, so each step runs
only ``s_t = decay * s_{t-1} + f(s_{t-1}) @ Wa + drive_t``.

For the named transfer functions the backward pass is written out (backpropagation through time as one
reverse ``tf.scan``, the weight gradient as one matmul over all steps), which is cheaper than TensorFlow's
automatic gradient of a while loop; a user's own transfer function falls back to the automatic one.
"""
from __future__ import annotations

from typing import Any, Callable

from ._tf import tf

TRANSFER_FUNCTIONS: dict[str, Callable] = {
    "relu": tf.nn.relu,
    "tanh": tf.math.tanh,
    "sigmoid": tf.math.sigmoid,
    "softplus": tf.math.softplus,
    "linear": tf.identity,
    "retanh": lambda s: tf.nn.relu(tf.math.tanh(s)),
}

# f'(s) from the pre-activation s (and f(s) where cheaper).
_DERIVATIVES: dict[str, Callable] = {
    "relu": lambda s, r: tf.cast(s > 0, s.dtype),
    "tanh": lambda s, r: 1.0 - tf.square(r),
    "sigmoid": lambda s, r: r * (1.0 - r),
    "softplus": lambda s, r: tf.math.sigmoid(s),
    "linear": lambda s, r: tf.ones_like(s),
    "retanh": lambda s, r: tf.cast(s > 0, s.dtype) * (1.0 - tf.square(r)),
}

# PsychRNN users pass TensorFlow functions; these are the ones we recognise by identity.
_ALIASES = {
    tf.nn.relu: "relu", tf.math.tanh: "tanh", tf.nn.tanh: "tanh", tf.tanh: "tanh",
    tf.math.sigmoid: "sigmoid", tf.nn.sigmoid: "sigmoid", tf.sigmoid: "sigmoid",
    tf.math.softplus: "softplus", tf.nn.softplus: "softplus", tf.identity: "linear",
}


def transfer_name(transfer_function: Any) -> str | None:
    """The name of a transfer function given as a name or a TensorFlow function (None: a custom one)."""
    if transfer_function is None:
        return "relu"
    if isinstance(transfer_function, str):
        if transfer_function not in TRANSFER_FUNCTIONS:
            raise ValueError(f"unknown transfer_function {transfer_function!r}; known: "
                             f"{', '.join(TRANSFER_FUNCTIONS)} (or pass a callable)")
        return transfer_function
    try:
        return _ALIASES.get(transfer_function)
    except TypeError:  # unhashable callable
        return None


def rate_recurrence(s0: tf.Tensor, drive: tf.Tensor, Wa: tf.Tensor, decay: Any,
                    transfer: str | Callable) -> tuple[tf.Tensor, tf.Tensor]:
    """Run ``s_t = decay * s_{t-1} + f(s_{t-1}) @ Wa + drive_t`` for every step.

    Args:
        s0: initial state ``(N_batch, N_rec)``.
        drive: ``(N_steps, N_batch, N_rec)``: ``alpha * (u_t @ W_in.T + b_rec)`` plus noise.
        Wa: ``(N_rec, N_rec)`` = ``W_rec.T * alpha`` (row = presynaptic unit).
        decay: ``1 - alpha``, a scalar or ``(N_rec,)``.
        transfer: a name from :data:`TRANSFER_FUNCTIONS` or a callable.

    Returns:
        ``(states, rates)``, both ``(N_steps, N_batch, N_rec)``: the state after each update and ``f(state)``.
    """
    if isinstance(transfer, str):
        return _recurrence_bptt(s0, drive, Wa, decay, transfer)
    states = tf.scan(lambda s, d: decay * s + tf.matmul(transfer(s), Wa) + d, drive, initializer=s0)
    return states, transfer(states)


def _recurrence_bptt(s0, drive, Wa, decay, name: str):
    f = TRANSFER_FUNCTIONS[name]
    fprime = _DERIVATIVES[name]

    @tf.custom_gradient
    def recur(s0, drive, Wa):
        states = tf.scan(lambda s, d: decay * s + tf.matmul(f(s), Wa) + d, drive, initializer=s0)
        rates = f(states)

        def grad(g_states, g_rates):
            gain = fprime(states, rates)                                            # f'(s_t)
            upstream = g_rates * gain
            if g_states is not None:
                upstream += g_states
            # lam_t = dL/ds_t = G_t + decay * lam_{t+1} + (lam_{t+1} @ Wa.T) * f'(s_t), lam_{T+1} = 0 (so the
            # gain of the last step is never used and f'(states) serves as the "next step" gain).
            WaT = tf.transpose(Wa)
            lam = tf.scan(lambda l, inp: inp[0] + decay * l + tf.matmul(l, WaT) * inp[1],
                          (upstream, gain), initializer=tf.zeros_like(s0), reverse=True)
            r0 = f(s0)
            d_s0 = decay * lam[0] + tf.matmul(lam[0], WaT) * fprime(s0, r0)
            n = tf.shape(Wa)[0]
            rates_prev = tf.concat([r0[None], rates[:-1]], axis=0)                 # f(s_{t-1})
            d_Wa = tf.matmul(tf.reshape(rates_prev, [-1, n]), tf.reshape(lam, [-1, n]), transpose_a=True)
            return d_s0, lam, d_Wa

        return (states, rates), grad

    return recur(s0, drive, Wa)
