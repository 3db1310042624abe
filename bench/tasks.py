"""Time to build one batch of PerceptualDiscrimination(dt=10, tau=100, T=2000, N_batch=128).

Three ways, in the same run: our vectorised path, our per-step path (PsychRNN's ``trial_function`` loop,
the fallback for user tasks) and PsychRNN 1.0.0's own ``batch_generator`` when it is installed under
``.bench/psychrnn`` (``make bench-psychrnn``). Then the vectorised time of every built-in task.

Usage: ``python bench/tasks.py [--repeats N]``. Times are medians over repeats, in ms per batch; ratios are
PsychRNN's time (or, without it, our per-step time) over each row's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PSYCHRNN_DIR = ROOT / ".bench" / "psychrnn"

from shaping.tasks import PerceptualDiscrimination, catalog, make  # noqa: E402

SHAPE = dict(dt=10, tau=100, T=2000, N_batch=128)


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` in ms, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def psychrnn_task() -> Any | None:
    """PsychRNN 1.0.0's PerceptualDiscrimination, or None when it is not installed.

    1.0.0's top-level ``psychrnn/__init__.py`` imports nothing (only ``psychrnn.backend`` needs
    TensorFlow), so its task modules import with NumPy alone.
    """
    if not (PSYCHRNN_DIR / "psychrnn").is_dir():
        return None
    sys.path.insert(0, str(PSYCHRNN_DIR))
    from psychrnn.tasks.perceptual_discrimination import PerceptualDiscrimination as PsychRNNTask
    return PsychRNNTask(**SHAPE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the slow paths (default 5)")
    args = parser.parse_args(argv)

    ours = PerceptualDiscrimination(**SHAPE, seed=0)
    ids = iter(range(10**9))
    rows = [("skinnerbox vectorised", median_ms(lambda: ours.generate(batch_id=next(ids)), 40 * args.repeats)),
            ("skinnerbox per-step", median_ms(lambda: ours.generate(batch_id=next(ids), stepwise=True),
                                              args.repeats))]
    theirs = psychrnn_task()
    if theirs is not None:
        generator = theirs.batch_generator()
        rows.append(("PsychRNN 1.0.0 batch_generator", median_ms(lambda: next(generator), args.repeats)))
    reference_name, reference = rows[-1]

    print("PerceptualDiscrimination(dt=10, tau=100, T=2000, N_batch=128): one batch")
    print(f"{'path':34s} {'ms/batch':>10s} {'speed-up':>10s}")
    for name, ms in rows:
        print(f"{name:34s} {ms:10.2f} {reference / ms:9.1f}x")
    print(f"(speed-up = {reference_name} time / row time)")
    if theirs is None:
        print("PsychRNN 1.0.0 is not installed; `make bench-psychrnn` puts it under .bench/psychrnn "
              "for this comparison.")

    print()
    print("Every built-in task, vectorised, N_batch=128, its default T")
    print(f"{'task':26s} {'T (ms)':>8s} {'N_in':>5s} {'N_out':>5s} {'ms/batch':>10s}")
    for name in catalog()["name"]:
        task = make(name, N_batch=128, seed=0)
        ms = median_ms(lambda: task.generate(batch_id=next(ids)), 10 * args.repeats)
        print(f"{name:26s} {task.T:8g} {task.N_in:5d} {task.N_out:5d} {ms:10.2f}")


if __name__ == "__main__":
    main()
