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
import re
import time

from tfconf.errors import UserError
from tfconf.io.atomic import atomic_write_bytes
from tfconf.io.jsonable import jsonable

__all__ = ["STATES", "SweepDir", "SweepDirError"]

STATES = ("pending", "running", "done", "stopped", "failed")


class SweepDirError(UserError, ValueError):
    """A sweep folder that cannot be used (not a sweep, already holds one, ...)."""


def _write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(jsonable(obj), indent=1) + "\n").encode())


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
        d.meta = _read_json(meta, "sweep.json", f"restore it from a copy: without it {path} cannot be resumed "
                            "or ranked (its trials' run folders t000/... are intact)")
        _check_meta(d.meta, meta)
        spath = os.path.join(path, "status.json")
        d.status = {}
        if os.path.exists(spath):
            fix = (f"restore it from a copy, or delete it and run `tfconf sweep run --resume {path}`: every "
                   "trial then starts as pending and continues from its own last snapshot")
            body = _read_json(spath, "status.json", fix)
            trials = body.get("trials") if isinstance(body, dict) else None
            if not isinstance(trials, dict) or not all(_valid_record(r) for r in trials.values()):
                raise SweepDirError(f"{spath}: the sweep's status.json is damaged (its trials are not "
                                    f"records with a state of {', '.join(STATES)}); {fix}")
            d.status = trials
        for t in d.trials:
            d.status.setdefault(t["id"], {"state": "pending", "iterations": 0, "metric": None,
                                          "error": None, "attempts": 0})
        return d

    # ------------------------------------------------------------------ one sweep process at a time
    def lock(self) -> None:
        """Hold SWEEP/.lock (released when this process ends, however it ends); a second sweep
        process on the same folder is refused."""
        from tfconf.train.runfolder import FolderBusy, FolderLock

        if getattr(self, "_lock", None) is not None:
            return
        lock = FolderLock(self.path, ".lock", what="another sweep process")
        try:
            self._lock = lock.acquire()
        except FolderBusy as e:
            raise SweepDirError(str(e)) from None

    def unlock(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
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


#: the largest sweep.json/status.json read (a sweep of 10,000 trials writes about 10 MB)
MAX_JSON_BYTES = 256 * 1024 * 1024


def _read_json(path: str, name: str, fix: str):
    """A sweep file's JSON; a SweepDirError that says the file is damaged and what to do otherwise."""
    import stat

    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_JSON_BYTES:
                what = "not a regular file" if not stat.S_ISREG(info.st_mode) else f"{info.st_size:,} bytes"
                raise SweepDirError(f"{path}: the sweep's {name} is damaged ({what}); {fix}")
            raw = f.read()
    except SweepDirError:
        raise
    except OSError as e:
        raise SweepDirError(f"{path}: the sweep's {name} cannot be read: "
                            f"{(e.strerror or str(e)).lower()}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        why = f"byte {e.start} is not UTF-8 text"
    except json.JSONDecodeError as e:
        why = f"not valid JSON, truncated or edited: {e.msg.lower()} line {e.lineno}, column {e.colno}"
    except (ValueError, RecursionError) as e:  # json's own limits (deep nesting, huge numbers)
        why = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())[:80]
    raise SweepDirError(f"{path}: the sweep's {name} is damaged ({why}); {fix}")


def _check_meta(meta, path: str) -> None:
    fix = "restore it from a copy: without it the sweep cannot be resumed or ranked"
    ok = (isinstance(meta, dict) and isinstance(meta.get("trials"), list) and isinstance(meta.get("metric"), str)
          and meta.get("mode") in ("min", "max") and isinstance(meta.get("root"), str)
          and all(isinstance(t, dict) and isinstance(t.get("id"), str) and isinstance(t.get("params"), dict)
                  for t in meta["trials"]))
    if not ok:
        raise SweepDirError(f"{path}: the sweep's sweep.json is damaged (it lacks its metric, mode, root or "
                            f"trials); {fix}")
    for t in meta["trials"]:  # a trial's id is the name of its folder inside the sweep's
        if not _TRIAL_ID.match(t["id"]) or t["id"] in (".", ".."):
            raise SweepDirError(f"{path}: the sweep's sweep.json is damaged (trial id {t['id'][:40]!r} is not a "
                                f"plain folder name); {fix}")


_TRIAL_ID = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def _number_or_none(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _valid_record(rec) -> bool:
    return (isinstance(rec, dict) and rec.get("state") in STATES
            and all(_number_or_none(rec.get(k)) for k in ("metric", "iterations", "stopped_at", "wall_time")))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "-"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)
