"""A graph on a cluster of one ps and two worker tasks (Ray actors on a local 2-CPU instance): the
same numbers as one process, placement and partitions by task, errors that name the op or the
task, and variables that live on the task owning their device."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tfconf as tc
from tfconf.distributed import ClusterSession, ClusterSpec, TaskFailedError

PS = "/job:ps/replica:0/task:0/device:CPU:0"
W0 = "/job:worker/replica:0/task:0/device:CPU:0"
W1 = "/job:worker/replica:0/task:1/device:CPU:0"
CLUSTER = ClusterSpec({"ps": 1, "worker": 2})


def _two_towers():
    """Parameters on the ps, one tower per worker (with a random op and a multi-output op on
    worker 1), the loss summed on worker 0, momentum updates colocated with the parameters."""
    g = tc.Graph()
    g.seed = 11
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, 6], name="x")
        with tc.device("/job:ps/task:0"):
            w = tc.Variable(tc.truncated_normal([6, 4], stddev=0.5), name="w")
            b = tc.Variable(np.zeros(4, np.float32), name="b")
        with tc.device("/job:worker/task:0"):
            t0 = tc.reduce_sum(tc.tanh(tc.matmul(x[:3], w) + b), name="tower0")
        with tc.device("/job:worker/task:1"):
            noise = tc.random_normal([4], stddev=0.1, name="noise")
            left, right = tc.split(tc.matmul(x[3:], w) + b + noise, 2, axis=1)
            t1 = tc.reduce_sum(tc.square(left)) - tc.reduce_mean(right)
        with tc.device("/job:worker/task:0"):
            loss = tc.add(t0, t1, name="loss")
        grads = tc.gradients(loss, [w, b])
        train = tc.train.MomentumOptimizer(0.05, 0.9).minimize(loss)
        init = tc.global_variables_initializer()
    return g, x, w, b, loss, grads, train, init


def _as_written():
    """A one-process config that compiles the plan as the cluster does: the same pipeline and
    rewrites, the reference kernels (a task makes its ops' own kernels), so the bits compare."""
    return tc.SessionConfig(kernels="numpy")


def _run_steps(sess, x, w, b, loss, grads, train, init, feed):
    sess.run(init)
    out = [sess.run({"loss": loss, "grads": grads}, {x: feed})]
    for _ in range(3):
        out.append(sess.run([loss, train], {x: feed})[0])
    out.append(sess.run([w, b]))
    return out


def test_a_graph_over_a_ps_and_two_workers_gives_the_numbers_of_one_process(ray_local):
    g, x, w, b, loss, grads, train, init = _two_towers()
    feed = np.random.RandomState(0).randn(7, 6).astype(np.float32)
    with tc.Session(graph=g, config=_as_written()) as sess:
        want = _run_steps(sess, x, w, b, loss, grads, train, init, feed)
    with ClusterSession(CLUSTER, graph=g) as sess:
        got = _run_steps(sess, x, w, b, loss, grads, train, init, feed)
        placement = sess.placement([loss, train], {x: feed})
        parts = sess.partitions([loss, train], {x: feed})
        info = sess.plan_info([loss, train], {x: feed})
    with tc.Session(graph=g, config=_as_written()) as sess:
        want_info = sess.plan_info([loss, train], {x: feed})
    # one compile pipeline: the cluster's plan was rewritten as the one-process plan was
    assert info.passes == want_info.passes and info.passes["conv_fusion"]["matmul_bias"] == 2
    assert info.ops_after == want_info.ops_after < info.ops_before
    assert info.stages["partition"]["partitions"] == 4  # the client's, the ps's and two workers'
    assert set(info.stages["place"]["ops_per_device"]) >= {PS, W0, W1}
    # same kernels on the same inputs: the same bits (the random op draws what it draws in one process)
    assert got[0]["loss"] == want[0]["loss"]
    for a, e in zip(got[0]["grads"], want[0]["grads"]):
        np.testing.assert_array_equal(a, e)
    assert got[1:4] == want[1:4]
    for a, e in zip(got[4], want[4]):
        np.testing.assert_array_equal(a, e)
    assert placement["w"] == placement["b"] == PS
    assert placement["tower0"] == placement["loss"] == W0 and placement["noise"] == W1
    assert all(placement[op.name] == PS for op in g.get_operations()
               if op.type == "ApplyUpdate" and op.name in placement)
    assert set(parts) == {PS, W0, W1}
    # the parameters travel from the ps to each worker, once per (tensor, task)
    sends = [s.name for s in parts[PS].sends]
    for dest in (W0, W1):
        assert f"send w:0 to {dest}" in sends and f"send b:0 to {dest}" in sends
    assert [s.name for s in parts[W1].recvs].count(f"recv w:0 from {PS}") == 1


def test_an_op_failing_on_a_task_names_the_op_and_the_session_stays_usable(ray_local):
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None], name="x")
        with tc.device("/job:worker/task:1"):
            bad = tc.reshape(x, [3, -1], name="bad")
            good = tc.reduce_sum(x * 2.0, name="good")
    with ClusterSession({"worker": 2}, graph=g) as sess:
        where = r"op 'bad' \(type Reshape\) created at .*test_runtime\.py"
        with pytest.raises(tc.errors.InvalidArgumentError, match=where) as info:
            sess.run(bad, {x: np.ones(4, np.float32)})
        assert info.value.op is bad.op  # the client's op
        assert sess.run(good, {x: np.ones(4, np.float32)}) == 8.0
        assert sess.run(bad, {x: np.ones(6, np.float32)}).shape == (3, 2)


def test_an_op_failing_inside_a_fused_op_names_the_clients_op_as_one_process_does(ray_local):
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, None], name="x")
        with tc.device("/job:worker/task:1"):
            prod = tc.matmul(x, tc.constant(np.ones((3, 4), np.float32)), name="prod")
            y = tc.nn.relu(prod + tc.constant(np.ones(4, np.float32)), name="y")
    feed = {x: np.ones((2, 5), np.float32)}  # 5 columns against a [3, 4] weight
    with tc.Session(graph=g) as sess, pytest.raises(tc.errors.OpError) as local:
        sess.run(y, feed)
    with ClusterSession({"worker": 2}, graph=g) as sess:
        assert sess.plan_info(y, {x: np.ones((2, 3), np.float32)}).types_after.get("FusedMatMul") == 1
        with pytest.raises(type(local.value)) as remote:
            sess.run(y, feed)
    assert remote.value.op is local.value.op is prod.op
    assert "run fused with" in str(remote.value) and "as one FusedMatMul" in str(remote.value)


def test_variables_live_on_the_task_that_owns_their_device(ray_local):
    g = tc.Graph()
    with g.as_default():
        with tc.device("/job:ps/task:0"):
            w = tc.Variable(np.arange(3, dtype=np.float32), name="w")
        with tc.device("/job:worker/task:1"):
            doubled = w * 2.0
        init = tc.global_variables_initializer()
    with ClusterSession(CLUSTER, graph=g) as sess:
        sess.run(init)
        assert sess.variable_tasks() == {"w": "/job:ps/task:0"}
        sess.load_variables({"w": np.array([5, 6, 7], np.float32)})
        np.testing.assert_array_equal(sess.run(doubled), [10, 12, 14])
        values = sess.variable_values(["w"])
        values["w"][0] = -1  # a copy, not the task's storage
        np.testing.assert_array_equal(sess.variable_values()["w"], [5, 6, 7])
        with pytest.raises(KeyError, match="no task holds"):
            sess.load_variables({"nope": np.zeros(1)})


@pytest.mark.parametrize("seen_by", ["the driver", "a peer"])
def test_a_dead_task_reads_the_same_whoever_meets_it_first(seen_by):
    """The driver waiting on a killed task and a peer whose Send it no longer takes race to report
    it; both must name the dead task and say it died (CI once saw the peer's wording win)."""
    from ray import exceptions as rex

    context = "" if seen_by == "the driver" else " before it took a Send from /job:worker/task:0"
    failure = TaskFailedError.from_ray("/job:worker/task:1", rex.ActorDiedError(), context)
    assert failure.task == "/job:worker/task:1"
    assert str(failure).startswith("task /job:worker/task:1 died (ActorDiedError)")
    assert TaskFailedError.from_ray("/job:worker/task:1", rex.RaySystemError("x")) is None


def test_a_dead_task_fails_the_step_naming_it(ray_local):
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None], name="x")
        with tc.device("/job:worker/task:0"):
            a = x + 1.0
        with tc.device("/job:worker/task:1"):
            y = tc.reduce_sum(a * a)
    with ClusterSession({"worker": 2}, graph=g) as sess:
        assert sess.run(y, {x: np.ones(2, np.float32)}) == 8.0
        ray_local.kill(sess._actors["/job:worker/task:1"])
        with pytest.raises(TaskFailedError, match=r"task /job:worker/task:1 died") as info:
            sess.run(y, {x: np.ones(2, np.float32)})
        assert info.value.task == "/job:worker/task:1"
        with pytest.raises(TaskFailedError, match="cannot run again"):
            sess.run(a, {x: np.ones(2, np.float32)})
