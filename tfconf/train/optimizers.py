"""TF1-style optimizers: ``minimize`` adds gradient ops and one fused update op per variable: the
engine's ApplyUpdate with TensorFlow's rules (the same op and rule table as Caffe's solvers)."""

from __future__ import annotations

import numpy as np

from ..engine.autodiff import gradients
from ..engine.graph import get_default_graph
from ..engine.ops.core import convert_to_tensor, group
from ..engine.ops.math import cast
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

    def _update(self, var, grad, lr, rule, slots=(), t=None, hyper=None, hyper_inputs=None):
        """The ApplyUpdate op of ``rule`` on ``var``: hyper_inputs are tensors, hyper constants."""
        named = dict(hyper_inputs or {})
        inputs = [var.handle, *(s.handle for s in slots), lr, grad] + ([t] if t is not None else []) \
            + list(named.values())
        with var.graph.colocate_with(var.op):  # the update reads and writes var's storage
            return var.graph.create_op("ApplyUpdate", inputs, {
                "rule": rule, "hyper": dict(hyper or {}), "hyper_inputs": tuple(named)}, f"Apply{self._name}")


class GradientDescentOptimizer(Optimizer):
    """var ← var - lr·grad"""

    def __init__(self, learning_rate, name="GradientDescent"):
        super().__init__(learning_rate, name)

    def _apply(self, grad, var, lr):
        return self._update(var, grad, lr, "GradientDescent")


class MomentumOptimizer(Optimizer):
    """accum ← momentum·accum + grad; var ← var - lr·accum (TF's rule; Nesterov:
    var ← var - lr·(grad + momentum·accum))."""

    def __init__(self, learning_rate, momentum, use_nesterov=False, name="Momentum"):
        super().__init__(learning_rate, name)
        self._momentum = momentum
        self._nesterov = use_nesterov

    def _apply(self, grad, var, lr):
        acc = self._slot(var, "Momentum")
        m = convert_to_tensor(self._momentum, dtype=var.dtype)
        return self._update(var, grad, lr, "Momentum", (acc,), hyper={"use_nesterov": self._nesterov},
                            hyper_inputs={"momentum": m})


class AdamOptimizer(Optimizer):
    """m ← β1·m + (1-β1)·g;  v ← β2·v + (1-β2)·g²;  var ← var - lr_t·m / (√v + ε),
    lr_t = lr·√(1-β2ᵗ)/(1-β1ᵗ), t counted by one step variable per optimizer (TF keeps β1ᵗ and
    β2ᵗ in two), advanced after every variable's update."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, name="Adam"):
        super().__init__(learning_rate, name)
        self._b = (beta1, beta2, epsilon)
        self._step = None

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if self._step is None and pairs:
            var = pairs[0][1]
            g = var.graph
            with g.as_default(), g.name_scope(None), g.colocate_with(var.op):
                self._step = Variable(np.float64(0.0), trainable=False, name=f"{self._name}_step")
        self._t = {}
        update = super().apply_gradients(grads_and_vars, global_step, name)
        g = update.graph
        with g.as_default(), g.control_dependencies([update]):
            return group(self._step.assign_add(np.float64(1.0)), name=name or f"{self._name}_finish")

    def _apply(self, grad, var, lr):
        m, v = self._slot(var, "Adam"), self._slot(var, "Adam_1")
        if var.dtype not in self._t:  # this run's t = step + 1, in the variable's dtype
            self._t[var.dtype] = cast(self._step.value() + 1.0, var.dtype)
        b1, b2, eps = self._b
        return self._update(var, grad, lr, "Adam", (m, v), t=self._t[var.dtype],
                            hyper={"momentum": b1, "momentum2": b2, "delta": eps})
