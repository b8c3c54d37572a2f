"""The pieces that need no cluster: cluster descriptions, the config sections, the shipping of ops
to a task, and the data shards whose union is the one-process batch."""

from __future__ import annotations

import numpy as np
import pytest

import tfconf as tc
from tfconf.distributed import ClusterSpec, RayUnavailable, connect
from tfconf.distributed.graphdef import rebuild, task_graph
from tfconf.distributed.sources import ShardSource
from tfconf.frontend.errors import ConfigError

from .util import LENET, load, write


def test_cluster_spec_orders_tasks_worker_first_and_rejects_bad_jobs():
    spec = ClusterSpec({"ps": 2, "worker": 2, "eval": 0})
    assert spec.tasks == [("worker", 0), ("worker", 1), ("ps", 0), ("ps", 1)]
    assert spec.num_tasks == 4 and spec.jobs == {"ps": 2, "worker": 2}
    assert ClusterSpec.of("auto").address == "auto" and ClusterSpec.of({"worker": 3}).num_tasks == 3
    with pytest.raises(ValueError, match="number of tasks, not addresses"):
        ClusterSpec({"worker": ["host1:2222", "host2:2222"]})
    with pytest.raises(ValueError, match="whole number"):
        ClusterSpec({"worker": -1})
    with pytest.raises(ValueError, match="at least one task"):
        ClusterSpec({"ps": 0})
    with pytest.raises(ValueError, match="backend must be 'ray'"):
        ClusterSpec(backend="mpi")


def test_an_address_where_nothing_listens_fails_fast_naming_it():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process is already connected to Ray")
    with pytest.raises(RayUnavailable, match=r"127\.0\.0\.1:1: nothing answers there"):
        connect("127.0.0.1:1")
    with pytest.raises(RayUnavailable, match="expected local, auto or HOST:PORT"):
        connect("somewhere")
    assert not ray.is_initialized()


def test_config_sections_are_validated_with_locations(tmp_path):
    path = write(tmp_path, "net.yaml", LENET)
    cfg = load(path, "cluster.address=auto")
    assert cfg.net.cluster.address == "auto" and cfg.net.distributed.workers == 2
    with pytest.raises(ConfigError, match=r"async\.yaml:22:\d+: distributed\.sync: asynchronous training"):
        load(write(tmp_path, "async.yaml", LENET.replace("strategy: parameter_server}",
                                                          "strategy: parameter_server, sync: false}")))
    with pytest.raises(ConfigError, match="distributed.strategy"):
        load(path, "distributed.strategy=ring")
    with pytest.raises(ConfigError, match="distributed.workers"):
        load(path, "distributed.workers=0")


def test_a_task_rebuilds_its_ops_with_their_attributes_and_stubs_for_remote_inputs(g):
    g.seed = 7
    x = tc.placeholder(tc.float32, [None, 3], name="x")
    w = tc.constant(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")
    y = tc.cast(tc.matmul(x, w), tc.float64, name="y")
    a, b = tc.split(y, 2, axis=1)
    shipped = set()
    records = task_graph([y.op, a.op, w.op], shipped)  # MatMul stays "remote": a stub
    assert {r["name"] for r in records["stubs"]} == {"MatMul"}
    other = tc.Graph()
    known = {}
    rebuild(other, known, records)
    ry = known["y"]
    assert ry.attrs["dtype"] is tc.float64  # dtypes keep their identity
    assert ry._id == y.op._id and ry.location == y.op.location
    assert ry.inputs[0].op.name == "MatMul" and ry.inputs[0]._shape == (None, 2)
    assert [t._shape for t in known[a.op.name].outputs] == [t._shape for t in a.op.outputs]
    np.testing.assert_array_equal(known["w"].attrs["value"], w.op.attrs["value"])
    again = task_graph([y.op, a.op], shipped)
    assert again["ops"] == [] and [r["name"] for r in again["stubs"]] == ["MatMul"]  # ops go once, stubs per plan


def test_a_rewritten_plan_rebuilds_on_a_task_with_its_fused_ops_whatever_their_ids(g):
    # a rewritten plan's ops: a fused op takes the id of the op it stands for, so ids are not a
    # topological order; its program steps (a tuple subclass) survive the trip
    from tfconf.engine.rewrite import RewriteConfig, rewrite_plan
    from tfconf.engine.session import Session

    x = tc.placeholder(tc.float32, [None, 4], name="x")
    w = tc.constant(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), name="w")
    y = tc.tanh(tc.exp(tc.matmul(x, w) * 0.5) - 1.0, name="y")
    pg = rewrite_plan(g, [y], [], [x], RewriteConfig())
    ops = [op for op in pg.ops if op.type != "Placeholder"]
    assert "FusedElementwise" in {op.type for op in ops}
    records = task_graph(list(reversed(ops)), set())
    records["ops"].reverse()  # consumers before producers
    other = tc.Graph()
    known = {}
    rebuild(other, known, records)
    fused = next(op for op in known.values() if op.type == "FusedElementwise")
    original = next(op for op in ops if op.type == "FusedElementwise")
    assert [type(i) for i in fused.attrs["program"]] == [type(i) for i in original.attrs["program"]]
    assert fused.attrs["program"] == original.attrs["program"]
    # and the rebuilt ops compute what the one-process session does
    xv = np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4)
    with Session(graph=g) as sess:
        want = sess.run(y, {x: xv})
    ctx = type("Ctx", (), {"xp": np, "variables": {}, "rngs": {}})()
    vals = {"x": xv}  # x is a stub on the task (fed elsewhere)

    def value(t):  # every op here has one output
        if t.op.name not in vals:
            vals[t.op.name] = t.op.op_def.make_kernel(t.op, ctx)(*[value(i) for i in t.op.inputs])
        return vals[t.op.name]

    assert fused.name == "y"
    np.testing.assert_allclose(value(fused.outputs[0]), want, rtol=1e-6)


@pytest.mark.parametrize("transform", ["", ", crop_size: 6, mirror: true"])
def test_shards_of_a_batch_are_the_rows_of_the_one_process_batch(transform):
    from tfconf.data import make_dataset

    spec = {"source": "digits", "batch_size": 40, "scale": 0.0625, "shuffle": True}
    if transform:
        spec.update(crop_size=6, mirror=True)
    whole = make_dataset({**spec, "batch_size": 120}, "train", seed=3)
    shards = [ShardSource({"data": spec, "phase": "train", "seed": 3, "shard": k, "num_shards": 3}) for k in range(3)]
    try:
        for i in (0, 1, 14, 15, 16):  # 1797 samples: batch 14 wraps into the next epoch's order
            x, y = whole.batch_at(i)
            parts = [s.batch(i) for s in shards]
            np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
            np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    finally:
        for s in shards:
            s.close()
