"""Dale's principle as numbers: which units are excitatory, their signs, and the names of the three weight
matrices. NumPy only, and below both :mod:`agents.constraints` and :mod:`agents.regions` (which build on it)."""
from __future__ import annotations

from typing import Any

import numpy as np

MATRICES = ("W_in", "W_rec", "W_out")  # PsychRNN's weight matrices, in the order constraints and masks use


def validate_dale_ratio(dale_ratio: Any, N_rec: int | None = None) -> float | None:
    """``dale_ratio`` as a float strictly inside (0, 1), or None (no Dale's principle).

    Raises:
        ValueError: 0, 1, a value outside (0, 1), a non-number, or (with ``N_rec``) a ratio that leaves no
            excitatory or no inhibitory unit.
    """
    if dale_ratio is None:
        return None
    if isinstance(dale_ratio, np.ndarray) and dale_ratio.ndim == 0:
        dale_ratio = dale_ratio.item()
        if dale_ratio is None:
            return None
    if isinstance(dale_ratio, bool) or not isinstance(dale_ratio, (int, float, np.number)) \
            or not 0.0 < float(dale_ratio) < 1.0:
        raise ValueError(f"dale_ratio must be a number strictly between 0 and 1 (the fraction of excitatory "
                         f"units) or None, got {dale_ratio!r}")
    if N_rec is not None:
        n_exc = n_excitatory(float(dale_ratio), N_rec)
        if not 0 < n_exc < N_rec:
            raise ValueError(f"dale_ratio={dale_ratio} with N_rec={N_rec} gives {n_exc} excitatory and "
                             f"{N_rec - n_exc} inhibitory units; need at least one of each")
    return float(dale_ratio)


def n_excitatory(dale_ratio: float, N_rec: int) -> int:
    """Number of excitatory units: ``floor(dale_ratio * N_rec + 1e-9)``.

    The 1e-9 absorbs floating-point rounding: ``0.29 * 100`` is ``28.999999999999996``, which gives 29 units
    here. PsychRNN 1.0.0 takes ``int(dale_ratio * N_rec)`` and gets 28, so for such ratios (0.29, 0.57 at
    ``N_rec=100``) we have one more excitatory unit than PsychRNN; its weight files load with their own
    ``Dale_rec``.
    """
    return int(np.floor(dale_ratio * N_rec + 1e-9))


def dale_signs(dale_ratio: float, N_rec: int) -> np.ndarray:
    """Per-unit signs ``(N_rec,)``: +1 for the first ``n_excitatory`` units, -1 for the rest."""
    signs = -np.ones(N_rec, dtype=np.float32)
    signs[:n_excitatory(dale_ratio, N_rec)] = 1.0
    return signs
