"""``tfconf plot``: learning curves of real (tiny) runs, checked on the figure object and on the PNG
written through the real entry point."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.cli.util import SPIRALS, invoke, one_error_line, run, write

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two 40-iteration runs of the spirals MLP with different learning rates."""
    d = tmp_path_factory.mktemp("runs")
    cfg = write(d, "tiny.yaml", SPIRALS)
    runs = []
    for lr in ("0.1", "0.02"):
        out = d / f"lr{lr}"
        r = invoke(["train", cfg, "--out", out, "--quiet", "--set", f"solver.base_lr={lr}"])
        assert r.exit_code == 0, r.output
        runs.append(str(out))
    return runs


def _events(run_dir):
    with open(f"{run_dir}/metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def test_figure_has_a_panel_per_curve_and_a_line_per_run(two_runs):
    from tfconf.interop.plot import plot_runs

    fig = plot_runs(two_runs)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["train loss", "test accuracy", "test loss"]
    for ax, (phase, name) in zip(axes, [("train", "loss"), ("test", "accuracy"), ("test", "loss")]):
        lines = ax.get_lines()
        assert [ln.get_label() for ln in lines] == ["lr0.1", "lr0.02"]
        for ln, run_dir in zip(lines, two_runs):
            want = [(e["iteration"], e[name]) for e in _events(run_dir) if e["phase"] == phase]
            assert list(ln.get_xdata()) == [it for it, _ in want]
            assert list(ln.get_ydata()) == pytest.approx([v for _, v in want])
        assert lines[0].get_color() != lines[1].get_color()
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["lr0.1", "lr0.02"]
    # the runs differ, so their curves do
    a, b = (ln.get_ydata() for ln in axes[0].get_lines())
    assert not np.allclose(a, b)


def test_cli_writes_a_png(two_runs, tmp_path):
    import matplotlib.image as mpimg

    out = tmp_path / "curves.png"
    r = run(["plot", *two_runs, "-o", out, "--title", "spirals"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote {out}"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(str(out))
    assert img.ndim == 3 and img.shape[1] > img.shape[0] > 200  # three panels side by side
    assert img[..., :3].std() > 0.05  # not a blank page


def test_one_run_and_a_partial_run(two_runs, tmp_path):
    from tfconf.interop.plot import plot_runs

    part = tmp_path / "partial"
    part.mkdir()
    # a run killed early: train events only, and a last line cut short
    (part / "metrics.jsonl").write_text('{"iteration": 5, "phase": "train", "loss": 1.2, "lr": 0.1}\n'
                                        '{"iteration": 10, "phase": "train", "loss": 0.9, "lr": 0.1}\n{"itera')
    fig = plot_runs([str(part)])
    (ax,) = [a for a in fig.axes if a.get_visible()]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [5, 10] and list(line.get_ydata()) == [1.2, 0.9]
    fig = plot_runs([two_runs[0], str(part)])
    axes = [a for a in fig.axes if a.get_visible()]
    assert [len(a.get_lines()) for a in axes] == [2, 1, 1]


def test_not_a_run_dir_is_exit_2(two_runs, tmp_path):
    r = run(["plot", two_runs[0], tmp_path, "-o", tmp_path / "x.png"])
    assert r.returncode == 2
    assert one_error_line(r.stderr) == (f"error: {tmp_path} is not a run folder: it has no metrics.jsonl "
                                        "(tfconf train writes config.yaml, metrics.jsonl and snapshots/ into its --out folder)")
    r = invoke(["plot", str(tmp_path / "nope"), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and f"{tmp_path / 'nope'}: no such folder" in r.output
    r = invoke(["plot", two_runs[0], "-o", str(tmp_path / "x.unknown")])
    assert r.exit_code == 2 and "unknown image type 'unknown'" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text("")
    r = invoke(["plot", str(empty), "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2 and "nothing to plot" in r.output
    assert not (tmp_path / "x.png").exists()


def test_without_matplotlib(two_runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = invoke(["plot", two_runs[0], "-o", str(tmp_path / "x.png")])
    assert r.exit_code == 2
    assert "tfconf plot needs matplotlib: pip install 'tfconf[plot]'" in r.output
