"""Built-in sets: the real MNIST sample and sklearn digits with fixed splits, synthetic sets from the seed."""

import importlib.util

import numpy as np
import pytest

from tfconf.data import DataSpec, DataUnavailableError, make_dataset
from tfconf.data import builtin

needs_mlxtend = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")


@needs_mlxtend
def test_mnist_is_4000_train_1000_test_real_digits():
    from tfconf.data.mnist import mnist_sample_split

    (xtr, ytr), (xte, yte) = builtin.mnist("train"), builtin.mnist("test")
    assert xtr.shape == (4000, 1, 28, 28) and xte.shape == (1000, 1, 28, 28)
    assert xtr.dtype == np.uint8 and ytr.dtype == np.int64
    assert set(np.unique(ytr)) == set(range(10)) == set(np.unique(yte))
    assert xtr.max() == 255 and 0.05 < (xtr > 0).mean() < 0.5  # real strokes, not noise
    (a, b), (c, d) = mnist_sample_split()  # the documented split, unchanged
    assert np.array_equal(a, xtr) and np.array_equal(b, ytr) and np.array_equal(c, xte) and np.array_equal(d, yte)
    ds = make_dataset({"source": "mnist", "batch_size": 100, "scale": 1 / 256}, "test")
    x, y = next(ds)
    assert ds.num_samples == 1000 and np.array_equal(y, yte[:100])  # test order is the file order
    assert x.dtype == np.float32 and np.allclose(x, xte[:100] / 256)


@needs_sklearn
def test_digits_is_sklearns_8x8_set_with_a_fixed_split():
    (xtr, ytr), (xte, yte) = builtin.digits("train"), builtin.digits("test")
    assert xtr.shape == (1437, 1, 8, 8) and xte.shape == (360, 1, 8, 8)
    assert set(np.unique(ytr)) == set(range(10)) == set(np.unique(yte))
    assert xtr.max() == 16 and xtr.min() == 0
    # the first row of the bundled CSV is a zero; it lands somewhere in the split
    both = np.concatenate([xtr, xte]).reshape(-1, 64)
    first = np.array([0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0], np.uint8)
    assert (both[:, :16] == first).all(axis=1).any()


def test_data_unavailable_error_is_one_class_everywhere():
    from tfconf.data import mnist

    assert mnist.DataUnavailableError is DataUnavailableError and issubclass(DataUnavailableError, RuntimeError)


def test_digits_without_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataUnavailableError, match=r'tfconf\[digits\]'):
        builtin.digits_path()


@pytest.mark.parametrize("name", ["spirals", "blobs"])
def test_synthetic_sets_are_functions_of_seed_and_split(name):
    make = getattr(builtin, name)
    x, y = make("train", seed=3, num_samples=90, num_classes=3)
    assert x.shape == (90, 2) and x.dtype == np.float32 and np.bincount(y).tolist() == [30, 30, 30]
    x2, y2 = make("train", seed=3, num_samples=90, num_classes=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.allclose(x, make("train", seed=4, num_samples=90, num_classes=3)[0])
    assert not np.allclose(x, make("test", seed=3, num_samples=90, num_classes=3)[0])


def test_blob_centres_are_shared_by_train_and_test():
    xtr, ytr = builtin.blobs("train", seed=7, num_samples=4000, noise=0.5)
    xte, yte = builtin.blobs("test", seed=7, num_samples=4000, noise=0.5)
    for k in range(4):
        assert np.allclose(xtr[ytr == k].mean(0), xte[yte == k].mean(0), atol=0.1)


def test_spirals_without_noise_lie_on_their_arms():
    x, y = builtin.spirals("train", num_samples=300, num_classes=3, noise=0.0)
    r = np.hypot(x[:, 0], x[:, 1])
    t = np.arctan2(x[:, 0], x[:, 1])
    expected = 4 * r + 2 * np.pi * y / 3
    assert np.allclose(np.angle(np.exp(1j * (t - expected))), 0, atol=1e-4)


def test_make_dataset_uses_phase_as_split_and_spec_parameters():
    spec = DataSpec(source="blobs", num_samples=50, num_classes=5, batch_size=10)
    train, test = make_dataset(spec, "train"), make_dataset(spec, "test")
    assert train.num_samples == 50 and train.num_classes == 5 and train.output_shape == (10, 2)
    assert not np.array_equal(train.x, test.x)
    forced = make_dataset(spec.model_copy(update={"split": "test"}), "train")
    assert np.array_equal(forced.x, test.x)
    # the spec's seed wins over the solver's; the solver's over the default 0
    assert np.array_equal(make_dataset(spec, "train", seed=5).x, builtin.blobs("train", 5, 50, 5)[0])
    assert np.array_equal(make_dataset(spec.model_copy(update={"seed": 2}), "train", seed=5).x, builtin.blobs("train", 2, 50, 5)[0])
