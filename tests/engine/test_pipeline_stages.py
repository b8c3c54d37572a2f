"""The compile pipeline's stages, each alone (schedule, memory), and the pipeline that strings them
together for Session and ClusterSession (engine/pipeline.py): what each stage decided is in
plan_info."""

import types

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.memory import TRASH, Slots
from tfconf.engine.pipeline import STAGES, compile_run
from tfconf.engine.rewrite import RewriteConfig
from tfconf.engine.schedule import needed_ops, schedule


def _diamond(g):
    with g.as_default():
        x = tc.placeholder(tc.float32, [2], name="x")
        a = tc.exp(x, name="a")
        b = tc.sin(x, name="b")
        c = tc.add(a, b, name="c")
        unused = tc.cos(x, name="unused")
        d = tc.identity(c, name="d")
    return x, a, b, c, unused, d


# ---------------------------------------------------------------------------- schedule
def test_schedule_walks_back_from_the_fetches_and_orders_by_the_ready_queue():
    g = tc.Graph()
    x, a, b, c, unused, d = _diamond(g)
    order, succ = schedule([d], [], [])
    names = [op.name for op in order]
    assert names == ["x", "a", "b", "c", "d"]  # FIFO, ties in creation order; "unused" is not needed
    assert sorted(s.name for s in succ[x.op]) == ["a", "b"] and succ[d.op] == []
    # a fed tensor cuts the walk: nothing behind it is needed
    order, _ = schedule([d], [], [c])
    assert [op.name for op in order] == ["d"]
    assert set(needed_ops([d], [], {c})) == {d.op}


def test_schedule_follows_control_edges_and_reports_unfed_placeholders():
    g = tc.Graph()
    x, a, b, c, unused, d = _diamond(g)
    with g.as_default(), tc.control_dependencies([unused.op]):
        e = tc.identity(a, name="e")
    order, _ = schedule([e], [], [])
    names = [op.name for op in order]
    assert names.index("unused") < names.index("e") and "b" not in names
    seen = []
    schedule([e], [], [], check_unfed=lambda op: seen.append(op.name))
    assert sorted(seen) == sorted(names)
    with pytest.raises(RuntimeError, match="unfed x"):
        schedule([e], [], [], check_unfed=lambda op: (_ for _ in ()).throw(RuntimeError("unfed x"))
                 if op.name == "x" else None)


# ---------------------------------------------------------------------------- memory
def test_slots_die_after_their_last_reader_and_fetches_are_kept():
    g = tc.Graph()
    x, a, b, c, unused, d = _diamond(g)
    order, _ = schedule([d, a], [], [x])
    slots = Slots(order, [x], [d, a])
    s = slots.slot
    assert slots.feed_slots == [s[x]] == [1] and slots.nslots == 1 + 1 + len(order)
    at = {op.name: i for i, op in enumerate(order)}
    freed = {sl: i for i, lst in slots.frees_at.items() for sl in lst}
    assert freed[s[b]] == at["c"] and freed[s[c]] == at["d"] and freed[s[x]] == at["b"]
    assert s[a] not in freed and s[d] not in freed  # fetched
    assert slots.uses[s[x]] == 2 and slots.uses[s[c]] == 1


def test_an_output_nobody_reads_is_dropped_at_once_and_a_fed_output_goes_to_the_trash_slot():
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [4], name="x")
        parts = tc.split(x, 2, name="split")
        y = tc.exp(parts[0], name="y")
    order, _ = schedule([y], [], [x])
    slots = Slots(order, [x], [y])
    split = next(i for i, op in enumerate(order) if op.name == "split")
    assert slots.slot[parts[1]] in slots.frees_at[split]  # the unread half dies with its producer
    # fed half of a needed split: the split still runs (for the other half), its fed output is trashed
    with g.as_default():
        z = tc.exp(parts[1], name="z")
    order, _ = schedule([y, z], [], [x, parts[0]])
    assert "split" in [op.name for op in order]
    slots = Slots(order, [x, parts[0]], [y, z])
    assert slots.outs(parts[0].op, {x, parts[0]}) == (TRASH, slots.slot[parts[1]])


# ---------------------------------------------------------------------------- the pipeline
def _mlp(g):
    rng = np.random.default_rng(0)
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, 6], name="x")
        w = tc.Variable(rng.standard_normal((6, 5)).astype(np.float32), name="w")
        b = tc.Variable(np.zeros(5, np.float32), name="b")
        h = tc.nn.relu(tc.matmul(x, w) + b)
        loss = tc.reduce_sum(h * h)
        train = tc.train.GradientDescentOptimizer(0.1).minimize(loss)
    return x, loss, train


def test_plan_info_reports_every_stage():
    g = tc.Graph()
    x, loss, train = _mlp(g)
    feed = {x: np.ones((3, 6), np.float32)}
    with g.as_default():
        init = tc.global_variables_initializer()
    with tc.Session(graph=g) as sess:
        sess.run(init)
        sess.run([loss, train], feed)
        info = sess.plan_info([loss, train], feed)
    st = info.stages
    assert set(st["seconds"]) == set(STAGES) and all(v >= 0 for v in st["seconds"].values())
    assert sum(st["place"]["ops_per_device"].values()) == info.ops_after
    assert st["kernels"]["provider_kernels"] == sum(info.kernels["kernels"].values())
    assert "partition" not in st  # one device
    text = str(info)
    assert "place: /job:localhost" in text and "stage ms: resolve=" in text
    assert info.passes["conv_fusion"]["matmul_bias_relu"] == 1


def test_compile_run_takes_the_callers_kernels_memory_and_partitioning():
    from tfconf.engine.devices import local_devices
    from tfconf.engine.fetches import check_unfed as _check_unfed
    from tfconf.engine.run_config import SessionConfig

    g = tc.Graph()
    x, loss, train = _mlp(g)
    made, inplace_asked, partitioned = [], [], []
    parts = types.SimpleNamespace(parts={})
    devices = local_devices({})

    def make_kernel(op, dev, kplan):
        made.append((op.name, dev.name))
        return lambda *a: None

    c = compile_run(g, [loss, train], (x,), config=SessionConfig(), devices=devices,
                    rewrites=RewriteConfig.of(False), providers=(), make_kernel=make_kernel,
                    inplace=lambda op, k, p, dev, kp: inplace_asked.append(op.type),
                    partition=lambda plan, placement: partitioned.append(len(placement)) or parts,
                    check_unfed=_check_unfed)
    assert c.plan_graph is None and c.partitioned is parts and partitioned == [len(c.plan.steps)]
    assert c.info.stages["partition"] == {"partitions": 0, "sends": 0}
    assert sorted(n for n, _ in made) == sorted(s.op.name for s in c.plan.steps)
    assert {d for _, d in made} == {devices[0].name}
    assert c.info.passes == {} and c.where["w"] == devices[0].name
    assert inplace_asked  # the elementwise steps whose input dies were offered
    with pytest.raises(tc.errors.InvalidArgumentError, match="must feed a value for placeholder"):
        compile_run(g, [loss], (), config=SessionConfig(), devices=devices, rewrites=RewriteConfig.of(False),
                    providers=(), make_kernel=make_kernel, check_unfed=_check_unfed)
