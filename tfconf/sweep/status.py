"""A sweep directory and its bookkeeping.

::

    SWEEP/
      sweep.yaml      the config as given (with its sweep: section), resolved
      sweep.json      the expansion: metric, mode, rungs, and every trial's id, params and overrides
      status.json     each trial's state (pending | running | done | stopped | failed), error,
                      iterations, metric (and its value at each rung), attempts, times, weights
      results.csv     one row per trial, rewritten as trials finish
      t000/ ...       one run folder per trial, as ``tfconf train`` makes (config.yaml, metrics.jsonl,
                      metrics.csv, snapshots/) plus log.txt (its output) and result.json (its outcome)

Every file is written atomically (a temporary file renamed over it), and only the sweep process
writes status.json, so a kill at any moment leaves the previous consistent version.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time

from tfconf.train.snapshot import atomic_write_bytes

__all__ = ["STATES", "SweepDir", "SweepDirError"]

STATES = ("pending", "running", "done", "stopped", "failed")


class SweepDirError(ValueError):
    """A sweep folder that cannot be used (not a sweep, already holds one, ...)."""


def _write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=_jsonable) + "\n").encode())


def _jsonable(v):
    try:
        import numpy as np

        if isinstance(v, np.generic):
            return v.item()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"not JSON serializable: {v!r}")


class SweepDir:
    """The files of one sweep folder; ``status[trial_id]`` is that trial's record."""

    def __init__(self, path: str):
        self.path = path
        self.meta: dict = {}
        self.status: dict = {}

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(cls, path, sweep) -> "SweepDir":
        """A new sweep folder for an expanded (and validated) ``sweep``."""
        if os.path.exists(os.path.join(path, "sweep.json")):
            raise SweepDirError(f"{path} already holds a sweep: continue it with --resume {path}, "
                                "or choose another --out")
        if os.path.isdir(path) and os.listdir(path):
            raise SweepDirError(f"--out {path}: the folder exists and is not empty")
        d = cls(path)
        os.makedirs(path, exist_ok=True)
        d.meta = {
            "format": "tfconf-sweep/1",
            "config": sweep.config_path,
            "root": os.path.dirname(sweep.config_path),  # relative data paths resolve from here
            "overrides": list(sweep.overrides),
            "metric": sweep.metric,
            "mode": sweep.mode,
            "rungs": sweep.rungs if sweep.spec.scheduler else None,
            "eta": sweep.spec.scheduler.eta if sweep.spec.scheduler else None,
            "keys": sweep.keys,
            "trials": [t.as_dict() for t in sweep.trials],
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        atomic_write_bytes(os.path.join(path, "sweep.yaml"), sweep.loaded.dump().encode())
        for t in sweep.trials:
            os.makedirs(d.trial_dir(t.id), exist_ok=True)
            atomic_write_bytes(os.path.join(d.trial_dir(t.id), "config.yaml"), t.config_text.encode())
        d.status = {t.id: {"state": "pending", "iterations": 0, "metric": None, "error": None,
                           "attempts": 0} for t in sweep.trials}
        d.lock()
        _write_json(os.path.join(path, "sweep.json"), d.meta)  # last: its presence marks a usable sweep
        d.save()
        return d

    @classmethod
    def open(cls, path) -> "SweepDir":
        """An existing sweep folder (for --resume, plot)."""
        meta = os.path.join(path, "sweep.json")
        if not os.path.isdir(path):
            raise SweepDirError(f"{path}: no such sweep folder")
        if not os.path.exists(meta):
            raise SweepDirError(f"{path} is not a sweep folder (it has no sweep.json)")
        d = cls(path)
        with open(meta) as f:
            d.meta = json.load(f)
        spath = os.path.join(path, "status.json")
        d.status = {}
        if os.path.exists(spath):
            with open(spath) as f:
                d.status = json.load(f).get("trials", {})
        for t in d.trials:
            d.status.setdefault(t["id"], {"state": "pending", "iterations": 0, "metric": None,
                                          "error": None, "attempts": 0})
        return d

    # ------------------------------------------------------------------ one sweep process at a time
    def lock(self) -> None:
        """Hold SWEEP/.lock (released when this process ends, however it ends); a second sweep
        process on the same folder is refused."""
        if getattr(self, "_lock", None) is not None:
            return
        f = open(os.path.join(self.path, ".lock"), "a+")
        try:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            raise SweepDirError(f"{self.path} is being run by another sweep process"
                                + (f" (pid {holder})" if holder else "")) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock = f

    def unlock(self) -> None:
        f = getattr(self, "_lock", None)
        if f is not None:
            f.close()
            self._lock = None

    # ------------------------------------------------------------------ access
    @property
    def trials(self) -> list:
        return self.meta["trials"]

    @property
    def metric(self) -> str:
        return self.meta["metric"]

    @property
    def mode(self) -> str:
        return self.meta["mode"]

    def trial_dir(self, tid) -> str:
        return os.path.join(self.path, tid)

    def state(self, tid) -> str:
        return self.status[tid]["state"]

    def update(self, tid, **fields) -> None:
        """Change a trial's record and write status.json (atomically)."""
        self.status[tid].update(fields)
        self.save()

    def save(self) -> None:
        counts = {s: 0 for s in STATES}
        for rec in self.status.values():
            counts[rec["state"]] += 1
        _write_json(os.path.join(self.path, "status.json"),
                    {"updated": time.strftime("%Y-%m-%d %H:%M:%S"), "counts": counts, "trials": self.status})

    # ------------------------------------------------------------------ ranking and results
    def sort_key(self, tid):
        """Done trials by metric, then early-stopped ones (latest rung first), pending, failed."""
        rec = self.status[tid]
        order = {"done": 0, "stopped": 1, "running": 2, "pending": 2, "failed": 3}[rec["state"]]
        value = rec.get("metric")
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        score = 0.0 if missing else (-value if self.mode == "max" else value)
        return (order, -(rec.get("stopped_at") or 0), missing, score, self.trials_index(tid))

    def trials_index(self, tid) -> int:
        return next(i for i, t in enumerate(self.trials) if t["id"] == tid)

    def ranked(self) -> list:
        return sorted((t["id"] for t in self.trials), key=self.sort_key)

    def best(self):
        """The best finished trial's id (None when none finished with a metric)."""
        for tid in self.ranked():
            rec = self.status[tid]
            if rec["state"] == "done" and rec.get("metric") is not None:
                return tid
        return None

    def rows(self) -> list:
        """results.csv's rows (dicts), ranked."""
        params = {t["id"]: t["params"] for t in self.trials}
        out = []
        test_keys: list = []
        for rec in self.status.values():
            test_keys += [k for k in (rec.get("test") or {}) if k not in test_keys]
        for rank, tid in enumerate(self.ranked(), 1):
            rec = self.status[tid]
            row = {"rank": rank, "trial": tid, "state": rec["state"], self.metric: rec.get("metric"),
                   "iterations": rec.get("iterations"), "stopped_at": rec.get("stopped_at"),
                   "wall_time": rec.get("wall_time"), "train_loss": rec.get("train_loss")}
            row.update({f"test.{k}": (rec.get("test") or {}).get(k) for k in test_keys})
            row.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params[tid].items()})
            row.update({"error": rec.get("error"), "config": os.path.join(tid, "config.yaml"),
                        "weights": rec.get("weights")})
            out.append(row)
        return out

    def write_results(self) -> str:
        rows = self.rows()
        buf = io.StringIO()
        if rows:
            fields = list(rows[0])
            for r in rows:
                fields += [k for k in r if k not in fields]
            w = csv.DictWriter(buf, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
        path = os.path.join(self.path, "results.csv")
        atomic_write_bytes(path, buf.getvalue().encode())
        return path

    def summary(self, limit: int = 20) -> str:
        """The ranked table printed at the end of a sweep, and the best trial's config and weights."""
        keys = self.meta.get("keys") or []
        params = {t["id"]: t["params"] for t in self.trials}
        head = ["rank", "trial", "state", self.metric, "iters", *keys]
        body = []
        ranked = self.ranked()
        for rank, tid in enumerate(ranked[:limit], 1):
            rec = self.status[tid]
            state = rec["state"] + (f"@{rec['stopped_at']}" if rec["state"] == "stopped" else "")
            m = rec.get("metric")
            body.append([str(rank), tid, state, "-" if m is None else f"{m:.4f}", str(rec.get("iterations") or 0),
                         *[_fmt(params[tid].get(k)) for k in keys]])
        widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *body]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if len(ranked) > limit:
            lines.append(f"... {len(ranked) - limit} more in {os.path.join(self.path, 'results.csv')}")
        failed = [tid for tid in ranked if self.status[tid]["state"] == "failed"]
        for tid in failed[:5]:
            lines.append(f"{tid} failed: {self.status[tid].get('error')}")
        best = self.best()
        if best is None:
            lines.append("no trial finished with a metric")
        else:
            rec = self.status[best]
            label = ", ".join(f"{k}={_fmt(v)}" for k, v in params[best].items())
            lines.append(f"best: {best} ({label}) {self.metric} {rec['metric']:.4f}")
            lines.append(f"  config:  {os.path.join(self.path, best, 'config.yaml')}")
            if rec.get("weights"):
                lines.append(f"  weights: {os.path.join(self.path, rec['weights'])}")
        return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "-"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)
