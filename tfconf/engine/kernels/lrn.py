"""Local response normalisation across channels (axis 1 of NCHW).

TensorFlow's ``tf.nn.local_response_normalization`` semantics::

    sqr_sum[n, c, h, w] = sum_{c' in [c - r, c + r], 0 <= c' < C} x[n, c', h, w] ** 2
    y = x / (bias + alpha * sqr_sum) ** beta

Caffe's ``LRN`` layer (ACROSS_CHANNELS) with ``local_size = n``, ``alpha =
alpha_caffe``, ``beta``, ``k`` computes ``x / (k + alpha_caffe / n * sum) **
beta`` over a window of ``n`` channels centred on ``c``, i.e. it maps to
``depth_radius = (n - 1) // 2``, ``alpha = alpha_caffe / n``, ``bias = k``
(``n`` must be odd for the window to be centred).

Every function takes the array module ``xp`` (numpy or cupy) first and keeps
the input dtype.
"""

from __future__ import annotations

__all__ = ["lrn", "lrn_grad"]


def _channel_window_sum(xp, a, r):
    """s[:, c] = sum of a[:, c'] for c' in [c - r, c + r] clipped to [0, C)."""
    s = a.copy()
    C = a.shape[1]
    for d in range(1, min(r, C - 1) + 1):
        s[:, d:] += a[:, :-d]
        s[:, :-d] += a[:, d:]
    return s


def _norm(xp, x, r, bias, alpha):
    """bias + alpha * sqr_sum (fresh array, dtype of x)."""
    d = _channel_window_sum(xp, x * x, r)
    d *= alpha
    d += bias
    return d


def _pow_neg(xp, d, beta):
    """d ** -beta, with cheaper special cases for common exponents."""
    if beta == 0.75:
        t = xp.sqrt(d)
        t *= xp.sqrt(t)
        return xp.reciprocal(t, out=t)
    if beta == 0.5:
        t = xp.sqrt(d)
        return xp.reciprocal(t, out=t)
    if beta == 1.0:
        return xp.reciprocal(d)
    return xp.power(d, -beta)


def _check(x, depth_radius):
    if x.ndim != 4:
        raise ValueError(f"lrn expects an NCHW array, got shape {tuple(x.shape)}")
    r = int(depth_radius)
    if r < 0:
        raise ValueError(f"depth_radius must be >= 0, got {depth_radius}")
    return r


def lrn(xp, x, depth_radius, bias, alpha, beta):
    """y = x / (bias + alpha * sqr_sum) ** beta over a window of
    ``2 * depth_radius + 1`` channels."""
    r = _check(x, depth_radius)
    d = _norm(xp, x, r, float(bias), float(alpha))
    p = _pow_neg(xp, d, float(beta))
    p *= x
    return p


def lrn_grad(xp, x, y, dy, depth_radius, bias, alpha, beta):
    """Exact gradient of :func:`lrn` w.r.t. ``x`` (``y = lrn(x)``).

    With D = bias + alpha * sqr_sum:
    dx = dy * D**-beta - 2 * alpha * beta * x * window_sum(dy * y / D).
    """
    r = _check(x, depth_radius)
    alpha, beta = float(alpha), float(beta)
    dtype = x.dtype
    if dy.dtype != dtype:
        dy = dy.astype(dtype)
    d = _norm(xp, x, r, float(bias), alpha)
    t = dy * y
    t /= d
    s = _channel_window_sum(xp, t, r)
    s *= x
    s *= -2.0 * alpha * beta
    p = _pow_neg(xp, d, beta)
    p *= dy
    p += s
    return p
