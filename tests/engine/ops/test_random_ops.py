"""Random ops: seeding (graph seed + op seed), run-to-run variation, statistics, dtypes, shapes."""

import numpy as np
import pytest

import tfconf as tc

N = 100_000
# std of N(0, 1) truncated to [-2, 2]: sqrt(1 - 2·2·φ(2) / (2Φ(2) - 1))
TRUNC_STD = np.sqrt(1 - 4 * np.exp(-2) / np.sqrt(2 * np.pi) / 0.9544997361036416)

MAKERS = {
    "normal": lambda shape, **kw: tc.random_normal(shape, **kw),
    "uniform": lambda shape, **kw: tc.random_uniform(shape, **kw),
    "truncated_normal": lambda shape, **kw: tc.truncated_normal(shape, **kw),
}


def _draw(kind, graph_seed=None, op_seed=None, runs=1, shape=(4, 5), sessions=1, **kw):
    """[session][run] values of one random op built in a fresh graph."""
    g = tc.Graph()
    with g.as_default():
        if graph_seed is not None:
            tc.set_random_seed(graph_seed)
        t = MAKERS[kind](shape, seed=op_seed, **kw)
    out = []
    for _ in range(sessions):
        with tc.Session(graph=g) as s:
            out.append([s.run(t) for _ in range(runs)])
    return out


@pytest.mark.parametrize("kind", list(MAKERS))
@pytest.mark.parametrize("graph_seed,op_seed", [(1, 2), (None, 2), (1, None)], ids=str)
def test_seeded_reproducible_across_sessions_and_graphs(kind, graph_seed, op_seed):
    a = _draw(kind, graph_seed, op_seed, runs=2, sessions=2)
    b = _draw(kind, graph_seed, op_seed, runs=2)  # a second, identically built graph
    np.testing.assert_array_equal(a[0][0], a[1][0])
    np.testing.assert_array_equal(a[0][1], a[1][1])
    np.testing.assert_array_equal(a[0][0], b[0][0])
    assert not np.array_equal(a[0][0], a[0][1]), "successive runs must draw new numbers"


@pytest.mark.parametrize("kind", list(MAKERS))
def test_different_seeds_and_unseeded_differ(kind):
    base = _draw(kind, 1, 2)[0][0]
    assert not np.array_equal(base, _draw(kind, 1, 3)[0][0])
    assert not np.array_equal(base, _draw(kind, 4, 2)[0][0])
    unseeded = _draw(kind, sessions=2)
    assert not np.array_equal(unseeded[0][0], unseeded[1][0])


def test_two_ops_with_graph_seed_only_differ_from_each_other():
    g = tc.Graph()
    with g.as_default():
        tc.set_random_seed(5)
        a = tc.random_normal([50])
        b = tc.random_normal([50])
        with tc.Session() as s:
            va, vb = s.run([a, b])
    assert not np.array_equal(va, vb)


@pytest.mark.parametrize("dtype", [tc.float32, tc.float64])
def test_normal_statistics(dtype):
    (v,), = _draw("normal", 3, 4, shape=[N], mean=2.0, stddev=3.0, dtype=dtype)
    assert v.dtype == dtype.np and v.shape == (N,)
    assert abs(v.mean() - 2.0) < 0.05
    assert abs(v.std() - 3.0) < 0.05
    assert abs(np.mean(np.abs(v - 2.0) < 3.0) - 0.6827) < 0.01


@pytest.mark.parametrize("dtype", [tc.float32, tc.float64])
def test_uniform_statistics(dtype):
    (v,), = _draw("uniform", 3, 4, shape=[N], minval=-1.0, maxval=3.0, dtype=dtype)
    assert v.dtype == dtype.np
    assert v.min() >= -1.0 and v.max() < 3.0
    assert abs(v.mean() - 1.0) < 0.03
    assert abs(v.std() - 4 / np.sqrt(12)) < 0.03
    hist, _ = np.histogram(v, bins=4, range=(-1, 3))
    assert np.all(np.abs(hist / N - 0.25) < 0.01)
    (u,), = _draw("uniform", 3, 5, shape=[N])
    assert u.dtype == np.float32 and u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01


@pytest.mark.parametrize("dtype", [tc.float32, tc.float64])
def test_truncated_normal_statistics(dtype):
    (v,), = _draw("truncated_normal", 3, 4, shape=[N], mean=1.0, stddev=0.5, dtype=dtype)
    assert v.dtype == dtype.np
    assert np.all(np.abs(v - 1.0) <= 1.0 + 1e-6)
    assert abs(v.mean() - 1.0) < 0.01
    assert abs(v.std() - 0.5 * TRUNC_STD) < 0.01


def test_shape_from_a_tensor_and_static_shapes():
    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, 3])
        r = tc.random_normal(tc.shape(x), seed=1)
        assert r.shape.as_list() == [None, 3]
        assert tc.random_uniform([2, 3]).shape.as_list() == [2, 3]
        with tc.Session() as s:
            assert s.run(r, {x: np.zeros((5, 3))}).shape == (5, 3)


def test_random_ops_need_float_dtype_and_have_no_gradient():
    with pytest.raises(TypeError, match="floating"):
        tc.random_normal([2], dtype=tc.int32)
    with pytest.raises(TypeError, match="floating"):
        tc.random_uniform([2], dtype=tc.int32)
    g = tc.Graph()
    with g.as_default():
        m = tc.placeholder(tc.float32, [])
        r = tc.random_normal([3], mean=m, stddev=2.0, seed=1)
        gm = tc.gradients(tc.reduce_sum(r), [m])[0]
        with tc.Session() as s:
            assert s.run(gm, {m: 0.0}) == pytest.approx(3.0)  # d/dmean of Σ(mean + 2z) = 3
