"""The ladder: one stage per level of a knob, the same criteria on each (Khajehabdollahi et al. 2024's N -> N+1)."""
import numpy as np
import pandas as pd
import pytest

from shaping.policies import SpecError, StagesPolicy, from_spec
from shaping.policies.ladder import ladder_levels
from shaping.tasks import PerceptualDiscrimination


@pytest.fixture
def task():
    return PerceptualDiscrimination(seed=3, N_batch=16)


def scored(n: int, correct: bool) -> pd.DataFrame:
    return pd.DataFrame({"outcome": ["correct" if correct else "error"] * n, "choice": [0] * n,
                         "direction": [0] * n, "coherence": [0.5] * n})


def test_levels_from_a_range_include_both_ends():
    assert ladder_levels("levels", {"from": 2, "to": 6}) == [2, 3, 4, 5, 6]
    assert ladder_levels("levels", {"from": 2, "to": 10, "step": 4}) == [2, 6, 10]
    assert ladder_levels("levels", {"from": 0.7, "to": 0.1, "step": -0.3}) == pytest.approx([0.7, 0.4, 0.1])
    with pytest.raises(SpecError, match="never goes from 2 to 6"):
        ladder_levels("levels", {"from": 2, "to": 6, "step": -1})
    with pytest.raises(SpecError, match="needs 'from' and 'to'"):
        ladder_levels("levels", {"from": 2})


def test_it_is_the_stages_list_it_stands_for(task):
    spec = {"kind": "ladder", "knob": "coherence", "levels": [0.7, 0.4, 0.2], "window": 16,
            "graduate": {"accuracy": 0.9}, "knobs": {"stim_noise": 0.05}}
    ladder = from_spec(spec, task, seed=0)
    stages = from_spec({"kind": "stages", "window": 16, "stages": [
        {"name": f"coherence={c:g}", "knobs": {"stim_noise": 0.05, "coherence": c}, "graduate": {"accuracy": 0.9}}
        for c in (0.7, 0.4, 0.2)]}, task, seed=0)
    assert isinstance(ladder, StagesPolicy)
    moves = []
    for correct in [True, False, True, True, True, True, True, True]:
        a, b = ladder.update(scored(8, correct)), stages.update(scored(8, correct))
        assert [e["event"] for e in a] == [e["event"] for e in b]
        assert ladder.conditions()["knobs"] == stages.conditions()["knobs"]
        moves += [e["event"] for e in a]
    assert moves == ["graduated", "graduated", "complete"]
    assert ladder.conditions()["stage"] == "coherence=0.2"


def test_the_spec_round_trips_and_errors_name_the_key(task):
    spec = {"kind": "ladder", "knob": "coherence", "levels": {"from": 0.7, "to": 0.1, "step": -0.2},
            "graduate": {"accuracy": 0.8, "min_trials": 32}}
    config = from_spec(spec, task, seed=1).get_config()
    assert config["levels"] == {"from": 0.7, "to": 0.1, "step": -0.2}
    assert from_spec(config, task, seed=1).get_config() == config
    with pytest.raises(SpecError, match=r"knobs.coherence: the ladder sets 'coherence'"):
        from_spec({**spec, "knobs": {"coherence": 0.5}}, task)
    with pytest.raises(SpecError, match="coherence"):
        from_spec({**spec, "levels": [0.7, 5.0]}, task)  # outside the knob's range
    with pytest.raises(SpecError, match="knob = ''"):
        from_spec({**spec, "knob": ""}, task)
    assert np.isclose(from_spec(spec, task).conditions()["knobs"]["coherence"], 0.7)
