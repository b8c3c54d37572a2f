"""``tfconf sweep``: run a config's sweep, look at one, plot one.

    tfconf sweep configs/lenet_sweep.yaml --dry-run          # the trials, validated, as a table
    tfconf sweep configs/lenet_sweep.yaml --workers 2        # = tfconf sweep run ...
    tfconf sweep run configs/lenet_sweep.yaml --backend ray --address auto
    tfconf sweep run --resume sweeps/lenet-20250101-120000
    tfconf sweep status sweeps/lenet-20250101-120000
    tfconf sweep plot sweeps/lenet-20250101-120000 -o sweep.png
"""

from __future__ import annotations

import json
import os
import time
from typing import List, Optional

import typer
from typer.core import TyperGroup

from . import errors


class _RunByDefault(TyperGroup):
    """``tfconf sweep CONFIG ...`` means ``tfconf sweep run CONFIG ...``."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    help="Hyperparameter sweeps: the sweep: section of a config expanded into trials and run "
         "(local processes by default, Ray for clusters). `tfconf sweep CONFIG` = `tfconf sweep run CONFIG`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _trial_table(sweep) -> str:
    keys = sweep.keys
    head = ["trial", *keys]
    rows = [[t.id, *[_cell(t.params.get(k)) for k in keys]] for t in sweep.trials]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return json.dumps(v) if isinstance(v, (list, dict)) or v is None else str(v)


def _describe(sweep) -> str:
    spec = sweep.spec
    parts = [f"grid {' x '.join(str(len(v)) for v in spec.grid.values())}" if spec.grid else None,
             f"zip {' x '.join(str(len(next(iter(g.values())))) for g in spec.zip)}" if spec.zip else None,
             f"random {spec.random.samples} (seed {spec.random.seed})" if spec.random else None]
    n = len(sweep.trials)
    text = f"{n} trial{'' if n == 1 else 's'} ({', '.join(p for p in parts if p)}); metric {sweep.metric} ({sweep.mode})"
    if spec.scheduler:
        text += f"; successive halving at iterations {', '.join(map(str, sweep.rungs))} (eta {spec.scheduler.eta})"
    return text


@app.command()
def run(
    config: Optional[str] = typer.Argument(None, help="The config with a sweep: section (not needed with --resume)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a value of the base config for "
                                             "every trial: KEY=VALUE (as in tfconf train --set)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Trials at a time (default: "
                                          "one per core; with ray, the cluster's CPUs)."),
    backend: str = typer.Option("local", "--backend", help="local (processes on this machine) or ray."),
    address: Optional[str] = typer.Option(None, "--address", help="With --backend ray: 'auto' or HOST:PORT "
                                          "joins a running cluster; none starts a local Ray instance."),
    threads: Optional[int] = typer.Option(None, "--threads-per-trial", min=1, help="BLAS threads per trial "
                                          "(default: cores // workers)."),
    gpus: float = typer.Option(0.0, "--gpus-per-trial", min=0, help="With --backend ray: GPUs each trial asks for."),
    out: Optional[str] = typer.Option(None, "--out", help="Sweep folder (default sweeps/NAME-TIMESTAMP)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue this sweep folder: runs only what "
                                         "is not done; a killed trial continues from its last snapshot."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --resume: run failed trials again."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Expand and validate every trial, print them, run nothing."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line (the trials with --dry-run; "
                                 "else the results and the best trial)."),
    max_failures: Optional[int] = typer.Option(None, "--max-failures", min=1, help="Stop the sweep after this "
                                               "many trials failed (running ones snapshot and stop)."),
    trust_python: bool = typer.Option(False, "--trust-python", help="Let a config from elsewhere import the "
                                      "modules of its Python layers (as tfconf train --trust-python)."),
):
    """Run a config's sweep. Example: tfconf sweep run configs/lenet_sweep.yaml --workers 2"""
    from tfconf.sweep.expand import expand
    from tfconf.sweep.run import resume as resume_dir
    from tfconf.sweep.run import make_executor, run_sweep, start

    say = (lambda m: None) if as_json else (lambda m: typer.echo(m))
    if trust_python:
        from tfconf.frontend.trust import trust_python as trust

        trust()

    def go():
        if config is None and resume is None:
            raise typer.BadParameter("give a CONFIG (or --resume DIR)")
        sweep = expand(config, set_ or ()) if config is not None else None
        if dry_run:
            if sweep is None:
                raise typer.BadParameter("--dry-run needs a CONFIG")
            return sweep, None
        if resume and out:
            raise typer.BadParameter("--resume continues a sweep in its own folder; leave out --out")
        if resume:
            d = resume_dir(resume, sweep, retry_failed)
        ex = make_executor(backend, workers, address, gpus, threads)  # before a new folder is made
        try:
            if not resume:
                name = sweep.loaded.data.get("name") or "sweep"
                d = start(sweep, out or os.path.join("sweeps", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"))
        except BaseException:
            ex.close()
            raise
        return sweep, run_sweep(d, max_failures=max_failures, echo=say, executor=ex)

    sweep, outcome = errors.run(go)
    if outcome is None:  # dry run
        if as_json:
            typer.echo(json.dumps({"metric": sweep.metric, "mode": sweep.mode, "rungs": sweep.rungs,
                                   "trials": [t.as_dict() for t in sweep.trials]}))
        else:
            typer.echo(_describe(sweep))
            typer.echo(_trial_table(sweep))
        return

    from tfconf.sweep.status import SweepDir

    d = SweepDir.open(outcome.sweep_dir)
    if as_json:
        best = outcome.best
        typer.echo(json.dumps({
            "sweep_dir": d.path, "counts": outcome.counts, "stopped_early": outcome.stopped_early,
            "metric": d.metric, "mode": d.mode,
            "best": None if best is None else {
                "trial": best, "params": next(t["params"] for t in d.trials if t["id"] == best),
                "metric": d.status[best]["metric"], "config": os.path.join(d.path, best, "config.yaml"),
                "weights": d.status[best].get("weights") and os.path.join(d.path, d.status[best]["weights"])},
            "trials": d.rows()}))
    else:
        typer.echo("")
        typer.echo(d.summary())
        typer.echo(f"results: {os.path.join(d.path, 'results.csv')}")
    if outcome.stopped_early == "interrupted":
        raise typer.Exit(errors.EXIT_SIGTERM if outcome.signal == "SIGTERM" else errors.EXIT_SIGINT)
    if outcome.stopped_early:
        typer.echo(f"error: the sweep stopped early: {outcome.stopped_early}; continue it with "
                   f"--resume {d.path}", err=True)
        raise typer.Exit(1)
    if outcome.counts["done"] == 0:
        typer.echo("error: no trial finished", err=True)
        raise typer.Exit(1)


@app.command()
def status(sweep_dir: str = typer.Argument(..., help="A sweep folder.")):
    """Print a sweep's ranked table (running or finished). Example: tfconf sweep status sweeps/lenet-x"""
    from tfconf.sweep.status import SweepDir

    d = errors.run(lambda: SweepDir.open(sweep_dir))
    counts = {}
    for rec in d.status.values():
        counts[rec["state"]] = counts.get(rec["state"], 0) + 1
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
    typer.echo(d.summary(limit=50))


@app.command()
def plot(
    sweep_dir: str = typer.Argument(..., help="A sweep folder."),
    out: str = typer.Option(..., "-o", "--out", help="Image file (.png, .svg, .pdf)."),
):
    """Draw every trial's learning curve and the metric against each swept key (needs matplotlib).
    Example: tfconf sweep plot sweeps/lenet-x -o sweep.png"""
    from tfconf.sweep.plot import plot_sweep
    from tfconf.sweep.status import SweepDir

    def go():
        return plot_sweep(SweepDir.open(sweep_dir), out)

    typer.echo(f"wrote {errors.run(go)}")
