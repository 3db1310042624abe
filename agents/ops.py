"""TensorFlow kernels of the rate network: transfer functions and the recurrent loop with its gradient.

The loop is one ``tf.while_loop``, so tracing costs the same at 200 or 1000 time steps.
Everything that does not depend on the previous state (input projection, bias, noise) is computed for the
whole ``(N_steps, N_batch, N_rec)`` block before the loop, and the outputs after it, so each step runs
only ``s_t = decay * s_{t-1} + f(s_{t-1}) @ Wa + drive_t``.

For the named transfer functions the backward pass is written out (backpropagation through time as one
reverse loop, the weight gradient as one matmul over all steps), which is cheaper than TensorFlow's automatic
gradient of a while loop; a user's own transfer function falls back to the automatic one (through
``tf.scan``).
"""
from __future__ import annotations

from typing import Any, Callable

from ._tf import tf
from .simulate import LEAKY_RELU_SLOPE  # "leaky_relu"'s slope, defined once, where NumPy code can read it

TRANSFER_FUNCTIONS: dict[str, Callable] = {
    "relu": tf.nn.relu,
    "tanh": tf.math.tanh,
    "sigmoid": tf.math.sigmoid,
    "softplus": tf.math.softplus,
    "linear": tf.identity,
    "retanh": lambda s: tf.nn.relu(tf.math.tanh(s)),
    "leaky_relu": lambda s: tf.nn.leaky_relu(s, alpha=LEAKY_RELU_SLOPE),
}

# Backpropagation through f: dy * f'(s), from the pre-activation s and/or the rate r = f(s), with
# TensorFlow's fused gradient kernels where one exists (one pass instead of two or three).
_BACKPROP: dict[str, Callable] = {
    "relu": lambda dy, s, r: tf.raw_ops.ReluGrad(gradients=dy, features=r),  # r > 0 exactly where s > 0
    "tanh": lambda dy, s, r: tf.raw_ops.TanhGrad(y=r, dy=dy),
    "sigmoid": lambda dy, s, r: tf.raw_ops.SigmoidGrad(y=r, dy=dy),
    "softplus": lambda dy, s, r: tf.raw_ops.SoftplusGrad(gradients=dy, features=s),
    "linear": lambda dy, s, r: dy,
    "retanh": lambda dy, s, r: tf.raw_ops.ReluGrad(gradients=tf.raw_ops.TanhGrad(y=r, dy=dy), features=r),
    # the rate has the sign of s (positive slope), which is all LeakyReluGrad reads
    "leaky_relu": lambda dy, s, r: tf.raw_ops.LeakyReluGrad(gradients=dy, features=r, alpha=LEAKY_RELU_SLOPE),
}
# Which of (s, r) each one reads, so the backward loop slices only those.
_BACKPROP_READS = {"relu": "r", "tanh": "r", "sigmoid": "r", "softplus": "s", "linear": "", "retanh": "r",
                   "leaky_relu": "r"}


def _is_zero(g: Any) -> bool:
    """True for a missing gradient or one the tape filled with zeros (an output nobody used)."""
    if g is None:
        return True
    value = tf.get_static_value(g)
    if value is not None:
        return not value.any()
    return g.op.type in ("ZerosLike", "Zeros") or (
        g.op.type == "Fill" and tf.get_static_value(g.op.inputs[1]) == 0)


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
                    transfer: str | Callable, decay_gradient: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
    """Run ``s_t = decay * s_{t-1} + f(s_{t-1}) @ Wa + drive_t`` for every step.

    Args:
        s0: initial state ``(N_batch, N_rec)``.
        drive: ``(N_steps, N_batch, N_rec)``: ``alpha * (u_t @ W_in.T + b_rec)`` plus noise.
        Wa: ``(N_rec, N_rec)`` = ``W_rec.T * alpha`` (row = presynaptic unit).
        decay: ``1 - alpha``, a scalar or ``(N_rec,)``.
        transfer: a name from :data:`TRANSFER_FUNCTIONS` or a callable.
        decay_gradient: differentiate with respect to ``decay`` too (trainable time constants); without it a
            named transfer function's written-out gradient treats ``decay`` as a constant. A callable's
            automatic gradient always reaches it.

    Returns:
        ``(states, rates)``, both ``(N_steps, N_batch, N_rec)``: the state after each update and ``f(state)``.
    """
    if isinstance(transfer, str):
        return _recurrence_bptt(s0, drive, Wa, decay, transfer, decay_gradient)
    states = tf.scan(lambda s, d: decay * s + tf.matmul(transfer(s), Wa) + d, drive, initializer=s0)
    return states, transfer(states)


def _loop(n: tf.Tensor, step: Callable, init: tf.Tensor, reverse: bool = False) -> tf.Tensor:
    """``out[t] = carry = step(t, carry)`` for t = 0 .. n-1 (or n-1 .. 0), stacked ``(n, *init.shape)``.

    A ``tf.while_loop`` that indexes its inputs inside the body (a leading-axis slice is a view) instead of
    ``tf.scan``'s up-front unstacking, which copies every input (about 2-13 ms per input at 200 x 128 x 256).
    """
    out = tf.TensorArray(init.dtype, size=n, element_shape=init.shape)

    def body(t, carry, out):
        carry = step(t, carry)
        return (t - 1 if reverse else t + 1), carry, out.write(t, carry)

    start = n - 1 if reverse else tf.constant(0)
    _, _, out = tf.while_loop(lambda t, *_: t >= 0 if reverse else t < n, body, (start, init, out))
    return out.stack()


def _recurrence_bptt(s0, drive, Wa, decay, name: str, decay_gradient: bool = False):
    f = TRANSFER_FUNCTIONS[name]
    backprop, reads = _BACKPROP[name], _BACKPROP_READS[name]

    def recur(s0, drive, Wa, decay):
        n_steps = tf.shape(drive)[0]
        states = _loop(n_steps, lambda t, s: decay * s + tf.matmul(f(s), Wa) + drive[t], s0)
        rates = f(states)

        def grad(g_states, g_rates):
            # lam_t = dL/ds_t = f'(s_t) * (g_rates_t + lam_{t+1} @ Wa.T) + decay * lam_{t+1} + g_states_t,
            # lam_{T+1} = 0: one reverse loop, f' applied by a fused gradient kernel inside it.
            WaT = tf.transpose(Wa)
            if g_rates is None:
                g_rates = tf.zeros_like(rates)
            # a gather on the states or rates (in a user's loss or penalty) sends IndexedSlices: make them dense
            g_rates = tf.convert_to_tensor(g_rates)
            g_states = None if g_states is None else tf.convert_to_tensor(g_states)
            with_states = not _is_zero(g_states)

            def back(t, lam_next):
                lam = backprop(g_rates[t] + tf.matmul(lam_next, WaT), states[t] if "s" in reads else None,
                               rates[t] if "r" in reads else None) + decay * lam_next
                return lam + g_states[t] if with_states else lam

            lam = _loop(n_steps, back, tf.zeros_like(s0), reverse=True)
            r0 = f(s0)
            d_s0 = backprop(tf.matmul(lam[0], WaT), s0, r0) + decay * lam[0]
            # dWa = sum_t f(s_{t-1}).T @ lam_t; rates[:-1] and lam[1:] are views, not copies.
            n = tf.shape(Wa)[0]
            d_Wa = (tf.matmul(tf.reshape(rates[:-1], [-1, n]), tf.reshape(lam[1:], [-1, n]), transpose_a=True)
                    + tf.matmul(r0, lam[0], transpose_a=True))
            if not decay_gradient:
                return d_s0, lam, d_Wa
            # d decay = sum over steps and trials of lam_t * s_{t-1} (s_{-1} = s0), per unit
            d_decay = tf.reduce_sum(lam[1:] * states[:-1], axis=[0, 1]) + tf.reduce_sum(lam[0] * s0, axis=0)
            if decay.shape.rank == 0:
                d_decay = tf.reduce_sum(d_decay)
            return d_s0, lam, d_Wa, d_decay

        return (states, rates), grad

    if decay_gradient:
        return tf.custom_gradient(recur)(s0, drive, Wa, tf.convert_to_tensor(decay, s0.dtype))
    # decay is a constant here: closed over, so the custom gradient has three inputs and no extra reduction
    return tf.custom_gradient(lambda s0, drive, Wa: recur(s0, drive, Wa, decay))(s0, drive, Wa)
