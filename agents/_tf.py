"""Import TensorFlow once, without its eager import of Keras, and set the thread count.

``import tensorflow`` (2.16+) eagerly imports ``keras.src.optimizers``, which pulls in Keras 3, scikit-learn,
matplotlib and pandas: about 1.3 s and 170 MB per agent process on our CPUs, for code the agents never use
(our optimizers, losses and layers are plain TensorFlow). TensorFlow skips that import when
``TF_USE_LEGACY_KERAS`` is set and ``tf_keras`` is absent, so we set it for the duration of the import only
and put the environment back: ``tf.keras`` still loads Keras 3 lazily if anything asks for it later.
"""
from __future__ import annotations

import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if "tensorflow" not in sys.modules:
    _saved = os.environ.get("TF_USE_LEGACY_KERAS")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    try:
        import tensorflow as tf
    finally:
        if _saved is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = _saved
else:
    import tensorflow as tf


def configure_threads(n: int = 1) -> None:
    """Run TensorFlow ops on ``n`` threads (intra-op and inter-op) in this process.

    One thread per agent process gives the best total throughput when several agents share a machine's
    cores. Call it before the first TensorFlow op; later calls that ask for a different count only warn,
    because TensorFlow fixes its thread pools when its runtime starts.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"configure_threads: n must be a non-negative integer (0 = TensorFlow's default), "
                         f"got {n!r}")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(max(n, 1)))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        if (tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads()) != (n, n):
            warnings.warn(f"configure_threads({n}) came after TensorFlow started; its thread pools keep "
                          f"their size", RuntimeWarning, stacklevel=2)


def ensure_eager() -> None:
    """Turn eager execution back on where something turned it off, with a warning.

    Importing ``psychrnn.backend`` calls ``tf.compat.v1.disable_eager_execution()`` (PsychRNN 1.0.0 builds
    graphs); our models read and assign their variables eagerly. TensorFlow turns eager execution back on only
    while the process has built no graph (no model has run yet), so PsychRNN imported first is fine.

    Raises:
        RuntimeError: eager execution is off and TensorFlow will not turn it back on.
    """
    if tf.executing_eagerly():
        return
    try:
        tf.compat.v1.enable_eager_execution()
    except ValueError:  # "must be called at program startup": a graph exists already
        pass
    if not tf.executing_eagerly():
        raise RuntimeError("eager execution is off (importing psychrnn.backend turns it off) and TensorFlow turns it "
                           "back on only in a process that has built no graph yet (no skinnerbox or PsychRNN model "
                           "has run): import psychrnn before any model runs, or run PsychRNN's models and "
                           "skinnerbox's in separate processes")
    warnings.warn("eager execution was off (importing psychrnn.backend turns it off); skinnerbox models need it, "
                  "so it is on again, and PsychRNN's own models, which need it off, will fail if built after this "
                  "in the same process", UserWarning, stacklevel=3)


__all__ = ["tf", "configure_threads", "ensure_eager"]
