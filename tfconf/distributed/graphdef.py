"""What a task needs of the graph, as plain data, and its rebuilding on the task.

The master sends each task the ops placed on it (name, type, id, attributes, inputs, output shapes
and dtypes, device, creation line) and, for every input produced elsewhere, a *stub*: an op with the
producer's name and output signature that never runs (its values arrive by Recv). The task rebuilds
them as ordinary :class:`~tfconf.engine.graph.Operation` objects in a graph of its own, so the op
library's ``make_kernel(op, ctx)`` builds the same kernels it builds in one process; ids and the
graph seed are kept, so random ops draw the same numbers as in one process.

The ops are the plan's: after the compile pipeline's rewrites, a fused op carries the name of
the user op it stands for, so two plans may hold different ops of one name. A task therefore
rebuilds each rewritten plan's ops apart (``rebuild`` into a fresh namespace); a plan compiled
without rewrites ships each user op once, and later plans only name it. Variables live in the
task's store by name and random generators are keyed by op name, so both are shared by every
plan either way.
"""

from __future__ import annotations

from tfconf.engine.dtypes import DType, as_dtype
from tfconf.engine.graph import Operation


class _DT:
    """A dtype in transit (DType compares by identity, so it travels by name)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return (_DT, (self.name,))


class _Tuple:
    """A tuple subclass in transit (a fused op's program steps): its class and items."""

    __slots__ = ("cls", "items")

    def __init__(self, cls, items):
        self.cls, self.items = cls, items

    def __reduce__(self):
        return (_Tuple, (self.cls, self.items))


def _encode(value):
    if isinstance(value, DType):
        return _DT(value.name)
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, tuple):
        items = tuple(_encode(v) for v in value)
        return items if type(value) is tuple else _Tuple(type(value), items)
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value):
    if isinstance(value, _DT):
        return as_dtype(value.name)
    if isinstance(value, _Tuple):
        return value.cls(*(_decode(v) for v in value.items))
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_decode(v) for v in value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _signature(op):
    return [(t._shape, t.dtype.name) for t in op.outputs]


def op_record(op) -> dict:
    from tfconf.engine.rewrite.ir import user_op

    # a plan op's error text and the user op it stands for (a fused op: the op it is attributed to)
    return {"name": op.name, "type": op.type, "id": op._id, "attrs": _encode(op.attrs),
            "describe": op.describe(), "user_op": user_op(op).name,
            "inputs": [(t.op.name, t.value_index) for t in op.inputs], "device": op.device,
            "location": op.location, "outputs": _signature(op)}


def stub_record(op) -> dict:
    return {"name": op.name, "id": op._id, "outputs": _signature(op)}


def task_graph(ops, shipped: set) -> dict:
    """The records a task needs to run ``ops`` (its ops of one plan, any order): the ops it has
    not received before (``shipped`` holds the names it has; it is updated) and stubs for inputs
    produced on other tasks (or fed)."""
    ops = sorted(ops, key=lambda o: o._id)
    mine = {op.name for op in ops}
    new, stubs = [], {}
    for op in ops:
        for t in op.inputs:
            p = t.op
            if p.name not in mine and p.name not in shipped and p.name not in stubs:
                stubs[p.name] = stub_record(p)
        if op.name not in shipped:
            new.append(op_record(op))
            shipped.add(op.name)
    return {"ops": new, "stubs": list(stubs.values())}


class TaskOp(Operation):
    """An op rebuilt on a task: it describes itself as the master's plan op does (a fused op
    names the ops it runs fused with) and knows the client's op it stands for (``user_name``)."""

    __slots__ = ("described", "user_name")

    def describe(self) -> str:
        return self.described


def rebuild(graph, known: dict, records: dict) -> dict:
    """Add ``records`` (from :func:`task_graph`) to ``graph``; ``known`` maps op names to the ops
    rebuilt so far and is updated. Returns the stubs of this plan by name (kept apart: a producer
    that is remote for one plan may be local for another)."""
    from tfconf.engine.graph import Tensor
    from tfconf.engine.registry import get_op_def

    stubs = {}
    for rec in records["stubs"]:
        stub = Operation(graph, rec["name"], get_op_def("Placeholder"), (), {}, (), "", "<remote>")
        stub.outputs = tuple(Tensor(stub, i, as_dtype(dt), shape) for i, (shape, dt) in enumerate(rec["outputs"]))
        stub._id = rec["id"]
        stubs[rec["name"]] = stub
    # NOTE: two phases: ids are not a topological order of a rewritten plan (a fused op takes the
    # id of the op it stands for), so every op exists before any input is wired
    made = []
    for rec in records["ops"]:
        op = TaskOp(graph, rec["name"], get_op_def(rec["type"]), (), _decode(rec["attrs"]), (),
                    rec["device"], rec["location"])
        op.described, op.user_name = rec["describe"], rec["user_op"]
        op.outputs = tuple(Tensor(op, i, as_dtype(dt), shape) for i, (shape, dt) in enumerate(rec["outputs"]))
        op._id = rec["id"]
        known[op.name] = op
        made.append((op, rec))
    for op, rec in made:
        inputs = []
        for name, index in rec["inputs"]:
            producer = known.get(name) or stubs.get(name)
            if producer is None:  # pragma: no cover - the master always ships producers or stubs
                raise KeyError(f"op {rec['name']}: input {name}:{index} was never sent to this task")
            inputs.append(producer.outputs[index])
        op.inputs = tuple(inputs)
    return stubs
