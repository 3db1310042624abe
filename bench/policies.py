"""Decisions per second of each shaping policy kind, against the cost of building the batch it decides on.

A decision is one ``policy.update(scored)`` plus the ``policy.conditions()`` that follows, on 128-trial
batches of PerceptualDiscrimination(dt=10, T=2000) answered by a simulated learner. The scored tables are
recorded once and replayed into a fresh policy with the same seed (so it makes the same decisions), which
times the policy alone. ``vs generate`` is the time ``task.generate`` takes for one batch over the policy's
time per decision: how many decisions fit in the time one batch is built.

Usage: ``python bench/policies.py [--batches N]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shaping.policies import from_spec
from shaping.policies.simulate import Observer, run
from shaping.tasks import PerceptualDiscrimination

STAGES = {"kind": "stages", "window": 256, "regress": {"accuracy": 0.55, "min_dwell": 512}, "stages": [
    {"name": "easy", "knobs": {"coherence": 0.7}, "graduate": {"accuracy": 0.8, "min_trials": 512}},
    {"name": "mixed", "knobs": {"coherence": [0.1, 0.3, 0.7]},
     "graduate": {"per_condition": {"param": "coherence", "accuracy": 0.7, "min_trials": 20}}},
    {"name": "staircase", "knobs": {"coherence": {"staircase": {"start": 0.3, "scale": "log",
                                                                "bounds": [0.01, 2.0], "step": 0.01}}}}]}
SPECS = {
    "fixed": {"kind": "fixed"},
    "staircase (1-up/2-down)": {"kind": "staircase", "knob": "coherence", "start": 0.7, "scale": "log",
                                "bounds": [0.01, 2.0], "step": 0.01},
    "stages (3, staircase, per-condition)": STAGES,
    "curriculum (PsychRNN)": {"kind": "curriculum", "metric_epoch": 5,
                              "tasks": [{"knobs": {"coherence": c}} for c in (0.7, 0.3, 0.1)]},
    "bias (repeat + side) around stages": {"kind": "bias", "policy": STAGES, "repeat": True,
                                           "side": "thresholded_linear"},
}


def time_decisions(spec: dict, task: PerceptualDiscrimination, batches: int) -> tuple[float, int]:
    """Median microseconds per decision, and the number of events, replaying recorded batches."""
    recorded = run(from_spec(spec, task, seed=0), task, Observer(alpha=0.6, alpha_final=0.08, tau_trials=4000),
                   batches * task.N_batch, stop_when_complete=False)
    times = []
    for _ in range(3):
        policy = from_spec(spec, task, seed=0)
        start = time.perf_counter()
        for scored in recorded.scored:
            policy.update(scored)
            policy.conditions()
        times.append((time.perf_counter() - start) / len(recorded.scored))
    return 1e6 * statistics.median(times), len(recorded.events)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches replayed per policy (default 200)")
    args = parser.parse_args(argv)
    task = PerceptualDiscrimination(dt=10, tau=100, T=2000, N_batch=128, seed=0)
    task.generate()
    start = time.perf_counter()
    for i in range(20):
        task.generate(batch_id=i)
    generate_us = 1e6 * (time.perf_counter() - start) / 20

    print(f"policy decisions on {task.N_batch}-trial batches ({args.batches} batches; task.generate: "
          f"{generate_us / 1e3:.2f} ms per batch)")
    print(f"{'kind':40s} {'us/decision':>12s} {'decisions/s':>12s} {'us/trial':>9s} {'vs generate':>12s} "
          f"{'events':>7s}")
    for name, spec in SPECS.items():
        us, events = time_decisions(spec, task, args.batches)
        print(f"{name:40s} {us:12.0f} {1e6 / us:12.0f} {us / task.N_batch:9.2f} {generate_us / us:11.1f}x "
              f"{events:7d}")


if __name__ == "__main__":
    main()
