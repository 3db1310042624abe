"""The closed loop end to end: a real task server, real TensorFlow agent processes, the lab supervising them.

Checks that a short curriculum completes, that the journal holds every trial exactly once, that difficulty
moved as the policy dictates, and that kill -9 of an agent or of the server loses no acknowledged trial.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import user_tasks
from labcfg import lab_config
from labthread import run_in_thread, wait_for

from shaping import journal
from shaping.lab import Lab, load_config, validate_config

pytestmark = [pytest.mark.procs, pytest.mark.tf]

ROOT = Path(__file__).resolve().parents[2]


def assert_exactly_once(trials, n_batch: int, gaps: bool = False) -> None:
    """Every (agent, batch) appears once with its full set of trials, and no trial twice. Batch ids run
    without gaps, unless ``gaps``: an agent that died leaves its in-flight batches void (never scored)."""
    keys = trials[["agent", "batch", "trial"]]
    assert not keys.duplicated().any(), "a trial was journaled twice"
    per_batch = trials.groupby(["agent", "batch"]).size()
    assert (per_batch == n_batch).all(), per_batch[per_batch != n_batch]
    for agent, t in trials.groupby("agent"):
        ids = np.sort(t["batch"].unique())
        if gaps:
            assert len(ids) - 1 <= ids[-1] <= len(ids) - 1 + 2 * 3, f"{agent}: more void batches than credit"
        else:
            assert np.array_equal(ids, np.arange(len(ids))), f"{agent}: batch ids have a gap: {ids}"


def test_short_lab_completes_its_curriculum(short_lab):
    summary = short_lab.summary_table.set_index("agent")
    assert set(summary.index) == {"free", "dale"}
    assert summary["complete"].all(), summary
    assert (summary["exit"] == 0).all(), summary
    assert (summary["graduations"] >= 1).all()


def test_journal_holds_every_trial_exactly_once(short_lab):
    trials = journal.load(short_lab.journal_dir)
    assert len(trials) > 0
    assert_exactly_once(trials, n_batch=32)
    status = json.loads((short_lab.journal_dir / "status.json").read_text())
    by_agent = {s["agent"]: s["trials"] for s in status["sessions"]}
    assert by_agent == trials.groupby("agent").size().to_dict()


def test_difficulty_moved_as_the_policy_dictates(short_lab):
    trials = journal.load(short_lab.journal_dir)
    events = journal.load_events(short_lab.journal_dir)
    for agent, t in trials.groupby("agent"):
        t = t.sort_values(["batch", "trial"])
        easy, final = t[t["stage"] == "easy"], t[t["stage"] == "final"]
        assert len(easy) >= 128 and len(final) >= 128  # min_trials of each stage
        assert (easy["coherence"] == 0.7).all() and (easy["stim_noise"] == 0.05).all()
        assert set(final["coherence"].unique()) <= {0.3, 0.5, 0.7}
        assert final["coherence"].nunique() == 3
        # The policy graduated the agent on the trials journaled up to that batch, and the batches drawn
        # afterwards are in the final stage, but for at most credit - 1 = 2 batches prefetched before it.
        grad = events[(events["agent"] == agent) & (events["event"] == "graduated")].iloc[0]
        assert grad["trial"] == (t["batch"] <= grad["batch"]).sum()
        assert grad["batch"] < final["batch"].min() <= grad["batch"] + 3
        stale = t[(t["batch"] > grad["batch"]) & (t["stage"] == "easy")]
        assert stale["stale"].eq(True).all()
        # And the graduation was earned: the last 64 easy trials were >= 75% correct.
        earned = easy[easy["batch"] <= grad["batch"]].tail(64)
        assert (earned["outcome"] == "correct").mean() >= 0.75


def test_trials_after_completion_are_journaled_but_not_counted(short_lab):
    """A pipelined agent answers at most the one batch it trained while the completing SCORE was on its way:
    it is journaled (the network learned from it) and flagged stale (the policy did not count it)."""
    trials = journal.load(short_lab.journal_dir)
    events = journal.load_events(short_lab.journal_dir)
    for agent, t in trials.groupby("agent"):
        done = events[(events["agent"] == agent) & (events["event"] == "complete")]
        assert len(done) == 1, done
        after = t[t["batch"] > done["batch"].iloc[0]]
        assert after["batch"].nunique() <= 1 and after["stale"].eq(True).all()


def test_agents_logged_their_constraints_in_hello(short_lab):
    sessions = journal.load_sessions(short_lab.journal_dir)
    info = {row["agent"]: row for _, row in sessions.iterrows()}
    assert set(info) == {"free", "dale"}
    weights = np.load(short_lab.dir / "weights" / "dale.npz")
    w_rec, sign = weights["W_rec"], np.diag(weights["Dale_rec"])
    assert (w_rec[:, sign > 0] >= 0).all() and (w_rec[:, sign < 0] <= 0).all()
    assert np.all(np.diag(w_rec) == 0)






def _trials_of(lab: Lab, agent: str) -> int:
    sessions = {s["agent"]: s for s in lab.status().get("sessions", [])}
    return int(sessions.get(agent, {}).get("trials", 0))


def _stage_of(lab: Lab, agent: str) -> str | None:
    sessions = {s["agent"]: s for s in lab.status().get("sessions", [])}
    return sessions.get(agent, {}).get("stage")


def _longer_curriculum() -> dict:
    """One agent (``free``); the easy stage lasts at least 384 trials."""
    cfg = lab_config()
    cfg["curricula"]["shaped"]["stages"][0]["graduate"]["min_trials"] = 384
    cfg["agents"] = [cfg["agents"][0]]
    return cfg


def _held_curriculum() -> dict:
    """:func:`_longer_curriculum` with a stage ``hold`` between easy and final (final's knobs) that never ends by
    itself: a test kills a process while the agent is surely mid-curriculum, then releases it with an operator
    override to ``final`` (128 trials), whatever the machine's speed.

    No trial count can stand in for the hold: the server rewrites ``status.json`` once a second, and an idle
    machine trains this agent through 1,500 trials in about a second, so the first status a test reads may
    already show the curriculum complete and the agent gone.
    """
    cfg = _longer_curriculum()
    shaped = cfg["curricula"]["shaped"]
    easy, final = shaped["stages"]
    hold = {"name": "hold", "knobs": dict(final["knobs"]), "graduate": {"min_trials": 10**9}}
    shaped["stages"] = [easy, hold, final]
    shaped["max_trials"] = 10**9  # only the final stage's criterion ends the curriculum
    return cfg


def _release_hold(lab: Lab) -> dict:
    """Move ``free`` from the hold stage to final (an operator override); returns the override's event."""
    from shaping.client import override

    reply = override(lab.endpoint, "free", stage="final", note="release the hold", timeout_s=60)
    (moved,) = [e for e in reply["events"] if e.get("event") == "override"]
    return moved


def test_agent_killed_with_sigkill_resumes_its_stage(tmp_path):
    lab = Lab(_held_curriculum(), workdir=tmp_path / "lab", tracking_uri="none", progress=False, timeout_s=240)
    thread = run_in_thread(lab)
    wait_for(lambda: "free" in lab.agents and _stage_of(lab, "free") == "hold", 120, "the agent to reach hold")
    agent = lab.agents["free"]
    killed_pid = agent.handle.pid
    os.kill(killed_pid, signal.SIGKILL)  # hold never ends by itself: the agent is alive and training
    wait_for(lambda: agent.restarts >= 1, 60, "the lab to restart the agent")
    assert agent.restarts == 1 and agent.returncode == -signal.SIGKILL  # the lab saw the kill, not an exit
    log_path = lab.dir / "logs" / "free.log"
    wait_for(lambda: "resumed from" in log_path.read_text(), 120, "the restarted agent to load its checkpoint")
    assert agent.handle.pid != killed_pid
    moved = _release_hold(lab)
    assert (moved["from_stage"], moved["to_stage"]) == ("hold", "final")  # the restart left the stage as it was
    thread.join(240)
    assert not thread.is_alive()
    summary = lab.summary().set_index("agent")
    assert summary.loc["free", "restarts"] == 1
    assert summary.loc["free", "complete"] and summary.loc["free", "exit"] == 0
    trials = journal.load(lab.journal_dir)
    assert_exactly_once(trials, n_batch=32, gaps=True)  # the killed agent's in-flight batches are void
    assert "(server: stage hold," in log_path.read_text()  # the restarted process rejoined its session in hold
    held_from = trials.index[trials["stage"] == "hold"][0]  # it never went back to the easy stage
    assert set(trials.loc[held_from:, "stage"]) == {"hold", "final"}


def test_server_killed_with_sigkill_is_restarted_and_agents_carry_on(tmp_path):
    lab = Lab(_held_curriculum(), workdir=tmp_path / "lab", tracking_uri="none", progress=False, timeout_s=240)
    thread = run_in_thread(lab)
    wait_for(lambda: lab.server is not None and _trials_of(lab, "free") >= 256, 120, "trials to be scored")
    acknowledged = journal.load(lab.journal_dir)
    killed_pid = lab.server.handle.pid
    os.kill(killed_pid, signal.SIGKILL)  # the curriculum cannot complete before the hold is released

    def restarted_server_serves() -> bool:  # the new server has restored its sessions and bound the endpoint
        try:
            pid = json.loads((lab.journal_dir / "server.json").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return False
        return lab.server.restarts >= 1 and pid != killed_pid and pid == lab.server.handle.pid

    wait_for(restarted_server_serves, 120, "the lab to restart the server")
    _release_hold(lab)  # completing now takes the agent's trials through the restarted server
    thread.join(240)
    assert not thread.is_alive()
    assert lab.server.restarts == 1
    summary = lab.summary().set_index("agent")
    assert summary.loc["free", "complete"] and summary.loc["free", "exit"] == 0
    trials = journal.load(lab.journal_dir)
    assert_exactly_once(trials, n_batch=32)
    # Nothing acknowledged before the crash was lost or changed.
    before = trials.merge(acknowledged[["agent", "batch", "trial"]], on=["agent", "batch", "trial"])
    assert len(before) == len(acknowledged)
    cols = ["agent", "batch", "trial", "stage", "coherence", "outcome", "choice"]
    assert before[cols].reset_index(drop=True).equals(
        acknowledged.sort_values(["agent", "batch", "trial"])[cols].reset_index(drop=True))


def test_an_operator_moves_a_training_agent_to_the_next_stage(tmp_path, capsys):
    from shaping.cli import main as cli

    cfg = _longer_curriculum()
    cfg["curricula"]["shaped"]["stages"][0]["graduate"]["min_trials"] = 10**6  # easy lasts until moved
    cfg["curricula"]["shaped"]["max_trials"] = 10**6
    lab = Lab(cfg, workdir=tmp_path / "lab", tracking_uri="none", progress=False, timeout_s=240)
    thread = run_in_thread(lab)
    wait_for(lambda: "free" in lab.agents and _trials_of(lab, "free") >= 96, 120, "the agent to train on easy")
    assert cli(["override", str(lab.dir), "free", "--stage", "final", "--note", "skip easy"]) == 0
    assert "free: stage 'final'" in capsys.readouterr().out
    thread.join(240)
    assert not thread.is_alive()
    summary = lab.summary().set_index("agent")
    assert summary.loc["free", "complete"] and summary.loc["free", "exit"] == 0
    events = journal.load_events(lab.journal_dir)
    (moved,) = events[events["event"] == "override"].to_dict("records")
    assert (moved["from_stage"], moved["to_stage"], moved["note"]) == ("easy", "final", "skip easy")
    assert "easy" not in set(events[events["event"] == "graduated"]["from_stage"])  # it never graduated easy
    trials = journal.load(lab.journal_dir)
    assert_exactly_once(trials, n_batch=32)
    after = trials[trials["batch"] > moved["batch"]]
    assert set(after[~after["stale"]]["stage"]) == {"final"}  # only batches in flight at the move were easy
    assert after[after["stage"] == "easy"]["batch"].nunique() <= 3  # the credit
    # the network as it left easy, without MLflow, named after its trial count when it saw the move
    (left,) = (lab.dir / "weights").glob("free_stage0_easy_trial*.npz")
    assert 0 <= int(left.stem.rsplit("trial", 1)[1]) - moved["session_trials"] <= 3 * 32


def test_lab_config_errors_name_the_field(tmp_path):
    bad = lab_config()
    bad["agents"][1]["curriculum"] = "nope"
    with pytest.raises(ValueError, match=r"agents\[1\]\.curriculum = 'nope'"):
        validate_config(bad)
    bad = lab_config()
    bad["curricula"]["shaped"]["stages"][0]["graduate"]["accuracy"] = 1.5
    with pytest.raises(ValueError, match=r"curricula\.shaped: .*accuracy"):
        validate_config(bad)
    bad = lab_config(task={"name": "NoSuchTask"})
    with pytest.raises(ValueError, match="unknown task 'NoSuchTask'"):
        validate_config(bad)
    path = tmp_path / "broken.toml"
    path.write_text("[lab\nname = 1")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ValueError, match=r"\[lab\]: unknown key\(s\) 'max_restart'"):
        validate_config(lab_config(lab={"name": "x", "max_restart": 1}))
    with pytest.raises(ValueError, match=r"unknown section\(s\) 'severs'"):
        validate_config(lab_config(severs={"credit": 2}))
    with pytest.raises(ValueError, match=r"\[server\]: unknown key\(s\) 'credits'"):
        validate_config(lab_config(server={"credits": 2}))
    with pytest.raises(ValueError, match=r"\[server\]: .*keys"):  # reachable from other machines, no keys
        validate_config(lab_config(server={"bind": "tcp://0.0.0.0:0"}))
    with pytest.raises(ValueError, match=r"agents\[0\] must be a table"):
        validate_config(lab_config(agents=["free"]))
    with pytest.raises(ValueError, match=r"agents\[0\]\.name: agent name 'a b' must be"):  # it crashed at HELLO
        validate_config(lab_config(agents=[{"name": "a b", "curriculum": "shaped", "N_rec": 8}]))
    with pytest.raises(ValueError, match=r"lab.max_restarts = 'two' must be a non-negative integer"):
        validate_config(lab_config(lab={"name": "x", "max_restarts": "two"}))
    with pytest.raises(ValueError, match=r"\[task\] must be a table"):
        validate_config(lab_config(task="PerceptualDiscrimination"))
    with pytest.raises(ValueError, match=r"T must be a positive number of ms, got 'abc'"):
        validate_config(lab_config(task={"name": "PerceptualDiscrimination", "T": "abc"}))


def test_the_lab_passes_every_server_key_and_reads_mlflows_environment(tmp_path, monkeypatch):
    (tmp_path / "lab.toml").write_text(_to_toml(lab_config(server={"send_hwm": 50, "limits": {"max_trials": 64},
                                                                   "fsync": "always", "keys": "k"})))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////nowhere/mlflow.db")
    lab = Lab(tmp_path / "lab.toml", workdir=tmp_path / "lab")
    assert lab.tracking_uri == "sqlite:////nowhere/mlflow.db"
    written = json.loads(lab._write_configs().read_text())
    assert (written["send_hwm"], written["limits"], written["fsync"]) == (50, {"max_trials": 64}, "always")
    assert written["keys"] == str(tmp_path / "k")  # beside the lab file, not inside the lab directory


def test_a_lab_whose_server_takes_only_curve_agents_runs_its_own(tmp_path):
    from shaping.keys import generate_keys

    generate_keys(tmp_path / "keys", clients=["bench"])
    cfg = _longer_curriculum()
    cfg["curricula"]["shaped"]["stages"][1]["graduate"]["min_trials"] = 128
    cfg["lab"]["client_name"] = "bench"
    cfg["server"] = {"curve": True, "keys": str(tmp_path / "keys")}
    lab = Lab(cfg, workdir=tmp_path / "lab", tracking_uri="none", progress=False, timeout_s=120)
    lab.run()
    summary = lab.summary().set_index("agent")
    assert summary.loc["free", "complete"] and summary.loc["free", "exit"] == 0
    assert json.loads((lab.journal_dir.parent / "server_config.json").read_text())["curve"] is True


def test_demo_config_is_valid():
    """The demo compares like with like: the control runs the shaped curriculum's final stage (same knobs, same
    completion criterion, same window) from the first trial under the same trial budget, with the same
    network; `dale` is shaped like `shaped`, with Dale's principle in two regions."""
    cfg = load_config(ROOT / "examples" / "demo.toml")
    assert [a["name"] for a in cfg["agents"]] == ["shaped", "control", "dale"]
    shaped, control = cfg["curricula"]["shaped"], cfg["curricula"]["control"]
    assert len(shaped["stages"]) > 1 and len(control["stages"]) == 1
    final = {k: shaped["stages"][-1][k] for k in ("knobs", "graduate")}
    assert {k: control["stages"][0][k] for k in ("knobs", "graduate")} == final
    assert control["window"] == shaped["window"] and control["max_trials"] == shaped["max_trials"]
    agents = {a["name"]: a for a in cfg["agents"]}
    assert [agents[n]["curriculum"] for n in ("shaped", "control", "dale")] == ["shaped", "control", "shaped"]
    assert {k: v for k, v in agents["control"].items() if k not in ("name", "curriculum")} == \
        {k: v for k, v in agents["shaped"].items() if k not in ("name", "curriculum")}
    assert agents["dale"]["dale_ratio"] and len(agents["dale"]["regions"]["regions"]) == 2


def test_cli_lab_reports_a_bad_config_without_a_traceback(tmp_path):
    path = tmp_path / "lab.toml"
    path.write_text('[task]\nname = "PerceptualDiscrimination"\n[curricula.a]\nkind = "fixed"\n')
    proc = subprocess.run([sys.executable, "-m", "shaping.cli", "lab", str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "missing [agents] section" in proc.stderr
    assert "Traceback" not in proc.stderr


def _endless_cli_lab(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`skinnerbox lab` in a process of its own, on a curriculum that never completes by itself."""
    cfg = _longer_curriculum()
    cfg["curricula"]["shaped"]["stages"][1]["graduate"]["min_trials"] = 10**6
    cfg["curricula"]["shaped"]["max_trials"] = 10**7
    lab_dir = tmp_path / "lab"
    toml = tmp_path / "lab.toml"
    toml.write_text(_to_toml(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "shaping.cli", "lab", str(toml), "--workdir", str(lab_dir),
                             "--tracking-uri", "none", "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    return proc, lab_dir


def test_ctrl_c_stops_the_whole_lab_cleanly(tmp_path):
    """SIGINT to `skinnerbox lab`: agents checkpoint and leave, the server flushes its journal, a summary."""
    proc, lab_dir = _endless_cli_lab(tmp_path)
    status = lab_dir / "journal" / "status.json"

    def trials() -> int:
        try:
            return sum(s["trials"] for s in json.loads(status.read_text())["sessions"])
        except (OSError, ValueError, KeyError):
            return 0

    wait_for(lambda: trials() >= 256 or proc.poll() is not None, 120, "the lab to train")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    assert "free" in out and "recent_accuracy" in out  # the summary table
    assert (lab_dir / "checkpoints" / "free.ckpt.npz").exists()
    assert (lab_dir / "weights" / "free.npz").exists()
    records = [kind for kind, _ in journal.iter_records(lab_dir / "journal")]
    assert records[-1] == journal.CLOSE  # the server closed its journal, it did not die
    assert_exactly_once(journal.load(lab_dir / "journal"), n_batch=32)


def test_the_labs_processes_stop_themselves_when_the_lab_is_killed(tmp_path):
    """kill -9 of `skinnerbox lab` (its children run in sessions of their own, so nothing reaches them): the
    server and agent notice and stop as on SIGTERM, releasing the journal, so the lab can be run again."""
    proc, lab_dir = _endless_cli_lab(tmp_path)

    def agent_connected() -> bool:  # the server's first status.json may predate the agent process
        try:
            return bool(json.loads((lab_dir / "journal" / "status.json").read_text())["sessions"])
        except (OSError, ValueError, KeyError):
            return False

    wait_for(lambda: agent_connected() or proc.poll() is not None, 120, "the lab to start")
    children = [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                               text=True).stdout.split()]
    assert len(children) == 2  # the server and the agent
    proc.kill()
    proc.communicate(timeout=10)

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    wait_for(lambda: not any(alive(p) for p in children), 60, "the orphaned server and agent to stop")
    records = [kind for kind, _ in journal.iter_records(lab_dir / "journal")]
    assert records[-1] == journal.CLOSE  # an orderly stop, not a death


def _to_toml(cfg: dict) -> str:
    """The small TOML writer the test needs (inline tables; the standard library only reads TOML)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"

    lines = []
    for section in ("lab", "task", "server"):
        if section in cfg:
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in cfg[section].items()]
    for name, spec in cfg["curricula"].items():
        lines.append(f"[curricula.{name}]")
        lines += [f"{k} = {value(v)}" for k, v in spec.items()]
    for agent in cfg["agents"]:
        lines.append("[[agents]]")
        lines += [f"{k} = {value(v)}" for k, v in agent.items()]
    return "\n".join(lines) + "\n"


def test_a_lab_serves_a_user_task_module_beside_its_toml(tmp_path):
    """`[task] name = "module:Class"`: the lab, its server and its agent processes all import module.py from
    the TOML file's directory (which is not the working directory and not on sys.path)."""
    labdir = tmp_path / "mylab"
    labdir.mkdir()
    (labdir / "fb_e2e_user_tasks.py").write_text(Path(user_tasks.__file__).read_text())
    cfg = {"lab": {"name": "user", "seed": 1, "max_restarts": 0},
           "task": {"name": "fb_e2e_user_tasks:MyTask", "T": 500, "N_batch": 32},
           "curricula": {"fixed": {"kind": "fixed"}},
           "agents": [{"name": "u", "curriculum": "fixed", "N_rec": 12, "learning_rate": 0.01, "seed": 0,
                       "max_batches": 8}]}
    toml = labdir / "lab.toml"
    toml.write_text(_to_toml(cfg))
    lab = Lab(toml, workdir=tmp_path / "run", tracking_uri="none", progress=False, timeout_s=240)
    summary = lab.run().set_index("agent")
    assert summary.loc["u", "exit"] == 0, (lab.dir / "logs" / "u.log").read_text()[-3000:]
    trials = journal.load(lab.journal_dir)
    assert summary.loc["u", "trials"] == len(trials) == 8 * 32
    assert set(trials["direction"]) == {0, 1} and trials["onset"].between(50, 150).all()
    assert (trials["target"] == trials["direction"]).all()
    assert str(labdir) not in sys.path  # the lab's own process had it there only while validating
