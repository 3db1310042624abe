"""A simulated agent process (NumPy only): learns-like, answers through TaskClient, logs every SCORE.

Its accuracy rises with the trials it has done in the session (``p = min(p_max, p0 + trials / ramp)``), so a
shaping policy moves it through its stages. Each SCORE is appended to ``--log`` as one JSON line, flushed,
so a test can compare what the agent was told with what the server journaled, even after kill -9.

Usage: python sim_agent.py ENDPOINT NAME --log FILE [--curriculum C] [--max-batches N] [--pause-s S]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import numpy as np

from shaping.client import ServerClosed, TaskClient


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("endpoint")
    p.add_argument("name")
    p.add_argument("--log", required=True)
    p.add_argument("--curriculum")
    p.add_argument("--max-batches", type=int, default=10_000)
    p.add_argument("--pause-s", type=float, default=0.0)
    p.add_argument("--p0", type=float, default=0.6)
    p.add_argument("--ramp", type=float, default=400.0)
    p.add_argument("--p-max", type=float, default=0.95)
    p.add_argument("--timeout-s", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    client = TaskClient(args.endpoint, args.name, curriculum=args.curriculum, heartbeat_interval_s=0.2,
                        timeout_s=args.timeout_s, reconnect_max_s=0.5)
    welcome = client.hello()
    with open(args.log, "a") as log:
        built_by = "agent" if client.builds_trials else "server"
        log.write(json.dumps({"welcome": True, "trials": welcome.trials, "stage": welcome.stage, "build": built_by,
                              "epoch": welcome.epoch, "resumed": welcome.resumed, "pid": os.getpid()}) + "\n")
        log.flush()
        done = 0
        trials = welcome.trials
        try:
            for batch in client.batches():
                p_correct = min(args.p_max, args.p0 + trials / args.ramp)
                correct = rng.random(len(batch)) < p_correct
                y_hat = np.array(batch.y)
                y_hat[~correct] = y_hat[~correct][..., ::-1]
                if args.pause_s:
                    time.sleep(args.pause_s)
                score = client.result(batch, y_hat)
                if score is None:
                    log.write(json.dumps({"lost": batch.batch_id, "epoch": batch.epoch}) + "\n")
                    log.flush()
                    continue
                trials = score.trials
                done += 1
                log.write(json.dumps({"batch": score.batch_id, "n": score.n, "correct": score.correct,
                                      "trials": score.trials, "stage": score.stage,
                                      "stage_index": score.stage_index, "complete": score.complete,
                                      "epoch": client.epoch}) + "\n")
                log.flush()
                if score.complete or done >= args.max_batches:
                    break
        except ServerClosed as err:
            log.write(json.dumps({"closed": err.reason}) + "\n")
            log.flush()
            client.close()
            return 3
    client.bye()
    return 0


if __name__ == "__main__":
    sys.exit(main())
