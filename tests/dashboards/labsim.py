"""A short real lab run for the dashboard tests: a TaskServer, simulated NumPy agents, MLflow, weight files.

The agents are TaskClients in threads. Each reads its inputs (the mean difference of the two evidence
channels while the stimulus is on), adds internal noise whose SD shrinks with practice, chooses, and answers
with the task's target levels for that choice plus output noise; so accuracy depends on coherence (real
psychometric curves) and rises with trials (real graduations). The lab directory then holds what the lead's
lab writes: ``journal/`` (with ``status.json``), ``weights/<agent>*.npz`` and an sqlite MLflow store.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import numpy as np
import pandas as pd

from shaping import journal, tracking
from shaping.client import TaskClient
from shaping.server import TaskServer
from shaping.tasks.perceptual import PerceptualDiscrimination

TASK = {"name": "PerceptualDiscrimination", "dt": 20, "T": 500, "N_batch": 32}
SHAPED = {
    "kind": "stages", "window": 128, "regress": {"accuracy": 0.6, "min_dwell": 128},
    "stages": [
        {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.8, "min_trials": 128}},
        {"name": "contrasts", "knobs": {"coherence": [0.05, 0.1, 0.2, 0.4, 0.7]},
         "graduate": {"accuracy": 0.8, "min_trials": 256}},
        {"name": "titrate", "knobs": {"coherence": {"staircase": {"start": 0.3, "down": 2, "scale": "log",
                                                                   "bounds": [0.01, 1.0], "step": 0.01}}},
         "graduate": {"reversals": 6}},
    ],
}
UNSHAPED = {
    "kind": "stages", "window": 128,
    "stages": [{"name": "final", "knobs": {"coherence": [0.05, 0.1, 0.2, 0.4, 0.7]},
                "graduate": {"accuracy": 0.8, "min_trials": 256}}],
}
# agent name -> (curriculum, dale_ratio, seed, trial range of a lapse (noise x4) or None)
AGENTS = {
    "shaped-dale-s0": ("shaped", 0.8, 0, None),
    "shaped-dale-s1": ("shaped", 0.8, 1, (1000, 1400)),
    "unshaped-free-s0": ("unshaped", None, 0, None),
}
EXPERIMENT = "dashboard-tests"
N_REC = 24
MAX_BATCHES = 400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimAgent:
    """A simulated agent whose internal noise SD falls from ``sd0`` to ``sd_min`` over ``tau_trials``."""

    def __init__(self, endpoint: str, name: str, curriculum: str, dale_ratio: float | None, seed: int,
                 lapse: tuple[int, int] | None = None, sd0: float = 2.0, sd_min: float = 0.06,
                 tau_trials: float = 500.0, max_batches: int = MAX_BATCHES):
        self.name, self.seed = name, seed
        self.model = {"kind": "simulated", "N_rec": N_REC, "dale_ratio": dale_ratio, "seed": seed}
        self.client = TaskClient(endpoint, name, curriculum=curriculum, info={"model": self.model},
                                 heartbeat_interval_s=0.2, timeout_s=20.0)
        self.rng = np.random.default_rng(seed + 100)
        self.sd0, self.sd_min, self.tau_trials, self.lapse = sd0, sd_min, tau_trials, lapse
        self.max_batches = max_batches
        self.scores: list = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def answer(self, batch: Any, trials: int) -> np.ndarray:
        x = np.asarray(batch.x, dtype=float)
        on = x.mean(axis=2) > 0.5  # both channels sit near 1 while the stimulus is on
        evidence = ((x[..., 1] - x[..., 0]) * on).sum(1) / np.maximum(on.sum(1), 1)
        sd = self.sd_min + (self.sd0 - self.sd_min) * np.exp(-trials / self.tau_trials)
        if self.lapse is not None and self.lapse[0] <= trials < self.lapse[1]:
            sd *= 8.0
        choice = (evidence + self.rng.normal(0.0, sd, len(evidence)) > 0).astype(int)
        target = np.asarray(batch.params["direction"], dtype=int)
        y_hat = np.array(batch.y, dtype=np.float32)
        swap = choice != target
        y_hat[swap] = y_hat[swap][..., ::-1]
        return y_hat + self.rng.normal(0.0, 0.02, y_hat.shape).astype(np.float32)

    def _run(self) -> None:
        from agents.tracking import AgentTracker  # NumPy/MLflow only

        tracker = AgentTracker(self.client.welcome.run)  # the run the server made for this agent
        tracker.log_model_config(self.model)
        try:
            trials = 0
            for batch in self.client.batches():
                score = self.client.result(batch, self.answer(batch, trials))
                if score is not None:
                    self.scores.append(score)
                    trials = score.trials
                if len(self.scores) >= self.max_batches:
                    break
            self.client.bye("complete" if self.client.complete else "stopped")
        except BaseException as err:  # reported by build_lab
            self.error = err
            self.client.close()
        finally:
            tracker.close()


def save_weight_files(lab: Path, name: str, dale_ratio: float | None, seed: int, tags: list[str]) -> list[Path]:
    """Weight files as an agent writes them (``<name>_<tag>.npz`` per stage change, ``<name>.npz`` at the
    end): random W_rec with Dale signs on columns, two regions, drifting a little between snapshots."""
    from agents.weights import save_weights

    rng = np.random.default_rng(seed + (0 if dale_ratio else 50))
    n_e = int(round(N_REC * (dale_ratio or 1.0)))
    sign = np.where(np.arange(N_REC) < n_e, 1.0, -1.0)
    perm = rng.permutation(N_REC)  # E and I interleaved in file order: the dashboard must sort them
    sign = sign[perm]
    labels = ["PFC" if i % 2 else "PPC" for i in range(N_REC)]
    w = np.abs(rng.normal(0, 1 / np.sqrt(N_REC), (N_REC, N_REC)))
    paths = []
    for k, tag in enumerate([*tags, None]):
        w = np.abs(w + rng.normal(0, 0.3 / np.sqrt(N_REC), w.shape)) * (1 + 0.1 * k)
        arrays = {"W_in": np.abs(rng.normal(0, 0.5, (N_REC, 2))), "W_out": rng.normal(0, 0.5, (2, N_REC)),
                  "b_rec": np.zeros(N_REC), "b_out": np.zeros(2), "init_state": np.zeros((1, N_REC)),
                  "rec_connectivity": (rng.random((N_REC, N_REC)) < 0.8).astype(float) * (1 - np.eye(N_REC))}
        if dale_ratio:
            arrays["W_rec"] = w * sign[None, :]
            arrays["Dale_rec"] = np.diag(sign)
            arrays["dale_ratio"] = dale_ratio
        else:
            arrays["W_rec"] = w * rng.choice([-1.0, 1.0], w.shape)
        meta = {"config": {"N_rec": N_REC, "dale_ratio": dale_ratio, "seed": seed}, "region_labels": labels,
                "seed": seed}
        stem = name if tag is None else f"{name}_{tag}"
        paths.append(save_weights(lab / "weights" / f"{stem}.npz", arrays, meta))
        time.sleep(0.01)  # distinct mtimes: snapshots are ordered by when they were written
    return paths


def build_lab(lab: Path, track: bool = True) -> dict:
    """Run the lab to completion (or ``MAX_BATCHES`` per agent); returns what the tests need to know."""
    lab.mkdir(parents=True, exist_ok=True)
    journal_dir = lab / "journal"
    uri = tracking.default_tracking_uri(lab)
    cfg = {"task": dict(TASK), "curricula": {"shaped": SHAPED, "unshaped": UNSHAPED}, "seed": 11,
           "journal": str(journal_dir), "bind": f"tcp://127.0.0.1:{free_port()}", "heartbeat_interval_s": 0.2,
           "expiry_s": 5.0, "window_trials": 64, "fsync": "never"}
    server = TaskServer(cfg)
    parent = None
    if track:
        parent = tracking.LabRun.start(uri, EXPERIMENT, cfg, run_name="dashboard-test-lab")
        tracker = tracking.CurriculumTracker(parent, window_trials=64)
        server.on_session_start = lambda s: tracker.on_session_start(s.agent, s.spec, s.task.spec())
        server.on_scored = lambda s, scored, events, cond: tracker.on_scored(
            s.agent, scored, events, cond, s.trials, policy_accuracy=s.policy_accuracy)
        server.on_session_end = lambda s, reason: tracker.on_session_end(s.agent, None)
    endpoint = server.start()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    agents = [SimAgent(endpoint, name, *spec) for name, spec in AGENTS.items()]
    try:
        for a in agents:
            a.client.hello()
            a.thread.start()
        for a in agents:
            a.thread.join(120)
            if a.error is not None:
                raise AssertionError(f"simulated agent {a.name} failed: {a.error!r}")
        status = {"time": time.time(), "sessions": [
            {"agent": s.agent, "curriculum": s.curriculum, "stage": str(s.conditions["stage"]),
             "stage_index": int(s.conditions["stage_index"]), "trials": s.trials, "batches": s.batches,
             "in_flight": len(s.in_flight), "accuracy": s.window_accuracy, "trials_per_s": 1234.5,
             "connected": bool(s.connected)} for s in server.sessions.values()]}
    finally:
        server.stop()
        thread.join(20)
    (journal_dir / "status.json").write_text(json.dumps(status))
    if track:
        tracker.flush(60)
        parent.end()
    events = journal.load_events(journal_dir)
    files = {}
    for name, (curriculum, dale, seed, _) in AGENTS.items():
        # the agent names a snapshot after the stage it leaves: weights/<name>_stage<i>_<stage>.npz
        names = [st["name"] for st in (SHAPED if curriculum == "shaped" else UNSHAPED)["stages"]]
        moves = events[(events["agent"] == name) & events["event"].isin(["graduated", "regressed"])]
        tags = [f"stage{names.index(s)}_{s}" for s in moves["from_stage"]] if len(moves) else []
        files[name] = save_weight_files(lab, name, dale, seed, list(dict.fromkeys(tags)))
    return {"lab": lab, "tracking_uri": uri, "parent_run_id": parent.run_id if parent else None,
            "status": status, "weights": files, "agents": list(AGENTS)}


# A swept lab: 2 curricula x 2 internal-noise floors x 2 seeds (8 agents) and one agent outside the sweep. With the
# high floor an agent stays near chance and never reaches criterion; with the low one it does, within the cap.
SWEEP_CURRICULA = {
    "easy": {"kind": "stages", "window": 64,
             "stages": [{"name": "easy", "knobs": {"coherence": 0.7},
                         "graduate": {"accuracy": 0.8, "min_trials": 128}}]},
    "mixed": {"kind": "stages", "window": 64,
              "stages": [{"name": "final", "knobs": {"coherence": [0.1, 0.2, 0.4, 0.7]},
                          "graduate": {"accuracy": 0.8, "min_trials": 256}}]},
}
SWEEP_LAB = {
    "lab": {"name": "sweep-lab", "seed": 5},
    "task": dict(TASK),
    "curricula": SWEEP_CURRICULA,
    "agents": [
        {"name": "net", "N_rec": N_REC, "max_batches": 60,
         "sweep": {"curriculum": ["easy", "mixed"], "sd_min": [0.06, 30.0], "seed": [0, 1]}},
        {"name": "solo", "curriculum": "easy", "N_rec": N_REC, "sd_min": 0.06, "seed": 7, "max_batches": 60},
    ],
}


def build_sweep_lab(lab: Path) -> dict:
    """Run :data:`SWEEP_LAB` as a lab does, with simulated agents: its ``lab.json`` is the real expansion
    (:meth:`shaping.labfile.LabFile.to_dict`), the server's config the lab file's, each agent stopping at
    completion or its ``max_batches``. No MLflow store."""
    from shaping.labfile import LabFile

    lab.mkdir(parents=True, exist_ok=True)
    labfile = LabFile.from_dict(SWEEP_LAB, source="sweep-lab")
    (lab / "lab.json").write_text(json.dumps(labfile.to_dict(), indent=2))
    journal_dir = lab / "journal"
    cfg = {**labfile.server_dict(str(journal_dir)), "bind": f"tcp://127.0.0.1:{free_port()}",
           "heartbeat_interval_s": 0.2, "expiry_s": 5.0, "window_trials": 64, "fsync": "never"}
    server = TaskServer(cfg)
    endpoint = server.start()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    agents = []
    for entry in labfile.agents:
        sd_min = float(entry.model["sd_min"])
        agents.append(SimAgent(endpoint, entry.name, entry.curriculum, None, int(entry.model["seed"]),
                               sd0=max(2.0, sd_min), sd_min=sd_min, max_batches=entry.max_batches))
    try:
        for a in agents:
            a.client.hello()
            a.thread.start()
        for a in agents:
            a.thread.join(120)
            if a.error is not None:
                raise AssertionError(f"simulated agent {a.name} failed: {a.error!r}")
    finally:
        server.stop()
        thread.join(20)
    return {"lab": lab, "labfile": labfile, "factors": labfile.factors(), "agents": [a.name for a in labfile.agents]}


def expected_sweep(sweep_lab) -> dict[tuple[str, str], dict]:
    """(factor, value as text) -> agents, reached, median, q1, q3, from the journal's ``complete`` events and the
    lab file's factors (not from shaping.readout: what the views must show)."""
    events = journal.load_events(sweep_lab["lab"] / "journal")
    done = events[events["event"] == "complete"].drop_duplicates("agent").set_index("agent")["session_trials"]
    groups: dict[tuple[str, str], list] = {}
    for agent, factors in sweep_lab["factors"].items():
        for key, value in factors.items():
            groups.setdefault((key, str(value)), []).append(agent)
    out = {}
    for group, agents in groups.items():
        t = np.array([done[a] for a in agents if a in done.index], dtype=float)
        q = np.percentile(t, [50, 25, 75]) if len(t) else [np.nan] * 3
        out[group] = {"agents": len(agents), "reached": len(t), "median": q[0], "q1": q[1], "q3": q[2]}
    return out


class JournalWriter:
    """Writes a journal by hand with the real :class:`shaping.journal.Journal`, batch by batch, as a server
    that has just started would (for empty, half-written and growing labs)."""

    def __init__(self, lab_dir: Path, agent: str = "a1", n: int = 16):
        self.path = lab_dir / "journal"
        self.journal = journal.Journal(self.path, fsync="never")
        self.agent, self.n = agent, n
        self.task = PerceptualDiscrimination(T=300, N_batch=n, seed=0)
        self.rng = np.random.default_rng(0)
        self.batch = 0
        self.trials = 0
        self.journal.write(journal.OPEN, {"time": time.time(), "pid": os.getpid(), "seed": 0, "config": {}})

    def hello(self) -> None:
        self.journal.write(journal.HELLO, {"time": time.time(), "agent": self.agent, "session": f"{self.agent}-s",
                                     "curriculum": "fixed", "spec": {"kind": "fixed", "window": 32},
                                     "task": {"name": "PerceptualDiscrimination"}, "seed": 0, "epoch": 1,
                                     "resumed": False, "info": {"model": {"dale_ratio": 0.8, "seed": 3}},
                                     "run": {}})

    def scored(self, stage: str = "final", stage_index: int = 0, p_correct: float = 0.8) -> pd.DataFrame:
        knobs = {"coherence": [0.1, 0.4]}
        b = self.task.generate(self.n, knobs=knobs, batch_id=self.batch)
        correct = self.rng.random(self.n) < p_correct
        y_hat = np.array(b.y)
        y_hat[~correct] = y_hat[~correct][..., ::-1]
        scored = self.task.score(b.y, y_hat, b.mask, b.params)
        scored["correction"] = False
        self.trials += self.n
        self.journal.append_batch(agent=self.agent, session=f"{self.agent}-s", batch=self.batch, epoch=1,
                                  task="PerceptualDiscrimination", stage=stage, stage_index=stage_index,
                                  knobs={**b.knobs, **knobs}, scored=scored, events=[],
                                  state={"trials": self.trials})
        self.batch += 1
        return scored

    def close(self) -> None:
        self.journal.close()
