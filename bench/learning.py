"""Learning benchmark: trials to 90 % accuracy, our ``Basic`` against PsychRNN 1.0.0's, over many seeds.

Configuration (issue 3): ``PerceptualDiscrimination(dt=10, tau=100, T=2000, N_batch=128)``, ``Basic`` with
``N_rec=50``, Adam at learning rate 1e-3, ``rec_noise=0``. Each side trains through its own ``train()`` on
its own task with PsychRNN's stopping rule: after every update the network is tested on a fresh batch and
training stops once that batch's accuracy (the task's ``accuracy_function``) reaches 90 %. The figure per
seed is the number of training trials used (updates x 128); a seed that does not get there within
``--max-trials`` counts as "> max".

One seed fixes everything random on one side: the initial weights, the trials and the noise. The two sides
draw from the same distributions (Gaussian ``W_rec`` at spectral radius 1.1, Glorot-Gaussian ``W_in`` and
``W_out``, PsychRNN's task parameters) with different generators, so seed k of one side is not seed k of the
other: compare the distributions (median and quartiles), not the rows.

Each side runs all its seeds in one worker process (PsychRNN: a fresh graph per seed). Usage:
``python bench/learning.py [--seeds 0 1 2 ...] [--max-trials 12800] [--no-psychrnn]``; about 6 minutes
for ten seeds on two cores, most of it PsychRNN's trial generation.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# This folder holds agents.py: keep it off the path so that `import agents` finds the package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

N_REC, N_BATCH, LEARNING_RATE, CUTOFF = 50, 128, 1e-3, 0.9


def worker_ours(seeds: list[int], max_trials: int) -> dict:
    sys.modules.setdefault("pyarrow", None)
    import agents

    agents.configure_threads(1)
    from agents import Basic
    from shaping.tasks import PerceptualDiscrimination

    out = {}
    for seed in seeds:
        task = PerceptualDiscrimination(dt=10, tau=100, T=2000, N_batch=N_BATCH, seed=seed)
        params = task.get_task_params()
        params.update(name=f"learner{seed}", N_rec=N_REC, seed=seed)
        model = Basic(params)
        out[seed] = _trials_to_cutoff(model, task, task.batch_generator(), max_trials)
        model.destruct()
        print(f"  ours seed {seed}: {out[seed]}", file=sys.stderr, flush=True)
    return out


def worker_psychrnn(seeds: list[int], max_trials: int) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from psychrnn.backend.models.basic import Basic
    from psychrnn.tasks.perceptual_discrimination import PerceptualDiscrimination

    out = {}
    for seed in seeds:
        np.random.seed(seed)
        tf.compat.v1.set_random_seed(seed)
        task = PerceptualDiscrimination(dt=10, tau=100, T=2000, N_batch=N_BATCH)
        params = task.get_task_params()
        params.update(name=f"learner{seed}", N_rec=N_REC)
        model = Basic(params)
        # PsychRNN trains while epoch * N_batch < training_iters: allow exactly max_trials of training
        out[seed] = _trials_to_cutoff(model, task, task.batch_generator(), max_trials + N_BATCH)
        model.destruct()
        print(f"  PsychRNN seed {seed}: {out[seed]}", file=sys.stderr, flush=True)
    return out


def _trials_to_cutoff(model, task, generator, max_trials: int) -> int | None:
    """Train with PsychRNN's performance cutoff; the training trials used, or None if 90 % was not reached."""
    reached = []

    def accuracy(trial_batch, trial_y, output_mask, output, epoch, losses, verbosity):
        acc = task.accuracy_function(trial_y, output, output_mask)
        if acc >= CUTOFF and not reached:
            reached.append(epoch * N_BATCH)
        return acc

    model.train(generator, {"learning_rate": LEARNING_RATE, "training_iters": max_trials, "verbosity": False,
                            "loss_epoch": 10 ** 9, "performance_measure": accuracy,
                            "performance_cutoff": CUTOFF})
    return reached[0] if reached else None


def _bench_agents():
    """bench/agents.py as a module (its PsychRNN lookup is the one this benchmark uses too)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_agents", ROOT / "bench" / "agents.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_worker(side: str, seeds: list[int], max_trials: int) -> dict | None:
    cmd = _bench_agents().worker_command(side)
    if cmd is None:
        return None
    prefix, env = cmd
    args = [*prefix, __file__, "--worker", side, "--max-trials", str(max_trials),
            "--seeds", *map(str, seeds)]
    out = subprocess.run(args, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        print(f"  {side} failed (exit {out.returncode})", file=sys.stderr)
        return None
    return {int(k): v for k, v in json.loads(lines[-1][len("RESULT "):]).items()}


def _stats(values: list[int | None], max_trials: int) -> str:
    """Median and quartiles; a seed that never reached the cutoff counts as above every other."""
    arr = np.array([max_trials + 1 if v is None else v for v in values], dtype=float)
    q1, med, q3 = np.percentile(arr, [25, 50, 75])
    fmt = lambda v: f"> {max_trials:,}" if v > max_trials else f"{v:,.0f}"  # noqa: E731
    return f"{fmt(med)} ({fmt(q1)} - {fmt(q3)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", choices=["ours", "psychrnn"])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--max-trials", type=int, default=12800)
    ap.add_argument("--no-psychrnn", action="store_true")
    a = ap.parse_args()
    if a.worker:
        fn = worker_ours if a.worker == "ours" else worker_psychrnn
        print("RESULT " + json.dumps(fn(a.seeds, a.max_trials)), flush=True)
        return
    results = {}
    for side in (["ours"] if a.no_psychrnn else ["psychrnn", "ours"]):
        print(f"running {side} on seeds {a.seeds} ...", file=sys.stderr, flush=True)
        results[side] = run_worker(side, a.seeds, a.max_trials)
    sides = [s for s in results if results[s] is not None]
    names = {"psychrnn": "PsychRNN", "ours": "ours"}
    print(f"\nTrials to {CUTOFF:.0%} (accuracy of a fresh batch after an update), Basic N_rec={N_REC}, "
          f"PerceptualDiscrimination T=2000 ms, N_batch={N_BATCH}, lr {LEARNING_RATE:g}")
    print(f"{'seed':>5} " + " ".join(f"{names[s]:>10}" for s in sides))
    show = lambda v: f"> {a.max_trials:,}" if v is None else f"{v:,}"  # noqa: E731
    for seed in a.seeds:
        print(f"{seed:>5} " + " ".join(f"{show(results[s][seed]):>10}" for s in sides))
    for s in sides:
        print(f"{names[s]}: median (quartiles) {_stats(list(results[s].values()), a.max_trials)}")


if __name__ == "__main__":
    main()
