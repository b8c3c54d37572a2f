"""``tfconf train --tensorboard``: the event files are read back with a TFRecord reader written here
(CRC-checked) and decoded with the Event proto; scalars must equal metrics.jsonl and the graph must
be the solver's. Also the runner's callback interface the writer hooks into."""

from __future__ import annotations

import glob
import json
import os
import struct
import sys

import pytest

from tests.cli.util import SPIRALS, invoke, run, write

tbx = pytest.importorskip("tensorboardX")

from tensorboardX.proto import event_pb2, graph_pb2  # noqa: E402


# ---------------------------------------------------------------------------------------------------- reader
def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path):
    """Every Event of a TFRecord event file, checking both CRCs of every record."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        assert hcrc == _masked_crc32c(header), f"{path}: bad length CRC at byte {pos}"
        body = data[pos + 12:pos + 12 + length]
        (bcrc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert bcrc == _masked_crc32c(body), f"{path}: bad data CRC at byte {pos}"
        out.append(event_pb2.Event.FromString(body))
        pos += 16 + length
    return out


def scalars(events):
    """tag → [(step, value)] of the simple-value summaries."""
    out = {}
    for e in events:
        for v in e.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, []).append((e.step, v.simple_value))
    return out


def event_files(run_dir):
    return sorted(glob.glob(os.path.join(str(run_dir), "events.out.tfevents.*")))


def jsonl(run_dir):
    with open(os.path.join(str(run_dir), "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------------------------------- tests
def test_train_writes_scalars_and_graph(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    out = tmp_path / "run"
    r = run(["train", cfg, "--out", out, "--tensorboard", "--quiet"])
    assert r.returncode == 0, r.stderr
    (path,) = event_files(out)
    events = read_events(path)
    assert events[0].file_version == "brain.Event:2"
    got = scalars(events)
    assert set(got) == {"train/loss", "train/lr", "test/accuracy", "test/loss"}
    logged = jsonl(out)
    for tag, series in got.items():
        phase, name = tag.split("/")
        want = [(e["iteration"], e[name]) for e in logged if e["phase"] == phase]
        assert [s for s, _ in series] == [s for s, _ in want], tag
        assert [v for _, v in series] == pytest.approx([v for _, v in want], rel=1e-6), tag
    assert [s for s, _ in got["train/loss"]] == list(range(5, 41, 5))
    assert [s for s, _ in got["test/accuracy"]] == [0, 10, 20, 30, 40]  # Caffe tests before training too
    assert got["train/lr"][0][1] == pytest.approx(0.1)

    (gev,) = [e for e in events if e.graph_def]
    g = graph_pb2.GraphDef.FromString(gev.graph_def)
    nodes = {n.name: n for n in g.node}
    assert nodes["data"].op == "Placeholder" and nodes["label"].op == "Placeholder"
    assert any(n.op == "MatMul" and n.name.startswith("train/ip1") for n in g.node)
    assert any(n.op == "ApplyUpdate" for n in g.node)
    assert any(n.name.startswith("gradients/") for n in g.node)
    for n in g.node:  # every input names a node of the graph ("op", "op:1" or "^op")
        for i in n.input:
            assert i.lstrip("^").split(":")[0] in nodes, (n.name, i)
    shapes = nodes["data"].attr["_output_shapes"].list.shape[0]
    assert [d.size for d in shapes.dim] == [-1, 2]


def test_without_the_option_no_event_file(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    r = invoke(["train", cfg, "--out", tmp_path / "run", "--quiet", "--max-iter", "10"])
    assert r.exit_code == 0, r.output
    assert event_files(tmp_path / "run") == []


def test_resume_purges_what_followed_the_snapshot(tmp_path):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    out = tmp_path / "run"
    r = invoke(["train", cfg, "--out", out, "--quiet", "--tensorboard", "--max-iter", "20"])
    assert r.exit_code == 0, r.output
    r = invoke(["train", cfg, "--resume", out, "--quiet", "--tensorboard", "--max-iter", "40"])
    assert r.exit_code == 0, r.output
    first, second = event_files(out)  # .iter0 and .iter20 (names sort by start time, then suffix)
    assert first.endswith(".iter0") and second.endswith(".iter20")
    ev = read_events(second)
    starts = [e for e in ev if e.HasField("session_log")]
    assert [(e.step, e.session_log.status) for e in starts] == [(21, event_pb2.SessionLog.START)]
    assert [s for s, _ in scalars(ev)["train/loss"]] == [25, 30, 35, 40]
    # a fresh run into the same folder replaces the old event files
    r = invoke(["train", cfg, "--out", out, "--quiet", "--tensorboard", "--max-iter", "10", "--force"])
    assert r.exit_code == 0, r.output
    (only,) = event_files(out)
    assert [s for s, _ in scalars(read_events(only))["train/loss"]] == [5, 10]


def test_missing_tensorboardx_is_a_user_error(tmp_path, monkeypatch):
    cfg = write(tmp_path, "tiny.yaml", SPIRALS)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    r = invoke(["train", cfg, "--out", tmp_path / "run", "--tensorboard", "--quiet"])
    assert r.exit_code == 2
    assert "--tensorboard needs tensorboardX: pip install 'tfconf[tensorboard]'" in r.output
    assert not (tmp_path / "run").exists()


def test_callbacks_see_the_run(tmp_path):
    from tfconf.frontend import config as cfgmod
    from tfconf.train.runner import Callback, train

    class Record(Callback):
        def __init__(self):
            self.calls = []

        def on_train_begin(self, solver, run_dir):
            self.calls.append(("begin", solver.iteration, run_dir))

        def on_metrics(self, iteration, phase, values):
            self.calls.append((phase, iteration, dict(values)))

        def on_train_end(self):
            self.calls.append(("end",))

    cfg = cfgmod.load(write(tmp_path, "tiny.yaml", SPIRALS), ["solver.max_iter=20"])
    rec = Record()
    train(cfg, out=str(tmp_path / "run"), quiet=True, callbacks=[rec])
    assert rec.calls[0] == ("begin", 0, str(tmp_path / "run")) and rec.calls[-1] == ("end",)
    logged = [(e.pop("phase"), e.pop("iteration"), e) for e in jsonl(tmp_path / "run")]
    assert rec.calls[1:-1] == logged

    class Boom(Record):
        def on_metrics(self, iteration, phase, values):
            raise RuntimeError("boom")

    boom = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        train(cfg, out=str(tmp_path / "run2"), quiet=True, callbacks=[boom])
    assert boom.calls[-1] == ("end",)  # told of the end however the run stops
