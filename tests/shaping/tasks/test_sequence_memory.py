"""NDelayedMatch and NParity (Khajehabdollahi et al. 2024): targets against the paper's definitions bit by bit,
stream lengths, masks, the multi-head outcome rule, knob errors, and a real server scoring perfect answers.

The generic laws of ``test_builtin_tasks`` run here too, on the two layouts ``CASES`` does not hold (it is keyed
by catalog name: NDelayedMatch single-head and NParity multi-head there, the other two in ``VARIANTS``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import test_builtin_tasks as generic_laws
from builtin_cases import CASES, VARIANTS, accuracy, stream_answer
from server_thread import ServerThread

from shaping import journal
from shaping.client import TaskClient
from shaping.scoring import psychometric_axes, psychometric_points, signed_evidence
from shaping.tasks import NDelayedMatch, NParity, check_task, make
from shaping.tasks.sequence_memory import pack_bits, unpack_bits

LAYOUTS = [(cls, heads) for cls in (NDelayedMatch, NParity) for heads in ("single", "multi")]
IDS = [f"{cls.__name__}-{heads}" for cls, heads in LAYOUTS]


# ---------------------------------------------------------------------- the generic laws, on the other layouts
@pytest.fixture(params=sorted(VARIANTS))
def name(request) -> str:
    return request.param


@pytest.fixture
def case(name):
    return VARIANTS[name]


@pytest.fixture
def task(case):
    return case.factory(seed=1234)


for _law in [n for n in vars(generic_laws) if n.startswith("test_")]:
    globals()[_law] = getattr(generic_laws, _law)  # collected here with this module's fixtures
del _law


def test_every_layout_is_covered_by_the_generic_laws():
    tasks = [CASES["NDelayedMatch"].factory(seed=0), CASES["NParity"].factory(seed=0)]
    tasks += [case.factory(seed=0) for case in VARIANTS.values()]
    assert sorted((type(t).__name__, t.heads) for t in tasks) == sorted((c.__name__, h) for c, h in LAYOUTS)


# ---------------------------------------------------------------------- targets, bit by bit
def heads_of(task, N: int) -> list[tuple[int, int]]:
    """``[(n, first channel)]`` the layout scores for a trial of memory N."""
    return [(N, 0)] if task.heads == "single" else [(n, 2 * (n - 2)) for n in range(2, N + 1)]


@pytest.mark.parametrize("cls,heads", LAYOUTS, ids=IDS)
@pytest.mark.parametrize("N", [2, 3, 7, 10])
def test_targets_follow_the_papers_definitions_bit_by_bit(cls, heads, N):
    task = cls(heads=heads, N_max=10, seed=3)
    for batch_id in range(3):
        b = task.generate(128, knobs={"N": N}, batch_id=batch_id)
        L = int(b.params["length"].iloc[0])
        bits = b.x[:, :, 0]
        assert set(np.unique(bits[:, :L])) <= {0.0, 1.0} and not bits[:, L:].any()  # 0 after the stream
        expected = np.zeros_like(b.y)
        for i in range(len(b.params)):
            stream = bits[i, :L].astype(int)
            for n, c in heads_of(task, N):
                if cls is NDelayedMatch:
                    answer = int(stream[L - n] == stream[L - 1])
                else:
                    answer = int(stream[L - n:L].sum() % 2)
                expected[i, L - 1, c + answer] = 1.0
        np.testing.assert_array_equal(b.y, expected)


def test_a_stream_worked_by_hand():
    """s = 1 0 1 1 0 1 (L = 6): 2-DMS compares s[4], s[5] (0, 1): nonmatch; 3-DMS s[3], s[5] (1, 1): match;
    4-DMS s[2], s[5] (1, 1): match; 2-parity 0 + 1: odd; 3-parity 1 + 0 + 1: even; 4-parity 1 + 1 + 0 + 1:
    odd."""
    stream = np.array([[1, 0, 1, 1, 0, 1]])
    for cls, truth in ((NDelayedMatch, {2: 0, 3: 1, 4: 1}), (NParity, {2: 1, 3: 0, 4: 1})):
        task = cls(heads="multi", N_max=4, seed=0)
        bits = np.zeros((1, task.N_steps), dtype=bool)
        bits[:, :6] = stream
        words = pack_bits(bits)
        params = pd.DataFrame({"N": [4], "length": [6], "p_one": [0.5],
                               **{f"stream{k}": words[:, k] for k in range(words.shape[1])}})
        _, y, mask = task.build_trials(params, np.random.default_rng(0))
        got = {n: int(np.argmax(y[0, 5, 2 * (n - 2):2 * (n - 2) + 2])) for n in (2, 3, 4)}
        assert got == truth, cls.__name__
        assert mask[0].sum() == 6 and mask[0, 5].all()
        assert {n: stream_answer(task, stream[0], n) for n in (2, 3, 4)} == truth  # the observers' rule too


def test_bits_pack_and_unpack_across_words():
    bits = np.random.default_rng(0).random((5, 200)) < 0.5
    words = pack_bits(bits)
    assert words.shape == (5, 4) and words.dtype == np.int64 and (words >= 0).all()
    np.testing.assert_array_equal(unpack_bits(words, 200), bits.astype(np.int8))


def test_stream_statistics_as_in_the_paper():
    """N-DMS bits are fair coins; each N-parity stream has its own P(1) ~ U(0, 1), which its bits follow."""
    dms = NDelayedMatch(N_max=20, seed=0).generate(2000, knobs={"N": 20}, batch_id=0)
    L = int(dms.params["length"].iloc[0])
    assert abs(dms.x[:, :L, 0].mean() - 0.5) < 0.01 and (dms.params["p_one"] == 0.5).all()
    par = NParity(N_max=20, seed=0).generate(2000, knobs={"N": 20}, batch_id=0)
    L = int(par.params["length"].iloc[0])
    p = par.params["p_one"].to_numpy()
    assert 0.0 <= p.min() < 0.05 and 0.95 < p.max() <= 1.0
    assert np.corrcoef(p, par.x[:, :L, 0].mean(axis=1))[0, 1] > 0.9


# ---------------------------------------------------------------------- lengths
@pytest.mark.parametrize("cls", [NDelayedMatch, NParity])
def test_length_is_one_per_batch_uniform_on_n_plus_2_to_4n_plus_1_and_reproducible(cls):
    task = cls(N_max=20, seed=5)
    N = 3
    lengths = []
    for batch_id in range(300):
        p = task.generate(4, knobs={"N": N}, batch_id=batch_id).params
        assert p["length"].nunique() == 1
        lengths.append(int(p["length"].iloc[0]))
    assert min(lengths) >= N + 2 and max(lengths) < 4 * N + 2
    assert set(lengths) == set(range(N + 2, 4 * N + 2))  # every length of U{5 .. 13} drawn in 300 batches
    again = cls(N_max=20, seed=5)
    assert [int(again.generate(4, knobs={"N": N}, batch_id=k).params["length"].iloc[0])
            for k in (0, 299, 7)] == [lengths[0], lengths[299], lengths[7]]


def test_a_list_of_n_draws_the_length_with_the_largest_n_drawn():
    task = NParity(heads="multi", N_max=12, seed=2)
    for batch_id in range(30):
        p = task.generate(64, knobs={"N": [2, 5, 9]}, batch_id=batch_id).params
        longest = int(p["N"].max())
        assert p["length"].nunique() == 1 and longest + 2 <= p["length"].iloc[0] < 4 * longest + 2


def test_defaults_are_the_papers_discrete_time_and_batch():
    task = NParity()
    assert (task.dt, task.tau, task.alpha, task.N_batch, task.N_max) == (10, 10, 1.0, 256, 20)
    assert task.N_steps == 4 * 20 + 1 and task.T == 810 and task.N_in == 1 and task.N_out == 2
    multi = NDelayedMatch(heads="multi", N_max=30, dt=5, tau=20)
    assert multi.N_steps == 121 and multi.N_out == 2 * 29 and multi.alpha == 0.25
    assert multi.output_names[:3] == ("head2_nonmatch", "head2_match", "head3_nonmatch")
    assert NParity(T=2000, N_max=20).N_steps == 200  # a longer T pads more


# ---------------------------------------------------------------------- masks
@pytest.mark.parametrize("cls,heads", LAYOUTS, ids=IDS)
def test_mask_opens_only_the_answer_step_of_active_heads(cls, heads):
    task = cls(heads=heads, N_max=9, seed=4)
    for N in (2, 5, 9):
        b = task.generate(32, knobs={"N": N}, batch_id=N)
        assert b.mask.shape[2] == task.N_out == (2 if heads == "single" else 16)
        L = int(b.params["length"].iloc[0])
        steps = np.flatnonzero(b.mask.any(axis=(0, 2)))
        assert steps.tolist() == [L - 1]
        opened = np.flatnonzero(b.mask[:, L - 1].any(axis=0))
        want = [0, 1] if heads == "single" else list(range(2 * (N - 1)))
        assert opened.tolist() == want and b.mask[:, L - 1, want].all()
        assert (b.y[b.mask == 0] == 0).all()


# ---------------------------------------------------------------------- scoring
def flip(y_hat: np.ndarray, trial: int, step: int, channel: int) -> None:
    """Swap the answer of the head whose pair starts at ``channel``."""
    y_hat[trial, step, channel:channel + 2] = y_hat[trial, step, channel:channel + 2][::-1].copy()


def test_multi_head_trial_is_correct_only_when_every_active_head_is():
    task = NParity(heads="multi", N_max=8, seed=0)
    b = task.generate(6, knobs={"N": 5}, batch_id=0)
    L = int(b.params["length"].iloc[0])
    y_hat = b.y.copy()
    flip(y_hat, 1, L - 1, 2 * (5 - 2))  # the newest head (N = 5) wrong
    flip(y_hat, 2, L - 1, 0)  # head 2 wrong
    flip(y_hat, 3, L - 1, 2 * (3 - 2))  # head 3 wrong
    y_hat[4, L - 1, 2:4] = 0.5  # head 3 silent, the rest right
    y_hat[5] = 0.0  # every head silent
    y_hat[0, L - 1, 8:14] = [1, 0, 0, 1, 1, 0]  # inactive heads 6, 7, 8: ignored
    s = task.score(b.y, y_hat, b.mask, b.params)
    assert s["outcome"].tolist() == ["correct", "error", "error", "error", "error", "no_response"]
    assert s["target"].tolist() == [5] * 6
    assert s["choice"].tolist() == [5, 4, 0, 2, 2, -1]  # the longest span of heads 2..n all right
    heads = s[[f"head_{n}_correct" for n in range(2, 9)]].to_numpy()
    assert np.isnan(heads[:, 4:]).all()  # heads 6..8 are not scored at N = 5
    np.testing.assert_array_equal(heads[:, :4], [[1, 1, 1, 1], [1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 1, 1],
                                                 [1, 0, 1, 1], [0, 0, 0, 0]])
    assert task.accuracy_function(b.y, y_hat, b.mask) == pytest.approx(1 / 6)


def test_single_head_scores_head_n_and_files_it_under_its_n():
    task = NDelayedMatch(N_max=8, seed=0)
    b = task.generate(40, knobs={"N": [3, 6]}, batch_id=0)
    L = int(b.params["length"].iloc[0])
    y_hat = b.y.copy()
    for i in range(0, 40, 4):
        flip(y_hat, i, L - 1, 0)
    s = task.score(b.y, y_hat, b.mask, b.params)
    wrong = np.arange(40) % 4 == 0
    assert (s["outcome"] == np.where(wrong, "error", "correct")).all()
    N = b.params["N"].to_numpy()
    assert (s["choice"] == np.where(wrong, 0, N)).all() and (s["target"] == N).all()
    for n in range(2, 9):
        col = s[f"head_{n}_correct"].to_numpy()
        np.testing.assert_array_equal(np.isnan(col), N != n)
        np.testing.assert_array_equal(col[N == n], (~wrong[N == n]).astype(float))


def test_accuracy_against_n_is_the_psychometric_axis():
    task = NParity(heads="multi", N_max=12, seed=0)
    b = task.generate(600, knobs={"N": [2, 4, 8, 12]}, batch_id=0)
    y_hat = CASES["NParity"].observer(task, b, np.random.default_rng(0))
    s = task.score(b.y, y_hat, b.mask, b.params)
    axes = psychometric_axes(task)
    assert axes.evidence == ("N",) and axes.by is None and task.spec()["evidence_knob"] == "N"
    x, y, ylabel = signed_evidence(s, "N")
    assert ylabel == "P(correct)" and set(x) == {2, 4, 8, 12}
    points = psychometric_points(s, "N")
    assert points["evidence"].tolist() == [2, 4, 8, 12]
    assert points["p"].is_monotonic_decreasing and points["p"].iloc[0] > 0.9 and points["p"].iloc[-1] < 0.5
    for n, p in zip(points["evidence"], points["p"]):
        assert p == pytest.approx((s.loc[s["N"] == n, "outcome"] == "correct").mean())


@pytest.mark.parametrize("cls,heads", LAYOUTS, ids=IDS)
def test_knob_n_makes_the_task_harder_when_higher(cls, heads):
    task = cls(heads=heads, N_max=12, seed=11)
    observer = CASES["NParity"].observer
    acc = {N: accuracy(task, b, observer(task, b, np.random.default_rng(3)))
           for N in (2, 12) for b in [task.generate(800, knobs={"N": N}, batch_id=1)]}
    assert acc[2] >= acc[12] + 0.05, acc


# ---------------------------------------------------------------------- knobs and options
def test_knob_n_errors_name_the_task_and_the_knob():
    task = NParity(N_max=10)
    for bad, says in ((1, r"\[2, 10\]"), (11, r"\[2, 10\]"), (2.5, "whole number")):
        with pytest.raises(ValueError, match=rf"NParity: knob 'N' = {bad:g} .*{says}"):
            task.set_knobs(N=bad)
    with pytest.raises(ValueError, match=r"NDelayedMatch: knob 'N' = 30 is outside its range \[2, 20\]"):
        NDelayedMatch(N=30)
    with pytest.raises(ValueError, match="NParity has no knob 'n'; its knobs are: N"):
        task.set_knobs(n=3)
    assert NParity(N_max=30, N=25).knob("N").high == 30 and NParity.knob("N").high == 20


def test_constructor_options_are_checked():
    with pytest.raises(ValueError, match="NParity: heads must be 'single' or 'multi', got 'many'"):
        NParity(heads="many")
    for bad in (1, 2.0, True, "8"):
        with pytest.raises(ValueError, match=f"NDelayedMatch: N_max must be an integer >= 2, got {bad!r}"):
            NDelayedMatch(N_max=bad)
    with pytest.raises(ValueError, match=r"NParity: T = 400 ms holds 40 steps .* needs 81 \(4 N_max \+ 1\)"):
        NParity(T=400)
    with pytest.raises(ValueError, match="dt must be a positive number"):
        NParity(dt=0)


@pytest.mark.parametrize("cls,heads", LAYOUTS, ids=IDS)
def test_check_task_and_the_psychrnn_path(cls, heads):
    task = make(cls.__name__, heads=heads, N_max=6, N=4, N_batch=16, seed=0)
    check_task(task)
    x, y, mask, params = task.get_trial_batch()
    assert isinstance(params[0], dict) and {"N", "length", "p_one", "stream0"} <= set(params[0])
    assert task.accuracy_function(y, y, mask) == 1.0
    one = task.generate_trial_params(1, 0)
    xs, ys, ms = task.generate_trial(one)
    assert ms.any(axis=1).tolist().index(True) == one["length"] - 1


# ---------------------------------------------------------------------- served
@pytest.mark.parametrize("name,heads", [("NParity", "multi"), ("n_delayed_match", "single")])
def test_a_real_server_scores_perfect_answers_correct(name, heads, tmp_path):
    cfg = {"task": {"name": name, "heads": heads, "N_max": 8, "N": 5, "N_batch": 32}, "seed": 0,
           "curricula": {"fixed": {"kind": "fixed"}}, "journal": str(tmp_path / "journal")}
    with ServerThread(cfg) as srv, TaskClient(srv.endpoint, "a") as client:
        client.hello()
        spec = client.task_spec
        assert spec["N_in"] == 1 and spec["N_out"] == (14 if heads == "multi" else 2)
        assert spec["knobs"]["N"]["high"] == 8 and spec["evidence_knob"] == "N"
        scores = []
        for _ in range(2):
            batch = client.get()
            assert batch.x.shape == (32, 33, 1)
            scores.append(client.result(batch, batch.y))
        silent = client.get()
        scores.append(client.result(silent, np.zeros_like(silent.y)))
        client.bye()
    assert [s.accuracy for s in scores[:2]] == [1.0, 1.0] and (scores[2].outcome == 2).all()
    trials = journal.load(tmp_path / "journal")
    assert len(trials) == 96 and (trials["N"] == 5).all()
    right = trials[trials["outcome"] == "correct"]
    assert len(right) == 64
    if heads == "multi":
        assert (right[[f"head_{n}_correct" for n in range(2, 6)]] == 1.0).all().all()
        assert right[[f"head_{n}_correct" for n in range(6, 9)]].isna().all().all()
    else:
        assert (right["head_5_correct"] == 1.0).all() and right["head_2_correct"].isna().all()
