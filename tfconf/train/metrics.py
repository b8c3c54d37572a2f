"""A run's metrics files: metrics.jsonl (one object per event) and metrics.csv (iteration, phase,
name, value), written as events come and cut back to a snapshot's iteration on resume."""

from __future__ import annotations

import csv
import io
import json
import os

from tfconf.io.atomic import atomic_write_bytes, naming


class MetricsLog:
    """metrics.jsonl (one object per event) and metrics.csv (iteration, phase, name, value); each
    event is passed on to the callbacks."""

    def __init__(self, run_dir, append, upto=None, callbacks=()):
        self.callbacks = list(callbacks)
        self.stop_reason = None  # the first reason a callback gave to end the run early
        if append and upto is not None:
            truncate_metrics(run_dir, upto)
        mode = "a" if append else "w"
        self.jsonl = open(os.path.join(run_dir, "metrics.jsonl"), mode)
        new_csv = not append or not os.path.exists(os.path.join(run_dir, "metrics.csv"))
        self.csvf = open(os.path.join(run_dir, "metrics.csv"), mode, newline="")
        self.csv = csv.writer(self.csvf)
        if new_csv:
            self.csv.writerow(["iteration", "phase", "name", "value"])

    def write(self, iteration, phase, values):
        try:
            self.jsonl.write(json.dumps({"iteration": iteration, "phase": phase, **values}) + "\n")
            for k, v in values.items():
                self.csv.writerow([iteration, phase, k, v])
            self.jsonl.flush()
            self.csvf.flush()
        except OSError as e:
            raise naming(e, self.jsonl.name) from None
        for cb in self.callbacks:
            reason = cb.on_metrics(iteration, phase, values)
            if reason and not self.stop_reason:
                self.stop_reason = str(reason)

    def close(self):
        self.jsonl.close()
        self.csvf.close()


def truncate_metrics(run_dir, upto):
    """On resume: drop what the interrupted run logged after its snapshot (and a line cut short by
    a kill), so that the resumed run does not log those iterations twice."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        keep = []
        with open(path) as f:
            for line in f:
                try:
                    if int(json.loads(line)["iteration"]) <= upto:
                        keep.append(line if line.endswith("\n") else line + "\n")
                except (ValueError, KeyError, TypeError):
                    continue
        atomic_write_bytes(path, "".join(keep).encode())
    path = os.path.join(run_dir, "metrics.csv")
    if os.path.exists(path):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        keep = rows[:1]
        for row in rows[1:]:
            try:
                if len(row) == 4 and int(row[0]) <= upto:
                    keep.append(row)
            except ValueError:
                continue
        buf = io.StringIO()
        csv.writer(buf).writerows(keep)
        atomic_write_bytes(path, buf.getvalue().encode())
