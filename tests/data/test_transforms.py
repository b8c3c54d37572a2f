"""Caffe's transform_param against numpy references."""

import numpy as np
import pytest

from tfconf.data import DataError, Transform, make_dataset


@pytest.fixture
def batch():
    return np.random.default_rng(0).integers(0, 256, (8, 3, 6, 7), dtype=np.uint8)


def test_scale_and_per_channel_mean(batch):
    before = batch.copy()
    out = Transform(batch.shape[1:], scale=0.5, mean=[10, 20, 30])(batch)
    ref = (batch.astype(np.float64) - np.array([10, 20, 30])[None, :, None, None]) * 0.5
    assert out.dtype == np.float32 and out.shape == batch.shape and np.allclose(out, ref)
    assert np.array_equal(batch, before)  # the data set is never modified
    assert np.allclose(Transform(batch.shape[1:], mean=[7])(batch), batch - 7.0)
    assert np.allclose(Transform(batch.shape[1:], mean=7)(batch), batch - 7.0)


def test_mean_file_then_centre_crop_in_test(batch):
    mean = np.random.default_rng(1).uniform(0, 255, (3, 6, 7)).astype(np.float32)
    t = Transform(batch.shape[1:], scale=1 / 256, mean=mean, crop_size=4, mirror=True, train=False)
    assert t.output_shape == (3, 4, 4) and not t.is_random
    out = t(batch)
    h0, w0 = (6 - 4) // 2, (7 - 4) // 2  # Caffe's centre: (H - crop) / 2
    ref = (batch.astype(np.float64) - mean)[:, :, h0 : h0 + 4, w0 : w0 + 4] / 256  # no mirror in test
    assert out.shape == (8, 3, 4, 4) and np.allclose(out, ref, atol=1e-6)


def test_random_crop_and_mirror_in_train_follow_the_generator(batch):
    t = Transform(batch.shape[1:], scale=2.0, mean=[1, 2, 3], crop_size=5, mirror=True, train=True)
    out = t(batch, np.random.default_rng(42))
    # reference: the same draws (rows, columns, flips) applied one sample at a time
    rng = np.random.default_rng(42)
    hs, ws, flips = rng.integers(0, 2, 8), rng.integers(0, 3, 8), rng.random(8) < 0.5
    for i in range(8):
        s = (batch[i].astype(np.float64) - np.array([1, 2, 3])[:, None, None])[:, hs[i] : hs[i] + 5, ws[i] : ws[i] + 5]
        if flips[i]:
            s = s[:, :, ::-1]
        assert np.allclose(out[i], s * 2.0)
    assert 0 < flips.sum() < 8 and len(set(zip(hs, ws))) > 1  # the draws really vary


def test_every_random_crop_is_a_window_and_mirror_only_flips(batch):
    t = Transform(batch.shape[1:], crop_size=3, mirror=True)
    big = np.repeat(batch, 8, axis=0)
    out = t(big, np.random.default_rng(5))
    windows = {(h, w) for h in range(4) for w in range(5)}
    flipped = 0
    for i in range(len(big)):
        src = big[i].astype(np.float32)
        hits = [(h, w, f) for h, w in windows for f in (0, 1)
                if np.array_equal(out[i], (src[:, h:h + 3, w:w + 3])[:, :, ::-1] if f else src[:, h:h + 3, w:w + 3])]
        assert hits, i
        flipped += all(f for _, _, f in hits)
    assert 10 < flipped < 54


def test_transform_errors(batch):
    with pytest.raises(DataError, match=r"crop_size needs image data \[N, C, H, W\]"):
        Transform((10,), crop_size=2)
    with pytest.raises(DataError, match="mirror needs image data"):
        Transform((10,), mirror=True)
    with pytest.raises(DataError, match="crop_size 7 is larger than the images"):
        Transform((3, 6, 7), crop_size=7)
    with pytest.raises(DataError, match="mean_value has 2 values for 3 channels"):
        Transform((3, 6, 7), mean=[1, 2])
    with pytest.raises(DataError, match=r"mean_file has shape \[3, 5, 5\] but the samples are \[3, 6, 7\]"):
        Transform((3, 6, 7), mean=np.zeros((3, 5, 5)))


def test_vectors_take_per_feature_means():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = Transform((3,), mean=[1, 2, 3], scale=10)(x)
    assert np.allclose(out, (x - [1, 2, 3]) * 10)


def test_make_dataset_applies_mean_file_and_crop(tmp_path, batch):
    np.savez(tmp_path / "d.npz", x=batch, y=np.arange(8) % 2)
    mean = batch.mean(0).astype(np.float32)
    np.save(tmp_path / "mean.npy", mean)
    spec = {"source": "d.npz", "batch_size": 8, "mean_file": "mean.npy", "crop_size": 4, "scale": 0.1}
    test = make_dataset(spec, "test", root=tmp_path)
    x, y = next(test)
    assert test.output_shape == (8, 3, 4, 4) and x.shape == (8, 3, 4, 4)
    assert np.allclose(x, ((batch - mean) * 0.1)[:, :, 1:5, 1:5], atol=1e-5)
    train = make_dataset(spec, "train", root=tmp_path)
    assert train.transform.is_random and next(train)[0].shape == (8, 3, 4, 4)
