"""``tfconf plot RUN_DIR [RUN_DIR...] -o curves.png``: learning curves of one or many runs.

Reads what ``tfconf train`` records in a run folder, metrics.jsonl (one object per event:
``{"iteration": 500, "phase": "test", "accuracy": 0.97, "loss": 0.09}``), and draws one panel for
the training loss and one per test metric, each run a line of the same colour in every panel.
matplotlib (the ``plot`` extra) is imported only here, with its Agg backend: no display needed.
"""

from __future__ import annotations

import json
import os

from tfconf.errors import UserError

__all__ = ["PlotError", "PlotUnavailable", "RunDirError", "plot_runs", "read_metrics", "save_figure"]


class PlotUnavailable(UserError, RuntimeError):
    """matplotlib is not installed."""


class PlotError(UserError, ValueError):
    """A plot that cannot be made from what the user gave (printed without a traceback)."""


class RunDirError(PlotError):
    """A folder that is not a run folder of ``tfconf train``."""


def read_metrics(run_dir):
    """The events of a run folder's metrics.jsonl, in order (a line cut short by a kill is skipped)."""
    if not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir}: no such folder")
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise RunDirError(f"{run_dir} is not a run folder: it has no metrics.jsonl (tfconf train writes "
                          "config.yaml, metrics.jsonl and snapshots/ into its --out folder)")
    events = []
    with open(path, encoding="utf-8", errors="replace") as f:  # damaged bytes spoil their line only
        for line in f:
            try:
                e = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(e, dict) and isinstance(e.get("iteration"), int):
                events.append(e)
    return events


def _series(events, phase, name):
    pts = [(e["iteration"], e[name]) for e in events
           if e.get("phase") == phase and isinstance(e.get(name), (int, float))]
    return tuple(zip(*pts)) if pts else None


def _labels(run_dirs):
    """Each run's folder name; the full path where two runs share a name."""
    names = [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    return [d if names.count(n) > 1 else n for d, n in zip(run_dirs, names)]


def plot_runs(run_dirs, title=None):
    """A matplotlib Figure: a ``train loss`` panel, then one panel per test metric (``test accuracy``,
    ``test loss``...) in the order the runs first record them; one line per run."""
    if not run_dirs:
        raise RunDirError("no run folder given")
    runs = [(label, read_metrics(d)) for label, d in zip(_labels(run_dirs), run_dirs)]
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable("tfconf plot needs matplotlib: pip install 'tfconf[plot]' "
                              "(or pip install matplotlib)") from None
    test_names = []
    for _, events in runs:
        for e in events:
            if e.get("phase") == "test":
                test_names += [k for k, v in e.items() if k not in ("iteration", "phase") and k not in test_names
                               and isinstance(v, (int, float))]
    panels = [("train", "loss")] + [("test", n) for n in test_names]
    if not any(_series(ev, ph, n) for _, ev in runs for ph, n in panels):
        files = ", ".join(os.path.join(d, "metrics.jsonl") for d in run_dirs)
        raise RunDirError(f"nothing to plot: {files} recorded no loss or test metric yet")
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).flat
    axes = list(axes)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for i, (label, events) in enumerate(runs):
        for ax, (phase, name) in zip(axes, panels):
            s = _series(events, phase, name)
            if s:
                ax.plot(*s, color=f"C{i % 10}", label=label, marker="." if len(s[0]) < 30 else None, lw=1.4)
    for ax, (phase, name) in zip(axes, panels):
        ax.set(title=f"{phase} {name}", xlabel="iteration")
        ax.grid(alpha=0.3)
        if name == "loss" and all(v > 0 for line in ax.get_lines() for v in line.get_ydata()) and ax.get_lines():
            lo = min(min(line.get_ydata()) for line in ax.get_lines())
            hi = max(max(line.get_ydata()) for line in ax.get_lines())
            if hi / lo >= 20:
                ax.set_yscale("log")
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, out):
    """Write ``fig`` to ``out`` (.png, .svg, .pdf: by its extension); returns ``out``."""
    ext = os.path.splitext(out)[1].lstrip(".").lower()
    known = fig.canvas.get_supported_filetypes()
    if ext not in known:
        raise PlotError(f"-o {out}: unknown image type {ext or '(no extension)'!r}; use one of "
                        f"{', '.join('.' + k for k in sorted(known))}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
