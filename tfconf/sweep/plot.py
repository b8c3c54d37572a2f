"""``tfconf sweep plot``: every trial's learning curve, and the metric against each swept key."""

from __future__ import annotations

import json
import math
import os

from tfconf.errors import UserError

__all__ = ["PlotUnavailable", "plot_sweep"]


class PlotUnavailable(UserError, RuntimeError):
    """matplotlib is not installed."""


def _events(trial_dir):
    out = []
    try:
        with open(os.path.join(trial_dir, "metrics.jsonl")) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return out


def plot_sweep(d, out: str) -> str:
    """Write the figure of sweep folder ``d`` (a SweepDir) to ``out``; returns ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("tfconf sweep plot needs matplotlib: pip install 'tfconf[plot]' "
                              "(or pip install matplotlib)") from None
    keys = d.meta.get("keys") or []
    phase, _, name = d.metric.partition(".")
    params = {t["id"]: t["params"] for t in d.trials}
    n = 2 + len(keys)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.6 * nrows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    best = d.best()
    for tid in d.ranked():
        ev = _events(d.trial_dir(tid))
        style = dict(lw=2.2 if tid == best else 1.0, alpha=1.0 if tid == best else 0.6,
                     label=tid if tid == best else None)
        tr = [(e["iteration"], e["loss"]) for e in ev if e.get("phase") == "train" and "loss" in e]
        if tr:
            axes[0].plot(*zip(*tr), **style)
        te = [(e["iteration"], e[name]) for e in ev if e.get("phase") == phase and name in e]
        if te:
            axes[1].plot(*zip(*te), marker="." if len(te) < 30 else None, **style)
    axes[0].set(title="train loss", xlabel="iteration")
    axes[1].set(title=d.metric, xlabel="iteration")
    if best:
        axes[0].legend(title="best", fontsize="small")
    colors = {"done": "C0", "stopped": "C1", "failed": "C3", "pending": "C7", "running": "C7"}
    for ax, key in zip(axes[2:], keys):
        xs, ys, cs = [], [], []
        for tid, rec in d.status.items():
            v, m = params[tid].get(key), rec.get("metric")
            if m is None or (isinstance(m, float) and math.isnan(m)):
                continue
            xs.append(v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))
            ys.append(m)
            cs.append(colors.get(rec["state"], "C7"))
        if xs and all(isinstance(x, str) for x in xs):
            cats = sorted(set(xs))
            xs = [cats.index(x) for x in xs]
            ax.set_xticks(range(len(cats)), cats)
        elif xs and any(isinstance(x, str) for x in xs):
            xs = [str(x) for x in xs]
        ax.scatter(xs, ys, c=cs, s=28)
        num = [x for x in xs if isinstance(x, (int, float))]
        if num and min(num) > 0 and max(num) / min(num) >= 20:
            ax.set_xscale("log")
        ax.set(title=f"{d.metric} vs {key}", xlabel=key)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
