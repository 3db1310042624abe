"""Agents benchmark: our ``Basic`` against PsychRNN 1.0.0's, side by side, one fresh process per measurement.

Configuration (issue 3): ``PerceptualDiscrimination(dt=10, tau=100, T, N_batch=128)``, ``Basic``, Adam at
learning rate 1e-3, one TensorFlow thread per process, ``OPENBLAS_NUM_THREADS=1``. Each side trains through
its own ``train()`` on its own task, on a batch generator that timestamps every request, so

- *whole update* = time between two successive batch requests (trial generation + training step),
- *trials* = time spent inside the task's generator, *TF step* = whole update - trials,
- *first update* = from process start (before ``import tensorflow``) to the end of the first update, and
  the same without the imports ("after import"),
- *peak RSS* = the process's ``ru_maxrss``.

PsychRNN runs in graph mode (``tf.compat.v1``), as PsychRNN 1.0.0 does on TensorFlow 2.x. It is looked up
in ``.bench/psychrnn`` (``pip install --no-deps --target .bench/psychrnn psychrnn==1.0.0``, or the
``make bench-psychrnn`` virtual environment); without it only our side runs.

Usage: ``python bench/agents.py [--quick] [--n-rec 50 256] [--steps 200 500 1000] [--batch 128]``.
"""
from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# This file is called agents.py: keep its folder off the path so that `import agents` finds the package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
PSYCHRNN_DIR = ROOT / ".bench" / "psychrnn"


class _Timed:
    """Wrap a batch generator: record when each batch is requested and how long generating it took.

    ``stream()`` is a real generator (PsychRNN checks ``inspect.isgenerator``).
    """

    def __init__(self, gen):
        self.gen, self.requests, self.gen_time = gen, [], []

    def stream(self):
        while True:
            t = time.perf_counter()
            self.requests.append(t)
            batch = next(self.gen)
            self.gen_time.append(time.perf_counter() - t)
            yield batch


def _summary(timed: _Timed, first_request: int, t_import: float, t_built: float) -> dict:
    req, gen = timed.requests, timed.gen_time
    # request k+1 happens when update k (on batch k) is done; skip the first two updates (warm-up)
    intervals = [b - a for a, b in zip(req[first_request + 2:-1], req[first_request + 3:])]
    gens = gen[first_request + 2:-1]
    whole = sum(intervals) / max(len(intervals), 1)
    trials = sum(gens) / max(len(gens), 1)
    return {
        "first_update_s": req[first_request + 1] - _T0,
        "first_update_after_import_s": req[first_request + 1] - t_import,
        "build_s": t_built - t_import, "whole_update_s": whole, "trials_s": trials, "step_s": whole - trials,
        "updates_timed": len(intervals), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def worker_ours(n_rec: int, steps: int, n_batch: int, updates: int, threads: int = 1) -> dict:
    sys.modules.setdefault("pyarrow", None)  # as in an agent process (`python -m agents`)
    import agents

    agents.configure_threads(threads)
    from agents import Basic
    from shaping.tasks import PerceptualDiscrimination

    t_import = time.perf_counter()
    task = PerceptualDiscrimination(dt=10, tau=100, T=steps * 10, N_batch=n_batch, seed=0)
    params = task.get_task_params()
    params.update(name="bench", N_rec=n_rec, seed=0)
    model = Basic(params)
    t_built = time.perf_counter()
    timed = _Timed(task.batch_generator())
    model.train(timed.stream(), {"learning_rate": 1e-3, "training_iters": n_batch * updates,
                                 "loss_epoch": 10 ** 9, "verbosity": False})
    timed.requests.append(time.perf_counter())
    return _summary(timed, 0, t_import, t_built)


def worker_psychrnn(n_rec: int, steps: int, n_batch: int, updates: int, threads: int = 1) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import numpy as np
    from psychrnn.backend.models.basic import Basic
    from psychrnn.tasks.perceptual_discrimination import PerceptualDiscrimination

    t_import = time.perf_counter()
    np.random.seed(0)
    task = PerceptualDiscrimination(dt=10, tau=100, T=steps * 10, N_batch=n_batch)
    params = task.get_task_params()
    params.update(name="bench", N_rec=n_rec)
    model = Basic(params)
    t_built = time.perf_counter()
    timed = _Timed(task.batch_generator())
    # PsychRNN trains while epoch * batch < training_iters and discards its first batch
    model.train(timed.stream(), {"learning_rate": 1e-3, "training_iters": n_batch * (updates + 1),
                                 "loss_epoch": 10 ** 9, "verbosity": False})
    timed.requests.append(time.perf_counter())
    return _summary(timed, 1, t_import, t_built)


def _psychrnn_command() -> tuple[list[str], dict] | None:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    venv_python = PSYCHRNN_DIR / "bin" / "python"
    if venv_python.exists():
        return [str(venv_python)], env
    if (PSYCHRNN_DIR / "psychrnn" / "__init__.py").exists():
        env["PYTHONPATH"] = os.pathsep.join([str(PSYCHRNN_DIR), str(ROOT), env.get("PYTHONPATH", "")])
        return [sys.executable], env
    return None


def worker_command(side: str) -> tuple[list[str], dict] | None:
    """The interpreter and environment of a worker process for ``side`` ("ours" or "psychrnn"); None when
    PsychRNN is not installed."""
    if side == "psychrnn":
        return _psychrnn_command()
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return [sys.executable], env


def run_worker(side: str, n_rec: int, steps: int, n_batch: int, updates: int, timeout_s: float) -> dict | None:
    cmd = worker_command(side)
    if cmd is None:
        return None
    prefix, env = cmd
    args = [*prefix, __file__, "--worker", side, "--n-rec", str(n_rec), "--steps", str(steps),
            "--batch", str(n_batch), "--updates", str(updates)]
    try:
        out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout_s, cwd=ROOT)
    except subprocess.TimeoutExpired:
        print(f"  {side} N_rec={n_rec} steps={steps}: timed out after {timeout_s:.0f} s", file=sys.stderr)
        return None
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        print(f"  {side} N_rec={n_rec} steps={steps} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT "):])


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return f"{v:.0f} MB" if unit == "MB" else (f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", choices=["ours", "psychrnn"])
    ap.add_argument("--n-rec", type=int, nargs="+", default=[50, 256])
    ap.add_argument("--steps", type=int, nargs="+", default=[200, 500, 1000])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--updates", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="TensorFlow intra- and inter-op threads on both sides (0 = TensorFlow's default)")
    ap.add_argument("--quick", action="store_true", help="N_rec 50 only, 200 and 1000 steps, fewer updates")
    ap.add_argument("--no-psychrnn", action="store_true")
    ap.add_argument("--timeout", type=float, default=900.0, help="per measurement (s)")
    a = ap.parse_args()
    if a.worker:
        fn = worker_ours if a.worker == "ours" else worker_psychrnn
        res = fn(a.n_rec[0], a.steps[0], a.batch, a.updates or 12, a.threads)
        print("RESULT " + json.dumps(res), flush=True)
        return
    if a.quick:
        a.n_rec, a.steps = [50], [200, 1000]
    sides = ["psychrnn", "ours"] if not a.no_psychrnn else ["ours"]
    if "psychrnn" in sides and _psychrnn_command() is None:
        print(f"PsychRNN 1.0.0 not found under {PSYCHRNN_DIR}; only our side runs.\n  Install it with: "
              f"pip install --no-deps --target {PSYCHRNN_DIR} psychrnn==1.0.0 (pip < 24.1: its metadata is "
              f"rejected by newer pip)", file=sys.stderr)
        sides = ["ours"]
    runs = []
    for n_rec in a.n_rec:
        for steps in a.steps:
            if steps != a.steps[0] and n_rec != a.n_rec[0]:
                continue  # first-update scaling in T only at the first N_rec
            updates = a.updates or (3 if a.quick else 12) if steps == a.steps[0] else 3
            row = {"N_rec": n_rec, "steps": steps}
            for side in sides:
                print(f"running {side:8s} N_rec={n_rec} steps={steps} ...", file=sys.stderr, flush=True)
                row[side] = run_worker(side, n_rec, steps, a.batch, updates, a.timeout)
            runs.append(row)
    _print_table(runs, a.batch)


def _print_table(runs: list[dict], n_batch: int) -> None:
    metrics = [("whole update", "whole_update_s", "s"), ("trials", "trials_s", "s"), ("TF step", "step_s", "s"),
               ("first update", "first_update_s", "s"),
               ("first update after import", "first_update_after_import_s", "s"),
               ("peak RSS", "peak_rss_mb", "MB")]
    print(f"\nAgents benchmark: Basic on PerceptualDiscrimination(dt=10, tau=100), N_batch={n_batch}, 1 thread")
    print(f"{'N_rec':>5} {'steps':>5}  {'metric':<26} {'PsychRNN':>10} {'ours':>10} {'ratio':>8}")
    for row in runs:
        for label, key, unit in metrics:
            if row["steps"] != runs[0]["steps"] and key not in ("first_update_s", "first_update_after_import_s",
                                                                 "peak_rss_mb"):
                continue
            p = (row.get("psychrnn") or {}).get(key)
            o = (row.get("ours") or {}).get(key)
            if p is None and o is None:
                continue
            if p and o:
                ratio = f"{o / p:.2f}x" if key == "peak_rss_mb" else f"{p / o:.1f}x"
            else:
                ratio = "-"
            print(f"{row['N_rec']:>5} {row['steps']:>5}  {label:<26} {_fmt(p, unit):>10} {_fmt(o, unit):>10} "
                  f"{ratio:>8}")
    print("ratio = PsychRNN / ours for times (higher is faster), ours / PsychRNN for peak RSS (lower is leaner)")


if __name__ == "__main__":
    main()
