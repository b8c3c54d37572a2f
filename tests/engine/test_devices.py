"""Device names (parsing, merging, scopes, colocation) and the device registry (issue 4)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import tfconf as tc
from tfconf.engine.devices import DeviceSpec, canonical_name, local_devices, merge_device

LOCAL = "/job:localhost/replica:0/task:0"


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("name, fields, canonical", [
    (f"{LOCAL}/device:CPU:0", ("localhost", 0, 0, "CPU", 0), f"{LOCAL}/device:CPU:0"),
    ("/job:worker/task:17/device:GPU:3", ("worker", None, 17, "GPU", 3), "/job:worker/task:17/device:GPU:3"),
    ("/device:GPU:0", (None, None, None, "GPU", 0), "/device:GPU:0"),
    ("/cpu:0", (None, None, None, "CPU", 0), "/device:CPU:0"),
    ("gpu:1", (None, None, None, "GPU", 1), "/device:GPU:1"),
    ("CPU:*", (None, None, None, "CPU", None), "/device:CPU:*"),
    ("/device:cpu:2", (None, None, None, "CPU", 2), "/device:CPU:2"),
    ("/device:GPU", (None, None, None, "GPU", None), "/device:GPU:*"),
    ("/job:ps", ("ps", None, None, None, None), "/job:ps"),
    ("/job:ps/replica:2", ("ps", 2, None, None, None), "/job:ps/replica:2"),
    ("", (None, None, None, None, None), ""),
])
def test_names_parse_to_fields_and_back(name, fields, canonical):
    spec = DeviceSpec.from_string(name)
    assert (spec.job, spec.replica, spec.task, spec.device_type, spec.device_index) == fields
    assert spec.to_string() == canonical
    assert canonical_name(canonical) == canonical  # canonical names are fixed points


@pytest.mark.parametrize("bad, says", [
    ("/foo:1", "cannot parse 'foo:1'"),
    ("gpu", "cannot parse 'gpu'"),
    ("/job:", "cannot parse 'job:'"),
    ("/task:x", "'task:x' needs a non-negative integer"),
    ("/replica:-1", "'replica:-1' needs a non-negative integer"),
    ("/device:GPU:one", "'device:GPU:one' needs a non-negative integer"),
    ("/device::0", "needs a device type"),
    ("cpu:-1", "cannot parse 'cpu:-1'"),
])
def test_invalid_names_raise_a_clear_message(bad, says):
    with pytest.raises(ValueError) as e:
        DeviceSpec.from_string(bad)
    assert says in str(e.value)
    assert repr(bad) in str(e.value)  # the whole name the user wrote


def test_invalid_name_in_a_device_scope_fails_at_the_scope():
    with pytest.raises(ValueError, match="cannot parse 'gpu0'"):
        with tc.device("/gpu0"):
            pass


@pytest.mark.parametrize("outer, inner, merged", [
    # TF's DeviceSpec merge: every field the inner spec sets wins, the others are kept.
    ("/job:worker/device:GPU:1", "/cpu:0", "/job:worker/device:CPU:0"),
    ("/job:worker/task:3", "/device:GPU:1", "/job:worker/task:3/device:GPU:1"),
    ("/device:GPU:1", "/job:ps", "/job:ps/device:GPU:1"),
    ("/job:worker/replica:0/task:1", "/job:ps/task:2", "/job:ps/replica:0/task:2"),
    ("/device:GPU:1", "/device:CPU:*", "/device:CPU:1"),  # an unset index keeps the outer one
    ("", "gpu:1", "/device:GPU:1"),
    ("/device:GPU:1", "", "/device:GPU:1"),
])
def test_merge_is_field_by_field_with_the_inner_spec_winning(outer, inner, merged):
    assert merge_device(outer, inner) == merged


# ----------------------------------------------------------------------------- scopes
def test_nested_device_scopes_merge_and_none_clears():
    with tc.device("/job:worker/task:1"):
        a = tc.constant(1.0, name="a")
        with tc.device("/device:GPU:2"):
            b = tc.constant(1.0, name="b")
            with tc.device("/cpu:0"):
                c = tc.constant(1.0, name="c")
                with tc.device(None):
                    d = tc.constant(1.0, name="d")
                    with tc.device("gpu:1"):
                        e = tc.constant(1.0, name="e")
            f = tc.constant(1.0, name="f")
    g = tc.constant(1.0, name="g")
    assert a.op.device == "/job:worker/task:1"
    assert b.op.device == "/job:worker/task:1/device:GPU:2"
    assert c.op.device == "/job:worker/task:1/device:CPU:0"
    assert d.op.device == ""
    assert e.op.device == "/device:GPU:1"  # the cleared outer scopes stay cleared inside
    assert f.op.device == "/job:worker/task:1/device:GPU:2"
    assert g.op.device == ""
    assert b.device == b.op.device  # a tensor reports its op's device


def test_device_scope_accepts_a_device_spec():
    with tc.device(DeviceSpec(job="worker", device_type="GPU", device_index=0)):
        a = tc.constant(1.0)
    assert a.op.device == "/job:worker/device:GPU:0"


def test_a_device_function_chooses_per_op():
    seen = []

    def matmuls_on_cpu1(op):
        seen.append(op.type)
        return "/cpu:1" if op.type == "MatMul" else None

    with tc.device("/job:localhost"):
        with tc.device(matmuls_on_cpu1):
            x = tc.constant(np.ones((2, 2), np.float32))
            y = tc.matmul(x, x)
            z = y + 1.0
    assert y.op.device == "/job:localhost/device:CPU:1"
    assert x.op.device == "/job:localhost"  # None from the function keeps the outer scope
    assert z.op.device == "/job:localhost"
    assert "MatMul" in seen and "Const" in seen


def test_colocate_with_takes_the_op_and_its_device():
    with tc.device("/cpu:1"):
        a = tc.constant(1.0, name="a")
    with tc.device("/cpu:2"):
        with tc.colocate_with(a.op):
            b = tc.identity(a, name="b")
        with tc.colocate_with(a):  # a tensor names its op
            c = a * 2.0
        d = a * 3.0
    assert b.op.colocated_with is a.op and c.op.colocated_with is a.op
    assert b.op.device == c.op.device == "/device:CPU:1"
    assert d.op.colocated_with is None and d.op.device == "/device:CPU:2"


def test_a_variables_assign_and_read_ops_stay_with_the_variable():
    with tc.device("/cpu:1"):
        v = tc.Variable(np.zeros(3, np.float32), name="v")
    with tc.device("/cpu:0"):
        ops = [v.assign([1.0, 2.0, 3.0]).op, v.assign_add([1.0, 1.0, 1.0]).op,
               v.assign_sub([1.0, 1.0, 1.0]).op, v.read_value().op, v.initializer]
    assert v.device == "/device:CPU:1"
    for op in ops:
        assert op.colocated_with is v.op, op.name
        assert op.device == "/device:CPU:1", op.name
    # ...and placement keeps them together even where the cost model would split them.
    with tc.Session(config=tc.SessionConfig(device_count={"CPU": 4})) as sess:
        placed = sess.placement(ops)
        assert {placed[op.name] for op in ops} | {placed[v.op.name]} == {f"{LOCAL}/device:CPU:1"}
        sess.run(v.initializer)
        np.testing.assert_array_equal(sess.run(v.assign([1.0, 2.0, 3.0])), [1, 2, 3])


# ----------------------------------------------------------------------------- registry
def test_device_count_makes_virtual_cpu_devices():
    devs = local_devices({"CPU": 4, "GPU": 0})
    assert [d.name for d in devs] == [f"{LOCAL}/device:CPU:{i}" for i in range(4)]
    assert all(d.device_type == "CPU" and d.xp is np for d in devs)
    assert [d.index for d in devs] == [0, 1, 2, 3]
    assert local_devices()[0].name == f"{LOCAL}/device:CPU:0"
    with pytest.raises(ValueError, match="CPU must be >= 1"):
        local_devices({"CPU": 0})


def test_device_matches_partial_specs():
    dev = local_devices({"CPU": 2})[1]
    for spec, ok in [("/cpu:1", True), ("/cpu:0", False), ("CPU:*", True), ("/job:localhost", True),
                     ("/job:worker", False), ("/task:0/device:CPU:1", True), ("/gpu:1", False), ("", True)]:
        assert dev.matches(DeviceSpec.from_string(spec)) is ok, spec


def test_list_devices_reports_memory_and_throughput():
    config = tc.SessionConfig(device_count={"CPU": 3})
    found = tc.list_devices(config)
    cpus = [d for d in found if d.device_type == "CPU"]
    assert [d.name for d in cpus] == [f"{LOCAL}/device:CPU:{i}" for i in range(3)]
    for d in cpus:
        assert d.memory_limit_bytes > 0
        assert d.gflops > 0
        assert d.name in repr(d) and "GFLOP/s" in repr(d)
    assert [d.name for d in tc.list_devices()][:1] == [f"{LOCAL}/device:CPU:0"]
    with tc.Session(config=config) as sess:
        listed = sess.list_devices()
        assert [d.name for d in listed if d.device_type == "CPU"] == [d.name for d in cpus]
        assert all(d.memory_limit_bytes > 0 and d.gflops > 0 for d in listed)


def test_cli_devices_prints_a_line_per_device():
    from tfconf.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["devices", "--device-count", "CPU=3"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if "/device:CPU:" in ln]
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert line.startswith(f"{LOCAL}/device:CPU:{i}")
        assert "GiB" in line and "GFLOP/s" in line
    r = runner.invoke(app, ["devices"])
    assert r.exit_code == 0 and sum("/device:CPU:" in ln for ln in r.output.splitlines()) == 1
    r = runner.invoke(app, ["devices", "--device-count", "CPU"])
    assert r.exit_code == 2 and "expected TYPE=N" in r.output
    r = runner.invoke(app, ["devices", "--device-count", "CPU=0"])
    assert r.exit_code == 2 and "CPU must be >= 1" in r.output
