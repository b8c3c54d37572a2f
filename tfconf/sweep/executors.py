"""Where trials run: local processes (the default) or Ray tasks.

Both start the same command, ``python -m tfconf.sweep.worker TRIAL_DIR ...`` (see worker.py), with
the same environment: ``threads`` BLAS/OpenMP threads per trial (``cores // workers``), so N trials
do not oversubscribe the cores and a trial computes the same numbers on either backend.

An executor has ``start(job)``, ``wait(timeout) -> [(job, exit status)]``, ``running``,
``interrupt()`` (SIGINT: trials snapshot and stop) and ``close()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

# The connection to Ray is shared with distributed training (`tfconf train --cluster`).
from tfconf.distributed.cluster import RayUnavailable, connect, usable_cores

__all__ = ["BLAS_VARS", "Job", "LocalExecutor", "RayExecutor", "RayUnavailable", "trial_env", "usable_cores"]

BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Job:
    trial: str
    trial_dir: str
    root: str
    stop_at: int | None = None
    handle: object = field(default=None, repr=False)

    @property
    def argv(self) -> list:
        argv = ["-m", "tfconf.sweep.worker", self.trial_dir, "--root", self.root]
        return argv + (["--stop-at", str(self.stop_at)] if self.stop_at is not None else [])


def trial_env(threads: int, trial: str) -> dict:
    """The environment variables a trial process gets on top of its parent's."""
    env = {name: str(threads) for name in BLAS_VARS}
    env["TFCONF_SWEEP_TRIAL"] = trial
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _with_pythonpath(env: dict) -> dict:
    # trials import tfconf from where this sweep did, installed or not
    path = env.get("PYTHONPATH", "")
    if _PKG_PARENT not in path.split(os.pathsep):
        env["PYTHONPATH"] = _PKG_PARENT + (os.pathsep + path if path else "")
    return env


class LocalExecutor:
    """Trials as child processes of this one, ``workers`` at a time."""

    name = "local"

    def __init__(self, workers: int, threads: int):
        self.workers = workers
        self.threads = threads
        self.running: dict = {}  # Popen -> Job

    def start(self, job: Job) -> None:
        env = _with_pythonpath({**os.environ, **trial_env(self.threads, job.trial)})
        log = open(os.path.join(job.trial_dir, "log.txt"), "ab")
        try:
            # a session of its own: a Ctrl-C at the terminal reaches the sweep, which forwards one SIGINT
            p = subprocess.Popen([sys.executable, *job.argv], env=env, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        job.handle = p
        self.running[p] = job

    def wait(self, timeout: float) -> list:
        end = time.monotonic() + timeout
        while True:
            done = [(p, job) for p, job in self.running.items() if p.poll() is not None]
            if done or time.monotonic() >= end or not self.running:
                break
            time.sleep(0.02)
        for p, _ in done:
            del self.running[p]
        return [(job, p.returncode) for p, job in done]

    def interrupt(self) -> None:
        for p in self.running:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)

    def close(self) -> None:
        for p in list(self.running):
            if p.poll() is None:
                p.kill()
            p.wait()
        self.running.clear()


def _ray_trial(argv, env, trial_dir):
    """The Ray task: run the worker command on whichever node Ray chose; its exit status."""
    import os as _os
    import subprocess as _sp
    import sys as _sys

    full = {**_os.environ, **env}
    with open(_os.path.join(trial_dir, "log.txt"), "ab") as log:
        p = _sp.Popen([_sys.executable, *argv], env=full, stdout=log, stderr=_sp.STDOUT, stdin=_sp.DEVNULL)
        try:
            return p.wait()
        except BaseException:
            p.send_signal(2)
            try:
                return p.wait(30)
            except BaseException:
                p.kill()
                raise


class RayExecutor:
    """Trials as Ray tasks with ``threads`` CPUs (and ``gpus`` GPUs) each, ``workers`` at a time.

    ``address=None`` starts a local Ray instance (stopped by :meth:`close`); ``"auto"`` or
    ``"HOST:PORT"`` joins a running cluster (``ray start --head``). On a cluster of several machines
    the sweep folder and the data must be on a file system every node sees at the same path."""

    name = "ray"

    def __init__(self, workers: int | None, threads: int | None, address: str | None = None, gpus: float = 0):
        self._started = connect(address, what="--backend ray")
        import ray

        self.ray = ray
        cpus = int(ray.cluster_resources().get("CPU", usable_cores()))
        self.workers = workers or cpus
        self.threads = threads or max(1, cpus // self.workers)
        self.gpus = gpus
        self.env = {"PYTHONPATH": _with_pythonpath(dict(os.environ))["PYTHONPATH"]}
        self.remote = ray.remote(num_cpus=self.threads, num_gpus=gpus, max_retries=0)(_ray_trial)
        self.running: dict = {}  # ObjectRef -> Job

    def start(self, job: Job) -> None:
        ref = self.remote.remote(job.argv, {**self.env, **trial_env(self.threads, job.trial)}, job.trial_dir)
        job.handle = ref
        self.running[ref] = job

    def wait(self, timeout: float) -> list:
        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=len(self.running), timeout=timeout)
        out = []
        for ref in ready:
            job = self.running.pop(ref)
            try:
                code = self.ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the task itself died (node lost, worker killed)
                (open(os.path.join(job.trial_dir, "log.txt"), "a")).write(f"\nray task failed: {e}\n")
                code = -9
            out.append((job, code))
        return out

    def interrupt(self) -> None:
        for ref in self.running:
            self.ray.cancel(ref, force=False)

    def close(self) -> None:
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running.clear()
        if self._started:
            self.ray.shutdown()
