"""Shape, indexing and core ops: reshape, transpose, expand_dims, squeeze, concat, split, stack,
unstack, __getitem__/slice, gather/embedding_lookup, pad, tile, one_hot, fill/zeros/ones,
identity, add_n, placeholder_with_default, broadcast_to, shape/size/rank, stop_gradient."""

import numpy as np
import pytest

import tfconf as tc
from tests.engine.harness import check_op, run

#: the op types whose gradients this module's tests check through the harness (conftest.py
#: verifies the claim, and fails collection when an op type with a gradient is in no module's)
GRAD_CHECKS = frozenset({
    "AddN", "BroadcastTo", "ConcatV2", "ExpandDims", "Fill", "Gather", "GetItem", "Identity",
    "Pad", "PlaceholderWithDefault", "ReadVariable", "Reshape", "Split", "Squeeze", "Tile", "Transpose"
})

RNG = np.random.default_rng(2)


def rand(*shape):
    return RNG.standard_normal(shape)


# ---------------------------------------------------------------------------- reshape family
@pytest.mark.parametrize("target,want", [
    ([6, 4], (6, 4)), ([-1], (24,)), ([2, -1, 3], (2, 4, 3)), ([4, 3, 2, 1], (4, 3, 2, 1)),
])
def test_reshape(target, want):
    x = rand(2, 3, 4)
    out = check_op(lambda t: tc.reshape(t, target), [x], lambda a: a.reshape(want), dynamic=True)
    assert out[0].shape == want


def test_reshape_to_run_time_shape_tensor():
    x, y = rand(2, 3, 4), rand(6, 4)
    check_op(lambda a, b: tc.reshape(a, tc.shape(b)) * b, [x, y], lambda a, b: a.reshape(6, 4) * b,
             dynamic=True)


def test_reshape_static_shapes_and_errors():
    x = tc.placeholder(tc.float32, [None, 3, 4])
    assert tc.reshape(x, [-1, 12]).shape.as_list() == [None, 12]
    assert tc.reshape(tc.placeholder(tc.float32, [2, 6]), [3, -1]).shape.as_list() == [3, 4]
    with pytest.raises(ValueError, match="cannot reshape"):
        tc.reshape(tc.placeholder(tc.float32, [2, 3]), [4, 2])
    with pytest.raises(ValueError, match="at most one -1"):
        tc.reshape(x, [-1, -1])


@pytest.mark.parametrize("perm", [None, (0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1)], ids=str)
def test_transpose(perm):
    x = rand(2, 3, 4)
    check_op(lambda t: tc.transpose(t, perm), [x], lambda a: np.transpose(a, perm))


def test_transpose_bad_perm():
    with pytest.raises(ValueError, match="permutation"):
        tc.transpose(tc.placeholder(tc.float32, [2, 3]), [0, 0])


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_expand_dims(axis):
    x = rand(2, 3)
    check_op(lambda t: tc.expand_dims(t, axis), [x], lambda a: np.expand_dims(a, axis), dynamic=True)


@pytest.mark.parametrize("axis", [None, 1, [1, 3], -1, [-3, -1]], ids=str)
def test_squeeze(axis):
    x = rand(2, 1, 3, 1)
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    check_op(lambda t: tc.squeeze(t, axis), [x], lambda a: np.squeeze(a, np_axis))
    if axis is not None:
        check_op(lambda t: tc.squeeze(t, axis), [x], lambda a: np.squeeze(a, np_axis), dynamic=True)


def test_squeeze_errors():
    with pytest.raises(ValueError, match="not 1"):
        tc.squeeze(tc.placeholder(tc.float32, [2, 3]), [1])


# ---------------------------------------------------------------------------- concat / split / stack
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = {0: [(1, 3), (2, 3), (3, 3)], 1: [(2, 1), (2, 2), (2, 3)], -1: [(2, 1), (2, 2), (2, 3)]}[axis]
    xs = [rand(*s) for s in shapes]
    check_op(lambda *ts: tc.concat(list(ts), axis), xs, lambda *a: np.concatenate(a, axis))
    # unknown sizes along the axis: the gradient slices dy at run time (ConcatGradSlice)
    check_op(lambda *ts: tc.concat(list(ts), axis), xs, lambda *a: np.concatenate(a, axis), dynamic=True)


def test_concat_errors():
    a = tc.placeholder(tc.float32, [2, 3])
    with pytest.raises(ValueError, match="differ"):
        tc.concat([a, tc.placeholder(tc.float32, [3, 3])], 1)
    with pytest.raises(ValueError, match="out of range"):
        tc.concat([a, a], 2)
    assert tc.concat([a], 0) is a


@pytest.mark.parametrize("spec,axis,np_idx", [
    (3, 1, [2, 4]), ([1, 2, 3], 1, [1, 3]), ([2, -1], 0, [2]), ([4, 2], -1, [4]),
    (1, 1, []),  # one piece: the array itself at run time, not a 1-tuple
], ids=str)
def test_split(spec, axis, np_idx):
    x = rand(4, 6) if axis in (1, -1) else rand(4, 6)
    check_op(lambda t: tc.split(t, spec, axis=axis), [x], lambda a: np.split(a, np_idx, axis=axis))


def test_split_partial_gradient_uses_zeros_for_unused_pieces():
    # only one piece reaches the loss: the other pieces' gradients must be filled with zeros
    x = rand(3, 4)
    check_op(lambda t: tc.split(t, 2, axis=1)[1] * 2.0, [x], lambda a: a[:, 2:] * 2)


def test_split_errors():
    x = tc.placeholder(tc.float32, [4, 6])
    with pytest.raises(ValueError, match="divisible"):
        tc.split(x, 4, axis=1)
    with pytest.raises(ValueError, match="add up"):
        tc.split(x, [2, 2], axis=1)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_stack(axis):
    xs = [rand(2, 3) for _ in range(3)]
    check_op(lambda *ts: tc.stack(list(ts), axis), xs, lambda *a: np.stack(a, axis))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_unstack(axis):
    x = rand(2, 3, 4)
    check_op(lambda t: tc.unstack(t, axis=axis), [x],
             lambda a: [np.take(a, i, axis=axis) for i in range(a.shape[axis])])


# ---------------------------------------------------------------------------- slicing
KEYS = [
    1, -1, slice(1, 3), slice(None, None, -1), slice(None, None, 2), slice(-1, 0, -2),
    (slice(None), 2), (Ellipsis, 1), (None, 0), (0, None, slice(1, None), None),
    (slice(None, None, -1), Ellipsis, slice(3, 0, -2)), (1, -2, -1), (Ellipsis, None),
    (slice(5, 10),), (slice(None), slice(None), slice(2, 2)),
]


@pytest.mark.parametrize("key", KEYS, ids=str)
def test_getitem(key):
    x = rand(3, 4, 5)
    check_op(lambda t: t[key], [x], lambda a: a[key])


@pytest.mark.parametrize("key", [(slice(None, None, -1), 1), (Ellipsis, slice(1, None, 2)), (None, -1)], ids=str)
def test_getitem_dynamic_shapes(key):
    x = rand(3, 4, 5)
    check_op(lambda t: t[key], [x], lambda a: a[key], dynamic=True)


def test_getitem_static_shape_and_errors():
    x = tc.placeholder(tc.float32, [None, 4, 5])
    assert x[:, 1].shape.as_list() == [None, 5]
    assert x[0, ::-2, None].shape.as_list() == [2, 1, 5]
    assert x[..., 1:3].shape.as_list() == [None, 4, 2]
    with pytest.raises(ValueError, match="out of range"):
        tc.placeholder(tc.float32, [2, 3])[2]
    with pytest.raises(TypeError, match="gather"):
        x[tc.constant(1)]
    with pytest.raises(TypeError, match="gather"):
        x[[0, 1]]


def test_slice():
    x = rand(4, 5)
    check_op(lambda t: tc.slice(t, [1, 2], [2, -1]), [x], lambda a: a[1:3, 2:])
    check_op(lambda t: tc.slice(t, [0, 1], [-1, 3]), [x], lambda a: a[:, 1:4], dynamic=True)


# ---------------------------------------------------------------------------- gather
def test_gather_repeated_indices_accumulate():
    params = rand(5, 3)
    idx = np.array([1, 3, 1, 1, 0], dtype=np.int32)
    check_op(lambda p, i: tc.gather(p, i), [params, idx], lambda p, i: p[i])
    # explicit: the gradient of sum(gather(p, idx)) counts how often each row was taken
    g = tc.Graph()
    with g.as_default():
        p = tc.placeholder(tc.float64, [5, 3])
        (gp,) = tc.gradients(tc.reduce_sum(tc.gather(p, idx)), [p])
        with tc.Session() as s:
            v = s.run(gp, {p: params})
    np.testing.assert_array_equal(v, np.repeat(np.array([1, 3, 0, 1, 0])[:, None], 3, axis=1))


@pytest.mark.parametrize("axis,idx", [
    (0, np.array([[0, 2], [2, 2]], dtype=np.int64)),
    (1, np.array([3, 0, 3], dtype=np.int32)),
    (1, np.array([[1, 1], [0, 3]], dtype=np.int32)),
    (-1, np.array([1, 1, 0], dtype=np.int32)),
    (2, np.array([0, 1, 0], dtype=np.int32)),
    (0, np.array(2, dtype=np.int32)),
    (1, np.array(3, dtype=np.int32)),
], ids=str)
def test_gather_axes_and_index_ranks(axis, idx):
    params = rand(3, 4, 2)
    check_op(lambda p, i: tc.gather(p, i, axis=axis), [params, idx],
             lambda p, i: np.take(p, i, axis=axis))


def test_gather_dynamic_shapes():
    params = rand(4, 3)
    idx = np.array([[3, 3], [0, 3]], dtype=np.int32)
    check_op(lambda p, i: tc.gather(p, i), [params, idx], lambda p, i: p[i], dynamic=True)


def test_embedding_lookup():
    table = rand(6, 4)
    ids = np.array([[5, 0, 5], [2, 5, 5]], dtype=np.int32)
    check_op(lambda w, i: tc.nn.embedding_lookup(w, i), [table, ids], lambda w, i: w[i])


def test_gather_needs_integer_indices():
    with pytest.raises(TypeError, match="integers"):
        tc.gather(tc.placeholder(tc.float32, [3]), tc.placeholder(tc.float32, [2]))


# ---------------------------------------------------------------------------- pad / tile / one_hot
@pytest.mark.parametrize("pads", [[[1, 2], [0, 1]], [[0, 0], [3, 0]], [[2, 2], [2, 2]]], ids=str)
def test_pad(pads):
    x = rand(2, 3)
    check_op(lambda t: tc.pad(t, pads), [x], lambda a: np.pad(a, pads))
    check_op(lambda t: tc.pad(t, pads, constant_values=-1.5), [x],
             lambda a: np.pad(a, pads, constant_values=-1.5), dynamic=True)


def test_pad_errors():
    with pytest.raises(ValueError, match="CONSTANT"):
        tc.pad(tc.placeholder(tc.float32, [2]), [[1, 1]], mode="REFLECT")
    with pytest.raises(ValueError, match="rank"):
        tc.pad(tc.placeholder(tc.float32, [2]), [[1, 1], [1, 1]])


@pytest.mark.parametrize("mult", [(1, 1), (2, 1), (1, 3), (2, 3)], ids=str)
def test_tile(mult):
    x = rand(2, 3)
    check_op(lambda t: tc.tile(t, mult), [x], lambda a: np.tile(a, mult))
    check_op(lambda t: tc.tile(t, mult), [x], lambda a: np.tile(a, mult), dynamic=True)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot(axis):
    idx = np.array([[0, 2], [3, 1], [2, 2]], dtype=np.int32)
    eye = np.eye(4, dtype=np.float32)[idx]
    want = np.moveaxis(eye, -1, axis) if axis != -1 else eye
    out = run(lambda i: tc.one_hot(i, 4, axis=axis), idx)
    np.testing.assert_array_equal(out, want)
    assert out.dtype == np.float32
    on_off = run(lambda i: tc.one_hot(i, 4, on_value=5, off_value=-1, dtype=tc.int32), idx)
    np.testing.assert_array_equal(on_off, np.where(np.eye(4)[idx] > 0, 5, -1))
    assert on_off.dtype == np.int32


def test_one_hot_static_shape():
    i = tc.placeholder(tc.int32, [None, 3])
    assert tc.one_hot(i, 5).shape.as_list() == [None, 3, 5]
    assert tc.one_hot(i, 5, axis=1).shape.as_list() == [None, 5, 3]


# ---------------------------------------------------------------------------- core ops
def test_fill_zeros_ones():
    with tc.Session() as s:
        z, o = s.run([tc.zeros([2, 3]), tc.ones([3], dtype=tc.float64)])
        assert z.dtype == np.float32 and z.shape == (2, 3) and not z.any()
        assert o.dtype == np.float64 and (o == 1).all()
        zi = s.run(tc.zeros([2], dtype=tc.int32))
        assert zi.dtype == np.int32
    x = rand(2, 3)
    out = check_op(lambda t: tc.fill(tc.shape(t), tc.reduce_sum(t)) * t, [x],
                   lambda a: np.full(a.shape, a.sum()) * a, dynamic=True)
    assert out[0].shape == (2, 3)
    check_op(lambda v: tc.fill([2, 2], v), [np.float64(1.5)], lambda v: np.full((2, 2), v))
    check_op(lambda t: tc.zeros(tc.shape(t), t.dtype) + tc.ones(tc.shape(t), t.dtype) * t, [x],
             lambda a: a, dynamic=True)


def test_zeros_like_ones_like():
    x = rand(2, 3)
    check_op(lambda t: tc.zeros_like(t) + tc.ones_like(t) * 2.0 + t, [x], lambda a: a + 2)
    z = run(lambda t: tc.zeros_like(t, dtype=tc.int32), x)
    assert z.dtype == np.int32 and z.shape == (2, 3)
    g = tc.Graph()
    with g.as_default():
        p = tc.placeholder(tc.float32, [2])
        assert tc.gradients(tc.ones_like(p), [p]) == [None]


def test_identity_add_n_placeholder_with_default():
    a, b, c = rand(2, 3), rand(2, 3), rand(2, 3)
    check_op(lambda t: tc.identity(t) * 2.0, [a], lambda x: 2 * x)
    check_op(lambda x, y, z: tc.add_n([x, y, z]), [a, b, c], lambda x, y, z: x + y + z)
    check_op(lambda x, y: tc.add_n([x, y, x]), [a, b], lambda x, y: 2 * x + y, dynamic=True)
    check_op(lambda x: tc.placeholder_with_default(x, [None, 3]) * x, [a], lambda x: x * x)
    g = tc.Graph()
    with g.as_default():
        d = tc.placeholder_with_default(tc.constant([1.0, 2.0]), [None])
        with tc.Session() as s:
            np.testing.assert_array_equal(s.run(d), [1, 2])
            np.testing.assert_array_equal(s.run(d, {d: [5.0, 6.0, 7.0]}), [5, 6, 7])
    with pytest.raises(ValueError, match="does not fit"):
        tc.placeholder_with_default(tc.constant([1.0, 2.0]), [3])


def test_broadcast_to():
    x = rand(3, 1)
    check_op(lambda t: tc.broadcast_to(t, [2, 3, 4]), [x], lambda a: np.broadcast_to(a, (2, 3, 4)))
    y = rand(2, 3, 4)
    check_op(lambda t, u: tc.broadcast_to(t, tc.shape(u)) * u, [x, y],
             lambda a, b: np.broadcast_to(a, b.shape) * b, dynamic=True)
    with pytest.raises(ValueError):
        tc.broadcast_to(tc.placeholder(tc.float32, [3, 2]), [2, 3])


def test_shape_size_rank():
    x = rand(2, 3, 4)
    with tc.Graph().as_default():
        p = tc.placeholder(tc.float32, [None, 3, None])
        s_, n, r = tc.shape(p), tc.size(p), tc.rank(p)
        assert s_.shape.as_list() == [3]
        with tc.Session() as s:
            vs, vn, vr = s.run([s_, n, r], {p: x})
    np.testing.assert_array_equal(vs, [2, 3, 4])
    assert vs.dtype == np.int32 and vn == 24 and vr == 3
    assert run(lambda t: tc.shape(t, out_type=tc.int64), x).dtype == np.int64


def test_stop_gradient():
    x = rand(3)
    check_op(lambda t: t * tc.stop_gradient(t) + t, [x], lambda a: a * a + a, grad=False)
    g = tc.Graph()
    with g.as_default():
        p = tc.placeholder(tc.float64, [3])
        (gp,) = tc.gradients(tc.reduce_sum(p * tc.stop_gradient(p)), [p])
        with tc.Session() as s:
            np.testing.assert_allclose(s.run(gp, {p: x}), x)


def test_variable_reads():
    """Ops reading a Variable (its tensor, and ReadVariable) pass gradients to the variable."""
    v, x = rand(2, 3), rand(2, 3)
    check_op(lambda var, t: var.read_value() * t + tc.square(var.value()), [v, x],
             lambda a, b: a * b + a * a, variables=[0], second_order=True)
    with tc.Graph().as_default():
        var = tc.Variable(np.ones(3))
        with tc.control_dependencies([var.assign_add(np.ones(3))]):
            r = var.read_value()
        with tc.Session() as s:
            s.run(var.initializer)
            np.testing.assert_array_equal(s.run(r), [2, 2, 2])
