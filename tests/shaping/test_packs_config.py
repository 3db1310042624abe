"""``[lab] pack_size`` and :meth:`LabFile.packs`: which agents share an agent process."""
from __future__ import annotations

import pytest

from shaping.errors import ConfigError
from shaping.labfile import LabFile


def lab(pack_size, agents) -> LabFile:
    return LabFile.from_dict({"lab": {"name": "p", "pack_size": pack_size},
                              "task": {"name": "PerceptualDiscrimination", "T": 500},
                              "curricula": {"a": {"kind": "fixed"}, "b": {"kind": "fixed"}}, "agents": agents})


def names(packs) -> list[list[str]]:
    return [[e.name for e in pack] for pack in packs]


def test_a_sweep_fills_packs_in_file_order():
    f = lab(3, [{"name": "net", "N_rec": 50, "sweep": {"seed": list(range(7)), "curriculum": ["a", "b"]}}])
    sizes = [len(p) for p in f.packs()]
    assert sizes == [3, 3, 3, 3, 2] and sum(sizes) == 14
    assert names(f.packs())[0] == ["net-seed=0-curriculum=a", "net-seed=0-curriculum=b", "net-seed=1-curriculum=a"]


def test_networks_that_differ_in_size_or_process_settings_do_not_share():
    f = lab(8, [{"name": "small", "N_rec": 50, "sweep": {"seed": [1, 2], "dale_ratio": [0.5, 0.8]}},
                {"name": "big", "N_rec": 100, "seed": 1},
                {"name": "other-optimizer", "N_rec": 50, "seed": 3, "optimizer": "SGD"},
                {"name": "more-threads", "N_rec": 50, "seed": 4, "threads": 2},
                {"name": "noisy", "N_rec": 50, "seed": 5, "rec_noise": 0.1, "learning_rate": 0.01}])
    assert names(f.packs()) == [
        ["small-seed=1-dale_ratio=0.5", "small-seed=1-dale_ratio=0.8", "small-seed=2-dale_ratio=0.5",
         "small-seed=2-dale_ratio=0.8", "noisy"],  # noise and learning rate are per network in a pack
        ["big"], ["other-optimizer"], ["more-threads"]]


def test_pack_size_one_is_a_process_per_network():
    f = lab(1, [{"name": "net", "N_rec": 50, "sweep": {"seed": [1, 2, 3]}}])
    assert names(f.packs()) == [["net-seed=1"], ["net-seed=2"], ["net-seed=3"]]
    assert LabFile.from_dict({**f.to_dict()}).lab.pack_size == 1  # lab.json round trip


@pytest.mark.parametrize("bad", [0, -2, 1.5, "4", True])
def test_a_bad_pack_size_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="lab.pack_size = .* must be an integer >= 1"):
        lab(bad, [{"name": "a", "N_rec": 50}])
