"""shaping.figures: connectivity and curriculum figures from plain arrays, drawn headless."""
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from shaping import figures

# shared/fixtures sits in the checkout or beside it
FIXTURES = next((p / "shared" / "fixtures" for p in Path(__file__).resolve().parents
                 if (p / "shared" / "fixtures").is_dir()), None)


def png_size(fig: Figure) -> tuple[int, int]:
    data = figures.to_png(fig, dpi=50)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as im:
        im.verify()
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def dale_weights(N_rec=10, N_in=3, N_out=2, n_exc=7, seed=0):
    rng = np.random.default_rng(seed)
    sign = np.where(np.arange(N_rec) < n_exc, 1.0, -1.0)
    return {
        "W_rec": rng.normal(size=(N_rec, N_rec)), "W_in": rng.normal(size=(N_rec, N_in)),
        "W_out": rng.normal(size=(N_out, N_rec)), "Dale_rec": np.diag(sign), "dale_ratio": n_exc / N_rec,
        "rec_connectivity": (rng.random((N_rec, N_rec)) < 0.5).astype(float),
    }, sign


# ---------------------------------------------------------------------------------------------- weights
def test_effective_weights_follow_psychrnn_dale_and_masks():
    w, sign = dale_weights()
    eff = figures.effective_weights(w)
    np.testing.assert_array_equal(eff["W_rec"] == 0, (w["rec_connectivity"] == 0) | (w["W_rec"] == 0))
    assert np.all(eff["W_rec"][:, sign > 0] >= 0) and np.all(eff["W_rec"][:, sign < 0] <= 0)
    assert np.all(eff["W_in"] >= 0)
    assert np.all(eff["W_out"][:, sign < 0] == 0) and np.all(eff["W_out"][:, sign > 0] >= 0)
    again = figures.effective_weights({**w, **eff})
    for key in eff:  # idempotent: a file of effective weights comes back unchanged
        np.testing.assert_allclose(again[key], eff[key])


def test_effective_weights_without_dale_only_mask():
    w, _ = dale_weights()
    w["dale_ratio"] = np.array(None, dtype=object)  # how PsychRNN stores "no Dale"
    eff = figures.effective_weights(w)
    np.testing.assert_allclose(eff["W_rec"], w["W_rec"] * w["rec_connectivity"])
    np.testing.assert_allclose(eff["W_in"], w["W_in"])
    assert figures.dale_sign_from_weights(w) is None


@pytest.mark.skipif(FIXTURES is None, reason="shared/fixtures not found")
def test_effective_weights_of_a_psychrnn_file_are_the_file():
    w = dict(np.load(FIXTURES / "psychrnn_plain.weights.npz", allow_pickle=True))
    eff = figures.effective_weights(w)
    for key in ("W_in", "W_rec", "W_out"):
        np.testing.assert_allclose(eff[key], w[key])


def test_unit_order_groups_regions_then_e_before_i():
    sign = np.array([-1, 1, 1, -1, 1, -1], dtype=float)
    region = ["B", "A", "B", "A", "A", "B"]
    order, groups = figures.unit_order(6, sign, region)
    # first appearance: B before A; within a region E first, then I, each in index order
    assert order.tolist() == [2, 0, 5, 1, 4, 3]
    assert groups == [(0, 1, "B:E"), (1, 3, "B:I"), (3, 5, "A:E"), (5, 6, "A:I")]
    order, groups = figures.unit_order(4)
    assert order.tolist() == [0, 1, 2, 3] and groups == [(0, 4, "")]
    with pytest.raises(ValueError, match="dale_sign"):
        figures.unit_order(4, dale_sign=[1, -1])


def test_w_rec_heatmap_is_ordered_and_centred_at_zero():
    w, sign = dale_weights(n_exc=3)
    eff = figures.effective_weights(w)
    fig = figures.w_rec_heatmap(eff["W_rec"], sign, region_labels=["A"] * 5 + ["B"] * 5)
    image = fig.axes[0].images[0]
    order, _ = figures.unit_order(10, sign, ["A"] * 5 + ["B"] * 5)
    np.testing.assert_allclose(image.get_array(), eff["W_rec"][np.ix_(order, order)])
    assert image.norm.vcenter == 0 and image.norm.vmin == -image.norm.vmax
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["A:E", "A:I", "B:I"]
    assert png_size(fig)[0] > 100
    with pytest.raises(ValueError, match="square"):
        figures.w_rec_heatmap(np.zeros((3, 4)))


def test_w_rec_image_colours_signs_and_scales_up():
    w = np.array([[1.0, -1.0], [0.5, 0.0]])
    img = figures.w_rec_image(w, min_px=64)
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
    red, blue, white = img[0, 0], img[0, 63], img[63, 63]
    assert red[0] > red[2] and blue[2] > blue[0]
    assert np.all(white > 240)  # zero is white on the diverging map


def test_eigenspectrum_plots_the_eigenvalues_and_unit_circle():
    w = np.array([[0.0, -2.0], [2.0, 0.0]])  # eigenvalues ±2i
    fig = figures.eigenspectrum(w)
    ax = fig.axes[0]
    pts = ax.collections[0].get_offsets()
    np.testing.assert_allclose(sorted(map(tuple, np.asarray(pts))), [(0.0, -2.0), (0.0, 2.0)], atol=1e-12)
    circle = ax.lines[0].get_xydata()
    np.testing.assert_allclose(np.hypot(circle[:, 0], circle[:, 1]), 1.0)
    assert "2" in ax.get_title()
    png_size(fig)


def test_input_and_output_maps_share_the_unit_order():
    w, sign = dale_weights()
    fig_in = figures.w_in_map(w["W_in"], sign, input_names=["a", "b", "c"])
    fig_out = figures.w_out_map(w["W_out"], sign, output_names=["left", "right"])
    order, _ = figures.unit_order(10, sign)
    np.testing.assert_allclose(fig_in.axes[0].images[0].get_array(), w["W_in"][order])
    np.testing.assert_allclose(fig_out.axes[0].images[0].get_array(), w["W_out"][:, order])
    assert [t.get_text() for t in fig_in.axes[0].get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in fig_out.axes[0].get_yticklabels()] == ["left", "right"]
    png_size(fig_in)
    png_size(fig_out)


# ---------------------------------------------------------------------------------------------- behaviour
def test_fit_logistic_recovers_known_parameters():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, 20000)
    y = rng.random(20000) < 1 / (1 + np.exp(-(0.5 + 6.0 * x)))
    b0, b1 = figures.fit_logistic(x, y)
    assert b0 == pytest.approx(0.5, abs=0.1) and b1 == pytest.approx(6.0, rel=0.05)


def test_fit_logistic_stays_finite_on_separable_data():
    x = np.array([-0.3, -0.1, 0.1, 0.3] * 50)
    b0, b1 = figures.fit_logistic(x, x > 0)
    assert np.isfinite([b0, b1]).all() and b1 > 10 and abs(b0 / b1) < 0.05
    with pytest.raises(ValueError, match="fit_logistic"):
        figures.fit_logistic([], [])


def two_choice_trials(n=4000, seed=2):
    rng = np.random.default_rng(seed)
    coherence = rng.choice([0.1, 0.3, 0.5], n)
    target = rng.integers(0, 2, n)
    signed = coherence * np.where(target == 1, 1, -1)
    choice = (rng.random(n) < 1 / (1 + np.exp(-8 * signed))).astype(int)
    choice[:100] = -1  # no response
    outcome = np.where(choice < 0, "no_response", np.where(choice == target, "correct", "error"))
    return pd.DataFrame({"trial": np.arange(n), "outcome": outcome, "choice": choice, "target": target,
                         "coherence": coherence})


def test_psychometric_points_sign_evidence_and_drop_no_response():
    trials = two_choice_trials()
    pts = figures.psychometric_points(trials, "coherence")
    np.testing.assert_allclose(pts["evidence"], [-0.5, -0.3, -0.1, 0.1, 0.3, 0.5])
    assert pts["n"].sum() == len(trials) - 100
    assert pts["p"].is_monotonic_increasing and pts["p"].iloc[0] < 0.1 and pts["p"].iloc[-1] > 0.9
    kept = trials[trials.choice >= 0]
    sel = (kept.coherence == 0.5) & (kept.target == 1)
    assert pts["p"].iloc[-1] == pytest.approx((kept.choice[sel] == 1).mean())


def test_psychometric_points_bin_continuous_evidence_and_use_p_correct_for_many_choices():
    rng = np.random.default_rng(3)
    n = 600
    trials = pd.DataFrame({"choice": rng.integers(0, 3, n), "target": rng.integers(0, 3, n),
                           "delay": rng.uniform(0, 1000, n)})
    pts = figures.psychometric_points(trials, "delay", max_levels=5)
    assert len(pts) == 5 and pts["n"].sum() == n
    assert pts["p"].mean() == pytest.approx((trials.choice == trials.target).mean(), abs=0.05)


def test_psychometric_curve_draws_points_and_fit():
    fig = figures.psychometric_curve(two_choice_trials(), "coherence", title="stage hard")
    ax = fig.axes[0]
    assert "stage hard" in ax.get_title() and "100 no response" in ax.get_title()
    fit = [line for line in ax.lines if "logistic" in line.get_label()]
    assert len(fit) == 1 and np.all(np.diff(fit[0].get_ydata()) >= 0)
    png_size(fig)
    empty = figures.psychometric_curve(two_choice_trials().drop(columns="coherence"), "coherence")
    assert "no scorable" in empty.axes[0].texts[0].get_text()


def test_stage_timeline_marks_each_event_at_its_stage():
    trial = np.arange(1, 7) * 100
    stage = np.array([0, 0, 1, 1, 2, 1])
    events = pd.DataFrame({"event": ["graduated", "graduated", "regressed"], "trial": [200, 400, 600]})
    fig = figures.stage_timeline(trial, stage, events, stage_names=["easy", "mid", "hard"])
    ax = fig.axes[0]
    marks = {c.get_label(): np.asarray(c.get_offsets()) for c in ax.collections}
    np.testing.assert_allclose(marks["graduated"], [[200, 0], [400, 1]])
    np.testing.assert_allclose(marks["regressed"], [[600, 1]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["easy", "mid", "hard"]
    png_size(fig)


def test_curriculum_curves_one_panel_per_knob():
    trial = np.arange(1, 11) * 64
    fig = figures.curriculum_curves(trial, np.linspace(0.5, 0.9, 10),
                                    {"coherence": np.linspace(0.7, 0.1, 10), "stim_noise": np.full(10, 0.1)},
                                    stage_index=np.repeat([0, 1], 5))
    assert len(fig.axes) == 3
    assert [ax.get_ylabel() for ax in fig.axes] == ["accuracy", "coherence", "stim_noise"]
    stage_lines = [ln for ln in fig.axes[1].lines if ln.get_linestyle() == ":"]
    assert len(stage_lines) == 1 and stage_lines[0].get_xdata()[0] == trial[4]
    assert fig.axes[0].get_legend() is None  # one accuracy line, no legend needed
    png_size(fig)


def test_curriculum_curves_draw_the_policys_accuracy_when_given():
    trial = np.arange(1, 11) * 64
    policy = np.r_[np.nan, np.linspace(0.55, 0.85, 9)]
    fig = figures.curriculum_curves(trial, np.linspace(0.5, 0.9, 10), policy_accuracy=policy, window_trials=256)
    lines = [ln for ln in fig.axes[0].lines if ln.get_linestyle() == "-"]
    assert len(lines) == 2 and np.allclose(lines[1].get_ydata()[1:], policy[1:])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "recent accuracy (last 256 trials)", "criterion accuracy (policy window)"]  # readout's labels
    png_size(fig)


def test_a_knob_drawn_from_a_set_is_a_band_never_its_mean():
    trial = np.arange(1, 7) * 64
    low = np.array([0.7, 0.7, 0.1, 0.1, 0.1, 0.1])  # fixed 0.7, then drawn from {0.1, 0.3, 0.5, 0.7}
    high = np.array([0.7, 0.7, 0.7, 0.7, 0.7, 0.7])
    fig = figures.curriculum_curves(trial, np.full(6, 0.8), {"coherence": (low, high)})
    ax = fig.axes[1]
    drawn = {round(float(v), 6) for ln in ax.lines for v in ln.get_ydata()}
    assert drawn == {0.1, 0.7}  # the band's edges; 0.4 (the mean) appears nowhere
    band = [c for c in ax.collections if c.get_label() == "drawn from (min..max)"]
    assert len(band) == 1
    y = np.concatenate([p.vertices[:, 1] for p in band[0].get_paths()])
    assert y.min() == pytest.approx(0.1) and y.max() == pytest.approx(0.7)
    png_size(fig)


def test_one_colour_per_agent_in_the_order_given():
    colours = figures.agent_colours(["shaped", "control", "dale", "shaped"])
    assert list(colours) == ["shaped", "control", "dale"] and len(set(colours.values())) == 3
    assert figures.agent_colours(["shaped", "control"]) == {k: colours[k] for k in ("shaped", "control")}
    assert all(c.startswith("#") and len(c) == 7 for c in colours.values())
    many = figures.agent_colours([f"a{i}" for i in range(15)])
    assert len(set(many.values())) == 15


def test_a_psychometric_panel_says_why_it_has_no_curve():
    trials = two_choice_trials().assign(coherence=0.5)
    fig = figures.psychometric_curve(trials, "coherence", title="easy: its last 200 trials")
    ax = fig.axes[0]
    assert not [ln for ln in ax.lines if "fit" in ln.get_label()]
    assert any("no fit, 2 evidence levels (a curve needs 3)" in t.get_text() for t in ax.texts)
    assert ax.get_title().startswith("easy: its last 200 trials")


def test_opt_outs_are_not_responses_in_psychometric_data():
    """PostDecisionWager's sure choice (choice 2, outcome no_response) is left out like a missing answer."""
    from shaping.tasks import PostDecisionWager

    task = PostDecisionWager(seed=0, N_batch=64)
    b = task.generate(batch_id=0)
    y_hat = b.y.copy()
    y_hat[:, :, 2] = 2.0  # take the sure option wherever it is offered
    scored = task.score(b.y, y_hat, b.mask, b.params)
    opted = scored["opted_out"].to_numpy()
    assert opted.any() and (~opted).any()
    np.testing.assert_array_equal(figures.responded(scored), ~opted)
    points = figures.psychometric_points(scored, "coherence")
    assert points["n"].sum() == (~opted).sum()  # P(choice = 1) from the trials that chose a side
