"""Biological constraints on the weight matrices: connectivity masks, autapses, Dale's principle, fixed synapses.

Conventions (stated once, used everywhere in :mod:`agents`):

- A weight matrix is indexed ``W[post, pre]``, as in PsychRNN (``psychrnn/backend/models/basic.py``):
  ``W_in`` is ``(N_rec, N_in)``, ``W_rec`` is ``(N_rec, N_rec)``, ``W_out`` is ``(N_out, N_rec)``, and the
  network computes ``r @ W.T``. A unit's outgoing weights are its *column*.
- Dale's principle gives each recurrent unit one sign, carried by its column: the first
  ``floor(dale_ratio * N_rec + 1e-9)`` units (:func:`n_excitatory`) are excitatory (+1), the rest inhibitory
  (-1). Inputs are excitatory (``W_in >= 0``) and only excitatory units project to the outputs (inhibitory
  columns of ``W_out`` are 0; PsychRNN 1.0.0 lets them project with a negative sign, which is a bug we do not
  copy, although PsychRNN weight files still load with their own ``Dale_out``).
- Masks and Dale are a **forward reparametrisation**, not a projection after each update: the trainable
  variable ``W`` is free and the network uses the *effective* matrix ``|W * mask| * sign[None, :]``
  (PsychRNN: ``get_effective_W_rec`` = ``|W_rec * rec_connectivity| @ Dale_rec``, with ``Dale_rec`` the
  diagonal matrix of signs). The constraint therefore holds exactly at every step, and masked entries get a
  zero gradient. Without Dale the effective matrix is ``W * mask``. Under Dale a raw weight of exactly 0 gets a
  zero gradient too (that of ``|w|`` at 0), so a model's initial zeros at existing synapses are made tiny and
  positive (:meth:`Wiring.unstick_zeros`).
- Fixed synapses are a **gradient mask**: listed entries receive no update (their gradient is zeroed and
  their optimizer moments cleared), so they stay bit-identical during training.

Every constraint is a small callable object with ``get_config()`` (exactly its constructor arguments) and
``from_config``; :func:`get` builds one from a name, a config dict or an instance. ``__call__`` uses only
``*`` and ``abs``, so it works on NumPy arrays and on TensorFlow tensors alike (this module never imports
TensorFlow: the NumPy simulator uses the very same objects).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ._registry import Registry, Serializable
from .dale import MATRICES, dale_signs, n_excitatory, validate_dale_ratio  # noqa: F401  (part of this module's API)


class Constraint(Serializable):
    """Base class: ``__call__(w) -> w_effective``.

    Attributes:
        kind: ``"reparametrisation"`` (applied on every forward pass) or ``"gradient mask"``
            (applied to the gradient: the masked entries do not learn).
    """

    kind = "reparametrisation"

    def __call__(self, w: Any) -> Any:
        raise NotImplementedError


_registry = Registry("constraint", Constraint)
register = _registry.register
get = _registry.get
serialize = _registry.serialize


def names() -> list[str]:
    """Names of the registered constraints."""
    return _registry.names()


def check_mask(mask: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    """``mask`` as a float32 array of 0s and 1s of ``shape`` (``ValueError`` naming ``name`` otherwise)."""
    arr = np.asarray(mask, dtype=np.float32)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ([post, pre]), got {arr.shape}")
    if not np.all((arr == 0) | (arr == 1)):
        bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5]
        raise ValueError(f"{name} must hold only 0 (no synapse) and 1 (synapse), found {bad.tolist()}")
    return arr


_PURPOSES = {"init": 1, "mask": 2, "regions": 3, "fixed": 4, "noise": 5}


def sub_seed(seed: int, purpose: str, index: int = 0) -> int:
    """An independent seed for one purpose ("init", "mask", "regions", "fixed", "noise") of a model seed."""
    key = (_PURPOSES[purpose], int(index))
    return int(np.random.SeedSequence(int(seed), spawn_key=key).generate_state(1)[0])


def _check_density(density: Any, name: str) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float, np.number)) \
            or not 0.0 <= float(density) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {density!r}")
    return float(density)


def _check_shape(shape: Any, name: str = "shape") -> tuple[int, int]:
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError:
        shp = ()
    if len(shp) != 2 or min(shp) < 1:
        raise ValueError(f"{name} must be two positive integers (post, pre), got {shape!r}")
    return shp  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- constraints
@register
class Mask(Constraint):
    """Connectivity mask (forward reparametrisation): ``w * mask``; 0 = no synapse, 1 = synapse.

    Args:
        mask: array-like ``(post, pre)`` of 0/1.
    """

    def __init__(self, mask: Any):
        arr = np.asarray(mask, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"Mask: mask must be a 2-D (post, pre) array, got shape {arr.shape}")
        self.mask = check_mask(arr, arr.shape, "Mask: mask")

    def __call__(self, w: Any) -> Any:
        return w * self.mask

    def get_config(self) -> dict:
        return {"mask": self.mask.astype(int).tolist()}


@register
class RandomMask(Constraint):
    """Random sparse connectivity (forward reparametrisation): each synapse exists with probability
    ``density``, drawn once from ``seed``.

    Args:
        shape: ``(post, pre)``.
        density: probability that a synapse exists, in [0, 1].
        seed: seed of the draw (the same seed gives the same mask).
        autapses: for a square matrix, False removes self-connections.
    """

    def __init__(self, shape: Sequence[int], density: float, seed: int = 0, autapses: bool = True):
        self.shape = _check_shape(shape, "RandomMask: shape")
        self.density = _check_density(density, "RandomMask: density")
        self.seed = int(seed)
        self.autapses = bool(autapses)
        rng = np.random.default_rng(self.seed)
        self.mask = (rng.random(self.shape) < self.density).astype(np.float32)
        if not self.autapses:
            if self.shape[0] != self.shape[1]:
                raise ValueError(f"RandomMask: autapses=False needs a square matrix, got shape {self.shape}")
            np.fill_diagonal(self.mask, 0.0)

    def __call__(self, w: Any) -> Any:
        return w * self.mask

    def get_config(self) -> dict:
        return {"shape": list(self.shape), "density": self.density, "seed": self.seed,
                "autapses": self.autapses}


@register
class NoAutapses(Constraint):
    """No self-connections (forward reparametrisation): zeroes the diagonal of a square ``(N, N)`` matrix.

    Args:
        N: matrix size (``N_rec``).
    """

    def __init__(self, N: int):
        if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
            raise ValueError(f"NoAutapses: N must be a positive integer (N_rec), got {N!r}")
        self.N = int(N)
        self.mask = (1.0 - np.eye(self.N, dtype=np.float32))

    def __call__(self, w: Any) -> Any:
        return w * self.mask

    def get_config(self) -> dict:
        return {"N": self.N}


@register
class Signs(Constraint):
    """Per-presynaptic-unit signs (forward reparametrisation): ``|w| * signs[None, :]``.

    A sign of 0 removes the unit's outgoing synapses (used for inhibitory units' output weights).

    Args:
        signs: ``(pre,)`` values in {-1, 0, +1}.
    """

    def __init__(self, signs: Sequence[float]):
        arr = np.asarray(signs, dtype=np.float32)
        if arr.ndim != 1 or not np.all(np.isin(arr, (-1.0, 0.0, 1.0))):
            raise ValueError(f"Signs: signs must be a 1-D sequence of -1, 0 and +1 (one per presynaptic "
                             f"unit), got {np.asarray(signs)!r}")
        self.signs = arr

    def __call__(self, w: Any) -> Any:
        return abs(w) * self.signs

    def get_config(self) -> dict:
        return {"signs": self.signs.astype(int).tolist()}


@register
class Dale(Constraint):
    """Dale's principle (forward reparametrisation) on one of the three matrices.

    ``matrix="W_rec"``: ``|w| * s`` with ``s`` = +1 for the :func:`n_excitatory` excitatory units,
    -1 for the others. ``"W_in"``: ``|w|`` (inputs are excitatory). ``"W_out"``: ``|w| * e`` with ``e`` = 1
    for excitatory units and 0 for inhibitory ones (they do not project to the outputs).

    Args:
        dale_ratio: fraction of excitatory units, strictly between 0 and 1.
        N_rec: number of recurrent units.
        matrix: ``"W_in"``, ``"W_rec"`` or ``"W_out"``.
    """

    def __init__(self, dale_ratio: float, N_rec: int, matrix: str = "W_rec"):
        if matrix not in MATRICES:
            raise ValueError(f"Dale: matrix must be one of {MATRICES}, got {matrix!r}")
        if isinstance(N_rec, bool) or not isinstance(N_rec, (int, np.integer)) or N_rec < 2:
            raise ValueError(f"Dale: N_rec must be an integer >= 2, got {N_rec!r}")
        self.dale_ratio = validate_dale_ratio(dale_ratio, int(N_rec))
        self.N_rec = int(N_rec)
        self.matrix = matrix
        signs = dale_signs(self.dale_ratio, self.N_rec)
        self.signs = None if matrix == "W_in" else (signs if matrix == "W_rec" else np.maximum(signs, 0))

    def __call__(self, w: Any) -> Any:
        return abs(w) if self.signs is None else abs(w) * self.signs

    def get_config(self) -> dict:
        return {"dale_ratio": self.dale_ratio, "N_rec": self.N_rec, "matrix": self.matrix}


@register
class FixedSynapses(Constraint):
    """Fixed, non-plastic synapses (gradient mask): ``__call__(grad)`` zeroes the gradient of fixed entries.

    Give either an explicit boolean ``mask`` (True = fixed, PsychRNN's ``fixed_weights``) or a ``fraction``
    of entries drawn at random from ``seed`` for a matrix of ``shape``.

    Args:
        shape: ``(post, pre)``.
        fraction: fraction of entries held fixed, in [0, 1] (with ``seed``).
        seed: seed of the draw.
        mask: explicit ``(post, pre)`` array, nonzero = fixed (overrides ``fraction``).
    """

    kind = "gradient mask"

    def __init__(self, shape: Sequence[int], fraction: float | None = None, seed: int = 0,
                 mask: Any = None):
        self.shape = _check_shape(shape, "FixedSynapses: shape")
        self.seed = int(seed)
        if mask is not None:
            arr = np.asarray(mask)
            if arr.shape != self.shape:
                raise ValueError(f"FixedSynapses: mask must have shape {self.shape}, got {arr.shape}")
            self.fraction = None
            self.fixed = arr.astype(bool)
            self._explicit = True
        else:
            self.fraction = _check_density(0.0 if fraction is None else fraction, "FixedSynapses: fraction")
            self.fixed = np.random.default_rng(self.seed).random(self.shape) < self.fraction
            self._explicit = False
        self.plastic = (~self.fixed).astype(np.float32)

    def __call__(self, grad: Any) -> Any:
        return grad * self.plastic

    def get_config(self) -> dict:
        cfg: dict = {"shape": list(self.shape), "fraction": self.fraction, "seed": self.seed}
        if self._explicit:
            cfg["mask"] = self.fixed.astype(int).tolist()
        return cfg


def apply(chain: Sequence[Constraint], w: Any) -> Any:
    """Apply a chain of reparametrisations to ``w`` in order."""
    for c in chain:
        w = c(w)
    return w


# ------------------------------------------------------------------------------------------- the wiring
@dataclass
class Wiring:
    """Everything that constrains a rate network's three matrices, as NumPy arrays.

    Attributes:
        input_connectivity: ``(N_rec, N_in)`` 0/1. rec_connectivity: ``(N_rec, N_rec)`` 0/1 (zero diagonal
            without autapses). output_connectivity: ``(N_out, N_rec)`` 0/1.
        dale_ratio: the excitatory fraction, or None.
        sign_rec: ``(N_rec,)`` +1/-1 per presynaptic unit under Dale, else None.
        sign_out: ``(N_rec,)`` 1/0 under Dale (±1 for a PsychRNN file's own ``Dale_out``), else None.
        labels: region label of each recurrent unit, or None.
    """

    input_connectivity: np.ndarray
    rec_connectivity: np.ndarray
    output_connectivity: np.ndarray
    dale_ratio: float | None = None
    sign_rec: np.ndarray | None = None
    sign_out: np.ndarray | None = None
    labels: list[str] | None = None
    fixed: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def dale(self) -> bool:
        return self.sign_rec is not None

    def chain(self, matrix: str) -> list[Constraint]:
        """The reparametrisations of ``matrix`` ("W_in", "W_rec" or "W_out"), in order."""
        mask = {"W_in": self.input_connectivity, "W_rec": self.rec_connectivity,
                "W_out": self.output_connectivity}[matrix]
        chain: list[Constraint] = [Mask(mask)]
        if self.dale:
            if matrix == "W_in":
                chain.append(Signs(np.ones(mask.shape[1])))
            else:
                chain.append(Signs(self.sign_rec if matrix == "W_rec" else self.sign_out))
        return chain

    def effective(self, matrix: str, w: Any) -> Any:
        """The effective matrix the network uses (works on NumPy arrays and TF tensors)."""
        return apply(self.chain(matrix), w)

    def unstick_zeros(self, matrix: str, w: np.ndarray) -> np.ndarray:
        """``w`` (raw ``(post, pre)`` values of ``matrix``) with its exact zeros at plastic synapses made tiny
        and positive, under Dale's principle; unchanged otherwise.

        Under Dale the effective weight is ``|w| * sign`` and the gradient of ``|w|`` at 0 is 0, so a raw
        weight of exactly 0 (``AlphaIdentity``'s off-diagonal, a user's array) would never learn. Each such
        weight of an existing synapse (masked, sign-0 and fixed entries are left alone) becomes
        ``2**-24 * max|w| / N_pre`` (``max|w|`` = 1 for an all-zero matrix): its gradient is that of any
        positive weight, and a unit's whole input changes by at most float32's rounding of its largest
        weight times the largest rate, so the network's behaviour is unchanged to float32 precision.
        """
        if not self.dale:
            return w
        stuck = (w == 0) & (np.asarray(self.effective(matrix, np.ones_like(w))) != 0)
        if matrix in self.fixed:
            stuck &= ~self.fixed[matrix]
        if not stuck.any():
            return w
        scale = float(np.max(np.abs(w))) or 1.0
        out = w.copy()
        out[stuck] = max(2.0 ** -24 * scale / w.shape[1], float(np.finfo(np.float32).tiny))
        return out

    def psychrnn_arrays(self) -> dict[str, np.ndarray]:
        """PsychRNN's keys: connectivity matrices and the diagonal ``Dale_rec`` / ``Dale_out`` matrices."""
        n = self.rec_connectivity.shape[0]
        ones = np.ones(n, dtype=np.float32)
        return {
            "input_connectivity": self.input_connectivity, "rec_connectivity": self.rec_connectivity,
            "output_connectivity": self.output_connectivity,
            "Dale_rec": np.diag(self.sign_rec if self.dale else ones).astype(np.float32),
            "Dale_out": np.diag(self.sign_out if self.dale else ones).astype(np.float32),
        }


def _diag_signs(matrix: Any, name: str, N_rec: int) -> np.ndarray:
    arr = np.asarray(matrix, dtype=np.float32)
    if arr.shape != (N_rec, N_rec):
        raise ValueError(f"{name} must be a ({N_rec}, {N_rec}) diagonal matrix, got shape {arr.shape}")
    if np.any(arr - np.diag(np.diag(arr))):
        raise ValueError(f"{name} must be diagonal (one sign per unit); general matrices are not supported")
    return np.diag(arr).copy()


def build_wiring(params: Mapping[str, Any], N_in: int, N_rec: int, N_out: int, seed: int,
                 strict: bool = True) -> Wiring:
    """The wiring described by a parameter dict (PsychRNN's keys plus ours).

    PsychRNN's keys: ``input_connectivity``, ``rec_connectivity``, ``output_connectivity`` (arrays),
    ``autapses``, ``dale_ratio``, ``Dale_rec``/``Dale_out`` (diagonal matrices, as in its weight files).
    Ours: ``input_density``/``rec_density``/``output_density`` (random masks drawn from ``seed``),
    ``regions`` (see :func:`agents.regions.build_regions`), ``fixed`` (``{"W_rec": fraction or mask}``).
    Masks multiply: an explicit array, a density and a region spec can be combined.

    Args:
        strict: validate ``dale_ratio`` (False when loading a PsychRNN file, which may hold 0 or 1).
    """
    from .regions import build_regions

    shapes = {"W_in": (N_rec, N_in), "W_rec": (N_rec, N_rec), "W_out": (N_out, N_rec)}
    keys = {"W_in": "input", "W_rec": "rec", "W_out": "output"}
    masks = {}
    for i, m in enumerate(MATRICES):
        key = f"{keys[m]}_connectivity"
        arr = np.ones(shapes[m], dtype=np.float32)
        if params.get(key) is not None and not isinstance(params.get(key), str):
            arr = arr * check_mask(params[key], shapes[m], key)
        density = params.get(f"{keys[m]}_density", 1.0)
        if _check_density(density, f"{keys[m]}_density") < 1.0:
            arr = arr * RandomMask(shapes[m], density, seed=sub_seed(seed, "mask", i)).mask
        masks[m] = arr
    labels = None
    sign_rec = sign_out = None
    dale_ratio = params.get("dale_ratio")
    if strict:
        dale_ratio = validate_dale_ratio(dale_ratio, N_rec)
    elif isinstance(dale_ratio, np.ndarray):
        dale_ratio = dale_ratio.item()
    if params.get("regions") is not None:
        spec = dict(params["regions"]) if isinstance(params["regions"], Mapping) else params["regions"]
        if dale_ratio is not None and isinstance(spec, dict) and spec.get("dale_ratio") is None:
            spec["dale_ratio"] = dale_ratio  # the model's ratio is each region's default: Dale per region
        regions = build_regions(spec, N_in=N_in, N_out=N_out, seed=sub_seed(seed, "regions"))
        if regions.N_rec != N_rec:
            raise ValueError(f"regions add up to {regions.N_rec} units but N_rec={N_rec}")
        masks = {m: masks[m] * regions.masks[m] for m in MATRICES}
        labels = regions.labels
        if regions.sign_rec is not None:
            sign_rec = regions.sign_rec
            if dale_ratio is None:
                dale_ratio = float(np.mean(sign_rec > 0))
    if sign_rec is None and dale_ratio is not None:
        if params.get("Dale_rec") is not None:
            sign_rec = _diag_signs(params["Dale_rec"], "Dale_rec", N_rec)
        else:
            sign_rec = dale_signs(dale_ratio, N_rec)
    if sign_rec is not None:
        if params.get("Dale_out") is not None and dale_ratio is not None and params.get("regions") is None:
            sign_out = _diag_signs(params["Dale_out"], "Dale_out", N_rec)
        else:
            sign_out = np.maximum(sign_rec, 0).astype(np.float32)
    if not params.get("autapses", True):
        np.fill_diagonal(masks["W_rec"], 0.0)
    fixed = {}
    for m, spec in (params.get("fixed") or {}).items():
        if m not in shapes:
            raise ValueError(f"fixed: unknown matrix {m!r}; expected one of {', '.join(shapes)}")
        if isinstance(spec, str):
            raise ValueError(f"fixed[{m!r}] = {spec!r}: an explicit fixed-synapse mask is not part of a config; "
                             "load the model's weights file or checkpoint, or pass the mask as an array")
        if np.ndim(spec) == 0:
            fixed[m] = FixedSynapses(shapes[m], fraction=float(spec),
                                     seed=sub_seed(seed, "fixed", MATRICES.index(m))).fixed
        else:
            fixed[m] = FixedSynapses(shapes[m], mask=spec).fixed
    return Wiring(masks["W_in"], masks["W_rec"], masks["W_out"], dale_ratio, sign_rec, sign_out, labels, fixed)
