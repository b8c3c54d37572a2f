"""Resume prefers the last good snapshot: a newest snapshot that cannot be read (truncated, garbage)
is skipped with a warning naming it and the one used instead; the temporary files a killed write
left (``snapshots/.tmp-*``, tfconf.train.snapshot.TMP_PREFIX) are removed; and a folder where no
snapshot can be read is one located error, exit 2."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from .util import Box, complete_snapshots, spirals, success, train_ok, user_error

MAX = 60


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run stopped at 40 of 60 iterations (snapshots 10..40) to copy per test."""
    box = Box(tmp_path_factory.mktemp("finished"))
    cfg = box.write("net.yaml", spirals(max_iter=MAX))
    train_ok(box, cfg, box.work / "run", "--max-iter", "40")
    assert sorted(complete_snapshots(box.work / "run")) == [10, 20, 30, 40]
    return box.work / "run"


@pytest.fixture
def run(box, finished):
    cfg = box.write("net.yaml", spirals(max_iter=MAX))
    run_dir = box.work / "run"
    shutil.copytree(finished, run_dir)
    return cfg, run_dir


def _state(run_dir, it):
    return run_dir / "snapshots" / f"tiny_iter_{it}.solverstate.safetensors"


def _weights(run_dir, it):
    return run_dir / "snapshots" / f"tiny_iter_{it}.safetensors"


def _resumed_from_previous(o, run_dir, bad):
    text = o.out + o.err
    assert re.search(rf"(?i)warn.*{re.escape(bad.name)}", text), f"no warning naming {bad}\n{o}"
    assert _state(run_dir, 30).name in text, f"the warning does not name the snapshot used\n{o}"
    assert f"at iteration 30" in text, f"did not resume from iteration 30\n{o}"
    assert MAX in complete_snapshots(run_dir)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_resume_skips_a_damaged_newest_solverstate(box, run, damage):
    cfg, run_dir = run
    bad = _state(run_dir, 40)
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage])
    o = success(box.run(["train", cfg, "--resume", run_dir], allowed=[run_dir]))
    _resumed_from_previous(o, run_dir, bad)


def test_resume_skips_a_snapshot_whose_weights_are_truncated(box, run):
    cfg, run_dir = run
    bad = _weights(run_dir, 40)
    bad.write_bytes(bad.read_bytes()[:100])
    o = success(box.run(["train", cfg, "--resume", run_dir], allowed=[run_dir]))
    text = o.out + o.err
    assert re.search(rf"(?i)warn.*{re.escape(bad.name)}|warn.*{re.escape(_state(run_dir, 40).name)}", text), str(o)
    assert "at iteration 30" in text, str(o)


def test_resume_removes_the_temporaries_of_a_killed_write(box, run):
    from tfconf.io.atomic import TMP_PREFIX

    cfg, run_dir = run
    stray = [run_dir / "snapshots" / f"{TMP_PREFIX}k1ll3d", run_dir / "snapshots" / f"{TMP_PREFIX}abc_123"]
    for p in stray:
        p.write_bytes(b"\0" * 1000)
    success(box.run(["train", cfg, "--resume", run_dir, "-q"], allowed=[run_dir]))
    left = [p.name for p in stray if p.exists()]
    assert not left, f"temporary files left: {left}"


def test_resume_with_every_snapshot_damaged_is_one_error(box, run):
    cfg, run_dir = run
    for it in (10, 20, 30, 40):
        _state(run_dir, it).write_bytes(b"not a safetensors file")
    o = box.run(["train", cfg, "--resume", run_dir], allowed=[run_dir])
    user_error(o, r"solverstate|snapshot", one_line=False)  # warnings about each, then the error
    errors = [ln for ln in o.lines if not ln.startswith("warning:")]
    assert len(errors) == 1, str(o)


def test_resume_from_a_garbage_state_file_given_by_name(box, run):
    cfg, run_dir = run
    bad = _state(run_dir, 40)
    bad.write_bytes(os.urandom(300))
    o = box.run(["train", cfg, "--resume", bad], allowed=[run_dir])
    user_error(o, re.escape(bad.name))


def test_resume_with_a_truncated_metrics_file(box, run):
    """The metrics of a killed run end mid-line: resume continues, the file is whole again."""
    cfg, run_dir = run
    metrics = run_dir / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + b'{"iteration": 41, "pha')
    success(box.run(["train", cfg, "--resume", run_dir, "-q"], allowed=[run_dir]))
    import json

    for line in metrics.read_text().splitlines():
        json.loads(line)
