"""Every op that names a composite (``OpDef.composite``: an op kept whole only because it is faster
or more stable that way) agrees with it: the same values and, through each one's own gradient
rule, the same gradients. Coverage follows from the registry: an op with a composite and no case
below fails, and so does a case for an op without one."""

import numpy as np
import pytest

import tfconf as tc
import tfconf.engine.ops  # noqa: F401 - registers every op type of the library
from tfconf.engine import registry
from tfconf.engine.ops.core import apply_op
from tfconf.engine.ops.nn import _conv_attrs

R = np.random.default_rng(5)


def normal(*shape):
    return R.standard_normal(shape)


def positive(*shape):
    return R.uniform(0.5, 2.0, shape)


CONV = _conv_attrs(1, 1, 1, 1)

#: op type → (inputs, attrs); float inputs are fed as float64 placeholders, integer ones as constants
CASES = {
    "Rsqrt": ([positive(3, 4)], {}),
    "Softplus": ([normal(3, 4) * 4], {}),
    "Elu": ([normal(3, 4)], {}),
    "Relu": ([normal(3, 4)], {}),
    "ReluGrad": ([normal(3, 4), normal(3, 4)], {}),
    "LeakyRelu": ([normal(3, 4)], {"alpha": 0.1}),
    "SquaredDifference": ([normal(3, 4), normal(4)], {}),
    "Softmax": ([normal(3, 5) * 3], {"axis": 1}),
    "LogSoftmax": ([normal(3, 5) * 3], {"axis": 0}),
    "SoftmaxCrossEntropyWithLogits": ([normal(4, 5), R.uniform(0.1, 1.0, (4, 5))], {}),
    "SparseSoftmaxCrossEntropyWithLogits": ([normal(4, 5), np.array([0, 4, 2, 2])], {}),
    "FusedConv2D": ([normal(2, 3, 5, 5), normal(4, 3, 3, 3), normal(4, 1, 1)], dict(CONV, activation="Relu")),
    "FusedMatMul": ([normal(3, 4), normal(5, 4), normal(5)], {"activation": "Relu", "transpose_b": True}),
    "Conv2DBackpropFilterBias": ([normal(2, 3, 5, 5), normal(2, 4, 5, 5)],
                                 dict(CONV, filter_shape=(4, 3, 3, 3), bias_shape=(4, 1, 1))),
    "FusedBatchNorm": ([normal(4, 3, 2, 2) * 2 + 1], {"epsilon": 1e-5}),
    "FusedBatchNormGrad": ([normal(4, 3, 2, 2), normal(4, 3, 2, 2), normal(3), positive(3)], {"epsilon": 1e-5}),
    "ChannelAffine": ([normal(2, 3, 2, 2), normal(3), normal(3)], {}),
    "ChannelAffineGrad": ([normal(2, 3, 2, 2), normal(2, 3, 2, 2), normal(3)], {"offset": True}),
}


def _with_composite():
    return sorted(n for n, d in registry.registered_ops().items() if d.composite is not None)


def test_every_case_is_for_an_op_with_a_composite():
    assert not sorted(set(CASES) - set(_with_composite()))


@pytest.mark.parametrize("type_name", _with_composite())
def test_op_equals_its_composite(type_name):
    if type_name not in CASES:
        pytest.fail(f"{type_name} declares a composite: add its case to CASES")
    arrays, attrs = CASES[type_name]
    op_def = registry.get_op_def(type_name)
    g = tc.Graph()
    with g.as_default():
        ins = [tc.placeholder(tc.float64, a.shape) if a.dtype.kind == "f" else tc.constant(a) for a in arrays]
        fed = [t for t, a in zip(ins, arrays) if a.dtype.kind == "f"]
        got = apply_op(type_name, ins, attrs)
        want = op_def.composite(*ins, **attrs)
        got = list(got.op.outputs) if not isinstance(got, (list, tuple)) else list(got)
        want = list(want) if isinstance(want, (list, tuple)) else [want]
        assert len(got) == len(want), f"{type_name}: {len(got)} outputs, its composite {len(want)}"
        fetch = got + want
        if op_def.grad is not None and not op_def.nondifferentiable:
            # L = Σ_i Σ y_i·c_i: one cotangent per output, the same for the op and its composite
            cots = [tc.constant(R.standard_normal(t.shape.as_list())) for t in got]
            for ys in (got, want):
                loss = tc.add_n([tc.reduce_sum(y * c) for y, c in zip(ys, cots)])
                fetch += [gr if gr is not None else tc.zeros_like(x) for gr, x in zip(tc.gradients(loss, fed), fed)]
        with tc.Session(config=tc.SessionConfig(graph_rewrites=False)) as s:
            values = s.run(fetch, {t: a for t, a in zip(ins, arrays) if a.dtype.kind == "f"})
    n = len(got)
    for i, (a, b) in enumerate(zip(values[:n], values[n:2 * n])):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"{type_name} output {i}")
    grads = values[2 * n:]
    half = len(grads) // 2
    for i, (a, b) in enumerate(zip(grads[:half], grads[half:])):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10, err_msg=f"{type_name} gradient w.r.t. input {i}")
