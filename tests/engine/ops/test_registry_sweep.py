"""The harness checks itself, and the registry sweep of the op types without a gradient rule: each
must be listed below with the reason (those with one are covered by the modules' GRAD_CHECKS,
tests/engine/ops/conftest.py)."""


import numpy as np
import pytest

import tfconf as tc
import tfconf.engine.ops  # noqa: F401 - registers every op type of the library
from tfconf.engine import registry
from tests.engine.harness import GRADIENTS, away_from, check_op, distinct

#: op types that deliberately have no gradient rule (or declare nondifferentiable=True)
NOT_DIFFERENTIABLE = {
    # graph structure and state
    "Placeholder": "a graph input: gradients are taken with respect to it, never through it",
    "Const": "a constant",
    "NoOp": "has no outputs (exists for its control inputs)",
    "StopGradient": "blocks gradients by definition",
    "VariableV2": "state; gradients are taken with respect to the variable's value tensor",
    "VarHandle": "a reference to a variable's storage (resource), not a value",
    "Assign": "stateful update of a variable",
    "AssignAdd": "stateful update of a variable",
    "AssignSub": "stateful update of a variable",
    "IsVariableInitialized": "boolean output",
    "ApplyUpdate": "parameter update (solvers and optimizers): a side effect on a variable",
    # integer / boolean / metadata outputs
    "Shape": "integer metadata",
    "Size": "integer metadata",
    "Rank": "integer metadata",
    "ArgMax": "integer output",
    "ArgMin": "integer output",
    "OneHot": "integer indices in; piecewise-constant in them",
    "Equal": "boolean output", "NotEqual": "boolean output", "Less": "boolean output",
    "LessEqual": "boolean output", "Greater": "boolean output", "GreaterEqual": "boolean output",
    "LogicalAnd": "boolean output", "LogicalOr": "boolean output", "LogicalXor": "boolean output",
    "LogicalNot": "boolean output",
    "FloorDiv": "piecewise constant (TF defines no gradient)",
    "FloorMod": "discontinuous (TF defines no gradient)",
    "ZerosLike": "value does not depend on the input's values",
    "OnesLike": "value does not depend on the input's values",
    "RandomStandardNormal": "samples; mean/stddev are applied by Mul/Add, which are differentiable",
    "RandomUniform": "samples; minval/maxval are applied by Mul/Add, which are differentiable",
    "TruncatedNormal": "samples; mean/stddev are applied by Mul/Add, which are differentiable",
    # gradient helpers whose own derivative is not implemented (no second derivative through them)
    "MaxPoolGrad": "second derivative of max_pool not implemented (TF's MaxPoolGradGrad)",
    "LRNGrad": "second derivative of LRN not implemented",
    "LSTMCellGrad": "second derivative of the fused LSTM cell not implemented (TF's LSTMBlockCellGrad has none)",
    "LSTMSequenceGrad": "second derivative of the LSTM scan not implemented (cuDNN's RNN backward has none)",
    "LSTMLayerGrad": "second derivative of the LSTM layer not implemented (oneDNN's and cuDNN's RNN backward "
                     "have none)",
    "GRULayerGrad": "second derivative of the GRU layer not implemented (oneDNN's and cuDNN's RNN backward "
                    "have none)",
    "ProdGrad": "second derivative of reduce_prod not implemented",
    "ConcatGradSlice": "gradient of concat when sizes along the axis are only known at run time; "
                       "second derivatives through such a concat are not implemented",
    "Conv2DBackpropFilterBias": "made by the plan rewriter after gradients exist (engine/rewrite/fusion.py) "
                                "from two gradient ops; a second derivative differentiates those",
    "FusedElementwise": "made by the plan rewriter after gradients exist (engine/rewrite/fusion.py); "
                        "never differentiated",
}


def _library_ops():
    """Registered op types declared by tfconf itself (tests may register throwaway op types)."""
    return {n: d for n, d in registry.registered_ops().items() if d.__module__.startswith("tfconf.")}


def _has_grad(op_def):
    return op_def.grad is not None and not op_def.nondifferentiable


# ---------------------------------------------------------------------------- the harness itself
def test_harness_rejects_a_wrong_forward():
    with pytest.raises(AssertionError):
        check_op(tc.exp, [np.array([0.5, 1.0])], np.log, grad=False)
    with pytest.raises(AssertionError, match="shape"):
        check_op(tc.exp, [np.array([0.5, 1.0])], lambda a: np.exp(a)[None], grad=False)


def test_harness_rejects_a_wrong_first_derivative():
    # x · stop_gradient(x) has value x² but gradient x, not 2x
    with pytest.raises(AssertionError, match="central differences"):
        check_op(lambda t: t * tc.stop_gradient(t), [np.array([0.5, -1.0, 2.0])], lambda a: a * a)


@pytest.fixture
def bad_square_op():
    """A temporary op whose first derivative is right and whose second derivative is wrong."""
    from tfconf.engine.ops.core import apply_op

    @registry.register
    class HarnessBadSquare(registry.OpDef):
        """y = x²;  dx = 2·stop_gradient(x)·dy  (so d²y/dx² comes out 0 instead of 2)"""

        def infer(op):
            return [(op.inputs[0]._shape, op.inputs[0].dtype)]

        def forward(xp, x):
            return x * x

        def grad(op, dy):
            return [dy * (2.0 * tc.stop_gradient(op.inputs[0]))]

    try:
        yield lambda t: apply_op("HarnessBadSquare", [t])
    finally:
        registry._REGISTRY.remove("HarnessBadSquare")


def test_harness_rejects_a_wrong_second_derivative(bad_square_op):
    x = np.array([0.5, -1.0, 2.0])
    check_op(bad_square_op, [x], lambda a: a * a)  # first order is right
    with pytest.raises(AssertionError, match="second derivative"):
        check_op(bad_square_op, [x], lambda a: a * a, second_order=True)


def test_harness_flags_kinks_and_avoids_them():
    x = np.array([0.0, 1.0, -1.0])
    with pytest.raises(AssertionError, match="kink"):
        check_op(tc.nn.relu, [x], lambda a: np.maximum(a, 0))  # one-sided slopes 1 and 0 at 0
    check_op(tc.nn.relu, [x], lambda a: np.maximum(a, 0), kinks=[0.0])
    moved = away_from(np.array([0.0, 0.05, -0.01, 0.5, 2.98]), [0.0, 3.0], 0.1)
    np.testing.assert_allclose(moved, [0.1, 0.1, -0.1, 0.5, 2.9])
    d = np.sort(distinct(np.zeros((3, 4)), gap=0.05).ravel())
    assert np.all(np.diff(d) >= 0.05 - 1e-12)


def test_harness_records_checked_op_types():
    with GRADIENTS.collecting(set()) as seen:
        check_op(tc.expm1, [np.array([0.1, 0.2])], np.expm1, grad=False)
        assert "Expm1" not in seen  # no gradient checked
        check_op(tc.expm1, [np.array([0.1, 0.2])], np.expm1)
        assert "Expm1" in seen
        with pytest.raises(AssertionError):
            check_op(tc.exp, [np.array([0.5])], np.log)  # a failing check records nothing
        assert "Exp" not in seen


def test_harness_catches_a_kernel_that_changes_dtype():
    """A kernel whose run-time dtype differs from the static one fails the forward check."""
    from tfconf.engine.ops.core import apply_op

    @registry.register
    class HarnessDtypeLeak(registry.OpDef):
        """y = x, but computed in float64 whatever x is"""

        def infer(op):
            return [(op.inputs[0]._shape, op.inputs[0].dtype)]

        def forward(xp, x):
            return x.astype(np.float64)

    try:
        with pytest.raises(AssertionError, match="dtype"):
            check_op(lambda t: apply_op("HarnessDtypeLeak", [t]), [np.array([1.0, 2.0])], lambda a: a, grad=False)
    finally:
        registry._REGISTRY.remove("HarnessDtypeLeak")


# ---------------------------------------------------------------------------- the sweep
def test_not_differentiable_list_matches_the_registry():
    ops = _library_ops()
    stale = sorted(n for n in NOT_DIFFERENTIABLE if n not in ops)
    assert not stale, f"NOT_DIFFERENTIABLE lists op types that are not registered: {stale}"
    has_rule = sorted(n for n in NOT_DIFFERENTIABLE if _has_grad(ops[n]))
    assert not has_rule, f"op types listed as not differentiable now have a gradient rule: {has_rule}"
    unlisted = sorted(n for n, d in ops.items() if not _has_grad(d) and n not in NOT_DIFFERENTIABLE)
    assert not unlisted, (
        f"op types without a gradient rule must be listed in NOT_DIFFERENTIABLE with a reason: {unlisted}")
    assert all(isinstance(r, str) and r.strip() for r in NOT_DIFFERENTIABLE.values())
