"""Build a model from a lab file's model spec: the one place that knows every model kind (``Basic``, ``LSTM``,
``GRU``), so that the kinds themselves do not import each other."""
from __future__ import annotations

from typing import Any, Mapping

from .gated import GRU, LSTM
from .regularizers import PSYCHRNN_KEYS as REGULARIZER_KEYS
from .rnn import _CONSTRAINT_KEYS, _PSYCHRNN_INIT_KEYS, RNN, Basic, _file_kind


def build_model(spec: Mapping[str, Any], task_spec: Mapping[str, Any]) -> RNN:
    """Build a model from a lab config's model section and the task spec the server sends.

    Args:
        spec: model settings (any key of :meth:`RNN.config`; ``model`` picks ``Basic``, ``LSTM`` or ``GRU``,
            default the kind a ``load_weights_path`` file records, else ``Basic``; ``N_rec`` is required).
        task_spec: ``N_in, N_out, dt, tau, T, N_steps, N_batch`` (``Task.spec()``). The model's own ``tau``
            and ``dt``, when given, win over the task's.

    Raises:
        ValueError: an unknown model kind, an unknown key (a misspelt ``dale_ratio`` must not quietly build a
            network without Dale's principle), or sizes that disagree with the task.
    """
    kinds = {"Basic": Basic, "LSTM": LSTM, "GRU": GRU}
    kind = spec.get("model") or _file_kind(spec.get("load_weights_path"))
    if kind not in kinds:
        raise ValueError(f"unknown model {kind!r}; expected one of {', '.join(kinds)}")
    params = {k: task_spec[k] for k in ("N_in", "N_out", "dt", "tau", "N_steps", "N_batch") if k in task_spec}
    for key in ("N_in", "N_out"):
        if key in spec and key in params and spec[key] != params[key]:
            raise ValueError(f"model spec has {key}={spec[key]} but the task has {key}={params[key]}")
    params.update({k: v for k, v in spec.items() if k not in ("model", "version")})
    model = kinds[kind](params)
    known = (set(model.config()) | set(REGULARIZER_KEYS) | set(_CONSTRAINT_KEYS) | set(_PSYCHRNN_INIT_KEYS)
             | {"explicit_masks", "initial_arrays", "custom_regularization"})
    unknown = sorted(set(spec) - known)
    if unknown:
        model.destruct()
        raise ValueError(f"model spec: unknown key(s) {', '.join(map(repr, unknown))}; a {kind} takes "
                         f"{', '.join(sorted(k for k in known if not k.startswith('_')))}")
    return model
