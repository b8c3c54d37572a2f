"""Running a sweep: trials to executors, status as they go, successive halving, resume.

``run_sweep(sweep_dir, workers=..., backend=...)`` runs what is not done in a prepared
:class:`~tfconf.sweep.status.SweepDir` (see :func:`start` and :func:`resume`):

* each rung (one, at max_iter, without a scheduler) runs its trials ``workers`` at a time; a trial
  that fails (crash, out of memory, divergence, a signal) is marked failed with its error and the
  others go on; ``max_failures`` failures stop the sweep (running trials snapshot and stop);
* with successive halving, after each rung the best ``len // eta`` trials (by the metric at that
  rung) go on and the others are marked ``stopped`` at that iteration; the choice is recomputed
  from the recorded rung metrics, so a resumed sweep makes the same choices;
* a Ctrl-C (or SIGTERM) makes every running trial snapshot and stop; ``--resume`` continues them.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass

from .executors import Job, LocalExecutor, RayExecutor, usable_cores
from .status import SweepDir, SweepDirError

__all__ = ["SweepOutcome", "make_executor", "metric_value", "resume", "run_sweep", "start"]


@dataclass
class SweepOutcome:
    sweep_dir: str
    counts: dict
    best: str | None
    stopped_early: str | None = None  # why the sweep stopped before finishing (max failures, Ctrl-C)
    signal: str | None = None  # SIGINT or SIGTERM when a signal stopped it

    @property
    def finished(self) -> bool:
        return self.stopped_early is None and self.counts.get("pending", 0) == 0 and self.counts.get("running", 0) == 0


def start(sweep, out: str) -> SweepDir:
    """A new sweep folder for an expanded sweep."""
    return SweepDir.create(out, sweep)


def resume(path: str, sweep=None, retry_failed: bool = False) -> SweepDir:
    """An existing sweep folder, to continue. With ``sweep`` (the config expanded again), its trials
    must be the ones the folder holds. Trials left ``running`` by a killed sweep become pending;
    failed ones too with ``retry_failed``."""
    d = SweepDir.open(path)
    d.lock()
    if sweep is not None:
        stored = {t["id"]: t["overrides"] for t in d.trials}
        now = {t.id: t.overrides for t in sweep.trials}
        if stored != now:
            raise SweepDirError(f"--resume {path}: the config's sweep expands to other trials than the ones "
                                f"this folder holds ({len(now)} vs {len(stored)}); resume without the "
                                "config, or start a new sweep")
        for t in sweep.trials:
            with open(os.path.join(d.trial_dir(t.id), "config.yaml")) as f:
                if f.read() != t.config_text:
                    raise SweepDirError(f"--resume {path}: trial {t.id}'s config differs from the one it "
                                        "started with (was the config edited?); resume without the config "
                                        "to keep the stored one")
    for tid, rec in d.status.items():
        if rec["state"] == "running" or (retry_failed and rec["state"] == "failed"):
            rec["state"] = "pending"
            rec["error"] = None
    d.save()
    return d


def metric_value(trial_dir: str, result: dict, metric: str):
    """The trial's value of ``metric`` (test.NAME or train.loss) at the end of its run: from its
    result, else the last matching event of metrics.jsonl."""
    phase, _, name = metric.partition(".")
    if phase == "test" and name in (result.get("test") or {}):
        return float(result["test"][name])
    upto = result.get("iterations")
    found = None
    try:
        with open(os.path.join(trial_dir, "metrics.jsonl")) as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if ev.get("phase") == phase and name in ev and (upto is None or ev["iteration"] <= upto):
                    found = float(ev[name])
    except OSError:
        pass
    if found is None and metric == "train.loss" and result.get("train_loss") is not None:
        found = float(result["train_loss"])
    return found


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _log_tail(trial_dir: str, n: int = 1) -> str:
    try:
        with open(os.path.join(trial_dir, "log.txt"), "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4000))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        return " | ".join(lines[-n:])
    except OSError:
        return ""


class _Runner:
    def __init__(self, d: SweepDir, executor, max_failures, echo):
        self.d = d
        self.ex = executor
        self.max_failures = max_failures
        self.echo = echo
        self.failures = 0
        self.stopping: str | None = None
        self.total = len(d.trials)
        self.root = d.meta["root"]

    # --------------------------------------------------------------- one batch of jobs
    def run(self, tids: list, stop_at: int | None) -> None:
        queue = list(tids)
        try:
            while queue or self.ex.running:
                while queue and len(self.ex.running) < self.ex.workers and not self.stopping:
                    self._launch(queue.pop(0), stop_at)
                if self.stopping and not self.ex.running:
                    break
                for job, code in self.ex.wait(0.2):
                    self._finished(job, code)
        except KeyboardInterrupt:
            self.stopping = "interrupted"
            self.echo("interrupted: the running trials save a snapshot and stop (resume with --resume "
                      f"{self.d.path})")
            self.ex.interrupt()
            end = time.monotonic() + 60
            while self.ex.running and time.monotonic() < end:
                try:
                    for job, code in self.ex.wait(0.2):
                        self._finished(job, code)
                except KeyboardInterrupt:
                    break
            self.ex.close()
            for tid, rec in self.d.status.items():
                if rec["state"] == "running":
                    rec["state"] = "pending"
            self.d.save()

    def _launch(self, tid: str, stop_at: int | None) -> None:
        tdir = os.path.abspath(self.d.trial_dir(tid))
        try:
            os.unlink(os.path.join(tdir, "result.json"))
        except FileNotFoundError:
            pass
        attempt = self.d.status[tid].get("attempts", 0) + 1
        job = Job(tid, tdir, self.root, stop_at)
        self.ex.start(job)
        self.d.update(tid, state="running", error=None, attempts=attempt, pid=getattr(job.handle, "pid", None),
                      started=time.strftime("%Y-%m-%d %H:%M:%S"), target=stop_at)
        self.echo(f"{tid} started" + (f" (to iteration {stop_at})" if stop_at else "")
                  + ("" if attempt == 1 else f" (attempt {attempt})"))

    def _finished(self, job: Job, code: int) -> None:
        tid, tdir = job.trial, job.trial_dir
        try:
            with open(os.path.join(tdir, "result.json")) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = {}
        fields = {"finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        if code == 0 and result.get("ok"):
            value = metric_value(tdir, result, self.d.metric)
            rungs = dict(self.d.status[tid].get("rungs") or {})
            if job.stop_at is not None:
                rungs[str(job.stop_at)] = value
            last = job.stop_at is None or result["iterations"] >= self._max_iter(result, job)
            fields.update(state="done" if last else "pending", iterations=result["iterations"], metric=value,
                          train_loss=result.get("train_loss"), test=result.get("test"),
                          wall_time=(self.d.status[tid].get("wall_time") or 0) + (result.get("wall_time") or 0),
                          weights=None if not result.get("weights") else os.path.join(tid, result["weights"]),
                          rungs=rungs or None)
            self.d.update(tid, **fields)
            shown = "-" if value is None else f"{value:.4f}"
            self.echo(f"{tid} {'done' if last else 'reached rung'} at iteration {result['iterations']}: "
                      f"{self.d.metric} {shown}")
        elif code == 3 or result.get("interrupted"):
            self.d.update(tid, state="pending", iterations=result.get("iterations", self.d.status[tid]["iterations"]),
                          **fields)
            self.echo(f"{tid} interrupted (resumable)")
        else:
            error = result.get("error")
            if not error:
                if code is not None and code < 0:
                    error = f"killed by {_signal_name(code)}" + (" (out of memory?)" if code == -9 else "")
                else:
                    error = f"exited with status {code}"
                tail = _log_tail(tdir)
                if tail:
                    error += f"; last output: {tail}"
            self.failures += 1
            self.d.update(tid, state="failed", error=error, **fields)
            self.echo(f"{tid} failed: {error}")
            if self.max_failures and self.failures >= self.max_failures and not self.stopping:
                self.stopping = f"{self.failures} trial{'s' if self.failures > 1 else ''} failed (--max-failures {self.max_failures})"
                self.echo(f"stopping the sweep: {self.stopping}")
                self.ex.interrupt()
        self.d.write_results()

    def _max_iter(self, result, job):
        return result.get("target", 0) if job.stop_at is None else self.d.meta["rungs"][-1]


def make_executor(backend="local", workers=None, address=None, gpus=0, threads=None):
    """The executor for ``backend`` (a Ray instance is started or joined here)."""
    cores = usable_cores()
    if backend == "local":
        if address:
            raise SweepDirError("--address only applies to --backend ray")
        workers = workers or cores
        return LocalExecutor(workers, threads or max(1, cores // workers))
    if backend == "ray":
        return RayExecutor(workers, threads, address, gpus)
    raise SweepDirError(f"--backend must be local or ray. Received: {backend}")


def run_sweep(d: SweepDir, *, workers: int | None = None, backend: str = "local", address: str | None = None,
              max_failures: int | None = None, gpus_per_trial: float = 0, threads_per_trial: int | None = None,
              echo=print, executor=None) -> SweepOutcome:
    """Run every trial of ``d`` that is not done (see the module docstring); returns the outcome.

    ``workers``: trials at a time (default: the cores, or the Ray cluster's CPUs); each trial gets
    ``threads_per_trial`` BLAS threads (default cores // workers). A trial's numbers depend on its
    thread count (summation order), not on the backend."""
    d.lock()
    try:
        ex = executor or make_executor(backend, workers, address, gpus_per_trial, threads_per_trial)
    except BaseException:
        d.unlock()
        raise
    runner = _Runner(d, ex, max_failures, echo)
    todo = [t["id"] for t in d.trials if d.state(t["id"]) == "pending"]
    echo(f"sweep {d.path}: {len(d.trials)} trials, {len(todo)} to run; {ex.name} backend, "
         f"{ex.workers} at a time, {ex.threads} BLAS thread{'s' if ex.threads > 1 else ''} each")
    old_term = None
    got = {"signal": None}

    def on_term(signum, frame):  # SIGTERM: the same orderly stop as Ctrl-C, remembered for the exit code
        got["signal"] = "SIGTERM"
        raise KeyboardInterrupt

    try:
        try:
            old_term = signal.signal(signal.SIGTERM, on_term)
        except ValueError:
            old_term = None
        rungs = d.meta.get("rungs")
        if not rungs:
            runner.run(todo, None)
        else:
            _successive_halving(d, runner, rungs, d.meta["eta"], echo)
        d.save()
        d.write_results()
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        ex.close()
        d.unlock()
    counts = {s: 0 for s in ("pending", "running", "done", "stopped", "failed")}
    for rec in d.status.values():
        counts[rec["state"]] += 1
    sig = (got["signal"] or "SIGINT") if runner.stopping == "interrupted" else None
    return SweepOutcome(d.path, counts, d.best(), runner.stopping, sig)


def _successive_halving(d: SweepDir, runner: _Runner, rungs: list, eta: int, echo) -> None:
    survivors = [t["id"] for t in d.trials if d.state(t["id"]) != "failed"]
    for k, rung in enumerate(rungs):
        survivors = [tid for tid in survivors if d.state(tid) != "failed"]
        todo = [tid for tid in survivors
                if d.state(tid) == "pending" and str(rung) not in (d.status[tid].get("rungs") or {})]
        if todo:
            echo(f"rung {k + 1}/{len(rungs)}: {len(survivors)} trial{'s' if len(survivors) > 1 else ''} "
                 f"to iteration {rung}")
            runner.run(todo, rung)
        if runner.stopping:
            return
        survivors = [tid for tid in survivors if d.state(tid) != "failed"]
        if k == len(rungs) - 1 or not survivors:
            return
        keep = max(1, len(survivors) // eta)

        def score(tid):
            v = (d.status[tid].get("rungs") or {}).get(str(rung))
            missing = v is None or (isinstance(v, float) and math.isnan(v))
            return (missing, 0.0 if missing else (-v if d.mode == "max" else v), d.trials_index(tid))

        ranked = sorted(survivors, key=score)
        for tid in ranked[keep:]:
            if d.state(tid) != "stopped":
                d.update(tid, state="stopped", stopped_at=rung)
        d.write_results()
        survivors = ranked[:keep]
        stopped = len(ranked) - keep
        echo(f"rung {k + 1}/{len(rungs)} done: {keep} go on to iteration {rungs[k + 1]}, "
             f"{stopped} stopped at {rung}")
