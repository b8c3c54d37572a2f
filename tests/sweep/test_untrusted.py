"""A damaged sweep folder (status.json or sweep.json truncated, garbage, of the wrong shape, or naming
trial folders outside the sweep) is a SweepDirError that says what is damaged and what to do."""

from __future__ import annotations

import json
import re

import pytest

from tests.cli.util import one_error_line
from tfconf.sweep.expand import expand
from tfconf.sweep.run import start
from tfconf.sweep.status import SweepDir, SweepDirError

from .util import run, sweep_config


@pytest.fixture
def sweep_dir(tmp_path):
    path = sweep_config(tmp_path, "  grid:\n    solver.base_lr: [0.1, 0.05]\n")
    d = start(expand(path), str(tmp_path / "out"))
    d.unlock()
    return tmp_path / "out"


STATUS_FIX = "restore it from a copy, or delete it and run `tfconf sweep run --resume "


@pytest.mark.parametrize("content, why", [
    (None, r"not valid JSON, truncated or edited: .* line \d+, column \d+"),
    (b"", r"not valid JSON, truncated or edited: expecting value line 1, column 1"),
    (b"\xff\xfe\x00garbage", r"byte 0 is not UTF-8 text"),
    (b"[" * 100000, r"nested too deeply|not valid JSON"),
    (b"[1, 2]", r"its trials are not records"),
    (b'{"trials": {"t000": {"state": "exploded"}}}', r"its trials are not records"),
    (b'{"trials": {"t000": {"state": "done", "metric": "high"}}}', r"its trials are not records"),
])
def test_a_damaged_status_json(sweep_dir, content, why):
    status = sweep_dir / "status.json"
    status.write_bytes(status.read_bytes()[:60] if content is None else content)
    with pytest.raises(SweepDirError) as info:
        SweepDir.open(str(sweep_dir))
    msg = str(info.value)
    assert msg.startswith(f"{status}: the sweep's status.json is damaged (") and STATUS_FIX in msg
    assert re.search(why, msg), msg
    assert "\n" not in msg


@pytest.mark.parametrize("edit, why", [
    (lambda m: "{\"format\": \"tfconf-swe", r"not valid JSON"),
    (lambda m: json.dumps({**m, "trials": "all"}), r"it lacks its metric, mode, root or trials"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "metric"}), r"it lacks its metric"),
    (lambda m: json.dumps({**m, "trials": [{**m["trials"][0], "id": "../../escape"}]}),
     r"trial id '\.\./\.\./escape' is not a plain folder name"),
    (lambda m: json.dumps({**m, "trials": [{**m["trials"][0], "id": "/etc"}]}), r"is not a plain folder name"),
])
def test_a_damaged_sweep_json(sweep_dir, edit, why):
    meta = sweep_dir / "sweep.json"
    meta.write_text(edit(json.loads(meta.read_text())))
    with pytest.raises(SweepDirError, match=rf"^{meta}: the sweep's sweep.json is damaged \(.*{why}.*restore it"):
        SweepDir.open(str(sweep_dir))


def test_cli_status_of_a_truncated_status_json_and_the_advice_works(sweep_dir):
    status = sweep_dir / "status.json"
    status.write_bytes(status.read_bytes()[:40])
    r = run(["sweep", "status", sweep_dir])
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert line.startswith(f"error: {status}: the sweep's status.json is damaged") and STATUS_FIX in line
    r = run(["sweep", "run", "--resume", sweep_dir])
    assert r.returncode == 2 and "status.json is damaged" in one_error_line(r.stderr)
    status.unlink()  # what the message says to do
    r = run(["sweep", "run", "--resume", sweep_dir], timeout=300)
    assert r.returncode == 0, r.stderr
    d = SweepDir.open(str(sweep_dir))
    assert {rec["state"] for rec in d.status.values()} == {"done"}
