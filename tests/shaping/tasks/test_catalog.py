"""make / catalog, and task-specific facts of the PsychRNN parameterisations."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_cases import CASES

from shaping.tasks import DelayedDiscrimination, MatchToCategory, PerceptualDiscrimination, catalog, get, make


def test_catalog_lists_every_builtin_with_its_paper():
    table = catalog()
    assert set(CASES) <= set(table["name"])
    row = table.set_index("name").loc[sorted(CASES)]
    assert (row["paper"].str.len() > 0).all() and row["link"].str.startswith("http").all()
    assert (row["knobs"].str.len() > 0).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_make_by_class_and_snake_name(name):
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    assert type(make(name, seed=0)) is type(make(snake, seed=0)) is get(name)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown task 'Nope'.*PerceptualDiscrimination"):
        make("Nope")


def test_perceptual_direction_is_honoured():
    task = PerceptualDiscrimination(direction=1, seed=0)
    b = task.generate(64, batch_id=0)
    assert (b.params["direction"] == 1).all()
    response = b.mask[:, :, 0] > 0
    assert (b.y[:, :, 1][response] >= b.y[:, :, 0][response]).all()
    assert (task.target_choice(b.y, b.mask, b.params) == 1).all()
    with pytest.raises(ValueError, match="direction must be 0, 1 or None, got 2"):
        PerceptualDiscrimination(direction=2)


def test_perceptual_psychrnn_timing():
    task = PerceptualDiscrimination(T=2000, seed=0)
    p = task.generate(2000, batch_id=0).params
    assert p["onset_time"].between(0, 1000).all() and p["stim_duration"].between(250, 750).all()
    assert set(p["coherence"]) == {0.1, 0.3, 0.5, 0.7} and p["stim_noise"].eq(0.1).all()


def test_delayed_discrimination_psychrnn_defaults():
    task = DelayedDiscrimination(T=2000, seed=0)
    p = task.generate(2000, batch_id=0).params
    pairs = {(18, 10), (22, 14), (26, 18), (30, 22), (34, 26)}
    hi_lo = {(max(a, b), min(a, b)) for a, b in zip(p["f1"], p["f2"])}
    assert hi_lo == pairs
    assert ((p["f1"] > p["f2"]) == (p["choice"] == 0)).all()
    assert p["stimulus_1"].between(0, 250).all() and (p["end"] <= 2000).all()
    assert (p["delay_ms"] <= 500).all() and p["delay_ms"].max() > 450
    assert (p["stimulus_2"] - p["delay"] == p["delay_ms"]).all() or np.allclose(p["stimulus_2"] - p["delay"],
                                                                                p["delay_ms"])


def test_delayed_discrimination_fixed_durations_and_delay_scale():
    task = DelayedDiscrimination(onset_time=100, stim_duration_1=200, delay_duration=400, stim_duration_2=200,
                                 decision_duration=200, seed=0)
    p = task.generate(8, knobs={"delay_scale": 0.5}, batch_id=0).params
    assert (p["stimulus_1"] == 100).all() and (p["stimulus_2"] == 500).all() and (p["end"] == 900).all()


def test_delayed_discrimination_empty_decision_period_counts_correct():
    task = DelayedDiscrimination(decision_duration=5, onset_time=0, seed=0)  # 5 ms: between two steps
    b = task.generate(32, batch_id=0)
    empty = ~b.mask.any(axis=(1, 2))
    assert empty.any()
    scored = task.score(b.y, np.zeros_like(b.y), b.mask, b.params)
    assert (scored.loc[empty, "target"] == -1).all() and (scored.loc[empty, "outcome"] == "correct").all()


def test_match_to_category_psychrnn_defaults():
    task = MatchToCategory(seed=0)
    p = task.generate(4000, batch_id=0).params
    assert (p["category"] == (p["angle"] // np.pi).astype(int)).all()
    counts, _ = np.histogram(p["angle"], bins=8, range=(0, 2 * np.pi))
    assert counts.min() > 0.8 * 500  # uniform on the ring
    assert (p["onset_time"] == 200).all() and (p["input_dur"] == 1000).all() and (p["output_dur"] == 800).all()
    with pytest.raises(ValueError, match="T must be >= 2000"):
        MatchToCategory(T=1500)


def test_match_to_category_margin_and_category_frequency():
    two = MatchToCategory(seed=0)
    p = two.generate(2000, knobs={"boundary_margin": 0.5, "p_choice1": 1.0}, batch_id=0).params
    assert (p["category"] == 1).all()
    assert (np.abs(p["angle"] - 1.5 * np.pi) <= 0.25 * np.pi + 1e-9).all()
    four = MatchToCategory(N_out=4, seed=0)
    uniform = four.generate(4000, batch_id=0).params["category"].value_counts(normalize=True)
    assert np.allclose(uniform.sort_index(), 0.25, atol=0.03)
    skewed = four.generate(4000, knobs={"p_choice1": 1.0}, batch_id=0).params["category"]
    assert abs((skewed == 1).mean() - 0.5) < 0.03
