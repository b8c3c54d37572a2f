"""``Variable``: state that survives ``Session.run`` calls (model weights).

A Variable is a ``VariableV2`` op (reading it yields the current value), a ``VarHandle`` op (its
``handle``: the reference edge every op that updates or tests it takes as input 0) and an
``Assign`` initializer. Used in an expression it acts as its value tensor.
"""

from __future__ import annotations

from . import shapes as S
from .graph import Tensor, get_default_graph
from .ops.core import convert_to_tensor, group

GLOBAL_VARIABLES = "variables"
TRAINABLE_VARIABLES = "trainable_variables"
LOCAL_VARIABLES = "local_variables"


class Variable:
    """``tc.Variable(initial_value, trainable=True, name=None, dtype=None, validate_shape=True)``.

    ``initial_value`` may be a tensor/array or a zero-argument callable returning one."""

    # NOTE: numpy must defer to our reflected operators (ndarray * Variable → Tensor), as for Tensor.
    __array_priority__ = 100

    def __init__(self, initial_value=None, trainable=True, name=None, dtype=None,
                 validate_shape=True, collections=None, shape=None):
        if initial_value is None:
            raise ValueError("Variable needs an initial_value (a tensor, array or callable).")
        g = get_default_graph()
        if isinstance(initial_value, Tensor):
            g = initial_value.graph
        # NOTE: like TF1's init_scope, a Variable ignores surrounding control_dependencies: the
        # VariableV2 op (read on every use) and its initializer must not re-run the enclosing
        # block's control inputs each time the variable is read or initialized.
        with g.as_default(), g.control_dependencies(None), \
                g.name_scope(name or "Variable") as scope:
            vname = scope[:-1]
            with g.name_scope("Initializer"):
                init = initial_value() if callable(initial_value) else initial_value
                init = convert_to_tensor(init, dtype=dtype)
            var_shape = S.as_shape(shape) if shape is not None else init._shape
            if validate_shape and (var_shape is None or None in var_shape):
                raise ValueError(
                    f"Variable {vname}: the initial value's shape {S.fmt(init._shape)} must be "
                    "fully defined (or pass validate_shape=False)."
                )
            # The variable op takes the scope's own name (TF: "W", not "W/W"): a name ending in
            # "/" is used verbatim.
            self._op = g.create_op("VariableV2", (), {"shape": var_shape, "dtype": init.dtype}, scope)
            self._variable = self._op.outputs[0]
            self._initial_value = init
            with g.colocate_with(self._op):
                self._handle = g.create_op("VarHandle", (), {
                    "var": self._op.name, "shape": var_shape, "dtype": init.dtype,
                    "validate_shape": validate_shape}, "ref").outputs[0]
                self._initializer_op = g.create_op("Assign", [self._handle, init], None, "Assign")
        self.trainable = trainable
        if collections is None:
            collections = [GLOBAL_VARIABLES] + ([TRAINABLE_VARIABLES] if trainable else [])
        for c in collections:
            g.add_to_collection(c, self)

    # ----------------------------------------------------------------- TF1 surface
    @property
    def name(self):
        return self._variable.name

    @property
    def op(self):
        return self._op

    @property
    def graph(self):
        return self._op.graph

    @property
    def dtype(self):
        return self._variable.dtype

    @property
    def shape(self):
        return self._variable.shape

    def get_shape(self):
        return self._variable.shape

    @property
    def device(self):
        return self._op.device

    @property
    def handle(self):
        """The reference to this variable's storage (a ``resource`` tensor), input 0 of the ops
        that update or test it."""
        return self._handle

    @property
    def initializer(self):
        return self._initializer_op

    @property
    def initial_value(self):
        return self._initial_value

    def value(self):
        return self._variable

    def read_value(self):
        """A new read of the variable that runs after the current control dependencies."""
        g = self.graph
        with g.colocate_with(self._op):
            return g.create_op("ReadVariable", [self._variable], None, "read").outputs[0]

    def _as_graph_element(self):
        return self._variable

    def eval(self, session=None):
        return self._variable.eval(session=session)

    def _assign(self, op_type, value, name):
        g = self.graph
        v = convert_to_tensor(value, dtype=self.dtype, graph=g)
        with g.colocate_with(self._op):
            return g.create_op(op_type, [self._handle, v], None, name or op_type).outputs[0]

    def assign(self, value, use_locking=False, name=None, read_value=True):
        return self._assign("Assign", value, name)

    def assign_add(self, delta, use_locking=False, name=None, read_value=True):
        return self._assign("AssignAdd", delta, name)

    def assign_sub(self, delta, use_locking=False, name=None, read_value=True):
        return self._assign("AssignSub", delta, name)

    def load(self, value, session):
        """Set the value directly from numpy (no graph op is added)."""
        import numpy as np

        arr = np.array(value, dtype=self.dtype.np)
        if not S.compatible(self._handle.op.attrs["shape"], arr.shape):
            raise ValueError(f"Cannot load shape {list(arr.shape)} into {self.name} of shape {self.shape}")
        from .devices import like

        store = session._ctx.variables
        store[self._op.name] = like(store.get(self._op.name), arr)

    def __repr__(self):
        return f"<tc.Variable '{self.name}' shape={S.fmt(self._variable._shape)} dtype={self.dtype.name}>"

    __hash__ = object.__hash__


def _forward(name):
    def method(self, *args):
        return getattr(self._variable, name)(*args)

    method.__name__ = name
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
              "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__",
              "__rpow__", "__matmul__", "__rmatmul__", "__neg__", "__abs__", "__lt__", "__le__",
              "__gt__", "__ge__", "__getitem__", "__and__", "__or__", "__xor__", "__invert__"):
    setattr(Variable, _name, _forward(_name))


def assign(ref, value, name=None):
    return ref.assign(value, name=name)


def assign_add(ref, value, name=None):
    return ref.assign_add(value, name=name)


def assign_sub(ref, value, name=None):
    return ref.assign_sub(value, name=name)


def global_variables(scope=None):
    return get_default_graph().get_collection(GLOBAL_VARIABLES, scope)


def trainable_variables(scope=None):
    return get_default_graph().get_collection(TRAINABLE_VARIABLES, scope)


def local_variables(scope=None):
    return get_default_graph().get_collection(LOCAL_VARIABLES, scope)


def variables_initializer(var_list, name="init"):
    if not var_list:
        return get_default_graph().create_op("NoOp", (), None, name)
    return group(*[v.initializer for v in var_list], name=name)


def global_variables_initializer():
    return variables_initializer(global_variables(), name="init")


def local_variables_initializer():
    return variables_initializer(local_variables(), name="init_local")


def is_variable_initialized(variable):
    g = variable.graph
    return g.create_op("IsVariableInitialized", [variable.handle], None, "IsVariableInitialized").outputs[0]

