"""Graph, Operation and Tensor: the dataflow graph that is built first and run later.

A graph only records structure. It knows nothing about specific ops: each operation points to its
``OpDef`` (see ``registry.py``), which supplies shape inference, the kernel and the gradient rule.
Ops are appended in creation order, and since an op's inputs must exist before it does, creation
order is a topological order of the data edges (autodiff relies on this).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

from . import shapes as _shapes
from .dtypes import DType
from .shapes import TensorShape

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


class GraphError(Exception):
    """A graph-construction mistake; the message names the op and where user code created it."""


def _user_location():
    """file:line of the first frame outside the tfconf package (the user's line that made the op)."""
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_PKG_DIR):
        f = f.f_back
    if f is None:
        return "<unknown>"
    return f"{f.f_code.co_filename}:{f.f_lineno}"


class Tensor:
    """One output of an Operation: a symbolic handle, named ``"op_name:index"``."""

    __slots__ = ("op", "value_index", "dtype", "_shape", "_consumers", "__weakref__")
    # NOTE: numpy must defer to our reflected operators (ndarray + Tensor → Tensor.__radd__).
    __array_priority__ = 100

    def __init__(self, op, value_index, dtype: DType, shape):
        self.op = op
        self.value_index = value_index
        self.dtype = dtype
        self._shape = shape
        self._consumers = []

    @property
    def name(self) -> str:
        return f"{self.op.name}:{self.value_index}"

    @property
    def graph(self):
        return self.op.graph

    @property
    def device(self):
        return self.op.device

    @property
    def shape(self) -> TensorShape:
        return TensorShape(self._shape)

    def get_shape(self) -> TensorShape:
        return TensorShape(self._shape)

    def set_shape(self, shape):
        """Refine the static shape (TF1 semantics): the new shape must be compatible."""
        new = _shapes.as_shape(shape)
        if not _shapes.compatible(self._shape, new):
            raise ValueError(
                f"Tensor {self.name}: shape {_shapes.fmt(self._shape)} is not compatible with "
                f"{_shapes.fmt(new)}"
            )
        if self._shape is None:
            self._shape = new
        elif new is not None:
            self._shape = tuple(a if a is not None else b for a, b in zip(self._shape, new))

    def consumers(self):
        return list(self._consumers)

    def eval(self, feed_dict=None, session=None):
        return _session_for(session, self.graph).run(self, feed_dict)

    def __repr__(self):
        return f"<tc.Tensor '{self.name}' shape={_shapes.fmt(self._shape)} dtype={self.dtype.name}>"

    def __bool__(self):
        raise TypeError(
            f"Using a tc.Tensor ({self.name}) as a Python bool is not allowed: it has no value until "
            "a Session runs it. Use tc.where / tc.cond-style ops instead."
        )

    def __iter__(self):
        raise TypeError(f"Tensor {self.name} is not iterable; use tc.unstack or indexing.")

    def __len__(self):
        raise TypeError(f"len() of Tensor {self.name} is not defined; use tc.shape or .shape.")

    # Identity semantics, as in TensorFlow 1: tensors are dict keys (feed_dict). Use tc.equal for
    # elementwise equality. Operator overloads (+, *, <, ...) are attached in ops/math.py.
    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other


class Operation:
    """A node of the graph: its type, inputs, attributes and outputs."""

    __slots__ = (
        "graph", "name", "type", "op_def", "inputs", "control_inputs", "attrs", "outputs",
        "device", "location", "_id", "_ran", "_control_outputs", "colocated_with", "__weakref__",
    )

    def __init__(self, graph, name, op_def, inputs, attrs, control_inputs, device, location):
        self._fill(graph, name, op_def, inputs, attrs, control_inputs, device, location, -1)

    def _fill(self, graph, name, op_def, inputs, attrs, control_inputs, device, location, _id):
        """Set every field (``__init__``'s body; the plan copy (rewrite/ir.py) fills nodes made
        with ``__new__`` through it)."""
        self.graph = graph
        self.name = name
        self.op_def = op_def
        self.type = op_def.type_name
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.control_inputs = list(control_inputs)
        self.device = device
        self.location = location
        self.outputs = ()
        self._id = _id
        self._ran = False
        self._control_outputs = []
        self.colocated_with = None  # an op this one must share a device with (colocate_with)

    def values(self):
        return self.outputs

    def get_attr(self, name):
        return self.attrs[name]

    def run(self, feed_dict=None, session=None):
        _session_for(session, self.graph).run(self, feed_dict)

    def describe(self) -> str:
        """``'name' (type Conv2D) created at file:line`` — the prefix of every error about this op."""
        return f"op '{self.name}' (type {self.type}) created at {self.location}"

    def _add_control_inputs(self, ops):
        if self._ran:
            raise GraphError(
                f"Cannot change {self.describe()}: a Session has already run it. Graphs can only "
                "grow after they run (add new ops instead of editing old ones)."
            )
        for o in ops:
            o = self.graph._own_op(o, f"control input of {self.name}")
            if o not in self.control_inputs:
                self.control_inputs.append(o)
                o._control_outputs.append(self)

    def __repr__(self):
        ins = ", ".join(t.name for t in self.inputs)
        return f"<tc.Operation '{self.name}' type={self.type} inputs=[{ins}]>"


def _as_op(x):
    if isinstance(x, Operation):
        return x
    if isinstance(x, Tensor):
        return x.op
    op = getattr(x, "op", None)  # Variables
    if isinstance(op, Operation):
        return op
    raise TypeError(f"Expected an Operation or Tensor, received {type(x).__name__}: {x!r}")


class Graph:
    """A TensorFlow-1-style dataflow graph."""

    def __init__(self):
        self._ops = []
        self._ops_by_name = {}
        self._names_in_use = {}
        self._name_stack = ""
        self._control_stack = []
        self._device_stack = []
        self._colocation_stack = []
        self._collections = {}
        self._finalized = False
        self.seed = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- context
    @contextlib.contextmanager
    def as_default(self):
        _default_graph_stack.append(self)
        try:
            yield self
        finally:
            _default_graph_stack.pop()

    def finalize(self):
        """Make the graph read-only: creating an op afterwards raises."""
        self._finalized = True

    @property
    def finalized(self):
        return self._finalized

    @property
    def version(self) -> int:
        return len(self._ops)

    # ----------------------------------------------------------------- names
    def unique_name(self, name: str, mark_as_used: bool = True) -> str:
        """TensorFlow's uniquifier: ``add``, ``add_1``, ``add_2``... within the current name scope."""
        if self._name_stack:
            name = self._name_stack + "/" + name
        key = name.lower()
        i = self._names_in_use.get(key, 0)
        if mark_as_used:
            self._names_in_use[key] = i + 1
        if i > 0:
            base = key
            while key in self._names_in_use:
                key = f"{base}_{i}"
                i += 1
            if mark_as_used:
                self._names_in_use[key] = 1
            name = f"{name}_{i - 1}"
        return name

    @contextlib.contextmanager
    def name_scope(self, name):
        """Nest a name scope. ``"foo"`` opens a new (uniquified) scope below the current one,
        ``"foo/"`` (as yielded by an earlier ``name_scope``) re-enters that exact scope, and
        ``None``/``""`` resets to the top level."""
        old = self._name_stack
        if not name:
            new = ""
        elif name.endswith("/"):
            new = name[:-1]
        else:
            new = self.unique_name(name)
        self._name_stack = new
        try:
            yield (new + "/") if new else ""
        finally:
            self._name_stack = old

    def get_name_scope(self) -> str:
        return self._name_stack

    # ----------------------------------------------------------------- control / device
    @contextlib.contextmanager
    def control_dependencies(self, control_inputs):
        """Ops created inside run only after ``control_inputs``; ``None`` clears outer scopes."""
        if control_inputs is None:
            saved = self._control_stack
            self._control_stack = []
            try:
                yield
            finally:
                self._control_stack = saved
            return
        ops = [self._own_op(c, "control_dependencies") for c in control_inputs]
        self._control_stack.append(ops)
        try:
            yield
        finally:
            self._control_stack.pop()

    def _own_op(self, x, what):
        """``x`` as an Operation of this graph (a control input cannot cross graphs)."""
        op = _as_op(x)
        if op.graph is not self:
            raise ValueError(f"{what}: {op.name} belongs to a different graph than {self!r}.")
        return op

    @contextlib.contextmanager
    def device(self, name_or_fn):
        """Place ops created inside on a device (a name, or a function op → name). ``None`` clears."""
        from .devices import DeviceSpec, canonical_name

        if isinstance(name_or_fn, DeviceSpec):
            name_or_fn = name_or_fn.to_string()
        if isinstance(name_or_fn, str):
            canonical_name(name_or_fn)  # an invalid name fails here, where the user wrote it
        self._device_stack.append(name_or_fn)
        try:
            yield
        finally:
            self._device_stack.pop()

    @contextlib.contextmanager
    def colocate_with(self, op):
        self._colocation_stack.append(_as_op(op) if op is not None else None)
        try:
            yield
        finally:
            self._colocation_stack.pop()

    def _current_device(self, op):
        from .devices import merge_device

        dev = ""
        for d in self._device_stack:
            if d is None:
                dev = ""
            elif callable(d):
                dev = merge_device(dev, d(op) or "")
            else:
                dev = merge_device(dev, d)
        if self._colocation_stack and self._colocation_stack[-1] is not None:
            dev = self._colocation_stack[-1].device
        return dev

    # ----------------------------------------------------------------- collections
    def add_to_collection(self, name, value):
        self._collections.setdefault(name, []).append(value)

    def get_collection(self, name, scope=None):
        items = list(self._collections.get(name, ()))
        if scope is None:
            return items
        import re

        pat = re.compile(scope)
        return [v for v in items if pat.match(getattr(v, "name", "") or "")]

    def get_collection_ref(self, name):
        return self._collections.setdefault(name, [])

    def get_all_collection_keys(self):
        return list(self._collections)

    # ----------------------------------------------------------------- ops
    def create_op(self, op_type, inputs=(), attrs=None, name=None, num_outputs=None):
        """Add an op of registered type ``op_type``. Inputs must be Tensors of this graph.

        Shape and dtype inference runs here, so a mismatch fails when the op is created, naming
        the op, the shapes and the user line that made it."""
        from .registry import get_op_def

        op_def = get_op_def(op_type)
        if self._finalized:
            raise GraphError(f"Graph is finalized and cannot be modified (adding {op_type} op).")
        location = _user_location()
        for t in inputs:
            if not isinstance(t, Tensor):
                raise TypeError(f"{op_type}: inputs must be Tensors, received {type(t).__name__}")
            if t.op.graph is not self:
                raise GraphError(
                    f"{op_type} created at {location}: input {t.name} belongs to a different graph."
                )
        attrs = dict(attrs) if attrs else {}
        with self._lock:
            if name and name.endswith("/"):  # a scope name used verbatim (TF convention)
                full_name = name[:-1]
                if full_name in self._ops_by_name:
                    raise GraphError(f"Duplicate op name {full_name!r} (created at {location}).")
            else:
                full_name = self.unique_name(name or op_def.type_name)
            control = []
            for ctl in self._control_stack:
                for c in ctl:
                    if c not in control:
                        control.append(c)
            op = Operation(self, full_name, op_def, inputs, attrs, control, "", location)
            op.device = self._current_device(op)
            if self._colocation_stack and self._colocation_stack[-1] is not None:
                op.colocated_with = self._colocation_stack[-1]
            try:
                specs = op_def.infer(op)
            except (ValueError, TypeError) as e:
                raise type(e)(f"{op.describe()}: {e}") from None
            op.outputs = tuple(Tensor(op, i, dt, shp) for i, (shp, dt) in enumerate(specs))
            op._id = len(self._ops)
            self._ops.append(op)
            self._ops_by_name[full_name] = op
            for t in inputs:
                t._consumers.append(op)
            for c in control:
                c._control_outputs.append(op)
        return op

    def get_operations(self):
        return list(self._ops)

    def get_operation_by_name(self, name) -> Operation:
        try:
            return self._ops_by_name[name]
        except KeyError:
            raise KeyError(f"The graph has no operation named {name!r}.") from None

    def get_tensor_by_name(self, name) -> Tensor:
        op_name, sep, idx = name.rpartition(":")
        if not sep or not idx.isdigit():
            raise ValueError(f"Tensor names look like 'op_name:0', received {name!r}.")
        op = self.get_operation_by_name(op_name)
        i = int(idx)
        if i >= len(op.outputs):
            raise KeyError(f"Operation {op_name!r} has {len(op.outputs)} outputs; no {name!r}.")
        return op.outputs[i]

    def as_graph_element(self, obj):
        """Resolve a fetch: a Tensor, Operation, Variable or a ``"name:0"`` / ``"name"`` string."""
        if isinstance(obj, (Tensor, Operation)):
            if obj.graph is not self:
                raise ValueError(f"{obj!r} is not an element of this graph.")
            return obj
        conv = getattr(obj, "_as_graph_element", None)
        if conv is not None:
            return self.as_graph_element(conv())
        if isinstance(obj, str):
            if ":" in obj:
                return self.get_tensor_by_name(obj)
            return self.get_operation_by_name(obj)
        raise TypeError(
            f"Fetch argument {obj!r} has invalid type {type(obj).__name__}: must be a Tensor, "
            "Operation, Variable or tensor/op name string."
        )

    def as_text(self) -> str:
        """A readable dump: one line per op with its type, inputs, output shapes and device."""
        lines = []
        for op in self._ops:
            ins = [t.name for t in op.inputs] + ["^" + c.name for c in op.control_inputs]
            outs = ", ".join(f"{_shapes.fmt(t._shape)} {t.dtype.name}" for t in op.outputs)
            dev = f"  @{op.device}" if op.device else ""
            lines.append(f"{op.name} = {op.type}({', '.join(ins)}) -> ({outs}){dev}")
        return "\n".join(lines)

    def __repr__(self):
        return f"<tc.Graph with {len(self._ops)} ops>"


_default_graph = Graph()
_default_graph_stack = []


#: the sessions made the default by ``with sess:`` / ``as_default()`` / InteractiveSession, innermost
#: last (here, as in TF1's ops.py, so that Tensor.eval needs nothing above the graph)
_default_session_stack: list = []


def get_default_session():
    return _default_session_stack[-1] if _default_session_stack else None


def _session_for(session, graph):
    s = session if session is not None else get_default_session()
    if s is None:
        raise ValueError(
            "Cannot evaluate without a session: pass session=... or use `with tc.Session() as sess:`."
        )
    if s.graph is not graph:
        raise ValueError("The session's graph is not the graph of the element being evaluated.")
    return s


def get_default_graph() -> Graph:
    return _default_graph_stack[-1] if _default_graph_stack else _default_graph


def reset_default_graph():
    """Replace the global default graph with a fresh one (not allowed inside a ``with g.as_default()``)."""
    global _default_graph
    if _default_graph_stack:
        raise AssertionError("Do not use reset_default_graph() inside a graph.as_default() block.")
    _default_graph = Graph()


def name_scope(name, default_name=None, values=None):
    """``tc.name_scope(name)`` on the default graph (or on the graph of ``values``)."""
    g = get_default_graph()
    if values:
        for v in values:
            if isinstance(v, Tensor):
                g = v.graph
                break
    return g.name_scope(name if name is not None else default_name)


def control_dependencies(control_inputs):
    return get_default_graph().control_dependencies(control_inputs)


def device(name_or_fn):
    return get_default_graph().device(name_or_fn)


def colocate_with(op):
    return get_default_graph().colocate_with(op)


def add_to_collection(name, value):
    get_default_graph().add_to_collection(name, value)


def get_collection(name, scope=None):
    return get_default_graph().get_collection(name, scope)
