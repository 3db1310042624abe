"""The SLURM launcher: each agent one job (one job array per set of agents asking the same resources), through
submitit (https://github.com/facebookincubator/submitit), on the scheduler the cluster already has.

How a job runs: submitit's ``_submit`` process on the node calls :class:`AgentCommand`, which records the start
(``slurm/starts/<agent>.jsonl``: job id, host, the GPUs SLURM gave it), then runs the agent as a child whose
output is appended to the lab's ``logs/<agent>.log``. SLURM's ``CUDA_VISIBLE_DEVICES`` pins the agent to the GPU
(or GPU shard) of its ``gres``.

Preemption and walltime: SLURM signals every process of the job (SIGTERM on preemption, requeue or ``scancel``;
SIGUSR2 ``signal_delay_s`` before the time limit). The agent checkpoints on either and leaves; on SIGUSR2
submitit calls :meth:`AgentCommand.checkpoint` and requeues the job, at most ``max_num_timeout`` times for a
walltime. A requeued job starts again, and the agent resumes its session where the server has it. The lab
counts the starts; a job is over only when the scheduler no longer has it queued or running, so an agent that
left for a requeue is not mistaken for a finished one.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from ..procs import AGENT_STOP_GRACE_S, REFUSED, process_env
from .base import LOST, Launcher, LaunchError, Process

log = logging.getLogger(__name__)

# squeue states of a job that will still run (or is running); any other state, or no line at all, is an end.
ALIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                   "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED", "RESV_DEL_HOLD"})
MAX_ARRAY = 1000  # tasks per job array (SLURM's default MaxArraySize, 1001, allows indices 0-1000)
GPU_ENV = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_SHARDS_ON_NODE", "GPU_DEVICE_ORDINAL")


class AgentCommand:
    """The callable a SLURM job runs (pickled by submitit): the agent as a child process.

    Args:
        name: the agent's name; argv: its command line; threads: its CPU threads.
        task_path: folders for ``PYTHONPATH``; log_path: the agent's log (appended); starts: the JSON-lines file
            where each start is recorded.
    """

    def __init__(self, name: str, argv: Sequence[str], threads: int, task_path: Sequence[str], log_path: str,
                 starts: str, env: dict | None = None):
        self.name, self.argv, self.threads = name, list(argv), int(threads)
        self.task_path, self.log_path, self.starts = [str(p) for p in task_path], str(log_path), str(starts)
        self.env = dict(env or {})
        self._popen: subprocess.Popen | None = None

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_popen"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._popen = None

    def __call__(self) -> int:
        # process_env names this process (the job's) as the agent's supervisor: an agent orphaned by the job's
        # death (proctrack/linuxproc loses track of it) stops by itself, as a lab's children do (lab_gone)
        env = {**process_env(self.threads, self.task_path), **self.env}
        record = {"t": time.time(), "host": socket.gethostname(), "pid": os.getpid(), "job": _job_id(),
                  "restart_count": int(os.environ.get("SLURM_RESTART_COUNT", 0) or 0),
                  **{k: os.environ[k] for k in GPU_ENV if k in os.environ}}
        Path(self.starts).parent.mkdir(parents=True, exist_ok=True)
        with open(self.starts, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        _forget_result()  # a result left by this job's run before a requeue is not this run's
        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self._popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        return self._popen.wait()

    def checkpoint(self) -> Any:
        """Called by submitit on SIGUSR2 (walltime or preemption): let the agent checkpoint and leave, then
        requeue this same command (the agent resumes from its checkpoint and the server's journal)."""
        import submitit

        if self._popen is not None:
            _stop_child(self._popen.pid, AGENT_STOP_GRACE_S)
        fresh = AgentCommand(self.name, self.argv, self.threads, self.task_path, self.log_path, self.starts, self.env)
        return submitit.helpers.DelayedSubmission(fresh)


def _stop_child(pid: int, grace_s: float) -> None:
    """SIGTERM the agent and reap it, SIGKILL after ``grace_s`` (s). Called from submitit's signal handler, which
    interrupts ``Popen.wait`` in :meth:`AgentCommand.__call__`: that frame holds the Popen's wait lock, so the
    child is reaped here with ``os.waitpid`` directly."""
    deadline = time.monotonic() + grace_s
    try:
        os.kill(pid, signal.SIGTERM)
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.05)
    except (ProcessLookupError, ChildProcessError):  # already gone (SLURM signalled it too) and reaped
        pass


def _job_id() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def _forget_result() -> None:
    folder = os.environ.get("SUBMITIT_FOLDER")
    if folder:
        try:
            import submitit

            submitit.JobEnvironment().paths.result_pickle.unlink(missing_ok=True)
        except Exception:  # outside a submitit job (a test calling the command directly): nothing to forget
            pass


class SlurmLauncher(Launcher):
    """Submits each process as a SLURM job through submitit (see the module docstring).

    Args:
        folder: submitit's folder (submission scripts, pickles, its own logs), on storage the nodes share.
        options: the :class:`~shaping.labfile.SlurmOptions` of a :class:`Process` (an agent's, or the server's).
        job_name: the jobs' name prefix (the lab's name).
        task_path: folders on each process's ``PYTHONPATH``.
    """

    name = "slurm"
    poll_interval_s = 2.0

    def __init__(self, folder: str | os.PathLike, options: Callable[[Process], Any], job_name: str,
                 task_path: Sequence = ()):
        self.folder = Path(folder)
        self.options = options
        self.job_name = job_name
        self.task_path = [str(p) for p in task_path]
        self._warned: set = set()

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        missing = [cmd for cmd in ("sbatch", "squeue", "scancel", "srun") if shutil.which(cmd) is None]
        if missing:
            raise LaunchError(f"launcher = \"slurm\" needs SLURM's {', '.join(missing)} on PATH (not found on "
                              f"{socket.gethostname()}): run the lab on a SLURM login or submit host, or use "
                              "launcher = \"local\"")
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise LaunchError("launcher = \"slurm\" needs submitit: pip install 'skinnerbox[slurm]'") from None

    def describe(self) -> str:
        return f"slurm (jobs through submitit; scripts and pickles in {self.folder})"

    # ------------------------------------------------------------------ starting
    def start(self, procs: Sequence[Process], env: dict | None = None) -> None:
        groups: dict[str, list[Process]] = {}
        for proc in procs:
            opts = self.options(proc)
            key = json.dumps([asdict(opts), proc.threads], sort_keys=True, default=str)
            groups.setdefault(key, []).append(proc)
        for group in groups.values():
            for i in range(0, len(group), MAX_ARRAY):  # SLURM's MaxArraySize is 1001 by default
                self._submit(group[i:i + MAX_ARRAY], env or {})

    def _submit(self, group: list[Process], env: dict) -> None:
        import submitit

        opts = self.options(group[0])
        executor = submitit.SlurmExecutor(folder=self.folder / "%j", max_num_timeout=opts.max_num_timeout,
                                          python=_quote(sys.executable))
        name = self.job_name if len(group) > 1 else f"{self.job_name}-{group[0].name}"
        executor.update_parameters(**self.sbatch_parameters(opts, group[0].threads, name))
        commands = [AgentCommand(p.name, p.argv, p.threads, self.task_path, str(p.log_path),
                                 str(self.starts_file(p)), env) for p in group]
        try:
            if len(commands) == 1:
                jobs = [executor.submit(commands[0])]
            else:
                with executor.batch():
                    jobs = [executor.submit(c) for c in commands]
        except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError,
                submitit.core.utils.FailedSubmissionError, OSError) as err:
            raise LaunchError(f"SLURM rejected the job(s) of {', '.join(p.name for p in group)}: "
                              f"{_sbatch_message(err)}") from None
        self._remember([job.job_id for job in jobs])
        for proc, job in zip(group, jobs):
            proc.handle = job
            proc.where = f"job {job.job_id}"
            proc.mark_started()
            log.info("%s: submitted as SLURM job %s", proc.name, job.job_id)

    @staticmethod
    def sbatch_parameters(opts: Any, threads: int, job_name: str) -> dict:
        """submitit's ``SlurmExecutor`` parameters for one agent's :class:`~shaping.labfile.SlurmOptions`."""
        params: dict = {"job_name": job_name, "time": int(opts.timeout_min),
                        "cpus_per_task": int(opts.cpus_per_task or threads), "signal_delay_s": int(opts.signal_delay_s),
                        "array_parallelism": int(opts.array_parallelism), "stderr_to_stdout": True}
        for key in ("partition", "account", "qos", "gres"):
            if getattr(opts, key):
                params[key] = getattr(opts, key)
        if opts.mem_gb:
            params["mem"] = f"{max(1, round(float(opts.mem_gb) * 1024))}M"
        if opts.setup:
            params["setup"] = list(opts.setup)
        if opts.additional_parameters:
            params["additional_parameters"] = dict(opts.additional_parameters)
        return params

    def starts_file(self, proc: Process) -> Path:
        return self.folder / "starts" / f"{proc.name}.jsonl"

    def starts(self, proc: Process) -> list[dict]:
        """Every start of ``proc``'s jobs recorded on the node (job id, host, GPUs), oldest first."""
        try:
            lines = self.starts_file(proc).read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    # ------------------------------------------------------------------ polling
    def states(self, procs: Sequence[Process]) -> dict[str, str] | None:
        """SLURM's state of each job of ``procs`` still known to ``squeue`` (by job id); None if squeue failed."""
        ids = sorted({p.handle.job_id.split("_")[0] for p in procs if p.handle is not None})
        if not ids:
            return {}
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(ids)], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            log.warning("squeue failed (%s); asking again at the next poll", err)
            return None
        if out.returncode != 0 and "Invalid job id" not in out.stderr:
            log.warning("squeue failed: %s; asking again at the next poll", out.stderr.strip())
            return None
        states = {}
        for line in out.stdout.splitlines():
            job, _, state = line.strip().partition("|")
            states[job] = state
        return states

    def poll(self, procs: Sequence[Process]) -> dict[str, int]:
        live = [p for p in procs if p.handle is not None and p.running]
        states = self.states(live)
        if states is None:
            return {}
        ended = {}
        for proc in live:
            state = states.get(proc.handle.job_id)
            if state in ALIVE:
                continue
            # counted once the job is over (not each poll: a thousand small files every 2 s on shared storage)
            proc.requeues += self._requeues(proc)
            ended[proc.name] = self._exit_status(proc, state)
        return ended

    def _requeues(self, proc: Process) -> int:
        """Starts of the current job beyond its first (each a requeue by the scheduler)."""
        job = proc.handle.job_id
        return max(0, sum(1 for s in self.starts(proc) if s.get("job") == job) - 1)

    def _exit_status(self, proc: Process, state: str | None) -> int:
        path = proc.handle.paths.result_pickle
        try:
            with open(path, "rb") as fh:
                outcome, value = pickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            log.error("%s: SLURM job %s ended (%s) without a result: the node was lost or the job was killed "
                      "before the agent ran; see %s", proc.name, proc.handle.job_id, state or "gone from squeue",
                      proc.handle.paths.stdout)
            return LOST
        if outcome == "success" and isinstance(value, int):
            return value
        log.error("%s: SLURM job %s failed in submitit:\n%s", proc.name, proc.handle.job_id, value)
        return 1

    # ------------------------------------------------------------------ stopping
    # ------------------------------------------------------------------ jobs of a lab that died
    @property
    def jobs_file(self) -> Path:
        """Every job id this lab directory submitted, one per line (read by :meth:`cancel_leftovers`)."""
        return self.folder / "jobs.txt"

    def _remember(self, job_ids: Sequence[str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.jobs_file, "a") as fh:
            fh.writelines(f"{job}\n" for job in job_ids)

    def cancel_leftovers(self, grace_s: float = AGENT_STOP_GRACE_S) -> list[str]:
        """Cancel the jobs an earlier run of this lab left queued or running (a lab killed with SIGKILL, or
        whose host went down, cannot ``scancel`` its jobs), wait up to ``grace_s`` for them to end, and forget
        them. Called by a lab before it starts, once it holds the lab's lock (so that run is surely dead).
        Returns the ids cancelled."""
        try:
            known = [line.strip() for line in self.jobs_file.read_text().splitlines() if line.strip()]
        except OSError:
            return []
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(sorted(
                {j.split("_")[0] for j in known}))], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired) as err:
            raise LaunchError(f"cannot ask SLURM for the jobs an earlier run of this lab left ({err})") from None
        alive = [job for job, _, state in (line.partition("|") for line in out.split())
                 if job in known and state in ALIVE]
        if alive:
            log.warning("cancelling %d job(s) left by an earlier run of this lab: %s", len(alive), " ".join(alive))
            subprocess.run(["scancel", *alive], capture_output=True, timeout=60)
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline:
                out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(sorted(
                    {j.split("_")[0] for j in alive}))], capture_output=True, text=True, timeout=60).stdout
                if not any(job in alive and state in ALIVE
                           for job, _, state in (line.partition("|") for line in out.split())):
                    break
                time.sleep(0.5)
        self.jobs_file.unlink(missing_ok=True)
        return alive

    def stop(self, procs: Sequence[Process], grace_s: float) -> None:
        """``scancel`` every job (SLURM sends SIGTERM, the agents checkpoint, then SIGKILL after its KillWait),
        then wait until none is running, at most ``grace_s``."""
        live = [p for p in procs if p.handle is not None and p.running]
        if not live:
            return
        subprocess.run(["scancel", *[p.handle.job_id for p in live]], capture_output=True, timeout=60)
        deadline = time.monotonic() + grace_s
        while live and time.monotonic() < deadline:
            states = self.states(live) or {}
            for proc in list(live):
                state = states.get(proc.handle.job_id)
                if state not in ALIVE:
                    proc.requeues += self._requeues(proc)
                    proc.mark_ended(self._exit_status(proc, state))
                    live.remove(proc)
            if live:
                time.sleep(0.5)
        for proc in live:
            log.warning("%s: SLURM job %s still running %.0f s after scancel; left to the scheduler", proc.name,
                        proc.handle.job_id, grace_s)


def _quote(path: str) -> str:
    import shlex

    return shlex.quote(path)


def _sbatch_message(err: BaseException) -> str:
    """sbatch's own words (``sbatch: error: ...``) from a failed submission, else the exception's."""
    text = " ".join(str(x) for x in (getattr(err, "stderr", None), getattr(err, "output", None), err) if x)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line.strip() for line in str(text).splitlines() if "error" in line.lower()]
    return "; ".join(dict.fromkeys(lines)) or str(err)


__all__ = ["ALIVE", "AgentCommand", "REFUSED", "SlurmLauncher"]
