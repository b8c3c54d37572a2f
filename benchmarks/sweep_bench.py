"""Sweep throughput: an 8-trial short LeNet sweep (configs/lenet_sweep.yaml) with ``--workers 1``
and with ``--workers 2``, through the real CLI; prints both wall times and the speed-up.

    python benchmarks/sweep_bench.py                 # max_iter 150 per trial
    python benchmarks/sweep_bench.py --max-iter 100 --workers 1 2 4 --single-thread

Each sweep is a ``tfconf sweep run`` process, timed from start to end (process start-up and data
loading included, as a user would see them). With W workers each trial gets cores // W BLAS
threads. Target: a speed-up of at least 1.7 with 2 workers on 2 cores. The machine should be
otherwise idle: other work on the cores lowers the parallel figure more than the serial one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
CONFIG = os.path.join(REPO, "configs", "lenet_sweep.yaml")


def run_sweep(workers: int, max_iter: int, out: str, threads: int | None = None) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "tfconf.cli", "sweep", "run", CONFIG, "--workers", str(workers),
           *(["--threads-per-trial", str(threads)] if threads else []),
           "--out", out, "--json", "--set", f"solver.max_iter={max_iter}",
           "--set", f"solver.test_interval={max_iter}", "--set", f"solver.snapshot={max_iter}"]
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"sweep with --workers {workers} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return wall, json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-iter", type=int, default=150, help="iterations per trial (default 150)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    ap.add_argument("--single-thread", action="store_true",
                    help="also time --workers 1 --threads-per-trial 1 (separates parallel trials from BLAS threading)")
    args = ap.parse_args(argv)
    from tfconf.sweep.executors import usable_cores

    cores = usable_cores()
    print(f"8-trial LeNet sweep, {args.max_iter} iterations per trial, {cores} cores "
          f"(load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())})")
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in args.workers:
            wall, res = run_sweep(w, args.max_iter, os.path.join(tmp, f"w{w}"))
            times[w] = wall
            best = res["best"]
            print(f"--workers {w}: {wall:6.1f} s  ({cores // w or 1} BLAS thread(s) per trial; "
                  f"best {best['trial']} {res['metric']} {best['metric']:.4f})", flush=True)
        if args.single_thread and cores > 1:  # is the gain from parallel trials or from fewer BLAS threads?
            wall, _ = run_sweep(1, args.max_iter, os.path.join(tmp, "w1t1"), threads=1)
            times["1t1"] = wall
            print(f"--workers 1 --threads-per-trial 1: {wall:6.1f} s", flush=True)
    base = times[args.workers[0]]
    for w in args.workers[1:]:
        print(f"speed-up --workers {w} vs --workers {args.workers[0]}: {base / times[w]:.2f}x")
    if "1t1" in times:
        for w in args.workers[1:]:
            print(f"speed-up --workers {w} vs --workers 1 --threads-per-trial 1: {times['1t1'] / times[w]:.2f}x")
    print(f"(load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())})")


if __name__ == "__main__":
    main()
