"""Shaping benchmark: trials to criterion, shaped against unshaped, over seeds, from a lab config.

Runs the lab config (default ``examples/demo.toml``) once per seed, each time with ``lab.seed`` and every
agent's model ``seed`` offset by the seed (the trial streams and the initial networks change together), with
MLflow off, and prints the summary's ``trials_to_complete`` per agent (:func:`shaping.readout.summary_rows`): the
trials the network trained on until its curriculum's criterion was met (``session_trials``: batches in flight at
a stage change included), NaN for an agent stopped by ``max_trials``; then each seed's one-line verdict
(:func:`shaping.readout.verdict`) and each agent's final recent accuracy, labelled with the server's window. One
run of the demo gives one sample of a noisy quantity; compare the distributions (median and quartiles per agent),
not single runs.

Usage: ``python bench/shaping.py [--config examples/demo.toml] [--seeds 0 1 2 3 4 5 6 7]``; about 25-35 s a
seed for the demo on two (loaded) cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shaping.lab import Lab  # noqa: E402
from shaping.labfile import LabFile  # noqa: E402
from shaping.readout import RECENT_ACCURACY, accuracy_label  # noqa: E402


def run_seed(config: LabFile, seed: int, workdir: Path) -> pd.DataFrame:
    """One lab run with every seed offset by ``seed`` (:meth:`LabFile.replicate`): its summary table (one row
    per agent)."""
    lab = Lab(config.replicate(seed), workdir=workdir, tracking_uri="none", progress=False)
    lab.run()
    return lab.summary().assign(seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "examples" / "demo.toml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    args = parser.parse_args(argv)
    config = LabFile.load(args.config)
    with tempfile.TemporaryDirectory(prefix="skinnerbox-bench-") as tmp:
        summaries = [run_seed(config, s, Path(tmp) / f"seed{s}") for s in args.seeds]
    runs = pd.concat(summaries, ignore_index=True)
    trials = runs.pivot(index="seed", columns="agent", values="trials_to_complete")
    print(f"\ntrials to criterion (session_trials), {args.config}, seeds {args.seeds} (NaN: stopped by max_trials)\n")
    print(trials.to_string(float_format=lambda v: f"{v:,.0f}"))
    print()
    for summary in summaries:
        print(f"seed {int(summary['seed'].iloc[0])}: {summary.attrs.get('verdict') or 'no shaped/control pair'}")
    window = summaries[0].attrs.get("window_trials") if summaries else None
    recent = runs.pivot(index="seed", columns="agent", values=RECENT_ACCURACY)
    print(f"\nfinal {accuracy_label(RECENT_ACCURACY, window)}\n")
    print(recent.to_string(float_format=lambda v: f"{v:.3f}"))
    rows = []
    for agent in trials.columns:
        t = trials[agent].to_numpy(dtype=float)
        done = t[np.isfinite(t)]
        q = np.percentile(done, [25, 50, 75]) if len(done) else [np.nan] * 3
        rows.append({"agent": agent, "reached": f"{len(done)}/{len(t)}", "q25": q[0], "median": q[1], "q75": q[2]})
    print("\n" + pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:,.0f}"))
    if {"shaped", "control"} <= set(trials.columns):
        ratio = (trials["control"] / trials["shaped"]).dropna()
        print(f"\ncontrol / shaped, per seed where both reached it: median {ratio.median():.2f} (range "
              f"{ratio.min():.2f}-{ratio.max():.2f}, {len(ratio)} seeds)" if len(ratio) else
              "\ncontrol / shaped: no seed where both reached the criterion")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
