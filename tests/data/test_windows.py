"""Caffe's WindowData (R-CNN's windows): sampling by overlap, the warp with context and padding,
mean and scale, and batches that are a pure function of (seed, iteration)."""

from __future__ import annotations

import numpy as np
import pytest

from tfconf.data import DataError, DataSpec, make_dataset, sample_shape

Image = pytest.importorskip("PIL.Image")


@pytest.fixture
def windows(tmp_path):
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)]
    (tmp_path / "im").mkdir()
    for i, a in enumerate(rgb):
        Image.fromarray(a).save(tmp_path / "im" / f"{i}.png")
    (tmp_path / "win.txt").write_text(
        "# 0\nim/0.png\n3\n20\n30\n3\n"
        "4 0.9 10 5 17 12\n"      # foreground: class 4, an 8x8 box
        "2 0.7 0 0 29 19\n"       # foreground: class 2, the whole image
        "1 0.1 3 3 10 10\n"       # background (label 0 whatever its class)
        "# 1\nim/1.png\n3\n16\n16\n1\n"
        "0 0.3 0 0 15 15\n")      # background
    bgr = [a[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) for a in rgb]
    return tmp_path, bgr


def spec(root, **kw):
    return dict({"source": str(root / "win.txt"), "format": "windows", "batch_size": 8, "crop_size": 8,
                 "root_folder": str(root) + "/"}, **kw)


def test_windows_are_sampled_by_overlap_and_cut_from_their_images(windows):
    root, bgr = windows
    ds = make_dataset(spec(root, fg_fraction=0.5, scale=0.5, mean_value=[1, 2, 3]), "test")
    assert ds.output_shape == (8, 3, 8, 8)
    for it in range(5):
        x, y = ds.batch_at(it)
        picks, _ = ds.picks_at(it)
        assert set(picks[:4]) <= {2, 3} and set(picks[4:]) <= {0, 1}  # background first, then foreground
        assert y[:4].tolist() == [0] * 4 and set(y[4:].tolist()) <= {4, 2}
        for b, k in enumerate(picks):
            if k == 0:  # an 8x8 box warped to 8x8 is the box itself
                want = (bgr[0][:, 5:13, 10:18] - np.float32([1, 2, 3]).reshape(3, 1, 1)) * 0.5
                np.testing.assert_allclose(x[b], want, atol=1e-5)
    # the same batch for the same (seed, iteration); a resumed stream sees the same batches
    again = make_dataset(spec(root, fg_fraction=0.5, scale=0.5, mean_value=[1, 2, 3]), "test")
    again.seek(3)
    np.testing.assert_array_equal(next(again)[0], ds.batch_at(3)[0])


def test_context_padding_leaves_the_outside_of_the_image_zero_and_mirror_flips(windows):
    root, bgr = windows
    ds = make_dataset(spec(root, fg_fraction=1.0, fg_threshold=0.8, context_pad=2, crop_size=12), "train")
    x, y = ds.batch_at(0)
    assert y.tolist() == [4] * 8  # only window 0 is foreground at 0.8
    # window 0 (10..17 x 5..12) widened by 12/8 around its centre stays inside the image: no zeros
    assert (x != 0).mean() > 0.9
    whole = make_dataset(spec(root, fg_fraction=1.0, fg_threshold=0.6, bg_threshold=0.0, context_pad=2,
                              crop_size=12, seed=1), "test")
    for it in range(4):
        x, _ = whole.batch_at(it)
        for b, k in enumerate(whole.picks_at(it)[0]):
            if k == 1:  # the whole image with context: 2 pixels of padding (at the output's scale) all round
                assert np.all(x[b][:, :2, :] == 0) and np.all(x[b][:, -2:, :] == 0)
                assert np.all(x[b][:, :, :2] == 0) and np.all(x[b][:, :, -2:] == 0)
                assert np.all(x[b][:, 2:-2, 2:-2] != 0) or (x[b][:, 2:-2, 2:-2] == 0).mean() < 0.05
    flipping = make_dataset(spec(root, fg_fraction=1.0, fg_threshold=0.8, mirror=True), "train")
    for it in range(6):
        x, _ = flipping.batch_at(it)
        flips = flipping.picks_at(it)[1]
        box = bgr[0][:, 5:13, 10:18]
        for b in range(8):
            np.testing.assert_allclose(x[b], box[:, :, ::-1] if flips[b] else box, atol=1e-5)
    assert 0 < sum(flipping.picks_at(i)[1].sum() for i in range(6)) < 48


def test_square_mode_and_validation(windows, tmp_path):
    root, _ = windows
    square = make_dataset(spec(root, fg_fraction=1.0, fg_threshold=0.6, crop_mode="square"), "test")
    assert square.batch_at(0)[0].shape == (8, 3, 8, 8)
    assert sample_shape(DataSpec(**spec(root, crop_size=6)), "train") == (3, 6, 6)
    with pytest.raises(ValueError, match="needs crop_size"):
        DataSpec(**spec(root, crop_size=0))
    with pytest.raises(ValueError, match="applies only to Caffe's WindowData"):
        DataSpec(source="mnist", fg_fraction=0.5)
    with pytest.raises(DataError, match="no foreground windows"):
        make_dataset(spec(root, fg_threshold=0.95), "train")
    bad = tmp_path / "bad.txt"
    bad.write_text("# 0\nim/0.png\n3\n20\n30\n1\n4 0.9 10 5 17\n")
    with pytest.raises(DataError, match=r"bad.txt:7: a window is `class overlap x1 y1 x2 y2`"):
        make_dataset(dict(spec(root), source=str(bad)), "train")
    (tmp_path / "w2.txt").write_text("# 0\nim/0.png\n3\n20\n30\n1\n4 0.9 10 5 17 12\n")
    from tfconf.data.sources import guess_format

    assert guess_format(str(tmp_path / "w2.txt")) == "windows"


def test_a_mean_value_or_a_mean_image_is_subtracted_where_the_window_lands(windows):
    root, bgr = windows
    box = bgr[0][:, 5:13, 10:18]
    scalar = make_dataset(spec(root, fg_fraction=1.0, fg_threshold=0.8, mean_value=10), "test")
    np.testing.assert_allclose(scalar.batch_at(0)[0][0], box - 10, atol=1e-5)
    mean = np.arange(3 * 10 * 10, dtype=np.float32).reshape(3, 10, 10)
    np.save(root / "mean.npy", mean)
    image = make_dataset(spec(root, fg_fraction=1.0, fg_threshold=0.8, mean_file=str(root / "mean.npy")), "test")
    np.testing.assert_allclose(image.batch_at(0)[0][0], box - mean[:, 1:9, 1:9], atol=1e-4)  # its centre 8x8
