"""Errors name where they came from: a kernel failure is re-raised naming the op, its type, its
input shapes and the user line that created the op, in both executors."""

import inspect
import os

import numpy as np
import pytest

import tfconf as tc
from tfconf.engine.registry import OpDef, register


@register
class _ErrorsTestBoom(OpDef):
    """Test-only op whose kernel always raises."""

    def infer(op):
        return [(op.inputs[0]._shape, op.inputs[0].dtype)]

    def forward(xp, x, message="boom"):
        raise RuntimeError(message)


def _here():
    """``file:line`` of the caller's next line."""
    f = inspect.currentframe().f_back
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno + 1}"


@pytest.mark.parametrize("threads", [1, 3])
def test_kernel_error_names_op_type_input_shapes_and_user_line(g, threads):
    params = tc.constant(np.arange(10.0, dtype=np.float32).reshape(5, 2))
    idx = tc.placeholder(tc.int32, [None], name="idx")
    where = _here()
    picked = tc.gather(params, idx, name="pick")
    out = picked * 2.0
    with tc.Session(config=tc.SessionConfig(inter_op_threads=threads)) as sess:
        np.testing.assert_array_equal(sess.run(out, {idx: [4, 0]}), [[16.0, 18.0], [0.0, 2.0]])
        with pytest.raises(tc.errors.InvalidArgumentError) as ei:
            sess.run(out, {idx: [1, 7, 2]})
        # the session is still usable after a failed run
        np.testing.assert_array_equal(sess.run(out, {idx: [1]}), [[4.0, 6.0]])
    msg = str(ei.value)
    assert "'pick'" in msg and "Gather" in msg
    assert "[5, 2]" in msg and "[3]" in msg  # the runtime input shapes
    assert where in msg
    assert "7" in msg  # the kernel's own explanation is kept
    assert ei.value.op is picked.op
    assert isinstance(ei.value.__cause__, IndexError)


@pytest.mark.parametrize("threads", [1, 4])
def test_custom_kernel_error_is_wrapped_and_nothing_after_it_runs(g, threads):
    x = tc.placeholder(tc.float32, [2, 3], name="x")
    v = tc.Variable(0.0, name="v")
    where = _here()
    bad = g.create_op("_ErrorsTestBoom", [x * 1.0], {"message": "kaboom"}, name="exploder").outputs[0]
    with tc.control_dependencies([bad]):
        after = v.assign_add(1.0)
    with tc.Session(config=tc.SessionConfig(inter_op_threads=threads)) as sess:
        sess.run(v.initializer)
        with pytest.raises(tc.errors.OpError) as ei:
            sess.run(after, {x: np.zeros((2, 3), np.float32)})
        assert sess.run(v) == 0.0
    msg = str(ei.value)
    assert isinstance(ei.value, tc.errors.InternalError)
    assert "RuntimeError" in msg and "kaboom" in msg
    assert "'exploder'" in msg and "_ErrorsTestBoom" in msg and "[2, 3]" in msg
    assert where in msg


def test_build_time_errors_carry_the_user_line(g):
    a = tc.placeholder(tc.float32, [2, 3])
    with pytest.raises(ValueError) as ei:
        where = _here()
        tc.reshape(a, [4, 2])
    assert where in str(ei.value) and "[2, 3]" in str(ei.value)
    with pytest.raises(KeyError, match="unknown op type 'NoSuchOp'.*Known: "):
        g.create_op("NoSuchOp", [a])
