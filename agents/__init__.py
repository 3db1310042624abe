"""The agents: constrained rate RNNs (and LSTM/GRU) with PsychRNN's API, trained with TensorFlow.

``from agents import Basic, LSTM, GRU`` gives PsychRNN-compatible models; :func:`build_model` builds one from
a lab config and a task spec; :func:`configure_threads` sets TensorFlow's thread count. TensorFlow is
imported on first use of those names only: :mod:`agents.constraints`, :mod:`agents.regions`,
:mod:`agents.weights` and :mod:`agents.simulate` are NumPy-only and load without it.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Basic": "agents.rnn", "RNN": "agents.rnn", "build_model": "agents.build",
    "LSTM": "agents.gated", "GRU": "agents.gated",
    "Pack": "agents.pack", "PackAgent": "agents.pack_agent",
    "configure_threads": "agents._tf", "train": "agents.trainer", "Curriculum": "agents.curriculum",
    "Network": "agents.simulate", "simulate": "agents.simulate", "Silence": "agents.simulate",
    "Cut": "agents.simulate", "build_regions": "agents.regions", "load_weights": "agents.weights",
    "Simulator": "agents.simulation", "BasicSimulator": "agents.simulation", "LSTMSimulator": "agents.simulation",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
