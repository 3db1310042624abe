"""Memory length by curriculum, over seeds: N-parity (or N-DMS) with the single-head ladder, the multi-head ladder
and no curriculum (fixed N), as in Khajehabdollahi et al. 2024 (ICLR, https://arxiv.org/abs/2309.12927).

Runs the two lab files (``examples/nparity.toml``: single-head ladder and fixed-N controls;
``examples/nparity_multihead.toml``: the multi-head ladder) once per seed, side by side (two ``skinnerbox lab``
processes, MLflow off), each replicate with every seed offset (:meth:`shaping.labfile.LabFile.replicate`). The
budget per network is the curricula's ``max_trials`` (``--budget`` overrides it). From the journals and the final
weight files it prints:

- whether each no-curriculum control (fixed N, single- or multi-head layout) met 98 % within the budget;
- the largest N each curriculum reached within the budget (the last rung whose criterion was met);
- trials (sequences) to N = ``--milestone`` (12) for multi- against single-head (the graduation from that rung);
- each network's final accuracy at every N = 2..N_max (forgetting: the single-head network asked for a smaller N
  than its last, the multi-head one read on each head), from 2,048 fresh trials per N in the NumPy simulator;
- the learnt time constants (per unit, in steps: tau / dt), their median, 90th percentile and maximum.

Usage: ``python bench/timescales.py [--seeds 0 1 2 3 4] [--budget 600000] [--task NParity]``; about 4 minutes a
seed on two cores at the default budget.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from agents.simulate import Network  # noqa: E402  (NumPy only)
from shaping import journal, tasks  # noqa: E402
from shaping.labfile import LabFile  # noqa: E402

LABS = {"single": ROOT / "examples" / "nparity.toml", "multi": ROOT / "examples" / "nparity_multihead.toml"}
# The paper's own numbers, for the table beside ours (their Fig. and text; 500 units, SGD, N-parity).
PAPER = {"no curriculum: largest N": "about 10", "single-head: trials to N = 12": "3.7 M (example run)",
         "multi-head: trials to N = 12 (heads 2..12)": "1.84 M (example run)"}


def configure(path: Path, seed: int, budget: int | None, task: str | None) -> LabFile:
    """The lab file of ``path``, replicate ``seed``, with every curriculum's budget and the task name set."""
    data = LabFile.load(path).replicate(seed).to_dict()
    if task:
        data["task"]["name"] = task
    if budget:
        for spec in data["curricula"].values():
            spec["max_trials"] = int(budget)
    return LabFile.from_dict(data, source=str(path))


def run_labs(labs: dict[str, LabFile], root: Path) -> dict[str, Path]:
    """Run each lab as its own ``skinnerbox lab`` process, all at once; returns each lab's directory."""
    procs, dirs = {}, {}
    for name, lab in labs.items():
        dirs[name] = root / name
        dirs[name].mkdir(parents=True, exist_ok=True)
        config = dirs[name] / "config.json"
        config.write_text(json.dumps(lab.to_dict()))
        procs[name] = subprocess.Popen([sys.executable, "-m", "shaping.cli", "--log-level", "WARNING", "lab",
                                        str(config), "--workdir", str(dirs[name] / "lab"), "--tracking-uri", "none",
                                        "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=open(dirs[name] / "lab.log", "w"))
    for name, proc in procs.items():
        if proc.wait() != 0:
            raise RuntimeError(f"lab {name} failed; see {dirs[name] / 'lab.log'}")
    return {name: d / "lab" for name, d in dirs.items()}


def rung(stage: object) -> int | None:
    """N of a ladder stage named ``"N=<n>"``."""
    text = str(stage)
    return int(text[2:]) if text.startswith("N=") and text[2:].isdigit() else None


def learnt(lab_dir: Path) -> pd.DataFrame:
    """Per agent: the rungs whose criterion was met, with the trials (session_trials) when it was."""
    events = journal.load_events(lab_dir / "journal")
    rows = []
    for ev in events.to_dict("records"):
        if ev["event"] in ("graduated", "complete"):
            stage = ev.get("from_stage") if ev["event"] == "graduated" else ev.get("stage")
            if rung(stage) is not None:
                rows.append({"agent": ev["agent"], "N": rung(stage), "trials": int(ev["session_trials"])})
    return pd.DataFrame(rows, columns=["agent", "N", "trials"])


def accuracy_per_n(weights: Path, task_config: dict, n_values: list[int], seed: int) -> dict[int, float]:
    """Final accuracy of a network at each N, on 2,048 fresh trials: single-head, one batch per N (the one
    output pair asked for that N); multi-head, one batch with every head active, read head by head."""
    net = Network.load(weights)
    kwargs = {k: v for k, v in task_config.items() if k not in ("name", "N")}
    kwargs["N_batch"] = 2048

    def scored(n: int) -> pd.DataFrame:
        task = tasks.make(task_config["name"], **kwargs, N=n, seed=seed + n)
        x, y, mask, params = task.get_trial_batch()
        return task.score(y, net.run(x)[0], mask, params)

    if kwargs.get("heads") == "multi":
        every = scored(max(n_values))
        return {n: float(np.nanmean(every[f"head_{n}_correct"])) for n in n_values}
    return {n: float((scored(n)["outcome"] == "correct").mean()) for n in n_values}


def tau_steps(weights: Path) -> np.ndarray:
    """The network's per-unit time constants in steps (tau / dt)."""
    net = Network.load(weights)
    return np.broadcast_to(np.asarray(net.tau, dtype=float) / float(net.dt), (net.N_rec,))


def run_seed(seed: int, budget: int | None, task: str | None, milestone: int, root: Path) -> dict:
    labs = {name: configure(path, seed, budget, task) for name, path in LABS.items()}
    dirs = run_labs(labs, root / f"seed{seed}")
    result = {"seed": seed, "reached": {}, "to_milestone": {}, "per_n": {}, "tau": {}, "controls": {}}
    for name, lab in labs.items():
        got = learnt(dirs[name])
        n_max = int(lab.task.get("N_max", 16))
        for agent in lab.agents:
            mine = got[got["agent"] == agent.name]
            spec = lab.curricula[agent.curriculum]
            levels = spec["levels"] if isinstance(spec["levels"], list) else None
            if levels is not None and len(levels) == 1:  # a fixed-N control, in its lab's output layout
                result["controls"][f"{lab.task.get('heads', 'single')}-head N={levels[0]}"] = bool(len(mine))
                continue
            result["reached"][agent.name] = int(mine["N"].max()) if len(mine) else 1
            at = mine[mine["N"] == milestone]
            result["to_milestone"][agent.name] = int(at["trials"].iloc[0]) if len(at) else None
            weights = dirs[name] / "weights" / f"{agent.name}.npz"
            result["per_n"][agent.name] = accuracy_per_n(weights, lab.task, list(range(2, n_max + 1)), seed)
            result["tau"][agent.name] = tau_steps(weights)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=None, help="trials per network (default: the lab files')")
    parser.add_argument("--task", default=None, help="NParity (the lab files') or NDelayedMatch")
    parser.add_argument("--milestone", type=int, default=12, help="N whose trials-to-criterion are compared")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="skinnerbox-timescales-") as tmp:
        results = []
        for seed in args.seeds:
            results.append(run_seed(seed, args.budget, args.task, args.milestone, Path(tmp)))
            r = results[-1]
            print(f"seed {seed}: reached {r['reached']}; controls learnt {r['controls']}; trials to "
                  f"N={args.milestone} {r['to_milestone']}", flush=True)
    budget = args.budget or LabFile.load(LABS["single"]).curricula["single"]["max_trials"]
    print(f"\n{args.task or 'NParity'}, {len(results)} seeds, budget {budget:,} trials per network\n")
    controls = sorted({c for r in results for c in r["controls"]})
    rows = []
    for r in results:
        rows.append({"seed": r["seed"], **{f"no curriculum, {c}": "learnt" if r["controls"][c] else "not learnt"
                                           for c in controls if c in r["controls"]},
                     **{f"{a}: N reached": n for a, n in r["reached"].items()},
                     **{f"{a}: trials to N={args.milestone}": t for a, t in r["to_milestone"].items()}})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.0f}"))
    print("\nfinal accuracy per N (mean over seeds): forgetting")
    per_n = {a: pd.DataFrame([r["per_n"][a] for r in results]).mean() for a in results[0]["per_n"]}
    print(pd.DataFrame(per_n).T.to_string(float_format=lambda v: f"{v:.2f}"))
    print("\nlearnt time constants, tau / dt (steps), all units of all seeds")
    for agent in results[0]["tau"]:
        t = np.concatenate([r["tau"][agent] for r in results])
        print(f"  {agent:>8}: median {np.median(t):.2f}, 90th percentile {np.percentile(t, 90):.2f}, "
              f"max {t.max():.2f} (initialised in 1-2)")
    print("\nthe paper (500 units, SGD; their example runs):")
    for key, value in PAPER.items():
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
