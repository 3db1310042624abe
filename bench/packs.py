"""Packs benchmark: K ``Basic`` networks trained in one :class:`agents.pack.Pack` against one ``Basic`` per process.

Configuration (issue 18): ``PerceptualDiscrimination(dt=10, tau=100, T=2000, N_batch=128)`` (200 steps),
``Basic`` networks (seed k for network k, Adam at its default learning rate) at ``N_rec`` 50 and 256, with
``rec_noise`` 0 and 0.1, one TensorFlow thread (``agents.configure_threads(1)``), ``OPENBLAS_NUM_THREADS=1``.
Every configuration runs in a fresh process, so its peak memory and start-up are its own:

- *baseline*: one ``Basic`` trained by ``model.train_on_batch`` (what an agent process runs today);
- *pack K*: K networks in a ``Pack`` trained by ``pack.train_on_batches`` on one ``(K, N_batch, N_steps, .)``
  block (each network its own batch).

Per network (the process's figure / K):

- *update*: median wall time of one optimizer step, in ms, after up to three untimed ones (the first traces
  the step; fewer where they take more than half the budget); as many timed steps as fit ``--budget`` seconds,
  between ``--min-updates`` and ``--max-updates``. Trial generation is not in it: the process generates its K
  batches once and trains on them every step (in a lab the batches come from the task server);
- *trials/s per core*: ``K * N_batch`` trials per step over the process's CPU seconds per step;
- *peak memory*: the process's peak resident set (``VmHWM``);
- *start-up*: from the parent launching the process to the end of its first step (imports, building the K
  models, generating the first batches, tracing the step).

Where the floor is: a step's matrix products are ``6 * N_batch * N_rec * (N_rec + N_in + 1 + N_out)`` FLOP per
time step and network (forward, the adjoint and the weight gradients of the input, recurrent and output
products). The bench divides them by the step time (*GFLOP/s*) and compares that with the same batched product,
``(K, N_rec, N_rec) @ (K, N_rec, N_batch)``, run alone in a compiled loop in the same process (*matmul alone*),
and that in turn with one large ``1024^3`` product (*peak*). The step is *arithmetic*-bound when it reaches at
least half of the product alone and the product alone at least half of the peak; otherwise per-operation
*overhead* sets the floor (the step's own element-wise work and loop bookkeeping, or the product being too
small to run at the CPU's speed). With recurrent noise, drawing it (``tf.random.stateless_normal``, timed alone
for one network) is reported as a share of the update and named the floor from a third of it.

Each row also says how many cores other processes kept busy while its steps were timed (``/proc/stat``): the
machine this runs on is usually shared.

Usage: ``python bench/packs.py [--quick] [--n-rec 50 256] [--k 1 4 16 64] [--rec-noise 0 0.1] [--budget 8]``.
"""
from __future__ import annotations

import time

_T0 = time.monotonic()

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# bench/agents.py lives next to this file: keep this folder off the path so that `import agents` finds the package.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

DT, TAU = 10, 100
# Memory of the stacked step's activations: states, rates (and noise draws, twice) of (N_steps, K, N_rec,
# N_batch) float32; the margin covers the rest. Used only to skip a configuration that cannot fit.
_ACTIVATION_ARRAYS = {False: 3, True: 6}
_IMPORT_MB = 600


# ------------------------------------------------------------------------------------------------- worker
def _status_mb(key: str) -> float:
    """``VmHWM`` or ``VmRSS`` of this process in MB (``ru_maxrss`` where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _busy_cpu_s() -> float:
    """CPU seconds all processes on the machine have spent busy since boot (``/proc/stat``; 0 without it)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _matmul_gflops(tf, K: int, n_rec: int, n_batch: int, iters: int = 50, min_s: float = 0.3) -> float:
    """GFLOP/s of ``(K, n_rec, n_rec) @ (K, n_rec, n_batch)`` chained ``iters`` times in one compiled loop
    (K=0: the unbatched ``(n_batch, n_rec) @ (n_rec, n_rec)`` of a single ``Basic``); median of the repeats."""
    rng = tf.random.Generator.from_seed(0)
    if K:
        W = rng.normal([K, n_rec, n_rec]) / n_rec ** 0.5
        s0 = rng.normal([K, n_rec, n_batch])
    else:
        W = rng.normal([n_rec, n_rec]) / n_rec ** 0.5
        s0 = rng.normal([n_batch, n_rec])

    @tf.function
    def loop(W, s):
        return tf.while_loop(lambda t, s: t < iters,
                             lambda t, s: (t + 1, tf.matmul(W, s) if K else tf.matmul(s, W)), (0, s))[1]

    loop(W, s0).numpy()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_s and len(times) < 50):
        t = time.perf_counter()
        loop(W, s0).numpy()
        times.append(time.perf_counter() - t)
    times.sort()
    return 2.0 * max(K, 1) * n_rec * n_rec * n_batch * iters / times[len(times) // 2] / 1e9


def _peak_gflops(tf, n: int = 1024, reps: int = 5) -> float:
    """GFLOP/s of one ``(n, n) @ (n, n)`` product (best of ``reps``): what one core reaches on a large matmul."""
    a = tf.random.Generator.from_seed(1).normal([n, n])
    mm = tf.function(lambda a: tf.matmul(a, a))
    mm(a).numpy()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        mm(a).numpy()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def _noise_draw_s(tf, n_steps: int, n_batch: int, n_rec: int, reps: int = 5) -> float:
    """Seconds to draw one network's recurrent noise for one update, ``(n_steps, n_batch, n_rec)`` standard
    normals from ``tf.random.stateless_normal`` (what ``Basic`` and ``Pack`` draw each step); best of ``reps``."""
    draw = tf.function(lambda seed: tf.reduce_sum(tf.random.stateless_normal([n_steps, n_batch, n_rec], seed=seed)))
    seed = tf.constant([1, 2], tf.int64)
    draw(seed).numpy()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        draw(seed).numpy()
        best = min(best, time.perf_counter() - t)
    return best


def worker(kind: str, n_rec: int, K: int, rec_noise: float, n_steps: int, n_batch: int, t_launch: float,
           budget_s: float, min_updates: int, max_updates: int) -> dict:
    """Build and train one configuration in this process; return its measurements (see the module docstring)."""
    sys.modules.setdefault("pyarrow", None)  # as in an agent process (`python -m agents`)
    import numpy as np

    import agents

    agents.configure_threads(1)
    from agents import Basic
    from agents._tf import tf
    from agents.pack import Pack
    from shaping.tasks import PerceptualDiscrimination

    rss_import_mb = _status_mb("VmRSS")
    task = PerceptualDiscrimination(dt=DT, tau=TAU, T=n_steps * DT, N_batch=n_batch, seed=0)
    base = task.get_task_params()
    models = [Basic(dict(base, name=f"net{k}", N_rec=n_rec, seed=k, rec_noise=rec_noise)) for k in range(K)]
    gen = task.batch_generator()
    batches = [next(gen)[:3] for _ in range(K)]
    if kind == "basic":
        model = models[0]
        x, y, m = batches[0]

        def step():
            model.train_on_batch(x, y, m)
    else:
        pack = Pack(models)
        xs, ys, ms = (np.stack([b[i] for b in batches]).astype(np.float32) for i in range(3))
        del batches

        def step():
            pack.train_on_batches(xs, ys, ms)

    step()
    t_first = time.monotonic()
    warm = []
    while len(warm) < 3 and sum(warm) < budget_s / 2:  # fewer untimed steps where a step is slow
        t = time.perf_counter()
        step()
        warm.append(time.perf_counter() - t)
    n = int(min(max_updates, max(min_updates, budget_s / min(warm))))
    walls, cpu0, busy0, wall0 = [], time.process_time(), _busy_cpu_s(), time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        step()
        walls.append(time.perf_counter() - t)
    cpu = (time.process_time() - cpu0) / n
    # cores kept busy by other processes while this one was timed (a shared machine's contention)
    others = max(0.0, _busy_cpu_s() - busy0 - cpu * n) / (time.perf_counter() - wall0)
    peak_mb = _status_mb("VmHWM")
    walls.sort()
    return {
        "kind": kind, "N_rec": n_rec, "K": K, "rec_noise": rec_noise, "N_in": models[0].N_in,
        "N_out": models[0].N_out, "N_steps": n_steps, "N_batch": n_batch, "updates_timed": n, "other_cores": others,
        "step_s": walls[len(walls) // 2], "cpu_per_step_s": cpu, "startup_s": t_first - t_launch,
        "rss_import_mb": rss_import_mb, "peak_rss_mb": peak_mb,
        "matmul_alone_gflops": _matmul_gflops(tf, 0 if kind == "basic" else K, n_rec, n_batch),
        "peak_gflops": _peak_gflops(tf), "tf_version": tf.__version__,
        "noise_draw_s": _noise_draw_s(tf, n_steps, n_batch, n_rec) if rec_noise > 0 else 0.0,
    }


# ------------------------------------------------------------------------------------------------- parent
def _flop_per_update(r: dict) -> float:
    """Matrix-product FLOP of one optimizer step of one network (forward, adjoint, weight gradients)."""
    return 6.0 * r["N_batch"] * r["N_rec"] * (r["N_rec"] + r["N_in"] + 1 + r["N_out"]) * r["N_steps"]


def _mem_available_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def _estimate_mb(n_rec: int, K: int, noisy: bool, n_steps: int, n_batch: int) -> float:
    return _IMPORT_MB + _ACTIVATION_ARRAYS[noisy] * n_steps * K * n_rec * n_batch * 4 / 2 ** 20


def run_worker(kind: str, n_rec: int, K: int, rec_noise: float, a: argparse.Namespace,
               smaller: dict | None = None) -> tuple[dict | None, str]:
    """One configuration in a fresh process: ``(result, "")`` or ``(None, why not)``. ``smaller``: the result
    of a smaller pack of the same N_rec and noise, to estimate this one's memory from (linear in K)."""
    need = _estimate_mb(n_rec, K, rec_noise > 0, a.steps, a.batch) if smaller is None else \
        smaller["rss_import_mb"] + (smaller["peak_rss_mb"] - smaller["rss_import_mb"]) * K / smaller["K"]
    avail = _mem_available_mb()
    if need > a.mem_fraction * avail:
        return None, f"skipped: needs about {need / 1024:.1f} GB, {avail / 1024:.1f} GB available"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    t_launch = time.monotonic()
    args = [sys.executable, __file__, "--worker", kind, "--n-rec", str(n_rec), "--k", str(K), "--rec-noise",
            str(rec_noise), "--steps", str(a.steps), "--batch", str(a.batch), "--budget", str(a.budget),
            "--min-updates", str(a.min_updates), "--max-updates", str(a.max_updates), "--t-launch", repr(t_launch)]
    try:
        out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=a.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {a.timeout:.0f} s"
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        tail = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
        print(f"  {kind} N_rec={n_rec} K={K} rec_noise={rec_noise} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None, f"failed ({out.returncode}): {tail[0][:120]}"
    return json.loads(lines[-1][len("RESULT "):]), ""


def _floor(gflops: float, alone: float, peak: float, noise_share: float) -> str:
    """Where a step's time goes (the rules are printed under the table)."""
    if noise_share >= 1 / 3:
        return f"noise draws ({100 * noise_share:.0f}% of the update)"
    if gflops >= 0.5 * alone and alone >= 0.5 * peak:
        return "arithmetic"
    if gflops < 0.5 * alone:
        return "overhead: element-wise and per-op"
    return "overhead: small matmuls"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", choices=["basic", "pack"])
    ap.add_argument("--n-rec", type=int, nargs="+", default=[50, 256])
    ap.add_argument("--k", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--rec-noise", type=float, nargs="+", default=[0.0, 0.1])
    ap.add_argument("--steps", type=int, default=200, help="time steps per trial (T = steps * dt)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--budget", type=float, default=8.0, help="seconds of timed steps per configuration")
    ap.add_argument("--min-updates", type=int, default=3)
    ap.add_argument("--max-updates", type=int, default=40)
    ap.add_argument("--mem-fraction", type=float, default=0.6,
                    help="skip a configuration whose estimated peak exceeds this fraction of MemAvailable")
    ap.add_argument("--timeout", type=float, default=300.0, help="per configuration (s)")
    ap.add_argument("--quick", action="store_true", help="N_rec 50, K 1 and 16, no noise, 2 s per configuration")
    ap.add_argument("--t-launch", type=float, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        res = worker(a.worker, a.n_rec[0], a.k[0], a.rec_noise[0], a.steps, a.batch,
                     _T0 if a.t_launch is None else a.t_launch, a.budget, a.min_updates, a.max_updates)
        print("RESULT " + json.dumps(res), flush=True)
        return
    if a.quick:
        a.n_rec, a.k, a.rec_noise, a.budget = [50], [1, 16], [0.0], 2.0

    from tqdm import tqdm

    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    plan = [(n_rec, noise, kind, K) for n_rec in a.n_rec for noise in a.rec_noise
            for kind, K in [("basic", 1)] + [("pack", k) for k in a.k]]
    rows = []
    for n_rec, noise, kind, K in tqdm(plan, desc="configurations", unit="process", file=sys.stderr):
        smaller = [r["res"] for r in rows if r["kind"] == "pack" and r["res"] and r["N_rec"] == n_rec
                   and r["rec_noise"] == noise and kind == "pack" and r["K"] < K]
        res, why = run_worker(kind, n_rec, K, noise, a, max(smaller, key=lambda r: r["K"], default=None))
        rows.append({"N_rec": n_rec, "rec_noise": noise, "kind": kind, "K": K, "res": res, "why": why})
    load1 = os.getloadavg()
    elapsed = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    _print_report(rows, a, started, elapsed, load0, load1)


def _print_report(rows: list[dict], a: argparse.Namespace, started: datetime.datetime, elapsed: float,
                  load0: tuple, load1: tuple) -> None:
    done = [r["res"] for r in rows if r["res"]]
    peaks = sorted(r["peak_gflops"] for r in done)
    peak = peaks[len(peaks) // 2] if peaks else float("nan")
    tf_version = done[0]["tf_version"] if done else "?"
    print(f"\nPacks benchmark, {started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min: {_cpu_model()}, "
          f"{os.cpu_count()} cores, {_mem_total_gb():.0f} GB; Python {platform.python_version()}, TensorFlow "
          f"{tf_version}; 1 TensorFlow thread, OPENBLAS_NUM_THREADS=1")
    print(f"Load average (1/5/15 min): {'/'.join(f'{x:.2f}' for x in load0)} at the start, "
          f"{'/'.join(f'{x:.2f}' for x in load1)} at the end")
    print(f"PerceptualDiscrimination(dt={DT}, tau={TAU}, T={a.steps * DT}): {a.steps} steps, N_batch={a.batch}; "
          f"one large matmul (peak): {peak:.0f} GFLOP/s (median over the processes)\n")
    head = ["N_rec", "rec_noise", "config", "K", "steps timed", "update ms/net", "speed-up", "trials/s/core",
            "GFLOP/s", "matmul alone GFLOP/s", "% of alone", "noise draw % of update", "floor", "peak MB/net",
            "memory ratio", "start-up s/net", "others' load (cores)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" if h in ("config", "floor") else "---:" for h in head) + "|")
    verdicts = []
    for r in rows:
        base = next((b["res"] for b in rows if b["kind"] == "basic" and b["N_rec"] == r["N_rec"]
                     and b["rec_noise"] == r["rec_noise"]), None)
        label = "Basic (baseline)" if r["kind"] == "basic" else "Pack"
        res = r["res"]
        if res is None:
            print(f"| {r['N_rec']} | {r['rec_noise']:g} | {label} | {r['K']} | " + " | ".join(["-"] * 11)
                  + f" | {r['why']} | - |")
            continue
        K = res["K"]
        per_net = res["step_s"] / K
        mem = res["peak_rss_mb"] / K
        gflops = _flop_per_update(res) * K / res["step_s"] / 1e9
        alone = res["matmul_alone_gflops"]
        speed = base["step_s"] / per_net if base else None
        mratio = base["peak_rss_mb"] / mem if base else None
        floor = _floor(gflops, alone, peak, res["noise_draw_s"] / per_net)
        cells = [r["N_rec"], f"{r['rec_noise']:g}", label, K, res["updates_timed"], f"{per_net * 1e3:.2f}",
                 f"{speed:.2f}x" if speed else "-", f"{K * res['N_batch'] / res['cpu_per_step_s']:,.0f}",
                 f"{gflops:.1f}", f"{alone:.1f}", f"{100 * gflops / alone:.0f}%",
                 f"{100 * res['noise_draw_s'] / per_net:.0f}%" if res["noise_draw_s"] else "-", floor,
                 f"{mem:,.1f}", f"{mratio:.1f}x" if mratio else "-", f"{res['startup_s'] / K:.2f}",
                 f"{res['other_cores']:.2f}"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
        if r["kind"] == "pack" and K == 16 and r["N_rec"] == 50 and speed and mratio:
            verdicts.append(f"N_rec=50, rec_noise={r['rec_noise']:g}, K=16: {speed:.2f}x faster per network "
                            f"(goal >= 2.5x: {'met' if speed >= 2.5 else 'NOT met'}), {mratio:.1f}x less memory "
                            f"per network (goal >= 10x: {'met' if mratio >= 10 else 'NOT met'})")
    print("\nothers' load = cores kept busy by other processes while the row's steps were timed (/proc/stat), "
          f"out of {os.cpu_count()};")
    print("speed-up = baseline update / pack update per network; memory ratio = baseline peak / pack peak per "
          "network;\nfloor: noise draws = drawing the network's recurrent noise alone (stateless_normal) takes >= "
          "1/3 of its update;\narithmetic = the step reaches >= 50% of the same batched matmul alone and that "
          f"matmul >= 50% of the peak ({peak:.0f} GFLOP/s);\noverhead: element-wise and per-op = the step runs at "
          "< 50% of the matmul alone (its element-wise passes over the step arrays and per-operation cost);\n"
          "overhead: small matmuls = the product alone runs at < 50% of the peak (too small for the CPU's speed)")
    draws = {(r["N_rec"]): r["res"]["noise_draw_s"] for r in rows if r["res"] and r["res"]["noise_draw_s"]}
    for n_rec, s in sorted(draws.items()):
        print(f"Noise draw alone at N_rec={n_rec}: {s * 1e3:.1f} ms per network and update")
    imports = sorted(r["rss_import_mb"] for r in done)
    if imports:
        print(f"Resident memory after the imports, before any model: {imports[len(imports) // 2]:.0f} MB (median)")
    for v in verdicts or ["K=16 at N_rec=50 not measured"]:
        print("Goal: " + v)


def _mem_total_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("nan")


if __name__ == "__main__":
    main()
