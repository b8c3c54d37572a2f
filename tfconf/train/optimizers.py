"""TF1-style optimizers: ``minimize`` adds gradient ops and one fused update op per variable."""

from __future__ import annotations

import numpy as np

from ..engine.autodiff import gradients
from ..engine.graph import get_default_graph
from ..engine.ops.core import convert_to_tensor, group
from ..engine.variables import GLOBAL_VARIABLES, Variable, trainable_variables

GLOBAL_STEP = "global_step"


def get_global_step(graph=None):
    g = graph or get_default_graph()
    steps = g.get_collection(GLOBAL_STEP)
    return steps[0] if steps else None


def get_or_create_global_step(graph=None):
    g = graph or get_default_graph()
    step = get_global_step(g)
    if step is None:
        with g.as_default(), g.name_scope(None):
            step = Variable(np.int64(0), trainable=False, name="global_step",
                            collections=[GLOBAL_VARIABLES, GLOBAL_STEP])
    return step


class Optimizer:
    """Base class: ``minimize(loss) = apply_gradients(compute_gradients(loss))``."""

    def __init__(self, learning_rate, name):
        self._lr = learning_rate
        self._name = name
        self._slots = {}

    def compute_gradients(self, loss, var_list=None):
        var_list = list(var_list) if var_list is not None else trainable_variables()
        if not var_list:
            raise ValueError("No variables to optimize.")
        grads = gradients(loss, var_list)
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            raise ValueError(
                "No gradients provided for any variable: "
                + ", ".join(v.name for _, v in grads_and_vars)
            )
        graph = pairs[0][1].graph
        with graph.as_default(), graph.name_scope(name or self._name):
            lr = convert_to_tensor(self._lr, dtype=pairs[0][1].dtype) if not callable(self._lr) else self._lr()
            updates = []
            for g, v in pairs:
                lr_v = lr if lr.dtype == v.dtype else convert_to_tensor(self._lr, dtype=v.dtype)
                updates.append(self._apply(g, v, lr_v))
            if global_step is not None:
                with graph.control_dependencies(updates):
                    return global_step.assign_add(np.int64(1)).op
            return group(*updates, name="update")

    def minimize(self, loss, global_step=None, var_list=None, name=None):
        return self.apply_gradients(self.compute_gradients(loss, var_list), global_step, name)

    def _slot(self, var, slot_name, init=0.0):
        key = (var, slot_name)
        if key not in self._slots:
            g = var.graph
            with g.name_scope(None), g.colocate_with(var.op):
                value = np.full(var.shape.as_list(), init, dtype=var.dtype.np)
                self._slots[key] = Variable(value, trainable=False, name=f"{var.op.name}/{slot_name}")
        return self._slots[key]

    def get_slot(self, var, name):
        return self._slots.get((var, name))

    def _apply(self, grad, var, lr):  # pragma: no cover - abstract
        raise NotImplementedError


class GradientDescentOptimizer(Optimizer):
    """var ← var - lr·grad"""

    def __init__(self, learning_rate, name="GradientDescent"):
        super().__init__(learning_rate, name)

    def _apply(self, grad, var, lr):
        return var.graph.create_op("ApplyGradientDescent", [lr, grad], {"var": var.op.name}, "ApplyGradientDescent")


class MomentumOptimizer(Optimizer):
    """accum ← momentum·accum + grad; var ← var - lr·accum (Caffe's and TF's SGD with momentum)."""

    def __init__(self, learning_rate, momentum, use_nesterov=False, name="Momentum"):
        super().__init__(learning_rate, name)
        self._momentum = momentum
        self._nesterov = use_nesterov

    def _apply(self, grad, var, lr):
        acc = self._slot(var, "Momentum")
        m = convert_to_tensor(self._momentum, dtype=var.dtype)
        return var.graph.create_op(
            "ApplyMomentum", [lr, grad, m],
            {"var": var.op.name, "accum": acc.op.name, "use_nesterov": self._nesterov}, "ApplyMomentum")


class AdamOptimizer(Optimizer):
    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, name="Adam"):
        super().__init__(learning_rate, name)
        self._b = (beta1, beta2, epsilon)

    def _apply(self, grad, var, lr):
        m, v = self._slot(var, "Adam"), self._slot(var, "Adam_1")
        g = var.graph
        with g.name_scope(None):
            t = Variable(np.array(0.0, dtype=var.dtype.np), trainable=False, name=f"{var.op.name}/Adam_t")
        b1, b2, eps = self._b
        return g.create_op("ApplyAdam", [lr, grad], {
            "var": var.op.name, "m": m.op.name, "v": v.op.name, "t": t.op.name,
            "beta1": b1, "beta2": b2, "epsilon": eps}, "ApplyAdam")
