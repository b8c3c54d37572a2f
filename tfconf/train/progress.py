"""The training progress display: a rich bar (iteration, loss, lr, it/s, ETA) in a terminal, plain
lines elsewhere, nothing when quiet; messages go through it so that they do not collide with the bar."""

from __future__ import annotations

import sys
import time


class _NoBar:
    def __init__(self, say):
        self.say = say

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, *a):
        pass

    def log(self, msg):
        self.say(msg)


class _RichBar:
    """A rich progress bar: iteration, loss, lr, it/s, ETA."""

    def __init__(self, total, start):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn)

        self.p = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[rate]} it/s"),
                          TimeRemainingColumn(), transient=False)
        self.task = self.p.add_task("train", total=total, completed=start, loss="-", lr="-", rate="-")

    def __enter__(self):
        self.p.__enter__()
        return self

    def __exit__(self, *exc):
        return self.p.__exit__(*exc)

    def update(self, it, loss, lr, t0, start):
        rate = (it - start) / max(time.perf_counter() - t0, 1e-9)
        self.p.update(self.task, completed=it, loss=f"{loss:.4f}", lr=f"{lr:.3g}", rate=f"{rate:.1f}")

    def log(self, msg):
        self.p.console.print(msg, highlight=False)


def progress(total, start, quiet):
    if quiet:
        return _NoBar(lambda m: None)
    if sys.stderr.isatty() and sys.stdout.isatty():
        return _RichBar(total, start)
    return _NoBar(print)
