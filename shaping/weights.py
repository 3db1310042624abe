"""Weight files (``.npz``): PsychRNN's format plus a JSON description, read without ``allow_pickle``.

A file written by :meth:`agents.rnn.RNN.save` holds PsychRNN's keys (``W_in, W_rec, W_out`` as the
*effective* matrices, ``b_rec, b_out, init_state, Dale_rec, Dale_out, input_connectivity,
rec_connectivity, output_connectivity``, the Adam moments ``<name>/Adam`` and ``<name>/Adam_1``, and
``dale_ratio`` as a plain 0-d float when Dale's principle is on, ``tau`` ``(N_rec,)`` ms for a network with
trainable time constants) and one more key, ``skinnerbox``: a JSON
string with the model's ``config()`` (hyper-parameters, constraint settings, seed), the region labels and the
package version. Loading such a file needs no other input. PsychRNN 1.0.0 can read these files too.

PsychRNN's own files store ``dale_ratio`` as a pickled 0-d object array (PsychRNN needs
``allow_pickle=True``). We never unpickle freely: object arrays are read with an unpickler that admits only
NumPy's array reconstruction, so a float or None comes back and anything else is refused.

Writes are atomic (a temporary file in the same folder, then ``os.replace``). NumPy only: the NumPy
simulator and the dashboards load files without TensorFlow, so the format lives here, below every process
(``agents.weights`` re-exports it).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from numpy.lib import format as npformat

META_KEY = "skinnerbox"
FORMAT_VERSION = 1

# The only globals an object array in a PsychRNN file may reference (NumPy's own reconstruction).
_SAFE_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        return super().find_class(module, name)


def resolve(path: str | os.PathLike) -> Path:
    """The file ``path`` names, trying ``path + ".npz"`` as ``np.savez`` names files."""
    p = Path(path)
    if p.exists():
        return p
    q = Path(str(path) + ".npz")
    if q.exists():
        return q
    raise FileNotFoundError(f"no weights file at {str(p)!r} (nor {str(q)!r})")


def read_npz(path: str | os.PathLike) -> dict[str, Any]:
    """Every array of an ``.npz`` file; 0-d object arrays come back as their Python value (None, float).

    Raises:
        ValueError: an object array holding anything but NumPy data (a pickle we will not run).
    """
    out: dict[str, Any] = {}
    with zipfile.ZipFile(resolve(path)) as zf:
        for member in zf.namelist():
            key = member[:-4] if member.endswith(".npy") else member
            fp = io.BytesIO(zf.read(member))
            version = npformat.read_magic(fp)
            reader = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            _, _, dtype = reader(fp)
            if not dtype.hasobject:
                fp.seek(0)
                out[key] = npformat.read_array(fp, allow_pickle=False)
                continue
            try:
                arr = _NumpyOnlyUnpickler(fp).load()
            except (pickle.UnpicklingError, AttributeError, EOFError) as err:
                raise ValueError(f"{path}: array {key!r} is a pickle we will not load ({err})") from None
            out[key] = arr.item() if isinstance(arr, np.ndarray) and arr.ndim == 0 else arr
    return out


def load_weights(path: str | os.PathLike) -> tuple[dict[str, Any], dict | None]:
    """``(arrays, meta)``: the file's arrays and, for our files, the parsed ``skinnerbox`` JSON (else None).

    ``arrays["dale_ratio"]`` is a float or None in both formats (absent in PsychRNN files older than 1.0
    means None, as PsychRNN itself reads them).
    """
    arrays = read_npz(path)
    meta = None
    if META_KEY in arrays:
        meta = json.loads(str(arrays.pop(META_KEY)))
    dale = arrays.get("dale_ratio")
    if isinstance(dale, np.ndarray):
        dale = dale.item()
    if dale is None and meta is not None:
        dale = meta.get("config", {}).get("dale_ratio")
    arrays["dale_ratio"] = None if dale is None else float(dale)
    return arrays, meta


def write_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """Write ``arrays`` to ``path`` atomically (``.npz`` appended when missing, as ``np.savez`` does).

    Raises:
        ValueError: an array of Python objects (we never write pickles).
    """
    p = Path(path)
    if p.suffix != ".npz":
        p = Path(str(p) + ".npz")
    clean = {}
    for key, val in arrays.items():
        arr = np.asarray(val)
        if arr.dtype.hasobject:
            raise ValueError(f"cannot write {key!r}: it holds Python objects ({type(val).__name__}); weight "
                             "files hold numbers and strings only")
        clean[key] = arr
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **clean)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p


def save_weights(path: str | os.PathLike, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Write a weights file: PsychRNN's ``arrays`` plus ``meta`` as the ``skinnerbox`` JSON string.

    ``arrays["dale_ratio"]`` (float or None) is written as a 0-d float, or left out when None (PsychRNN
    then reads None, as for its pre-1.0 files).
    """
    out = {k: v for k, v in arrays.items() if k != "dale_ratio"}
    dale = arrays.get("dale_ratio")
    if dale is not None:
        out["dale_ratio"] = np.float64(dale)
    out[META_KEY] = np.array(json.dumps({"format": FORMAT_VERSION, **meta}, default=_json_default))
    return write_npz(path, out)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-able")


def package_version() -> str:
    """The installed skinnerbox version (``"unknown"`` in a bare checkout)."""
    try:
        from importlib.metadata import version

        return version("skinnerbox")
    except Exception:  # - not installed
        return "unknown"


# ---------------------------------------------------------------------------------------------- snapshot names
_SNAPSHOT_TAG = re.compile(r"stage(\d+)_(.+?)(?:_trial(\d+))?")


def snapshot_tag(stage_index: int, stage: str, trials: int) -> str:
    """The tag of the snapshot an agent takes when it leaves a stage, ``stage<i>_<name>_trial<N>`` (N: its
    cumulative trial count then): unique however often it leaves the stage (weights file
    ``<agent>_<tag>.npz``, MLflow folder ``connectivity/<tag>/``)."""
    return f"stage{int(stage_index)}_{stage}_trial{int(trials)}"


def parse_snapshot_tag(tag: str) -> tuple[int, str, int | None] | None:
    """``(stage index, stage name, trial count)`` of a :func:`snapshot_tag`; the count is None for the
    ``stage<i>_<name>`` tags of older agents; None for any other tag (``final``)."""
    match = _SNAPSHOT_TAG.fullmatch(tag)
    if match is None:
        return None
    return int(match[1]), match[2], None if match[3] is None else int(match[3])
