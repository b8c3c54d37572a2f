"""Partitioning and multi-device execution (issue 4): Send/Recv per cross-device edge, one Recv per
(tensor, device), control tokens, feeds, equal results on 1 and 4 virtual CPUs, traces that show
two devices at work, and errors that stop every partition."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine import errors
from tfconf.engine.ops.core import same_as_input
from tfconf.engine.registry import OpDef, register, registered_ops

LOCAL = "/job:localhost/replica:0/task:0"
CPU = [f"{LOCAL}/device:CPU:{i}" for i in range(4)]

if "FailingTestOp" not in registered_ops():
    @register
    class FailingTestOp(OpDef):
        """A throwaway op whose kernel fails at run time."""

        def infer(op):
            return same_as_input(op)

        def forward(xp, x):
            raise ValueError("the kernel failed on purpose")


def session(n, **kw):
    # The partition structure of the graph as written: no plan rewrites (constant folding would
    # fold these constant inputs away; tests/engine/rewrite covers rewrites on several devices).
    kw.setdefault("graph_rewrites", False)
    return tc.Session(config=tc.SessionConfig(device_count={"CPU": n}, **kw))


def in_thread(fn, timeout=10.0):
    """Run ``fn`` in a thread; fail if it does not finish in ``timeout`` s. Returns (value, error)."""
    box = {}

    def go():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"still running after {timeout} s: a partition hangs"
    return box.get("value"), box.get("error")


def steps_of(part):
    return [(s.kind, s.name) for s in part.steps]


# ----------------------------------------------------------------------------- structure
def test_one_recv_per_tensor_and_destination_device():
    with tc.device("/cpu:0"):
        x = tc.constant(np.arange(6, dtype=np.float32).reshape(2, 3), name="x")
    with tc.device("/cpu:1"):
        a, b, c = tc.exp(x, name="a"), tc.square(x, name="b"), tc.add(x, x, name="c")  # c reads x twice
        on1 = tc.add_n([a, b, c], name="on1")
    with tc.device("/cpu:2"):
        d, e = tc.negative(x, name="d"), tc.abs(x, name="e")
        on2 = tc.add(d, e, name="on2")
    with tc.device("/cpu:0"):
        total = tc.add(on1, on2, name="total")
    with session(4) as sess:
        parts = sess.partitions(total)
        got = sess.run(total)
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(got, np.exp(xv) + xv**2 + 2 * xv, rtol=1e-6)
    assert set(parts) == set(CPU[:3])  # CPU:3 has nothing to do
    recv_x = {dev: [s for s in p.recvs if s.key[0] == "t" and s.name.startswith("recv x:0")]
              for dev, p in parts.items()}
    assert len(recv_x[CPU[1]]) == 1 and len(recv_x[CPU[2]]) == 1 and recv_x[CPU[0]] == []
    sends_x = [s for s in parts[CPU[0]].sends if s.name.startswith("send x:0")]
    assert sorted(s.name.rsplit(" ", 1)[1] for s in sends_x) == [CPU[1], CPU[2]]  # one per destination
    # Every consumer on CPU:1 reads the one received slot.
    slot = recv_x[CPU[1]][0].outs
    for name in ("a", "b", "c"):
        step = next(s for s in parts[CPU[1]].steps if s.kind == "op" and s.op.name == name)
        assert set(step.ins) == {slot}
    # The results of CPU:1 and CPU:2 come back to CPU:0 through one Send/Recv each.
    assert [s.name for s in parts[CPU[0]].recvs] == [f"recv on1:0 from {CPU[1]}", f"recv on2:0 from {CPU[2]}"]


def test_sends_follow_their_producer_and_recvs_precede_their_consumer():
    with tc.device("/cpu:0"):
        x = tc.constant(np.ones((3, 3), np.float32), name="x")
        y = tc.matmul(x, x, name="y")
    with tc.device("/cpu:1"):
        z = tc.matmul(y, y, name="z")
    with tc.device("/cpu:0"):
        out = tc.add(z, y, name="out")
    with session(2) as sess:
        parts = sess.partitions(out)
        np.testing.assert_allclose(sess.run(out), np.full((3, 3), 30.0))
    p0, p1 = steps_of(parts[CPU[0]]), steps_of(parts[CPU[1]])
    assert p0 == [("op", "x"), ("op", "y"), ("send", f"send y:0 to {CPU[1]}"),
                  ("recv", f"recv z:0 from {CPU[1]}"), ("op", "out")]
    assert p1 == [("recv", f"recv y:0 from {CPU[0]}"), ("op", "z"), ("send", f"send z:0 to {CPU[0]}")]


def test_control_edges_across_devices_become_token_send_recv():
    with tc.device("/cpu:0"):
        v = tc.Variable(np.zeros((), np.float32), name="counter")
        inc = v.assign_add(1.0, name="inc")
    with tc.device("/cpu:1"):
        with tc.control_dependencies([inc]):
            marker = tc.constant(7.0, name="marker")
            done = tc.identity(marker, name="done")
    with session(2) as sess:
        sess.run(v.initializer)
        parts = sess.partitions(done)
        for _ in range(3):
            assert sess.run(done) == 7.0
        assert sess.run(v) == 3.0  # the control input ran once per run
    token_recvs = [s for s in parts[CPU[1]].recvs if s.key[0] == "c"]
    token_sends = [s for s in parts[CPU[0]].sends if s.key[0] == "c"]
    assert [s.name for s in token_recvs] == [f"recv ^inc from {CPU[0]}"]  # one token for both ops
    assert [s.key for s in token_sends] == [s.key for s in token_recvs]
    assert token_recvs[0].outs is None and token_sends[0].ins == ()  # a token carries no value
    kinds = steps_of(parts[CPU[1]])
    assert kinds.index(("recv", f"recv ^inc from {CPU[0]}")) < kinds.index(("op", "marker"))


def test_feeds_reach_other_devices_through_recv():
    x = tc.placeholder(tc.float32, [None, 2], name="x")
    with tc.device("/cpu:1"):
        y = tc.square(x, name="y")
        y2 = tc.add(x, 1.0, name="y2")
    with tc.device("/cpu:0"):
        out = tc.add(y, y2, name="out")
    with session(2) as sess:
        feed = {x: np.array([[1, 2], [3, 4]], np.float32)}
        parts = sess.partitions(out, feed)
        np.testing.assert_array_equal(sess.run(out, feed), feed[x] ** 2 + feed[x] + 1)
        np.testing.assert_array_equal(sess.run(out, {x: np.zeros((1, 2), np.float32)}), [[1, 1]])
    feed_sends = [s for s in parts[CPU[0]].sends if s.name.startswith("send feed:")]
    feed_recvs = [s for s in parts[CPU[1]].recvs if s.name.startswith("recv feed:")]
    assert len(feed_sends) == len(feed_recvs) == 1
    assert feed_sends[0].key == feed_recvs[0].key


# ----------------------------------------------------------------------------- equal results
def two_tower(explicit, width=256, batch=64):
    """Two MLP towers over the same input, concatenated, a linear head, squared loss; SGD."""
    rng = np.random.RandomState(0)
    x = tc.placeholder(tc.float32, [None, 32], name="x")
    t = tc.placeholder(tc.float32, [None, 4], name="t")
    tops = []
    for k in range(2):
        with tc.device(f"/cpu:{k + 1}" if explicit else None), tc.name_scope(f"tower{k}"):
            w1 = tc.Variable(rng.randn(32, width).astype(np.float32) * 0.1, name="w1")
            w2 = tc.Variable(rng.randn(width, width).astype(np.float32) * 0.05, name="w2")
            h = tc.tanh(tc.matmul(x, w1))
            h = tc.nn.relu(tc.matmul(h, w2))
            tops.append(h)
    with tc.device("/cpu:0" if explicit else None):
        w3 = tc.Variable(rng.randn(2 * width, 4).astype(np.float32) * 0.05, name="head")
        y = tc.matmul(tc.concat(tops, 1), w3)
        loss = tc.reduce_mean(tc.square(y - t), name="loss")
        train = tc.train.GradientDescentOptimizer(0.05).minimize(loss)
    variables = tc.trainable_variables()
    grads = tc.gradients(loss, variables)
    data = [{x: rng.randn(batch, 32).astype(np.float32), t: rng.randn(batch, 4).astype(np.float32)}
            for _ in range(4)]
    return loss, grads, train, variables, data


def run_two_tower(n, explicit):
    g = tc.Graph()
    with g.as_default():
        loss, grads, train, variables, data = two_tower(explicit)
        init = tc.global_variables_initializer()
    with tc.Session(graph=g, config=tc.SessionConfig(device_count={"CPU": n})) as sess:
        sess.run(init)
        fwd, gr = sess.run([loss, grads], data[0])
        used = set(sess.placement([loss, grads], data[0]).values()) | set(sess.placement(train, data[0]).values())
        has_parts = bool(sess.partitions(train, data[0]))
        for batch in data:
            sess.run(train, batch)
        weights = sess.run(variables)
        final = sess.run(loss, data[0])
    return fwd, gr, weights, final, used, has_parts


@pytest.mark.parametrize("explicit", [False, True], ids=["auto", "explicit"])
def test_two_towers_give_the_same_results_on_one_and_four_devices(explicit):
    one = run_two_tower(1, explicit)
    four = run_two_tower(4, explicit)
    assert len(one[4]) == 1 and not one[5]
    assert four[5], "four devices should split the two-tower net"
    if explicit:
        assert four[4] >= set(CPU[:3])  # gradient ops made outside the scopes may go anywhere
    else:
        assert len(four[4]) >= 2, "auto placement should put the towers on different devices"
    np.testing.assert_allclose(one[0], four[0], rtol=1e-6, atol=1e-7)  # forward
    for a, b in zip(one[1], four[1]):  # gradients
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(one[2], four[2]):  # weights after four SGD steps
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(one[3], four[3], rtol=1e-6)
    assert four[3] < four[0]  # and it did train


# ----------------------------------------------------------------------------- tracing
def heavy_towers(n=768, depth=3):
    outs = []
    for k in range(2):
        with tc.device(f"/cpu:{k}"):
            a = tc.constant(np.full((n, n), 1.0 / n, np.float32), name=f"a{k}")
            h = a
            for i in range(depth):
                h = tc.matmul(h, a, name=f"mm{k}_{i}")
            outs.append(tc.reduce_sum(h, name=f"sum{k}"))
    with tc.device("/cpu:0"):
        return tc.add(outs[0], outs[1], name="total")


def _overlap(stats, dev_a, dev_b):
    a = [(s.start, s.end) for s in stats if s.device == dev_a and s.type == "MatMul"]
    b = [(s.start, s.end) for s in stats if s.device == dev_b and s.type == "MatMul"]
    return any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)


def test_a_trace_shows_two_devices_working_at_the_same_time(tmp_path):
    total = heavy_towers()
    with session(2) as sess:
        sess.run(total)  # warm up (thread pool, BLAS threads)
        for _ in range(5):  # overlap depends on two threads being scheduled: allow retries
            md = tc.RunMetadata()
            value = sess.run(total, options=tc.RunOptions(trace=True), run_metadata=md)
            if _overlap(md.step_stats, CPU[0], CPU[1]):
                break
        else:
            pytest.fail("no two MatMuls on different devices overlapped in 5 traced runs")
        assert value == pytest.approx(sess.run(total), rel=1e-6)
    stats = md.step_stats
    assert {s.device for s in stats} == set(CPU[:2])
    types = {s.type for s in stats}
    assert {"MatMul", "Send", "Recv"} <= types
    names = {s.name for s in stats}
    assert {f"mm{k}_{i}" for k in range(2) for i in range(3)} <= names
    assert all(s.seconds >= 0 and s.start >= 0 and s.end >= s.start for s in stats)
    # Chrome/Perfetto JSON: one named track per device, one complete event per step.
    path = tmp_path / "trace.json"
    text = md.chrome_trace(str(path))
    trace = json.loads(path.read_text())
    assert json.loads(text) == trace
    tracks = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M"}
    assert sorted(tracks.values()) == CPU[:2]
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(events) == len(stats)
    for e in events:
        assert e["tid"] in tracks and e["dur"] >= 0 and e["ts"] >= 0
    mm = next(e for e in events if e["name"] == "mm1_0")
    assert tracks[mm["tid"]] == CPU[1]


def test_a_single_device_trace_names_its_device():
    x = tc.constant(np.ones((4, 4), np.float32))
    y = tc.matmul(x, x)
    with tc.Session() as sess:
        md = tc.RunMetadata()
        sess.run(y, options=tc.RunOptions(trace=True), run_metadata=md)
    assert {s.device for s in md.step_stats} == {CPU[0]}
    assert {s.type for s in md.step_stats} == {"Const", "MatMul"}


# ----------------------------------------------------------------------------- errors
def test_an_error_on_device_1_is_raised_and_no_partition_hangs():
    x = tc.placeholder(tc.float32, [3], name="x")
    with tc.device("/cpu:0"):
        pre = tc.square(x, name="pre")
    with tc.device("/cpu:1"):
        bad = tc.get_default_graph().create_op("FailingTestOp", [pre], {}, "bad").outputs[0]
    with tc.device("/cpu:0"):
        after = tc.add(bad, pre, name="after")  # CPU:0 waits on CPU:1's result
        fine = tc.add(pre, 1.0, name="fine")
    feed = {x: np.ones(3, np.float32)}
    with session(2) as sess:
        assert set(sess.placement(after, feed).values()) == set(CPU[:2])
        for _ in range(2):  # the session stays usable, and fails the same way again
            _, err = in_thread(lambda: sess.run(after, feed))
            assert isinstance(err, errors.InvalidArgumentError), err
            assert "'bad'" in str(err) and "FailingTestOp" in str(err)
            assert "failed on purpose" in str(err)
            assert err.op is bad.op
        value, err = in_thread(lambda: sess.run(fine, feed))
        assert err is None and list(value) == [2, 2, 2]


def test_an_error_on_device_0_releases_a_waiting_device_1():
    with tc.device("/cpu:0"):
        a = tc.constant(np.ones(3, np.float32), name="a")
        bad = tc.get_default_graph().create_op("FailingTestOp", [a], {}, "bad0").outputs[0]
    with tc.device("/cpu:1"):
        out = tc.square(bad, name="out")  # CPU:1 waits on the failed op's Send
    with session(2) as sess:
        _, err = in_thread(lambda: sess.run(out))
    assert isinstance(err, errors.InvalidArgumentError) and "'bad0'" in str(err)


# ----------------------------------------------------------------------------- concurrency
def test_concurrent_runs_on_a_four_device_session_do_not_deadlock():
    # A chain that visits every device: each pooled partition waits on another pooled one.
    x = tc.placeholder(tc.float32, [4, 16], name="x")
    h = x
    w = tc.constant(np.eye(16, dtype=np.float32))
    for i in (3, 2, 1, 3, 2, 1):
        with tc.device(f"/cpu:{i}"):
            h = tc.matmul(h, w) + 1.0
    with tc.device("/cpu:0"):
        out = tc.reduce_sum(h)
    with session(4) as sess:
        feeds = [{x: np.full((4, 16), k, np.float32)} for k in range(6)]
        expect = [sess.run(out, f) for f in feeds]
        results = {}

        def worker(k):
            for _ in range(20):
                results.setdefault(k, []).append(sess.run(out, feeds[k]))

        def all_workers():
            ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(20)
            return sum(t.is_alive() for t in ts)

        alive, err = in_thread(all_workers, timeout=30)
        assert err is None and alive == 0
    for k in range(6):
        assert results[k] == [expect[k]] * 20
