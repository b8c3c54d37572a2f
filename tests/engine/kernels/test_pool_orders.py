"""Each window-reduction order of the pooling kernels ('direct', rows first 'h', columns first
'w'), forced on every case, against the loop reference."""

import numpy as np
import pytest

from tfconf.engine import shapes as S
from tfconf.engine.kernels import pool as P

from test_pool_kernels import CASES, _distinct, ref_pool  # same folder (rootdir import mode)


@pytest.mark.parametrize("order", ["direct", "h", "w"])
@pytest.mark.parametrize("xs,ks,st,pads,ceil_mode", CASES)
def test_reduce_orders_match_reference(monkeypatch, order, xs, ks, st, pads, ceil_mode):
    if order != "direct" and (S.pair(ks, "k")[0] == 1 or S.pair(ks, "k")[1] == 1):
        pytest.skip("a 1-wide window has a single order")
    monkeypatch.setattr(P._PGeom, "reduce_order", lambda self: order)
    rng = np.random.default_rng(3)
    x = _distinct(rng, xs)
    y_ref, _ = ref_pool(x, ks, st, pads, ceil_mode, "max")
    np.testing.assert_array_equal(P.max_pool(np, x, ks, st, pads, ceil_mode), y_ref)
    x = rng.standard_normal(xs)
    y_ref, _ = ref_pool(x, ks, st, pads, ceil_mode, "avg", True)
    np.testing.assert_allclose(P.avg_pool(np, x, ks, st, pads, ceil_mode, True), y_ref,
                               rtol=1e-12, atol=1e-13)


def test_order_choice():
    lenet = P._PGeom((64, 20, 24, 24), (2, 2), (2, 2), (0, 0, 0, 0), False)
    assert lenet.reduce_order() == "h"
    assert P._PGeom((2, 3, 9, 9), (1, 3), (1, 2), (0, 0, 0, 0), False).reduce_order() == "direct"
