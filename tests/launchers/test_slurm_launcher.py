"""The SLURM launcher against a real single-node SLURM (``.ci/services`` starts it; skipped where it is missing).

Each "agent" here is a few lines of Python, so the tests exercise submission, arrays, GPUs and shards, requeue
and cancellation in seconds; ``tests/e2e/test_slurm_lab.py`` runs real TensorFlow agents through the same path.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from services import slurm_reason

from shaping.labfile import SlurmOptions
from shaping.launchers import LOST, LaunchError, Process, SlurmLauncher

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180),
              pytest.mark.skipif(slurm_reason() is not None, reason=str(slurm_reason()))]

# Exits with the status in argv[1] once the file argv[2] exists (or at once without one); exits 0 on SIGTERM or
# SIGUSR2, as an agent does after checkpointing.
WAITER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGUSR2, lambda *_: sys.exit(0))
print("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
go = sys.argv[2] if len(sys.argv) > 2 else ""
while go and not os.path.exists(go):
    time.sleep(0.05)
sys.exit(int(sys.argv[1]))
"""


def launcher(tmp_path: Path, **options) -> SlurmLauncher:
    opts = SlurmOptions(**{"timeout_min": 5, **options})
    return SlurmLauncher(tmp_path / "slurm", lambda proc: opts, job_name="test")


def procs(tmp_path: Path, n: int, status: int | list = 0, go: Path | None = None) -> list[Process]:
    statuses = status if isinstance(status, list) else [status] * n
    return [Process(f"a{i}", [sys.executable, "-c", WAITER, str(statuses[i]), *([str(go)] if go else [])],
                    tmp_path / "logs" / f"a{i}.log") for i in range(n)]


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def run_to_end(launch: SlurmLauncher, ps: list[Process], timeout_s: float = 90) -> dict:
    ended: dict = {}

    def all_ended():
        for name, code in launch.poll(ps).items():
            ended[name] = code
            next(p for p in ps if p.name == name).mark_ended(code)
        return len(ended) == len(ps)

    wait_for(all_ended, timeout_s, "every job to end")
    return ended


def test_exit_statuses_come_back_from_one_job_array(tmp_path):
    launch = launcher(tmp_path)
    ps = procs(tmp_path, 3, status=[0, 2, 7])
    launch.start(ps, {})
    arrays = {p.handle.job_id.split("_")[0] for p in ps}
    assert len(arrays) == 1 and all("_" in p.handle.job_id for p in ps), [p.where for p in ps]
    assert run_to_end(launch, ps) == {"a0": 0, "a1": 2, "a2": 7}
    assert all(len(launch.starts(p)) == 1 and p.requeues == 0 for p in ps)
    assert "CUDA_VISIBLE_DEVICES" in (tmp_path / "logs" / "a0.log").read_text()  # the agent's log is the lab's


def test_each_gpu_job_gets_a_gpu_of_its_own(tmp_path):
    go = tmp_path / "go"
    launch = launcher(tmp_path, gres="gpu:1")
    ps = procs(tmp_path, 2, go=go)
    launch.start(ps, {})
    starts = wait_for(lambda: all(launch.starts(p) for p in ps) and [launch.starts(p)[0] for p in ps], 60,
                      "both jobs to run at once")
    go.touch()
    assert sorted(s["CUDA_VISIBLE_DEVICES"] for s in starts) == ["0", "1"]  # two jobs, two GPUs
    assert run_to_end(launch, ps) == {"a0": 0, "a1": 0}


def test_shards_pack_several_agents_on_each_gpu(tmp_path):
    go = tmp_path / "go"
    launch = launcher(tmp_path, gres="shard:2")  # the node has 2 GPUs of 4 shards each
    ps = procs(tmp_path, 4, go=go)
    launch.start(ps, {})
    starts = wait_for(lambda: all(launch.starts(p) for p in ps) and [launch.starts(p)[0] for p in ps], 60,
                      "four shard jobs to run at once on two GPUs")
    go.touch()
    per_gpu = Counter(s["CUDA_VISIBLE_DEVICES"] for s in starts)
    assert sum(per_gpu.values()) == 4 and set(per_gpu) <= {"0", "1"} and max(per_gpu.values()) == 2, per_gpu
    assert run_to_end(launch, ps) == {f"a{i}": 0 for i in range(4)}


def test_a_requeued_job_runs_again_and_the_requeue_is_counted(tmp_path):
    go = tmp_path / "go"
    launch = launcher(tmp_path)
    (proc,) = procs(tmp_path, 1, go=go)
    launch.start([proc], {})
    wait_for(lambda: launch.starts(proc), 60, "the job to start")
    job = proc.handle.job_id
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for(lambda: launch.states([proc]).get(job) == "PENDING", 60, "the job to be back in the queue")
    assert launch.poll([proc]) == {}  # it left for the requeue: not an end
    # SLURM holds a requeued job until a begin time about two minutes ahead: start it now
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    wait_for(lambda: len(launch.starts(proc)) == 2, 60, "the requeued job to run again")
    go.touch()
    assert run_to_end(launch, [proc]) == {"a0": 0}
    assert proc.requeues == 1 and [s["job"] for s in launch.starts(proc)] == [job, job]


def test_signalled_before_its_walltime_a_job_checkpoints_and_is_requeued(tmp_path):
    go = tmp_path / "go"
    launch = launcher(tmp_path)
    (proc,) = procs(tmp_path, 1, go=go)
    launch.start([proc], {})
    wait_for(lambda: proc.log_path.exists() and "CUDA_VISIBLE_DEVICES" in proc.log_path.read_text(), 60,
             "the command to be up")
    job = proc.handle.job_id
    # SIGUSR2 is what SLURM sends signal_delay_s before the time limit (it may come up to a minute early, so a
    # short time limit would race the job's start-up: the test sends it itself, as submitit's own tests do)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_for(lambda: launch.states([proc]).get(job) == "PENDING", 60, "submitit to requeue the job on SIGUSR2")
    assert launch.poll([proc]) == {}
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
    wait_for(lambda: len(launch.starts(proc)) == 2, 60, "the requeued job to run again")
    go.touch()
    assert run_to_end(launch, [proc]) == {"a0": 0} and proc.requeues == 1
    log = proc.handle.paths.stdout.read_text()  # submitit's log: checkpoint() called, the job requeued
    assert "Caught signal SIGUSR2" in log and "Calling checkpoint method" in log and f"Requeued job {job}" in log


def test_a_job_that_dies_without_a_result_is_lost(tmp_path):
    launch = launcher(tmp_path)
    (proc,) = procs(tmp_path, 1, status=0, go=tmp_path / "never")
    launch.start([proc], {})
    (start,) = wait_for(lambda: launch.starts(proc), 60, "the job to start")
    os.kill(start["pid"], signal.SIGKILL)  # the job's process dies at once, as on a lost node: no result written
    try:
        assert run_to_end(launch, [proc]) == {"a0": LOST}
    finally:  # its orphaned child, which proctrack/linuxproc no longer tracks (a lost node takes it along)
        subprocess.run(["pkill", "-f", str(tmp_path / "never")], check=False)


def test_stop_cancels_every_job_and_lets_it_checkpoint(tmp_path):
    launch = launcher(tmp_path)
    ps = procs(tmp_path, 2, status=5, go=tmp_path / "never")  # would exit 5 when the file appears; it never does
    launch.start(ps, {})
    # each has printed its first line, so its SIGTERM handler is installed (a loaded machine may take seconds)
    wait_for(lambda: all(p.log_path.exists() and "CUDA_VISIBLE_DEVICES" in p.log_path.read_text() for p in ps), 60,
             "both commands to be up")
    launch.stop(ps, grace_s=60)
    assert [p.returncode for p in ps] == [0, 0]  # SIGTERM reached them: a clean exit, not a kill
    states = launch.states(ps)
    assert not any(state in ("RUNNING", "PENDING") for state in states.values()), states


def test_jobs_left_by_a_lab_that_died_are_cancelled_by_its_next_run(tmp_path):
    first = launcher(tmp_path)
    ps = procs(tmp_path, 2, go=tmp_path / "never")
    first.start(ps, {})
    wait_for(lambda: all(first.starts(p) for p in ps), 60, "both jobs to run")
    # the lab died without stopping them (kill -9): its next run finds them from the lab directory
    again = launcher(tmp_path)
    assert sorted(again.cancel_leftovers()) == sorted(p.handle.job_id for p in ps)
    assert not any(s in ("RUNNING", "PENDING") for s in again.states(ps).values())
    assert again.cancel_leftovers() == []  # forgotten once cancelled


def test_a_job_the_scheduler_rejects_is_a_message(tmp_path):
    launch = launcher(tmp_path, partition="no-such-partition")
    with pytest.raises(LaunchError, match="SLURM rejected the job.*a0.*(?i:partition)"):
        launch.start(procs(tmp_path, 1), {})


def test_no_sbatch_on_path_is_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a shell on a machine without SLURM
    with pytest.raises(LaunchError, match="needs SLURM's sbatch.*launcher = \"local\""):
        launcher(tmp_path).check()
