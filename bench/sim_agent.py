"""A simulated agent process for the cluster benchmark (NumPy only): answers a fixed number of batches through
``TaskClient`` and writes when it came up, when its first SCORE arrived and when it finished.

Adapted from ``tests/shaping/server/sim_agent.py``: the same learner-like answers (the chance of a correct
trial rises with the trials done in the session, ``p = min(p_max, p0 + trials / ramp)``, so a stages curriculum
moves it on), but only three JSON lines go to ``--log``, each with its wall-clock time ``t`` (``time.time()``, s):

- ``{"up": t}``: the interpreter is running (written before NumPy, pyzmq and ``shaping`` are imported);
- ``{"first_score": t, ...}``: the first SCORE of the run (the agent is in the loop);
- ``{"done": t, "batches": ..., "trials": ..., "complete": ..., "reconnects": ...}``: its last SCORE
  (``trials``: the session's, which counts batches the server scored after a reconnect voided them here).

Usage: ``python bench/sim_agent.py ENDPOINT NAME --log FILE [--curriculum C] [--batches N] [--pause-s S]``.
Exit status 0 when done, 3 when the server closed the session first.
"""
from __future__ import annotations

import time

_T_UP = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _write(log, record: dict) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("endpoint")
    p.add_argument("name")
    p.add_argument("--log", required=True, help="JSON-lines file of the three time stamps (appended)")
    p.add_argument("--curriculum")
    p.add_argument("--batches", type=int, default=50, help="batches to answer, then BYE")
    p.add_argument("--pause-s", type=float, default=0.0, help="seconds of 'training' per batch (sleep)")
    p.add_argument("--p0", type=float, default=0.6)
    p.add_argument("--ramp", type=float, default=400.0)
    p.add_argument("--p-max", type=float, default=0.95)
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    log = open(args.log, "a")
    _write(log, {"up": _T_UP, "pid": os.getpid()})

    import numpy as np

    from shaping.client import ServerClosed, TaskClient

    rng = np.random.default_rng(args.seed)
    client = TaskClient(args.endpoint, args.name, curriculum=args.curriculum, timeout_s=args.timeout_s)
    trials = client.hello().trials
    done, complete = 0, False
    try:
        for batch in client.batches():
            p_correct = min(args.p_max, args.p0 + trials / args.ramp)
            correct = rng.random(len(batch)) < p_correct
            y_hat = np.array(batch.y)
            y_hat[~correct] = y_hat[~correct][..., ::-1]
            if args.pause_s:
                time.sleep(args.pause_s)
            score = client.result(batch, y_hat)
            if score is None:  # void after a reconnect: not counted
                continue
            if done == 0:
                _write(log, {"first_score": time.time(), "trials": score.trials})
            trials, complete = score.trials, score.complete
            done += 1
            if complete or done >= args.batches:
                break
    except ServerClosed as err:
        _write(log, {"closed": time.time(), "reason": err.reason, "batches": done, "trials": trials,
                     "reconnects": client.reconnects})
        client.close()
        return 3
    _write(log, {"done": time.time(), "batches": done, "trials": trials, "complete": complete,
                 "reconnects": client.reconnects})
    client.bye()
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
