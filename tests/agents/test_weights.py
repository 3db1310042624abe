"""Weight files: PsychRNN's pickled dale_ratio read without allow_pickle, hostile pickles refused, atomic writes."""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

from agents.weights import load_weights, read_npz, save_weights, write_npz


def test_psychrnn_file_loads_without_allow_pickle(fixture_dir):
    path = fixture_dir / "psychrnn_plain.weights.npz"
    with pytest.raises(ValueError):
        np.load(path)["dale_ratio"]                       # NumPy refuses it without allow_pickle
    arrays, meta = load_weights(path)
    assert meta is None and arrays["dale_ratio"] is None
    assert arrays["W_rec"].shape == (40, 40) and arrays["W_rec/Adam"].shape == (40, 40)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_hostile_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array(_Evil(), dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("dale_ratio.npy", buf.getvalue())
    with pytest.raises(ValueError, match="a pickle we will not load"):
        read_npz(path)


def test_our_files_round_trip_and_hold_json(tmp_path):
    p = save_weights(tmp_path / "w", {"W_rec": np.eye(3), "dale_ratio": 0.5}, {"config": {"N_rec": 3}})
    assert p.name == "w.npz"
    with np.load(p) as f:                                  # plain NumPy, no pickles anywhere
        assert float(f["dale_ratio"]) == 0.5 and "skinnerbox" in f.files
    arrays, meta = load_weights(tmp_path / "w")            # ".npz" found as np.savez names files
    assert meta["config"] == {"N_rec": 3} and arrays["dale_ratio"] == 0.5
    p2 = save_weights(tmp_path / "v.npz", {"W_rec": np.eye(2), "dale_ratio": None}, {"config": {}})
    assert "dale_ratio" not in np.load(p2).files and load_weights(p2)[0]["dale_ratio"] is None


def test_write_is_atomic_and_refuses_objects(tmp_path):
    target = tmp_path / "x.npz"
    write_npz(target, {"a": np.zeros(3)})
    with pytest.raises(ValueError, match="holds Python objects"):
        write_npz(target, {"a": np.array([{"k": 1}], dtype=object)})
    np.testing.assert_array_equal(np.load(target)["a"], np.zeros(3))   # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["x.npz"]                    # no temporary file left behind
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_weights(tmp_path / "missing")
