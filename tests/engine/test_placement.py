"""Placement (issue 4): explicit constraints, colocation, kernels, soft placement, the placement
log and the cost model. Placement-only tests build fake devices directly and call
``placement.place(ops, devices)``; the cost model never runs a kernel."""

from __future__ import annotations

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine import errors, placement
from tfconf.engine.devices import Device
from tfconf.engine.ops.core import same_as_input
from tfconf.engine.registry import OpDef, register, registered_ops

LOCAL = "/job:localhost/replica:0/task:0"
CPU = [f"{LOCAL}/device:CPU:{i}" for i in range(4)]

if "CpuOnlyTestOp" not in registered_ops():
    @register
    class CpuOnlyTestOp(OpDef):
        """A throwaway op type with a kernel for CPU only."""

        device_types = ("CPU",)

        def infer(op):
            return same_as_input(op)

        def forward(xp, x):
            return x + 1


def cpu_only(x, name=None):
    return tc.get_default_graph().create_op("CpuOnlyTestOp", [x], {}, name).outputs[0]


def fake(name, kind="CPU", gflops=100.0, bandwidth_gbs=10.0, link_gbs=None):
    idx = int(name.rsplit(":", 1)[1])
    return Device(f"{LOCAL}/device:{name}", kind, np, idx, 2**30, gflops, bandwidth_gbs, 2.0, link_gbs=link_gbs)


def order_of(*fetches):
    """The needed ops of ``fetches`` (tensors or target ops) in the session's ready-queue
    (topological) order."""
    from tfconf.engine.executor import build_plan

    got = []
    build_plan([f for f in fetches if isinstance(f, tc.Tensor)],
               [f for f in fetches if not isinstance(f, tc.Tensor)], [], lambda op: None, lambda op: None,
               got.extend)
    return got


def session(n, **kw):
    return tc.Session(config=tc.SessionConfig(device_count={"CPU": n}, **kw))


# ----------------------------------------------------------------------------- constraints
def test_explicit_constraints_are_honoured_on_four_cpus():
    x = tc.placeholder(tc.float32, [4, 4], name="x")
    outs = []
    for i in (3, 1, 2, 0):
        with tc.device(f"/cpu:{i}"):
            outs.append(tc.tanh(x, name=f"t{i}"))
    with tc.device("/job:localhost/replica:0/task:0/device:CPU:2"):
        total = tc.add_n(outs, name="total")
    with session(4) as sess:
        feed = {x: np.ones((4, 4), np.float32)}
        placed = sess.placement(total, feed)
        for i in range(4):
            assert placed[f"t{i}"] == CPU[i]
        assert placed["total"] == CPU[2]
        np.testing.assert_allclose(sess.run(total, feed), 4 * np.tanh(1.0), rtol=1e-6)


def test_partial_names_leave_the_rest_to_the_engine():
    with tc.device("/job:localhost"):
        a = tc.constant(np.ones((8, 8), np.float32), name="a")
        b = tc.matmul(a, a, name="b")
    with session(2) as sess:
        assert sess.placement(b)["b"] in CPU[:2]


def test_colocation_groups_get_one_device():
    # c is colocated with b, b with a (a chain the union-find merges); a asks for CPU:3.
    with tc.device("/cpu:3"):
        a = tc.constant(np.ones((4, 4), np.float32), name="a")
    with tc.colocate_with(a):
        b = tc.identity(a, name="b")
    with tc.device("/cpu:0"):  # colocation wins over the scope
        with tc.colocate_with(b):
            c = tc.matmul(b, b, name="c")
    d = tc.matmul(c, c, name="d")  # unconstrained
    placed = placement.place(order_of(d), [fake(f"CPU:{i}") for i in range(4)])
    names = {op.name: dev.name for op, dev in placed.items()}
    assert names["a"] == names["b"] == names["c"] == CPU[3]
    assert names["d"] in CPU


def test_a_group_gets_the_intersection_of_its_members_constraints():
    with tc.device("/job:localhost"):
        v = tc.Variable(np.zeros((2, 2), np.float32), name="v")
    with tc.device("/cpu:2"):  # ignored inside the variable's colocate_with (as in TF)
        up = v.assign_add(np.ones((2, 2), np.float32), name="up")
    assert up.op.device == "/job:localhost"
    up.op.device = "/device:CPU:2"  # a member with a narrower request binds the whole group
    with session(4) as sess:
        placed = sess.placement([v.initializer, up.op])
        assert placed["up"] == placed[v.initializer.name] == CPU[2]


def test_conflicting_constraints_in_one_group_need_soft_placement():
    with tc.device("/cpu:1"):
        a = tc.constant(1.0, name="a")
    with tc.colocate_with(a):
        with tc.device("/cpu:2"):
            b = tc.identity(a, name="b")
    b.op.device = "/device:CPU:2"  # as if the user asked for CPU:2 explicitly (TF: a conflict)
    devs = [fake(f"CPU:{i}") for i in range(4)]
    with pytest.raises(errors.InvalidArgumentError, match="colocation group of 2 ops"):
        placement.place(order_of(b), devs, allow_soft_placement=False)
    placed = placement.place(order_of(b), devs, allow_soft_placement=True)
    assert placed[a.op] is placed[b.op]


# ----------------------------------------------------------------------------- soft placement
@pytest.mark.parametrize("n, request_", [(1, "/device:GPU:0"), (2, "/device:GPU:0"), (2, "/cpu:7"),
                                         (4, "/job:worker/device:CPU:0")])
def test_soft_placement_moves_an_impossible_request(n, request_):
    x = tc.placeholder(tc.float32, [3], name="x")
    with tc.device(request_):
        y = tc.square(x, name="y")
    with session(n, allow_soft_placement=True) as sess:
        feed = {x: np.arange(3, dtype=np.float32)}
        assert sess.placement(y, feed)["y"] in CPU[:n]
        np.testing.assert_array_equal(sess.run(y, feed), [0, 1, 4])


@pytest.mark.parametrize("n, request_", [(1, "/device:GPU:0"), (2, "/device:GPU:0"), (2, "/cpu:7")])
def test_without_soft_placement_the_error_names_op_request_and_devices(n, request_):
    x = tc.placeholder(tc.float32, [3], name="x")
    with tc.device(request_):
        y = tc.square(x, name="wanted_here")
    with session(n, allow_soft_placement=False) as sess:
        with pytest.raises(errors.InvalidArgumentError) as e:
            sess.run(y, {x: np.zeros(3, np.float32)})
    msg = str(e.value)
    assert "'wanted_here'" in msg
    assert tc.DeviceSpec.from_string(request_).to_string() in msg
    assert "Available devices: " + ", ".join(CPU[:n]) in msg
    assert "allow_soft_placement" in msg
    assert e.value.op is y.op


def test_soft_placement_keeps_the_requested_device_type():
    with tc.device("/gpu:3"):  # a one-GPU machine: GPU:3 goes to GPU:0, not to a CPU
        y = tc.square(tc.constant(np.ones(4, np.float32)), name="y")
    devs = [fake("CPU:0"), fake("CPU:1"), fake("GPU:0", "GPU", gflops=1.0)]
    placed = placement.place(order_of(y), devs, allow_soft_placement=True)
    assert placed[y.op].name == f"{LOCAL}/device:GPU:0"


def test_a_cpu_only_op_is_never_placed_on_a_gpu():
    x = tc.constant(np.ones((256, 256), np.float32), name="x")
    y = cpu_only(tc.matmul(x, x, name="mm"), name="only_cpu")
    z = tc.matmul(y, y, name="after")
    gpu = fake("GPU:0", "GPU", gflops=1e6, bandwidth_gbs=1e4)  # far faster: everything else goes there
    devs = [fake("CPU:0", gflops=1.0, bandwidth_gbs=1.0), gpu]
    placed = placement.place(order_of(z), devs)
    assert placed[y.op].device_type == "CPU"
    assert placed[x.op] is gpu and placed[z.op] is gpu
    # Asking for the GPU: an error without soft placement, the CPU with it.
    with tc.device("/gpu:0"):
        w = cpu_only(x, name="asked_gpu")
    with pytest.raises(errors.InvalidArgumentError,
                       match="'asked_gpu'.* on '/device:GPU:0': the devices it names have no kernel for CpuOnlyTestOp"):
        placement.place(order_of(w), devs, allow_soft_placement=False)
    assert placement.place(order_of(w), devs, allow_soft_placement=True)[w.op].device_type == "CPU"
    # Colocated with an op asked on the GPU: soft placement moves the whole group to the CPU.
    with tc.device("/gpu:0"):
        g = tc.identity(x, name="g")
        with tc.colocate_with(g):
            u = cpu_only(g, name="u")
    placed = placement.place(order_of(u), devs, allow_soft_placement=True)
    assert placed[g.op].device_type == placed[u.op].device_type == "CPU"
    # A GPU-only device list has no kernel for it at all.
    with pytest.raises(errors.InvalidArgumentError, match="no kernel for GPU"):
        placement.place(order_of(w), [gpu])


def test_a_group_with_a_cpu_only_member_stays_off_the_gpu():
    x = tc.constant(np.ones((64, 64), np.float32), name="x")
    with tc.colocate_with(x):
        y = cpu_only(x, name="y")
    z = tc.matmul(x, x, name="z")
    devs = [fake("CPU:0", gflops=1.0), fake("GPU:0", "GPU", gflops=1e6)]
    placed = placement.place(order_of(y, z), devs)
    assert placed[x.op].device_type == placed[y.op].device_type == "CPU"


# ----------------------------------------------------------------------------- the log
@pytest.mark.parametrize("n", [1, 2])
def test_log_device_placement_prints_one_line_per_op(n, capfd):
    x = tc.placeholder(tc.float32, [2], name="x")
    with tc.device("/cpu:0"):
        y = tc.exp(x, name="y")
    z = tc.add(y, 1.0, name="z")
    with session(n, log_device_placement=True) as sess:
        sess.run(z, {x: np.zeros(2, np.float32)})
        lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
        placed = sess.placement(z, {x: np.zeros(2, np.float32)})
    assert len(lines) == len(placed) == 3  # y, the constant 1.0 and z; the fed x is not an op here
    for line in lines:
        name = line.split(" ", 1)[0]
        assert line.endswith(": " + placed[name])
    assert f"y (Exp): {CPU[0]}" in lines


def test_placement_is_inspectable_and_matches_the_partitions():
    with tc.device("/cpu:0"):
        a = tc.constant(np.ones((4, 4), np.float32), name="a")
    with tc.device("/cpu:1"):
        b = tc.matmul(a, a, name="b")
    with session(2) as sess:
        placed = sess.placement(b)
        parts = sess.partitions(b)
    assert placed["b"] == CPU[1]
    assert set(parts) == set(placed.values())
    for dev, part in parts.items():
        assert {s.op.name for s in part.steps if s.kind == "op"} == {k for k, v in placed.items() if v == dev}


# ----------------------------------------------------------------------------- cost model
def test_the_cost_model_prefers_the_faster_device():
    x = tc.placeholder(tc.float32, [512, 512], name="x")
    w = tc.constant(np.ones((512, 512), np.float32), name="w")
    y = tc.matmul(tc.matmul(x, w, name="m1"), w, name="m2")
    slow, fast = fake("CPU:0", gflops=10.0), fake("CPU:1", gflops=1000.0)
    placed = placement.place(order_of(y), [slow, fast])
    assert placed[y.op] is fast and placed[y.op.inputs[0].op] is fast
    assert placed[w.op] is fast and placed[x.op] is fast  # sources follow their first consumer
    placed = placement.place(order_of(y), [fast, slow])  # device order does not matter
    assert placed[y.op] is fast


def _chain():
    with tc.device("/cpu:0"):
        src = tc.constant(np.ones((512, 512), np.float32), name="src")
    w = tc.constant(np.ones((512, 512), np.float32), name="w")
    h = src
    chain = []
    for i in range(4):
        h = tc.matmul(h, w, name=f"c{i}")
        chain.append(h.op)
    return h, chain


@pytest.mark.parametrize("link_gbs, expect", [(1000.0, 1), (0.01, 0)])
def test_a_chain_stays_together_and_moves_only_when_transfers_are_cheap(link_gbs, expect):
    # The chain's input lives on CPU:0; CPU:1 computes 1.5x faster. Cheap copies: the whole chain
    # moves to CPU:1. Expensive copies (1 MB at 10 MB/s = 0.1 s against ~2 ms of compute): it
    # stays with its input. Either way it is never split.
    h, chain = _chain()
    devs = [fake("CPU:0", gflops=100.0, link_gbs=link_gbs), fake("CPU:1", gflops=150.0, link_gbs=link_gbs)]
    placed = placement.place(order_of(h), devs)
    assert {placed[op].name for op in chain} == {CPU[expect]}


def test_expensive_transfers_through_low_bandwidth_keep_the_chain_with_its_input():
    # The same through bandwidth_gbs alone (links default to the memory bandwidth): the chain is
    # compute-bound at 20 MB/s on both devices (2 GFLOP per matmul), so only the copy differs.
    with tc.device("/cpu:0"):
        src = tc.constant(np.ones((1024, 1024), np.float32), name="src")
    w = tc.constant(np.ones((1024, 1024), np.float32), name="w")
    h, chain = src, []
    for i in range(3):
        h = tc.matmul(h, w, name=f"c{i}")
        chain.append(h.op)
    for bw, expect in [(0.02, 0), (100.0, 1)]:
        devs = [fake("CPU:0", gflops=1.0, bandwidth_gbs=bw), fake("CPU:1", gflops=1.1, bandwidth_gbs=bw)]
        placed = placement.place(order_of(h), devs)
        assert {placed[op].name for op in chain} == {CPU[expect]}, bw


@pytest.mark.parametrize("link_gbs, split", [(100.0, True), (0.001, False)])
def test_independent_heavy_branches_split_only_when_transfers_are_cheap(link_gbs, split):
    with tc.device("/cpu:0"):
        x = tc.constant(np.ones((512, 512), np.float32), name="x")
    tips = []
    for b in range(2):
        w = tc.constant(np.full((512, 512), b, np.float32), name=f"w{b}")
        h = x
        for i in range(3):
            h = tc.tanh(tc.matmul(h, w), name=f"b{b}_{i}")
        tips.append(h)
    out = tc.add(tips[0], tips[1], name="join")
    devs = [fake("CPU:0", link_gbs=link_gbs), fake("CPU:1", link_gbs=link_gbs)]
    placed = placement.place(order_of(out), devs)
    branch_dev = [{placed[op].name for op in placed if op.name.startswith(f"b{b}_")} for b in range(2)]
    assert all(len(d) == 1 for d in branch_dev)  # each branch stays whole
    assert (branch_dev[0] != branch_dev[1]) is split


def test_op_cost_counts_matmul_and_conv_flops():
    a = tc.placeholder(tc.float32, [None, 64], name="a")  # unknown batch: UNKNOWN_DIM
    b = tc.constant(np.ones((64, 16), np.float32))
    flops, nbytes = placement.op_cost(tc.matmul(a, b).op)
    from tfconf.engine.shapes import UNKNOWN_DIM as n
    assert flops == 2 * n * 16 * 64
    assert nbytes == 4 * (n * 64 + 64 * 16 + n * 16)
    x = tc.placeholder(tc.float32, [2, 3, 8, 8])
    k = tc.constant(np.ones((4, 3, 3, 3), np.float32))
    y = tc.nn.conv2d(x, k, strides=1, padding="SAME")
    assert placement.op_cost(y.op)[0] == 2 * (2 * 4 * 8 * 8) * (3 * 3 * 3)
    assert placement.op_cost(tc.tanh(x).op)[0] == 2 * 3 * 8 * 8  # elementwise: one per element
    # the adjoints and the plan-only fused ops declare theirs beside their kernels
    dx, dk = tc.gradients(tc.reduce_sum(y), [x, k])
    assert placement.op_cost(dx.op)[0] == placement.op_cost(dk.op)[0] == placement.op_cost(y.op)[0]
    from tfconf.engine.ops import fused

    fm = fused.fused_matmul(tc.placeholder(tc.float32, [5, 64]), b, np.ones(16, np.float32))
    assert placement.op_cost(fm.op)[0] == 2 * 5 * 16 * 64


# ----------------------------------------------------------------------------- single device
def test_one_device_builds_no_partitions():
    x = tc.placeholder(tc.float32, [None], name="x")
    y = x + 1
    with tc.device("/cpu:0"):
        z = y * 2
    with tc.Session() as sess:
        feed = {x: np.arange(3, dtype=np.float32)}
        np.testing.assert_array_equal(sess.run(y, feed), [1, 2, 3])
        assert sess.partitions(y, feed) == {}
        assert sess.partitions(z, feed) == {}
        assert all(c.partitioned is None for c in list(sess._fast.values()) + list(sess._plans.values()))
        assert set(sess.placement(z, feed).values()) == {CPU[0]}
    with session(4) as sess:  # four devices, but a graph too small to split: still no partitions
        assert sess.partitions(y, feed) == {}


def test_the_ops_that_update_a_variable_take_its_handle_and_stay_with_it():
    # the Variables an op updates are its inputs (reference edges), so placement keeps it with
    # them from the graph alone: stripped of its colocation and pinned elsewhere, the update
    # still joins the variable's group (its pin conflicts with the variable's)
    from tfconf.engine.ops.state import variables_referenced

    with tc.device("/cpu:1"):
        v = tc.Variable(tc.zeros([2]), name="w")
    up = tc.train.MomentumOptimizer(0.1, 0.9).minimize(tc.reduce_sum(v * v))
    g = tc.get_default_graph()
    by_type = {}
    for op in g.get_operations():
        by_type.setdefault(op.type, []).append(variables_referenced(op))
    assert by_type["ApplyUpdate"] == [("w", "w/Momentum")]
    assert sorted(by_type["Assign"]) == [("w",), ("w/Momentum",)] and set(by_type["Mul"]) == {()}
    apply = next(op for op in g.get_operations() if op.type == "ApplyUpdate")
    apply.colocated_with, apply.device = None, CPU[3]
    devs = [fake(f"CPU:{i}") for i in range(4)]
    placed = placement.place(order_of(up), devs, allow_soft_placement=True)
    assert placed[apply] is placed[v.op]  # the two pins conflict: soft placement drops both
    with pytest.raises(errors.InvalidArgumentError, match="w"):
        placement.place(order_of(up), devs, allow_soft_placement=False)
