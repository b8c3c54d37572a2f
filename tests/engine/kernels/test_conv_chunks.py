"""A batch whose im2col matrix exceeds MAX_COLS_BYTES runs in chunks of images: the same results
as one pass, for both column layouts, both adjoints, groups, strides and padding."""

from __future__ import annotations

import numpy as np
import pytest

from tfconf.engine.kernels import conv as K


@pytest.mark.parametrize("xs,ws,st,pads,groups", [
    ((7, 4, 9, 9), (6, 4, 3, 3), (1, 1), (1, 1, 1, 1), 1),      # chwn layout (small planes)
    ((5, 2, 20, 20), (4, 2, 5, 5), (1, 1), (2, 2, 2, 2), 1),    # nchw layout (OW > 16)
    ((6, 4, 10, 11), (4, 2, 3, 3), (2, 1), (0, 1, 2, 0), 2),
])
def test_chunked_batches_match_one_pass(monkeypatch, xs, ws, st, pads, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    y = K.conv2d(np, x, w, st, pads, (1, 1), groups)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = K.conv2d_backprop_input(np, dy, w, xs[2:], st, pads, (1, 1), groups)
    dw = K.conv2d_backprop_filter(np, x, dy, ws[2:], st, pads, (1, 1), groups)
    g = K._Geom(xs, ws, st, pads, (1, 1), groups)
    per_image = g.C * g.kh * g.kw * g.OH * g.OW * 4
    monkeypatch.setattr(K, "MAX_COLS_BYTES", 2 * per_image)  # chunks of 2 images (and a rest)
    assert K._chunks(np, g, 4) is not None
    np.testing.assert_allclose(K.conv2d(np, x, w, st, pads, (1, 1), groups), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(K.conv2d_backprop_input(np, dy, w, xs[2:], st, pads, (1, 1), groups), dx,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(K.conv2d_backprop_filter(np, x, dy, ws[2:], st, pads, (1, 1), groups), dw,
                               rtol=1e-4, atol=1e-4)
