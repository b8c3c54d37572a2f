"""Neural-network ops (NCHW): conv2d and conv2d_transpose, max/avg pooling, LRN, bias_add,
softmax family and the stable cross-entropies, dropout, moments, batch_normalization, l2_loss.

References are direct numpy transcriptions of the definitions (loops over kernel taps and output
windows), independent of the engine's kernels."""

import numpy as np
import pytest

import tfconf as tc
from tests.engine.harness import check_op, distinct, run

#: the op types whose gradients this module's tests check through the harness (conftest.py
#: verifies the claim, and fails collection when an op type with a gradient is in no module's)
GRAD_CHECKS = frozenset({
    "AvgPool", "ChannelAffine", "ChannelAffineGrad", "Conv2D", "Conv2DBackpropInput", "FusedBatchNorm", "FusedBatchNormGrad", "LRN",
    "LogSoftmax", "MaxPool", "Softmax", "SparseSoftmaxCrossEntropyWithLogits", "SumToShape"
})

RNG = np.random.default_rng(3)


def rand(*shape):
    return RNG.standard_normal(shape)


# ---------------------------------------------------------------------------- conv references
def same_pads(size, k, s, d):
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def explicit_pads(padding, hw, khw, strides, dil):
    if padding == "SAME":
        return same_pads(hw[0], khw[0], strides[0], dil[0]) + same_pads(hw[1], khw[1], strides[1], dil[1])
    if padding == "VALID":
        return (0, 0, 0, 0)
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def np_conv2d(x, w, strides=(1, 1), padding="VALID", dil=(1, 1), groups=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    sh, sw = strides
    dh, dw = dil
    pt, pb, pl, pr = explicit_pads(padding, (h, wd), (kh, kw), strides, dil)
    xpad = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    og = o // groups
    out = np.zeros((n, o, oh, ow))
    for g in range(groups):
        xs = xpad[:, g * cg:(g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, w[g * og:(g + 1) * og, :, i, j])
    return out


def np_conv2d_transpose(dy, w, out_shape, strides=(1, 1), padding="VALID", dil=(1, 1), groups=1):
    """The adjoint of np_conv2d w.r.t. x: scatter every output tap back into the padded input."""
    n, c, h, wd = out_shape
    o, cg, kh, kw = w.shape
    sh, sw = strides
    dh, dw = dil
    pt, pb, pl, pr = explicit_pads(padding, (h, wd), (kh, kw), strides, dil)
    _, _, oh, ow = dy.shape
    og = o // groups
    xpad = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("nohw,oc->nchw", dy[:, g * og:(g + 1) * og], w[g * og:(g + 1) * og, :, i, j])
                xpad[:, g * cg:(g + 1) * cg, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                     j * dw: j * dw + sw * (ow - 1) + 1: sw] += contrib
    return xpad[:, :, pt:pt + h, pl:pl + wd]


CONV_CASES = [
    # (x shape, w shape, strides, padding, dilations, groups)
    ((2, 3, 5, 5), (4, 3, 3, 3), (1, 1), "VALID", (1, 1), 1),
    ((1, 2, 5, 6), (3, 2, 3, 2), (2, 2), "SAME", (1, 1), 1),
    ((1, 2, 6, 5), (2, 2, 3, 3), (2, 1), "SAME", (1, 2), 1),
    ((1, 2, 4, 4), (3, 2, 2, 2), (1, 1), 1, (1, 1), 1),
    ((1, 2, 4, 5), (2, 2, 3, 3), (2, 2), (1, 2), (1, 1), 1),
    ((1, 2, 4, 4), (2, 2, 2, 3), (1, 2), (0, 1, 2, 0), (1, 1), 1),
    ((1, 2, 7, 7), (2, 2, 3, 3), (1, 1), "VALID", (2, 3), 1),
    ((2, 4, 4, 4), (6, 2, 3, 3), (1, 1), 1, (1, 1), 2),
    ((1, 6, 4, 4), (3, 2, 1, 1), (1, 1), "VALID", (1, 1), 3),
]


def _case_id(case):
    xs, ws, s, p, d, g = case
    return f"x{xs}-w{ws}-s{s}-p{p}-d{d}-g{g}".replace(" ", "")


@pytest.mark.parametrize("case", CONV_CASES, ids=_case_id)
def test_conv2d(case):
    xs, ws, s, p, d, g = case
    check_op(lambda x, w: tc.nn.conv2d(x, w, strides=s, padding=p, dilations=d, groups=g),
             [rand(*xs), rand(*ws)], lambda x, w: np_conv2d(x, w, s, p, d, g), rtol32=1e-4, atol32=1e-5)


def test_conv2d_run_time_batch_and_spatial_size():
    x, w = rand(2, 2, 5, 4), rand(3, 2, 3, 3)
    check_op(lambda a, b: tc.nn.conv2d(a, b, strides=2, padding="SAME"), [x, w],
             lambda a, b: np_conv2d(a, b, (2, 2), "SAME"), rtol32=1e-4, atol32=1e-5, dynamic=[0])


def test_conv2d_tf_style_strides_and_static_shape():
    x = tc.placeholder(tc.float32, [None, 3, 8, 8])
    w = tc.placeholder(tc.float32, [5, 3, 3, 3])
    assert tc.nn.conv2d(x, w, strides=[1, 1, 2, 2], padding="SAME").shape.as_list() == [None, 5, 4, 4]
    assert tc.nn.conv2d(x, w, padding="VALID").shape.as_list() == [None, 5, 6, 6]
    assert tc.nn.conv2d(x, w, padding=(1, 2)).shape.as_list() == [None, 5, 8, 10]
    assert tc.nn.conv2d(x, w, padding=[[1, 0], [2, 1]]).shape.as_list() == [None, 5, 7, 9]
    assert tc.nn.conv2d(x, w, padding=(0, 1, 2, 3)).shape.as_list() == [None, 5, 7, 11]
    with pytest.raises(ValueError, match="channels"):
        tc.nn.conv2d(x, tc.placeholder(tc.float32, [5, 2, 3, 3]))
    with pytest.raises(ValueError, match="does not fit"):
        tc.nn.conv2d(tc.placeholder(tc.float32, [1, 3, 2, 2]), w)
    with pytest.raises(ValueError, match="NCHW"):
        tc.nn.conv2d(x, w, data_format="NHWC")


TRANSPOSE_CASES = [
    # (dy shape, w shape, output shape, strides, padding, dilations, groups)
    ((1, 3, 3, 3), (3, 2, 3, 3), (1, 2, 5, 5), (1, 1), "VALID", (1, 1), 1),
    ((2, 3, 2, 3), (3, 2, 3, 3), (2, 2, 5, 7), (2, 2), "VALID", (1, 1), 1),
    ((1, 3, 2, 3), (3, 2, 3, 3), (1, 2, 6, 8), (2, 2), "VALID", (1, 1), 1),  # extra row/col untouched
    ((1, 2, 3, 3), (2, 3, 3, 3), (1, 3, 5, 6), (2, 2), "SAME", (1, 1), 1),
    ((1, 4, 4, 4), (4, 1, 2, 2), (1, 2, 4, 4), (1, 1), (0, 1, 0, 1), (1, 1), 2),
    ((1, 2, 3, 3), (2, 2, 2, 2), (1, 2, 6, 6), (1, 1), "VALID", (3, 3), 1),
]


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: f"dy{c[0]}-out{c[2]}-s{c[3]}-p{c[4]}-d{c[5]}-g{c[6]}".replace(" ", ""))
def test_conv2d_transpose(case):
    dys, ws, out, s, p, d, g = case
    check_op(lambda y, w: tc.nn.conv2d_transpose(y, w, out, strides=s, padding=p, dilations=d, groups=g),
             [rand(*dys), rand(*ws)], lambda y, w: np_conv2d_transpose(y, w, out, s, p, d, g),
             rtol32=1e-4, atol32=1e-5)


def test_conv2d_transpose_is_the_adjoint_of_conv2d():
    x, w = rand(2, 4, 6, 5), rand(6, 2, 3, 3)
    kw = dict(strides=(2, 1), padding="SAME", dilations=(1, 2), groups=2)
    y = run(lambda a, b: tc.nn.conv2d(a, b, **kw), x, w, dtype=tc.float64)
    dy = rand(*y.shape)
    xt = run(lambda a, b: tc.nn.conv2d_transpose(a, b, x.shape, **kw), dy, w, dtype=tc.float64)
    np.testing.assert_allclose(np.sum(y * dy), np.sum(x * xt), rtol=1e-10)


@pytest.mark.torch
def test_conv2d_and_transpose_match_torch():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x, w = rand(2, 4, 7, 6), rand(6, 2, 3, 3)
    got = run(lambda a, b: tc.nn.conv2d(a, b, strides=2, padding=1, dilations=(1, 2), groups=2), x, w,
              dtype=tc.float64)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1, dilation=(1, 2), groups=2)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)
    dy = rand(*got.shape)
    got_t = run(lambda a, b: tc.nn.conv2d_transpose(a, b, x.shape, strides=2, padding=1, dilations=(1, 2), groups=2),
                dy, w, dtype=tc.float64)
    want_t = F.conv_transpose2d(torch.from_numpy(dy), torch.from_numpy(w), stride=2, padding=1,
                                output_padding=(0, 1), dilation=(1, 2), groups=2)
    np.testing.assert_allclose(got_t, want_t.numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- pooling
def np_pool(x, k, s, padding, ceil_mode, kind, count_include_pad=True):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw) = k, s
    if padding == "SAME":
        pt, pb = same_pads(h, kh, sh, 1)
        pl, pr = same_pads(w, kw, sw, 1)
    else:
        pt, pb, pl, pr = explicit_pads(padding, (h, w), k, s, (1, 1))

    def out_size(size, kk, ss, pa, pz):
        if padding == "SAME":
            return -(-size // ss)
        num = size + pa + pz - kk
        o = (-(-num // ss) if ceil_mode else num // ss) + 1
        if ceil_mode and (o - 1) * ss >= size + pa:  # the last window must start inside
            o -= 1
        return o

    oh, ow = out_size(h, kh, sh, pt, pb), out_size(w, kw, sw, pl, pr)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws_ = i * sh - pt, j * sw - pl
            he, we = min(hs + kh, h + pb), min(ws_ + kw, w + pr)
            area = (he - hs) * (we - ws_)
            hs0, ws0, he0, we0 = max(hs, 0), max(ws_, 0), min(he, h), min(we, w)
            win = x[:, :, hs0:he0, ws0:we0]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            else:
                div = area if count_include_pad else (he0 - hs0) * (we0 - ws0)
                out[:, :, i, j] = win.sum(axis=(2, 3)) / div
    return out


POOL_CASES = [
    # (x shape, ksize, strides, padding, ceil_mode)
    ((2, 2, 4, 4), (2, 2), (2, 2), "VALID", False),
    ((1, 2, 5, 5), (3, 3), (2, 2), "VALID", False),
    ((1, 2, 6, 6), (3, 3), (2, 2), "VALID", True),   # Caffe rounding: 3x3 out, not 2x2
    ((1, 2, 6, 7), (3, 3), (2, 2), 1, True),         # Caffe pad 1 + ceil
    ((1, 1, 5, 6), (3, 2), (2, 3), (1, 0, 0, 1), False),
    ((1, 2, 5, 5), (3, 3), (2, 2), "SAME", False),
    ((1, 1, 6, 4), (2, 2), (1, 1), "SAME", False),
    ((1, 1, 7, 7), (3, 3), (3, 3), "VALID", True),
]


def _pool_id(c):
    return f"x{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-ceil{c[4]}".replace(" ", "")


@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
def test_max_pool(case):
    xs, k, s, p, ceil = case
    x = distinct(np.zeros(xs), gap=0.05)  # no ties inside a window
    check_op(lambda t: tc.nn.max_pool(t, k, s, padding=p, ceil_mode=ceil), [x],
             lambda a: np_pool(a, k, s, p, ceil, "max"))


@pytest.mark.parametrize("count_include_pad", [None, True, False])
@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_id)
def test_avg_pool(case, count_include_pad):
    xs, k, s, p, ceil = case
    cip = (p != "SAME") if count_include_pad is None else count_include_pad
    check_op(lambda t: tc.nn.avg_pool(t, k, s, padding=p, ceil_mode=ceil, count_include_pad=count_include_pad),
             [rand(*xs)], lambda a: np_pool(a, k, s, p, ceil, "avg", cip))


def test_pool_dynamic_shapes():
    x = distinct(np.zeros((2, 1, 5, 6)))
    check_op(lambda t: tc.nn.max_pool(t, 3, 2, padding=1, ceil_mode=True), [x],
             lambda a: np_pool(a, (3, 3), (2, 2), 1, True, "max"), dynamic=True)
    check_op(lambda t: tc.nn.avg_pool(t, 2, 2, padding="SAME"), [x],
             lambda a: np_pool(a, (2, 2), (2, 2), "SAME", False, "avg", False), dynamic=True)


def test_max_pool_ties_route_to_the_first_maximum():
    x = np.zeros((1, 1, 2, 2))
    g = tc.Graph()
    with g.as_default():
        p = tc.placeholder(tc.float64, [1, 1, 2, 2])
        (gp,) = tc.gradients(tc.nn.max_pool(p, 2, 2), [p])
        with tc.Session() as s:
            v = s.run(gp, {p: x})
    np.testing.assert_array_equal(v[0, 0], [[1, 0], [0, 0]])


@pytest.mark.torch
def test_pooling_matches_torch_ceil_mode():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x = rand(2, 3, 7, 6)
    got = run(lambda t: tc.nn.max_pool(t, 3, 2, padding=1, ceil_mode=True), x, dtype=tc.float64)
    want = F.max_pool2d(torch.from_numpy(x), 3, 2, padding=1, ceil_mode=True)
    np.testing.assert_allclose(got, want.numpy())
    got = run(lambda t: tc.nn.avg_pool(t, 3, 2, padding=1, ceil_mode=True), x, dtype=tc.float64)
    want = F.avg_pool2d(torch.from_numpy(x), 3, 2, padding=1, ceil_mode=True, count_include_pad=True)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------- LRN
def np_lrn(x, r, bias, alpha, beta):
    c = x.shape[1]
    sq = np.zeros_like(x)
    for i in range(c):
        sq[:, i] = (x[:, max(0, i - r): min(c, i + r + 1)] ** 2).sum(axis=1)
    return x / (bias + alpha * sq) ** beta


@pytest.mark.parametrize("r,bias,alpha,beta", [(2, 1.0, 0.1, 0.75), (1, 2.0, 1e-1, 0.5), (5, 1.0, 0.05, 0.75),
                                               (0, 1.0, 0.3, 1.0)])
def test_lrn(r, bias, alpha, beta):
    x = rand(2, 5, 2, 3)
    check_op(lambda t: tc.nn.lrn(t, r, bias, alpha, beta), [x], lambda a: np_lrn(a, r, bias, alpha, beta))


def test_lrn_caffe_mapping():
    """Caffe LRN(local_size=5, alpha=1e-4·5, beta=0.75, k=1) == TF LRN(r=2, alpha=1e-4, bias=1)."""
    x = rand(1, 7, 2, 2) * 10
    out = run(lambda t: tc.nn.local_response_normalization(t, depth_radius=2, bias=1.0, alpha=5e-4 / 5, beta=0.75),
              x, dtype=tc.float64)
    caffe = np.empty_like(x)
    for ch in range(7):
        win = x[:, max(0, ch - 2): ch + 3]
        caffe[:, ch] = x[:, ch] / (1 + 5e-4 / 5 * (win ** 2).sum(1)) ** 0.75
    np.testing.assert_allclose(out, caffe, rtol=1e-12)


# ---------------------------------------------------------------------------- bias_add, l2, moments
def test_bias_add():
    check_op(tc.nn.bias_add, [rand(2, 3, 2, 2), rand(3)], lambda x, b: x + b[None, :, None, None])
    check_op(tc.nn.bias_add, [rand(2, 3, 4), rand(3)], lambda x, b: x + b[None, :, None])
    check_op(tc.nn.bias_add, [rand(4, 3), rand(3)], lambda x, b: x + b, dynamic=True)


def test_l2_loss():
    check_op(tc.nn.l2_loss, [rand(3, 4)], lambda x: np.sum(x * x) / 2)


@pytest.mark.parametrize("axes,keepdims", [([0], False), ([0, 2, 3], False), ([0, 2, 3], True), ([1], True)],
                         ids=str)
def test_moments(axes, keepdims):
    x = rand(3, 2, 2, 2)
    check_op(lambda t: tc.nn.moments(t, axes, keepdims=keepdims), [x],
             lambda a: (a.mean(tuple(axes), keepdims=keepdims), a.var(tuple(axes), keepdims=keepdims)))


def test_moments_dynamic_batch():
    check_op(lambda t: tc.nn.moments(t, [0]), [rand(5, 3)], lambda a: (a.mean(0), a.var(0)), dynamic=True)


def test_batch_normalization():
    x = rand(4, 3)
    m, v, off, sc = rand(3), np.abs(rand(3)) + 0.5, rand(3), rand(3)
    check_op(lambda a, b, c, d, e: tc.nn.batch_normalization(a, b, c, d, e, 1e-3), [x, m, v, off, sc],
             lambda a, b, c, d, e: (a - b) * e / np.sqrt(c + 1e-3) + d)
    check_op(lambda a, b, c: tc.nn.batch_normalization(a, b, c, None, None, 1e-3), [x, m, v],
             lambda a, b, c: (a - b) / np.sqrt(c + 1e-3))


def _np_batch_norm(a, eps=1e-3):
    axes = (0,) + tuple(range(2, a.ndim))
    m, v = a.mean(axes), a.var(axes)
    shape = (1, -1) + (1,) * (a.ndim - 2)
    return (a - m.reshape(shape)) / np.sqrt(v.reshape(shape) + eps), m, v


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 3, 2), (2, 3, 2, 2, 2)], ids=str)
def test_fused_batch_norm(shape):
    # y, mean and variance all differentiated (the statistics through their composite), and the
    # gradient op's own gradient (second order) through FusedBatchNormGrad's composite
    from tfconf.engine.ops.nn import fused_batch_norm_training

    check_op(lambda t: fused_batch_norm_training(t, 1e-3), [rand(*shape)], _np_batch_norm,
             second_order=True, dynamic=len(shape) == 4)


def test_fused_batch_norm_rejects_rank_1_and_integers():
    from tfconf.engine.ops.nn import fused_batch_norm_training

    with pytest.raises(ValueError, match="rank >= 2"):
        fused_batch_norm_training(tc.constant(np.ones(3, np.float32)))
    with pytest.raises(TypeError, match="floating"):
        fused_batch_norm_training(tc.constant(np.ones((2, 3), np.int32)))


@pytest.mark.parametrize("shape,offset", [((4, 3), True), ((3, 2, 3, 2), True), ((3, 2, 3, 2), False),
                                          ((2, 3, 2, 2, 2), True)], ids=str)
def test_channel_affine(shape, offset):
    from tfconf.engine.ops.nn import channel_affine

    c = shape[1]
    b = (1, -1) + (1,) * (len(shape) - 2)
    inputs = [rand(*shape), rand(c)] + ([rand(c)] if offset else [])
    if offset:
        check_op(lambda x, s, o: channel_affine(x, s, o), inputs,
                 lambda x, s, o: x * s.reshape(b) + o.reshape(b), second_order=True, dynamic=[0])
    else:
        check_op(lambda x, s: channel_affine(x, s), inputs, lambda x, s: x * s.reshape(b), second_order=True)


def test_channel_affine_rejects_wrong_operands():
    from tfconf.engine.ops.nn import channel_affine

    x = tc.constant(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"must be \[C\]"):
        channel_affine(x, tc.constant(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match="rank >= 2"):
        channel_affine(tc.constant(np.ones(3, np.float32)), tc.constant(np.ones(3, np.float32)))


# ---------------------------------------------------------------------------- softmax family
def np_log_softmax(x, axis=-1):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_and_log_softmax(axis):
    x = rand(3, 4) * 3
    check_op(lambda t: tc.nn.softmax(t, axis=axis), [x], lambda a: np.exp(np_log_softmax(a, axis)))
    check_op(lambda t: tc.nn.log_softmax(t, axis=axis), [x], lambda a: np_log_softmax(a, axis))


def test_softmax_extreme_logits():
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, 0.0]])
    sm = run(tc.nn.softmax, x)
    lsm = run(tc.nn.log_softmax, x)
    np.testing.assert_allclose(sm, [[1, 0, 0], [1 / 3] * 3, [0.5, 0.5, 0]], atol=1e-7)
    np.testing.assert_allclose(lsm, np_log_softmax(x), rtol=1e-6)
    assert np.all(np.isfinite(lsm))


def np_sparse_xent(logits, labels):
    return -np.take_along_axis(np_log_softmax(logits), labels[..., None].astype(np.intp), -1)[..., 0]


def test_sparse_softmax_cross_entropy():
    logits = rand(4, 5) * 2
    labels = np.array([0, 4, 4, 2], dtype=np.int32)
    check_op(lambda x, y: tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
             [logits, labels], np_sparse_xent)
    # extra leading axes, int64 labels, run-time shapes
    logits3, labels3 = rand(2, 3, 4), np.array([[0, 3, 1], [2, 2, 0]], dtype=np.int64)
    check_op(lambda x, y: tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x),
             [logits3, labels3], np_sparse_xent, dynamic=True)


@pytest.mark.parametrize("dtype", [tc.float32, tc.float64])
def test_sparse_softmax_cross_entropy_extreme_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, -1e4], [-1e4, -1e4, -1e4]])
    labels = np.array([1, 2, 0, 2], dtype=np.int32)
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(dtype, [4, 3])
        y = tc.placeholder(tc.int32, [4])
        loss = tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
        (gx,) = tc.gradients(tc.reduce_sum(loss), [x])
        with tc.Session() as s:
            lv, gv = s.run([loss, gx], {x: logits, y: labels})
    assert np.all(np.isfinite(lv)) and np.all(np.isfinite(gv))
    np.testing.assert_allclose(lv, np_sparse_xent(logits, labels), rtol=1e-6)
    want_g = np.exp(np_log_softmax(logits)) - np.eye(3)[labels]
    np.testing.assert_allclose(gv, want_g, atol=1e-6)


def test_sparse_softmax_cross_entropy_errors():
    x = tc.placeholder(tc.float32, [4, 3])
    with pytest.raises(ValueError, match="labels"):
        tc.nn.sparse_softmax_cross_entropy_with_logits(labels=tc.placeholder(tc.int32, [3]), logits=x)
    with pytest.raises(TypeError, match="integers"):
        tc.nn.sparse_softmax_cross_entropy_with_logits(labels=tc.placeholder(tc.float32, [4]), logits=x)
    y = tc.placeholder(tc.int32, [4])
    loss = tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
    with tc.Session() as s, pytest.raises(tc.errors.InvalidArgumentError, match="outside the valid range"):
        s.run(loss, {x: np.zeros((4, 3)), y: [0, 1, 3, 0]})


def np_sigmoid_xent(x, z):
    return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


def test_sigmoid_cross_entropy():
    x, z = rand(3, 4) * 3, RNG.uniform(0, 1, size=(3, 4))
    # relu and |x| have kinks at 0 that cancel in the sum; keep away anyway for the check
    check_op(lambda a, b: tc.nn.sigmoid_cross_entropy_with_logits(labels=b, logits=a), [x, z],
             np_sigmoid_xent, kinks=[0.0])


@pytest.mark.parametrize("dtype", [tc.float32, tc.float64])
def test_sigmoid_cross_entropy_extreme_logits(dtype):
    x = np.array([1e4, -1e4, 1e4, -1e4, 0.0, 30.0])
    z = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.3])
    g = tc.Graph()
    with g.as_default():
        px, pz = tc.placeholder(dtype, [6]), tc.placeholder(dtype, [6])
        loss = tc.nn.sigmoid_cross_entropy_with_logits(labels=pz, logits=px)
        gx, gz = tc.gradients(tc.reduce_sum(loss), [px, pz])
        with tc.Session() as s:
            lv, gxv, gzv = s.run([loss, gx, gz], {px: x, pz: z})
    assert np.all(np.isfinite(lv)) and np.all(np.isfinite(gxv))
    np.testing.assert_allclose(lv, np_sigmoid_xent(x, z), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gxv, 0.5 * (1 + np.tanh(0.5 * x)) - z, atol=1e-6)
    np.testing.assert_allclose(gzv, -x, rtol=1e-6)


def test_softmax_cross_entropy_with_logits():
    x = rand(3, 4)
    z = np.exp(np_log_softmax(rand(3, 4)))
    check_op(lambda a, b: tc.nn.softmax_cross_entropy_with_logits(labels=b, logits=a), [x, z],
             lambda a, b: -(b * np_log_softmax(a)).sum(-1))
    big = np.array([[1e4, -1e4, 0.0]])
    out = run(lambda a: tc.nn.softmax_cross_entropy_with_logits(labels=np.array([[0.0, 1.0, 0.0]], np.float32),
                                                                logits=a), big)
    np.testing.assert_allclose(out, [2e4], rtol=1e-6)


# ---------------------------------------------------------------------------- dropout
def _dropout_graph(rate, seed, graph_seed, shape=(200, 50)):
    g = tc.Graph()
    with g.as_default():
        if graph_seed is not None:
            tc.set_random_seed(graph_seed)
        x = tc.placeholder(tc.float32, shape)
        y = tc.nn.dropout(x, rate=rate, seed=seed)
        (gx,) = tc.gradients(tc.reduce_sum(y * 3.0), [x])
    return g, x, y, gx


def test_dropout_statistics_scaling_and_gradient():
    g, x, y, gx = _dropout_graph(0.3, 5, 1)
    xs = RNG.uniform(1, 2, size=(200, 50)).astype(np.float32)
    with tc.Session(graph=g) as s:
        yv, gv = s.run([y, gx], {x: xs})
    kept = yv != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(yv[kept], xs[kept] / 0.7, rtol=1e-6)
    # the gradient is the same mask and scale, from the same draw
    np.testing.assert_allclose(gv, np.where(kept, 3.0 / 0.7, 0.0), rtol=1e-6)


def test_dropout_seeded_reproducible_across_sessions_and_varies_between_runs():
    xs = np.ones((200, 50), np.float32)
    vals = []
    for _ in range(2):
        g, x, y, _ = _dropout_graph(0.5, 7, 3)
        with tc.Session(graph=g) as s:
            vals.append([s.run(y, {x: xs}), s.run(y, {x: xs})])
    np.testing.assert_array_equal(vals[0][0], vals[1][0])
    np.testing.assert_array_equal(vals[0][1], vals[1][1])
    assert not np.array_equal(vals[0][0], vals[0][1])
    g, x, y, _ = _dropout_graph(0.5, 8, 3)
    with tc.Session(graph=g) as s:
        assert not np.array_equal(s.run(y, {x: xs}), vals[0][0])


def test_dropout_keep_prob_rate_zero_noise_shape_and_errors():
    xs = np.ones((4, 1000), np.float32)
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [4, 1000])
        assert tc.nn.dropout(x, rate=0.0) is x
        y = tc.nn.dropout(x, keep_prob=0.8, seed=1)
        ycol = tc.nn.dropout(x, rate=0.5, noise_shape=[4, 1], seed=2)
        xd = tc.placeholder(tc.float32, [None, 1000])
        yd = tc.nn.dropout(xd, rate=0.25, seed=3)
        with tc.Session() as s:
            v, vc, vd = s.run([y, ycol, yd], {x: xs, xd: xs})
    assert abs((v != 0).mean() - 0.8) < 0.03
    np.testing.assert_allclose(v[v != 0], 1 / 0.8, rtol=1e-6)
    for row in vc:  # one decision per row
        assert np.all(row == row[0]) and row[0] in (0.0, 2.0)
    assert vd.shape == (4, 1000) and abs((vd != 0).mean() - 0.75) < 0.03
    with pytest.raises(ValueError, match="rate"):
        tc.nn.dropout(x, rate=1.0)
    with pytest.raises(ValueError):
        tc.nn.dropout(x)
