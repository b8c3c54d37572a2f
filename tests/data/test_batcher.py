"""Batches: Caffe's wrap-around, reshuffling per epoch from the seed, exact resume, and prefetch."""

import json

import numpy as np
import pytest

from tfconf.data import Batcher, DataError, Transform, make_dataset


def take(batcher, n):
    return [next(batcher) for _ in range(n)]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(xa, xb) and np.array_equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (10, 1, 6, 6), dtype=np.uint8), np.arange(10)


def augmenting(images, **kw):
    x, y = images
    t = Transform(x.shape[1:], scale=1 / 255, crop_size=4, mirror=True, train=True)
    return Batcher(x, y, 4, shuffle=True, seed=11, transform=t, **kw)


def test_fixed_order_wraps_around_like_caffe(images):
    x, y = images
    b = Batcher(x, y, 4)
    got = [yb.tolist() for _, yb in take(b, 4)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [2, 3, 4, 5]]
    xb, yb = b.batch_at(2)
    assert xb.dtype == np.float32 and yb.dtype == np.int64 and np.array_equal(xb, x[[8, 9, 0, 1]])
    assert b.batches_per_epoch == 3 and b.epoch == 1 and b.output_shape == (4, 1, 6, 6)
    assert Batcher(x, y, 25).batch_at(1)[1].tolist() == list(range(5, 10)) + list(range(10)) * 2


def test_each_epoch_is_a_fresh_permutation_from_the_seed(images):
    x, y = images
    b = Batcher(x, y, 5, shuffle=True, seed=3)
    epochs = [np.concatenate([yb for _, yb in take(b, 2)]) for _ in range(3)]
    for e in epochs:
        assert sorted(e.tolist()) == list(range(10))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    assert np.array_equal(epochs[1], np.random.default_rng(np.random.SeedSequence([3, 0, 1])).permutation(10))
    again = Batcher(x, y, 5, shuffle=True, seed=3)
    assert np.array_equal(np.concatenate([yb for _, yb in take(again, 6)]), np.concatenate(epochs))
    other = Batcher(x, y, 5, shuffle=True, seed=4)
    assert not np.array_equal(np.concatenate([yb for _, yb in take(other, 6)]), np.concatenate(epochs))


def test_resume_reproduces_the_uninterrupted_stream(images):
    full = take(augmenting(images), 25)
    first = augmenting(images)
    head = take(first, 9)
    state = json.loads(json.dumps(first.state()))  # survives a snapshot file
    resumed = augmenting(images)
    resumed.restore(state)
    assert same(head + take(resumed, 16), full)
    assert same([augmenting(images).batch_at(i) for i in (24, 3, 17)], [full[24], full[3], full[17]])


def test_restore_refuses_changed_data(images):
    x, y = images
    state = Batcher(x, y, 4, shuffle=True).state()
    with pytest.raises(DataError, match="batch_size: 4 -> 5"):
        Batcher(x, y, 5, shuffle=True).restore(state)
    with pytest.raises(DataError, match="num_samples: 10 -> 9"):
        Batcher(x[:9], y[:9], 4, shuffle=True).restore(state)


def test_prefetch_gives_the_same_batches(images):
    sync = take(augmenting(images), 30)
    with augmenting(images, prefetch=2) as b:
        assert same(take(b, 30), sync)
        b.seek(5)
        assert same(take(b, 3), sync[5:8])
        b.restore({**b.state(), "iteration": 20})
        assert same(take(b, 10), sync[20:30])


def test_prefetch_hands_errors_to_the_consumer_in_order(images):
    x, y = images

    class Failing(Transform):
        calls = 0

        def __call__(self, batch, rng=None):
            Failing.calls += 1
            if Failing.calls == 4:
                raise ValueError("broken batch")
            return super().__call__(batch, rng)

    b = Batcher(x, y, 4, transform=Failing(x.shape[1:]), prefetch=2)
    assert len(take(b, 3)) == 3
    with pytest.raises(ValueError, match="broken batch"):
        next(b)
    assert b.iteration == 3
    b.close()


def test_test_phase_is_in_order_and_centre_cropped(tmp_path, images):
    x, y = images
    np.savez(tmp_path / "d.npz", x=x, y=y)
    spec = {"source": "d.npz", "batch_size": 4, "crop_size": 4, "mirror": True}
    test = make_dataset(spec, "test", root=tmp_path)
    a = take(test, 3)
    assert [yb.tolist() for _, yb in a] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert np.array_equal(a[0][0], x[:4, :, 1:5, 1:5])
    test.seek(0)
    assert same(take(test, 3), a)
    train = make_dataset(spec, "train", root=tmp_path, seed=1)  # train shuffles by default
    assert train.shuffle and train.seed == 1
    assert not np.array_equal(train.indices_at(0), np.arange(4))
    assert not same(take(train, 3), a)
