"""shaping.readout: each number of the journal computed once, checked by hand on small journals written with the
real journal writer, and against a live TaskServer on loopback (the "one number" test)."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shaping import journal as journal_io
from shaping import readout
from shaping.client import TaskClient
from shaping.lab import summarize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: server_thread
from server_thread import ServerThread

pytestmark = pytest.mark.timeout(120)

C, E, N = "correct", "error", "no_response"
SHAPED = {"kind": "stages", "window": 4, "stages": [{"name": "easy"}, {"name": "hard"}]}
CONTROL = {"kind": "stages", "window": 4, "stages": [{"name": "hard"}]}


# ---------------------------------------------------------------------------------------------- hand-built
def scored(outcomes: list[str], coherence: float | list[float] = 0.5, stale: bool = False) -> pd.DataFrame:
    """A scored batch as ``task.score`` returns it (choice = target when correct, the other side on error)."""
    n = len(outcomes)
    target = np.arange(n) % 2
    out = np.asarray(outcomes, dtype=object)
    choice = np.where(out == C, target, np.where(out == E, 1 - target, -1))
    coh = np.broadcast_to(np.asarray(coherence, dtype=float), (n,)).copy()
    return pd.DataFrame({"trial": np.arange(n), "outcome": out, "choice": choice, "target": target,
                         "coherence": coh, "correction": False, "stale": stale})


class Writer:
    """A journal as a server writes it: OPEN (with the server's config), HELLO, then batches."""

    def __init__(self, path: Path, window_trials: int | None = 4):
        self.j = journal_io.Journal(path, fsync="never")
        self.batch: dict[str, int] = {}
        self.time = 1000.0
        self.open(window_trials)

    def open(self, window_trials: int | None) -> None:
        config = {} if window_trials is None else {"window_trials": window_trials}
        self.j.write(journal_io.OPEN, {"time": self.tick(), "pid": 1, "seed": 0, "config": config})

    def tick(self) -> float:
        self.time += 1.0
        return self.time

    def hello(self, agent: str, curriculum: str, spec: dict) -> None:
        self.j.write(journal_io.HELLO, {"time": self.tick(), "agent": agent, "session": f"{agent}-s",
                               "curriculum": curriculum,
                               "spec": spec, "task": {"name": "PerceptualDiscrimination"}, "seed": 0, "epoch": 1,
                               "resumed": False, "info": {}, "run": {},
                               "task_spec": {"task": "PerceptualDiscrimination", "evidence_knob": "coherence"}})

    def add(self, agent: str, stage: str, stage_index: int, frame: pd.DataFrame, knobs: dict | None = None,
            events: list | None = None, policy_accuracy: float | None = None) -> None:
        bid = self.batch.get(agent, 0)
        self.batch[agent] = bid + 1
        self.j.append_batch(agent=agent, session=f"{agent}-s", batch=bid, epoch=1, task="PerceptualDiscrimination",
                            stage=stage, stage_index=stage_index, knobs=knobs or {"coherence": 0.5}, scored=frame,
                            events=events or [], state={}, time_s=self.tick(), policy_accuracy=policy_accuracy)

    def close(self) -> None:
        self.j.close()


def move(event: str, policy_trial: int, session_trials: int, stage: str, stage_index: int, **extra) -> dict:
    return {"event": event, "trial": policy_trial, "session_trials": session_trials, "stage": stage,
            "stage_index": stage_index, "accuracy": 0.75, "rule": "test", **extra}


@pytest.fixture
def journal(tmp_path) -> Path:
    """Agent "a" (shaped: easy -> hard, one stale batch after graduating, then complete) and agent "c" (the
    control: one stage, out of trials), with the server restarted with a larger window on the way."""
    w = Writer(tmp_path / "journal", window_trials=4)
    w.hello("a", "shaped", SHAPED)
    w.hello("c", "control", CONTROL)
    w.add("a", "easy", 0, scored([C, E, C], 0.7), {"coherence": 0.7},
          [move("graduated", 3, 3, "hard", 1, from_stage="easy", to_stage="hard")])
    w.add("a", "easy", 0, scored([C, C, E], 0.7, stale=True), {"coherence": 0.7}, policy_accuracy=None)
    w.add("a", "hard", 1, scored([E, E], [0.1, 0.3]), {"coherence": [0.1, 0.3, 0.5, 0.7]}, policy_accuracy=0.0)
    w.add("c", "hard", 0, scored([C, C, C, C, C, E]), {"coherence": {"uniform": [0.1, 0.7]}}, policy_accuracy=0.8)
    w.open(6)  # the server restarts with window_trials = 6: each agent keeps the 4 outcomes it saved
    w.add("a", "hard", 1, scored([C]), {"coherence": [0.1, 0.3, 0.5, 0.7]}, policy_accuracy=1 / 3)
    w.add("a", "hard", 1, scored([E], 0.5), {"coherence": [0.1, 0.3, 0.5, 0.7]},
          [move("complete", 4, 10, "hard", 1)], policy_accuracy=0.25)
    w.add("c", "hard", 0, scored([E, E, N, C, C, C]), {"coherence": {"uniform": [0.1, 0.7]}},
          [move("out_of_trials", 12, 12, "hard", 0)], policy_accuracy=0.5)
    w.close()
    return tmp_path / "journal"


def test_labels_are_one_text_per_accuracy():
    assert readout.accuracy_label("recent_accuracy", 256) == "recent accuracy (last 256 trials)"
    assert readout.accuracy_label("recent_accuracy") == "recent accuracy (last 200 trials)"
    assert readout.accuracy_label("criterion_accuracy") == "criterion accuracy (policy window)"
    with pytest.raises(ValueError, match="window_accuracy"):
        readout.accuracy_label("window_accuracy")
    table = pd.DataFrame({"agent": ["a"], "recent_accuracy": [0.5], "criterion_accuracy": [0.25]})
    assert list(readout.labelled(table, 64).columns) == ["agent", "recent accuracy (last 64 trials)",
                                                    "criterion accuracy (policy window)"]


def test_the_default_window_is_the_servers():
    from shaping.labfile import ServerConfig

    assert ServerConfig.__dataclass_fields__["window_trials"].default == readout.DEFAULT_WINDOW_TRIALS
    assert readout.window_trials_of(None) == readout.window_trials_of({"config": {}}) == 200
    assert readout.window_trials_of({"config": {"window_trials": 64}}) == 64


def test_recent_accuracy_by_hand_across_stages_and_a_restart(journal):
    tables = readout.read_lab(journal)
    assert tables.window_trials == 6  # the last OPEN's
    a = tables.batches[tables.batches["agent"] == "a"]
    # a's outcomes: C E C | C C E | E E || (window 6, keeping C E E E) C | E
    # after each batch, the last 4 (then up to 6 kept) outcomes, whatever the stage and stale ones included:
    want = [2 / 3, 3 / 4, 1 / 4, 2 / 5, 2 / 6]
    np.testing.assert_allclose(a["recent_accuracy"].astype(float), want)
    assert a["window_trials"].tolist() == [4, 4, 4, 6, 6]
    c = tables.batches[tables.batches["agent"] == "c"]
    np.testing.assert_allclose(c["recent_accuracy"].astype(float), [3 / 4, 3 / 6])  # E C | E E N C C C
    assert readout.recent_accuracy(tables, "a") == pytest.approx(2 / 6)
    assert readout.recent_accuracy(tables, "nobody") is None
    # the pure function agrees where the window never changed
    np.testing.assert_allclose(readout.recent_accuracies([1, 0, 1, 1, 1, 0, 0, 0], [3, 3, 2], 4), want[:3])


def test_recent_window_is_the_servers_deque():
    w = readout.RecentWindow(3)
    assert w.accuracy is None and len(w) == 0
    assert w.add([True, False]) == 0.5
    assert w.add([True, True]) == pytest.approx(2 / 3)  # the oldest fell out
    w.resize(5)
    assert len(w) == 3 and w.add([False]) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="positive int"):
        readout.RecentWindow(0)


def test_criterion_accuracy_is_the_policys_as_journaled(journal):
    tables = readout.read_lab(journal)
    p = readout.agent_progress(tables, "a")
    np.testing.assert_allclose(p["criterion_accuracy"], [np.nan, np.nan, 0.0, 1 / 3, 0.25])
    assert readout.criterion_accuracy(tables, "a") == 0.25 and readout.criterion_accuracy(tables, "c") == 0.5


def test_trials_to_each_milestone_count_stale_trials(journal):
    tables = readout.read_lab(journal)
    assert readout.trials_to(tables, "a") == {"graduations": [3], "complete": 10, "out_of_trials": None}
    assert readout.trials_to(tables, "c") == {"graduations": [], "complete": None, "out_of_trials": 12}
    moves = readout.stage_changes(tables, "a")
    assert moves["trial"].tolist() == [3, 10] and moves["policy_trial"].tolist() == [3, 4]
    shown = readout.for_display(moves)
    assert {"session_trials", "policy_trials", "criterion_accuracy"} <= set(shown.columns)
    g = readout.graduations(tables).set_index(["agent", "milestone"])["trial"]
    assert g[("a", "graduated easy")] == 3 and g[("a", "complete")] == 10


def test_the_stage_line_steps_at_the_graduation(journal):
    p = readout.agent_progress(readout.read_lab(journal), "a")
    assert p["trials"].tolist() == [3, 6, 8, 9, 10]
    assert p["stage_index"].tolist() == [0, 0, 1, 1, 1]  # the stale batch was drawn in "easy"...
    assert p["policy_stage_index"].tolist() == [0, 1, 1, 1, 1]  # ...and scored after the move at trial 3


@pytest.mark.parametrize("value, kind, low, high, text", [
    (0.7, "fixed", 0.7, 0.7, "0.7"),
    (3, "fixed", 3.0, 3.0, "3"),
    ([0.1, 0.3, 0.5, 0.7], "choices", 0.1, 0.7, "{0.1, 0.3, 0.5, 0.7}"),
    ([0.5, 0.5], "fixed", 0.5, 0.5, "0.5"),
    ({"uniform": [0.7, 0.1]}, "uniform", 0.1, 0.7, "0.1..0.7"),
    ("[0.2, 0.4]", "choices", 0.2, 0.4, "{0.2, 0.4}"),
    ("left", "other", None, None, "left"),
])
def test_a_knob_as_drawn(value, kind, low, high, text):
    d = readout.knob_drawn(value)
    assert (d.kind, d.low, d.high, d.text()) == (kind, low, high, text)


def test_knob_metrics_never_log_a_mean():
    assert readout.knob_metrics("coherence", 0.7) == {"knob/coherence": 0.7}
    assert readout.knob_metrics("coherence", [0.1, 0.3, 0.5, 0.7]) == {"knob/coherence/min": 0.1,
                                                                  "knob/coherence/max": 0.7}
    assert readout.knob_metrics("coherence", {"uniform": [0.2, 0.6]}) == {"knob/coherence/min": 0.2,
                                                                     "knob/coherence/max": 0.6}
    assert readout.knob_metrics("side", "left") == {}


def test_knobs_in_batch_rows_are_as_drawn(journal):
    tables = readout.read_lab(journal)
    a = readout.agent_progress(tables, "a")
    assert a["knob.coherence"].tolist() == ["0.7", "0.7", "{0.1, 0.3, 0.5, 0.7}", "{0.1, 0.3, 0.5, 0.7}",
                                            "{0.1, 0.3, 0.5, 0.7}"]
    assert a["knob_min.coherence"].tolist() == [0.7, 0.7, 0.1, 0.1, 0.1]
    assert a["knob_max.coherence"].tolist() == [0.7] * 5
    c = readout.agent_progress(tables, "c")
    assert c["knob.coherence"].tolist() == ["0.1..0.7"] * 2


def test_the_evidence_knob_of_a_task():
    assert readout.task_evidence_knob({"evidence_knob": "contrast"}) == "contrast"
    assert readout.task_evidence_knob({"task": "PerceptualDiscrimination"}) == "coherence"
    assert readout.task_evidence_knob({}, task_names=["PerceptualDiscrimination"]) == "coherence"
    assert readout.task_evidence_knob({"task": "PerceptualDiscrimination"}, columns=["delay"]) is None
    unknown = {"name": "mymodule:MyTask", "knobs": {"delay": {"easier": "lower"}, "gain": {"easier": "higher"}}}
    assert readout.task_evidence_knob(unknown) == "gain"


def test_summary_rows_and_the_verdict(journal):
    tables = readout.read_lab(journal)
    s = readout.summary_rows(tables).set_index("agent")
    assert s.loc[["a", "c"], "shaped"].tolist() == [True, False]
    assert s.loc["a", "trials"] == 10 and s.loc["a", "trials_to_complete"] == 10 and s.loc["a", "complete"]
    assert s.loc["a", "trials_to_graduations"] == "3" and s.loc["a", "final_stage"] == "hard"
    assert s.loc["a", "recent_accuracy"] == pytest.approx(2 / 6)
    assert s.loc["a", "criterion_accuracy"] == pytest.approx(0.25)
    assert s.loc["c", "out_of_trials"] and not s.loc["c", "complete"] and pd.isna(s.loc["c", "trials_to_complete"])
    line = "shaping: a reached criterion after 10 trials; c had not after 12 (stopped out of trials)"
    assert readout.verdict(s.reset_index()) == line
    # the lab summary is these rows, with the lab file's agents and curricula
    config = {"agents": [{"name": "c", "curriculum": "control"}, {"name": "a", "curriculum": "shaped"}],
              "curricula": {"shaped": SHAPED, "control": CONTROL}}
    lab = summarize(journal, config)
    assert lab["agent"].tolist() == ["c", "a"] and lab.attrs["verdict"] == line
    assert lab.attrs["window_trials"] == 6
    pd.testing.assert_frame_equal(lab.set_index("agent").loc[["a", "c"]], s.loc[["a", "c"]])


def test_no_verdict_without_a_pair(journal):
    s = readout.summary_rows(readout.read_lab(journal))
    assert readout.verdict(s[s["agent"] == "a"]) is None and readout.verdict(s.iloc[0:0]) is None
    both = s.assign(shaped=False)  # two controls: nothing to compare
    assert readout.verdict(both) is None
    reached = s.assign(complete=True, trials_to_complete=[10, 30])
    assert readout.verdict(reached).endswith("c reached criterion after 30 trials (control / shaped: 3.0x the trials)")


# ---------------------------------------------------------------------------------------------- spans
def observer(rng: np.random.Generator, coherence: np.ndarray, slope: float) -> pd.DataFrame:
    """Trials of an observer choosing 1 with P = logistic(slope * signed coherence)."""
    target = rng.integers(0, 2, len(coherence))
    signed = coherence * np.where(target == 1, 1.0, -1.0)
    choice = (rng.random(len(coherence)) < 1 / (1 + np.exp(-slope * signed))).astype(int)
    return pd.DataFrame({"coherence": coherence, "target": target, "choice": choice,
                         "outcome": np.where(choice == target, C, E)})


def test_a_fit_over_the_last_trials_not_the_pooled_learning_phase():
    """The demo's control: at chance for most of its run, good at the end; pooled, its curve looks like chance."""
    rng = np.random.default_rng(0)
    levels = np.array([0.1, 0.3, 0.5, 0.7])
    learning = observer(rng, rng.choice(levels, 4000), 0.0)
    learned = observer(rng, rng.choice(levels, 400), 12.0)
    trials = pd.concat([learning, learned], ignore_index=True).assign(
        stage="final", stage_index=0, session_trials=np.arange(1, 4401))
    spans = readout.psychometric_spans(trials, pd.DataFrame(columns=["event", "session_trials"]), 400)
    assert [(s.kind, s.start, s.stop) for s in spans] == [("recent", 4001, 4400)]
    assert spans[0].label == "final: its last 400 trials (trials 4,001-4,400)"
    span = readout.psychometric_fit(readout.span_trials(trials, spans[0]), "coherence")
    pooled = readout.psychometric_fit(trials, "coherence")
    assert span["n"] == 400 and span["slope"] > 8 and pooled["slope"] < 3


def test_spans_end_at_each_graduation_and_leave_stale_trials_out_of_the_stage_end():
    rng = np.random.default_rng(1)
    easy = observer(rng, np.full(300, 0.7), 5.0).assign(stage="easy", stage_index=0, stale=False)
    stale = observer(rng, np.full(10, 0.7), 5.0).assign(stage="easy", stage_index=0, stale=True)
    hard = observer(rng, rng.choice([0.1, 0.3, 0.5], 390), 8.0).assign(stage="hard", stage_index=1, stale=False)
    trials = pd.concat([easy, stale, hard], ignore_index=True).assign(session_trials=np.arange(1, 701))
    events = pd.DataFrame([{"event": "graduated", "session_trials": 300, "from_stage": "easy", "stage": "hard"},
                           {"event": "complete", "session_trials": 700, "from_stage": None, "stage": "hard"}])
    spans = readout.psychometric_spans(trials, events, 100)
    assert [(s.kind, s.stage, s.start, s.stop) for s in spans] == [("graduated", "easy", 201, 300),
                                                                 ("complete", "hard", 601, 700)]
    assert spans[0].label == "easy: 100 trials before graduating from easy (trials 201-300)"
    easy_fit = readout.psychometric_fit(readout.span_trials(trials, spans[0]), "coherence")
    assert easy_fit["levels"] == 2 and np.isnan(easy_fit["slope"])  # one coherence, signed: two levels
    assert easy_fit["note"] == "no fit: 2 evidence levels (a curve needs 3)"
    hard_fit = readout.psychometric_fit(readout.span_trials(trials, spans[1]), "coherence")
    assert hard_fit["levels"] == 6 and hard_fit["slope"] > 3 and hard_fit["note"] == ""


def test_the_psychometric_table_states_its_spans(journal):
    tables = readout.read_lab(journal)
    table = readout.psychometric_table(tables, "a", n_trials=3)
    assert table["span"].tolist() == ["easy: 3 trials before graduating from easy (trials 1-3)",
                                      "hard: 3 trials before completing in hard (trials 8-10)"]
    assert table["n"].tolist() == [3, 3] and (table["note"].str.startswith("no fit")).all()


# ---------------------------------------------------------------------------------------------- one number
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(cfg: dict, batches: int, rng: np.random.Generator, told: dict) -> dict:
    """Run one agent for ``batches`` SCOREs on a live server; keep each SCORE's window accuracy by batch id."""
    with ServerThread(cfg) as srv:
        client = TaskClient(srv.endpoint, "a", curriculum="shaped", timeout_s=20.0)
        client.hello()
        done = 0
        for batch in client.batches():
            y_hat = np.array(batch.y)
            wrong = rng.random(len(y_hat)) < 0.3
            y_hat[wrong] = y_hat[wrong][..., ::-1]
            score = client.result(batch, y_hat)
            if score is not None:
                told[score.batch_id] = score.window_accuracy
                done += 1
            if done == batches:
                break
        client.bye("done")
        status = srv.server.status()
    return {s["agent"]: s["accuracy"] for s in status["sessions"]}


def test_recent_accuracy_is_what_a_live_server_reports(tmp_path):
    """SCORE's and status's window accuracy, batch by batch, across a graduation and a server restarted with
    another window, equal readout's recent accuracy; and the lab summary shows the same number."""
    curriculum = {"kind": "stages", "window": 32, "stages": [
        {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.5, "min_trials": 32}},
        {"name": "hard", "knobs": {"coherence": [0.1, 0.3, 0.5]}}]}
    cfg = {"task": {"name": "PerceptualDiscrimination", "dt": 20, "T": 300, "N_batch": 16}, "seed": 4,
           "curricula": {"shaped": curriculum}, "journal": str(tmp_path / "journal"), "fsync": "never",
           "window_trials": 40}
    rng = np.random.default_rng(0)
    told: dict[int, float] = {}
    serve({**cfg, "bind": f"tcp://127.0.0.1:{free_port()}"}, 8, rng, told)
    status = serve({**cfg, "bind": f"tcp://127.0.0.1:{free_port()}", "window_trials": 100}, 6, rng, told)
    tables = readout.read_lab(tmp_path / "journal")
    b = tables.batches
    assert (b["stage"] == "hard").any() and b["window_trials"].tolist() == [40] * 8 + [100] * 6
    np.testing.assert_allclose(b["recent_accuracy"].astype(float), [told[i] for i in b["batch"]], rtol=0, atol=1e-12)
    assert readout.recent_accuracy(tables, "a") == pytest.approx(status["a"], abs=1e-12)
    assert summarize(tmp_path / "journal").set_index("agent").loc["a", "recent_accuracy"] == \
        pytest.approx(status["a"], abs=1e-12)


def test_which_curricula_shape():
    assert readout.is_shaped({"kind": "stages", "stages": [{"name": "a"}, {"name": "b"}]}) is True
    assert readout.is_shaped({"kind": "stages", "stages": [{"name": "final"}]}) is False
    assert readout.is_shaped({"kind": "fixed"}) is False
    assert readout.is_shaped({"kind": "ladder", "knob": "N", "levels": {"from": 2, "to": 20}}) is True
    assert readout.is_shaped({"kind": "ladder", "knob": "N", "levels": [12]}) is False  # fixed N: a control
    assert readout.is_shaped({"kind": "bias", "policy": {"kind": "ladder", "knob": "N", "levels": [2, 3]}}) is True
    assert readout.is_shaped({"kind": "staircase"}) is None


def test_a_sweeps_verdict_counts_the_agents_and_gives_medians():
    import pandas as pd

    from shaping.readout import verdict

    rows = [{"agent": f"s{i}", "shaped": True, "trials": 3000, "complete": i < 3, "out_of_trials": i >= 3,
             "trials_to_complete": [1000, 2000, 4000, None][i]} for i in range(4)]
    rows += [{"agent": f"c{i}", "shaped": False, "trials": 5000, "complete": True, "out_of_trials": False,
              "trials_to_complete": 4000 + 1000 * i} for i in range(4)]
    line = verdict(pd.DataFrame(rows))
    assert line == ("shaping: 3 of 4 shaped agents reached criterion (median 2,000 trials); 4 of 4 control agents "
                    "reached criterion (median 5,500 trials) (control / shaped: 2.8x the trials)")
