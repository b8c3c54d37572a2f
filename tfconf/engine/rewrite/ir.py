"""The plan graph: a private, rewritable copy of the ops one run signature needs.

``PlanGraph.from_graph`` copies the pruned subgraph of the user's Graph into ``PlanOp``s (each an
``Operation`` that keeps its user op in ``orig``, with its own output Tensors), so passes may
rewire, merge and replace ops freely: the user's Graph, its ops' inputs and its tensors'
consumer lists are never touched. Fed tensors stay the user's own Tensor objects (a fed value is
opaque: no pass looks through it to its producer), fetches and targets are kept up to date as
passes replace tensors, and the executor builds its plan from the result exactly as it would
from user ops: same names (variables and random generators are keyed by name), same ids, same
locations (so errors read the same).
"""

from __future__ import annotations

import collections

from ..schedule import needed_ops
from ..graph import Operation, Tensor
from ..registry import get_op_def


class PlanOp(Operation):
    """An op of a plan graph. ``orig`` is the user op it stands for (None for an op the rewriter
    made from scratch); ``absorbed`` the other user ops a fused op replaces."""

    __slots__ = ("orig", "absorbed")

    def user_ops(self):
        """The user ops whose work this op does (a fused op: in program order)."""
        ops = [o for o in self.absorbed if o is not None]
        if self.orig is not None and self.orig not in ops:
            ops.insert(0, self.orig)
        return ops

    def describe(self) -> str:
        """A fused op is described as the user op it is attributed to (``orig``), naming the ops
        it runs fused with, so an error reads in terms of the user's graph."""
        if self.absorbed:
            o = self.orig if self.orig is not None else self
            others = ", ".join(f"{u.name} ({u.type})" for u in self.user_ops() if u is not o)
            return (f"op '{o.name}' (type {o.type}, run fused with {others} as one {self.type}) "
                    f"created at {o.location}")
        return super().describe()


def _by_id(op):
    return op._id


def user_op(op):
    """The user's op behind a plan op (for errors), or ``op`` itself."""
    orig = getattr(op, "orig", None)
    return orig if orig is not None else op


class PlanGraph:
    """The ops of one plan, their fetches, targets and fed tensors, and what passes did."""

    def __init__(self, graph, fed):
        self.user_graph = graph
        self.fed = set(fed)
        self.ops = []
        self.fetches = []
        self._fetched = set()
        self.targets = []
        self._names = {}
        self._ops_by_name = collections.ChainMap(self._names, graph._ops_by_name)  # placement looks variables up
        self.stats = {}
        self.seconds = {}  # pass name -> seconds it took
        self.aliases = {}  # name of an op merged away -> the plan op that computes its value
        self.user_op_count = 0
        self.user_needed = set()  # the user ops the signature needs (before any rewrite)

    @property
    def seed(self):
        return self.user_graph.seed

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_graph(cls, graph, fetch_tensors, target_ops, feed_tensors):
        pg = cls(graph, feed_tensors)
        fed = pg.fed
        needed = needed_ops(fetch_tensors, target_ops, fed)
        tmap = {t: t for t in fed}
        omap = {}
        # NOTE: two phases: a control input added late (``_add_control_inputs``) may have a
        # higher id than the op waiting on it, so ids are not a topological order of all edges.
        for op in sorted(needed, key=lambda o: o._id):
            node = pg._make(op.name, op.op_def, (), op.attrs, [], op.device, op.location, op._id, op)
            node.outputs = tuple(Tensor(node, i, t.dtype, t._shape) for i, t in enumerate(op.outputs))
            for t, nt in zip(op.outputs, node.outputs):
                if t not in fed:
                    tmap[t] = nt
            omap[op] = node
        for op, node in omap.items():
            node.inputs = tuple(tmap[t] for t in op.inputs)
            node.control_inputs = [omap[c] for c in op.control_inputs]
            if op.colocated_with is not None:
                node.colocated_with = omap.get(op.colocated_with, op.colocated_with)
        pg.fetches = [tmap[t] for t in fetch_tensors]
        pg._fetched = set(pg.fetches)
        pg.targets = [omap[op] for op in target_ops]
        pg.user_op_count = len(graph._ops)
        pg.user_needed = needed
        return pg

    def _make(self, name, op_def, inputs, attrs, control_inputs, device, location, _id, orig, absorbed=()):
        node = PlanOp.__new__(PlanOp)  # not __init__: a plan op is not created in a user graph
        node._fill(self, name, op_def, inputs, attrs, control_inputs, device, location, _id)
        node.orig = orig
        node.absorbed = tuple(absorbed)
        self.ops.append(node)
        self._names[name] = node
        return node

    def new_op(self, type_name, inputs, attrs=None, *, like, name=None, outputs=None, absorbed=(),
               orig=None, control_inputs=None):
        """Add an op of ``type_name`` standing in for plan op ``like`` (name, device, location
        and id come from it). ``outputs`` is [(shape, dtype)] or None to run the type's shape
        inference."""
        op_def = get_op_def(type_name)
        node = self._make(name or like.name, op_def, list(inputs), dict(attrs or {}),
                          list(like.control_inputs if control_inputs is None else control_inputs),
                          like.device, like.location, like._id,
                          orig if orig is not None else getattr(like, "orig", None), absorbed)
        node.colocated_with = like.colocated_with
        specs = outputs if outputs is not None else op_def.infer(node)
        node.outputs = tuple(Tensor(node, i, dt, shp) for i, (shp, dt) in enumerate(specs))
        return node

    def clone(self, op, inputs, name):
        """A copy of ``op`` reading ``inputs`` (recomputation)."""
        node = self._make(name, op.op_def, list(inputs), op.attrs, [], op.device, op.location, op._id,
                          getattr(op, "orig", None), getattr(op, "absorbed", ()))
        node.colocated_with = op.colocated_with
        node.outputs = tuple(Tensor(node, i, t.dtype, t._shape) for i, t in enumerate(op.outputs))
        return node

    # ------------------------------------------------------------------ queries
    def producer(self, t):
        """The plan op computing ``t``, or None for a fed tensor (whose value comes from outside)."""
        return None if t in self.fed else t.op

    def consumers(self):
        """{tensor: {op reading it: None}} (an ordered set of readers), over the live ops."""
        cons = collections.defaultdict(dict)
        for op in self.ops:
            for t in op.inputs:
                cons[t][op] = None
        return cons

    def control_outputs(self):
        outs = collections.defaultdict(list)
        for op in self.ops:
            for c in op.control_inputs:
                outs[c].append(op)
        return outs

    def protected(self):
        """Tensors that must stay materialised (fetched) and ops that must stay (targets)."""
        return self._fetched, set(self.targets)

    def topo(self):
        """The live ops in a topological order (data and control edges; ties by id)."""
        # Usually the id order is one already (an op's inputs are created before it, and
        # rewritten ops take the id of the op they replace): check that in one pass.
        order = sorted(self.ops, key=_by_id)
        pos = {op: i for i, op in enumerate(order)}
        fed = self.fed
        ok = True
        for i, op in enumerate(order):
            for t in op.inputs:
                if t not in fed and pos.get(t.op, -1) >= i:
                    ok = False
                    break
            else:
                for c in op.control_inputs:
                    if pos.get(c, -1) >= i:
                        ok = False
                        break
            if not ok:
                break
        if ok:
            return order
        return self._kahn()

    def _kahn(self):
        import heapq

        live = set(self.ops)
        pending = {}
        succ = collections.defaultdict(list)
        for op in self.ops:
            preds = {t.op for t in op.inputs if t not in self.fed and t.op in live}
            preds.update(c for c in op.control_inputs if c in live)
            pending[op] = len(preds)
            for p in preds:
                succ[p].append(op)
        heap = [(op._id, i, op) for i, op in enumerate(self.ops) if pending[op] == 0]
        heapq.heapify(heap)
        index = {op: i for i, op in enumerate(self.ops)}
        order = []
        while heap:
            _, _, op = heapq.heappop(heap)
            order.append(op)
            for s in succ[op]:
                pending[s] -= 1
                if pending[s] == 0:
                    heapq.heappush(heap, (s._id, index[s], s))
        if len(order) != len(self.ops):  # pragma: no cover - a pass made a cycle
            raise AssertionError("plan rewrite produced a cycle")
        return order

    # ------------------------------------------------------------------ edits
    def replace_uses(self, old, new, consumers=None):
        """Make every reader of tensor ``old`` (and the fetch list) read ``new`` instead."""
        readers = consumers.pop(old, {}) if consumers is not None else [
            op for op in self.ops if any(t is old for t in op.inputs)]
        for op in readers:
            op.inputs = tuple(new if t is old else t for t in op.inputs)
            if consumers is not None:
                consumers[new][op] = None
        if old in self._fetched:
            self.fetches = [new if t is old else t for t in self.fetches]
            self._fetched = set(self.fetches)

    def remove(self, ops):
        """Drop ``ops`` (their outputs must be unused by then)."""
        dead = set(ops)
        self.ops = [op for op in self.ops if op not in dead]
        names = self._names
        for op in dead:
            if names.get(op.name) is op:
                del names[op.name]

    def prune(self):
        """Keep only the ops the fetches and targets need; returns how many were dropped."""
        needed = needed_ops(self.fetches, self.targets, self.fed)
        dead = [op for op in self.ops if op not in needed]
        if dead:
            self.remove(dead)
        return len(dead)

    def type_counts(self):
        return collections.Counter(op.type for op in self.ops)
