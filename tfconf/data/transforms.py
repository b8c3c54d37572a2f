"""Caffe's DataTransformer, applied to a whole batch at once.

For each sample ``x`` (``[C, H, W]`` or ``[D]``), in this order::

    x = x - mean                      # mean_file: a full-size [C, H, W] image; mean_value: per channel
    x = x[:, h:h+crop, w:w+crop]      # train: h, w uniform per sample; test: the centre, (H - crop) // 2
    x = x[:, :, ::-1]  if flip        # train only, flip ~ Bernoulli(1/2) per sample
    x = x * scale

which is Caffe's ``(crop(mirror(x)) - crop(mean)) * scale``, except that Caffe also mirrors in test. The random draws come from the generator
the caller passes (the batcher derives one per iteration), first all crop offsets (rows, then columns),
then the flips, so a batch is a pure function of its data and that generator.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from tfconf.data.errors import DataError


class Transform:
    """A per-batch transform for samples of shape ``sample_shape`` (``(C, H, W)`` or ``(D,)``)."""

    def __init__(
        self,
        sample_shape: Sequence[int],
        *,
        scale: float = 1.0,
        mean: Optional[np.ndarray] = None,
        crop_size: int = 0,
        mirror: bool = False,
        train: bool = True,
    ):
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.scale = float(scale)
        if not np.isfinite(self.scale):
            raise DataError(f"scale must be a finite number. Received: {self.scale}")
        self.crop_size = int(crop_size)
        self.train = bool(train)
        # NOTE: Caffe's DataTransformer flips in TEST too when mirror is set (so its test scores vary
        # from run to run); here test batches are deterministic, so mirroring is a train-only augmentation.
        self.mirror = bool(mirror) and self.train
        image = len(self.sample_shape) == 3
        if (self.crop_size or mirror) and not image:
            what = "crop_size" if self.crop_size else "mirror"
            raise DataError(f"{what} needs image data [N, C, H, W]. Received samples of shape {list(self.sample_shape)}")
        if self.crop_size:
            h, w = self.sample_shape[1:]
            if self.crop_size > min(h, w):
                raise DataError(f"crop_size {self.crop_size} is larger than the images ({h}x{w})")
        self.mean = None if mean is None else self._check_mean(np.asarray(mean, np.float32))

    def _check_mean(self, mean: np.ndarray) -> np.ndarray:
        shape = self.sample_shape
        if not np.all(np.isfinite(mean)):
            what = "mean_value" if mean.ndim <= 1 else "mean_file"
            raise DataError(f"{what} holds NaN or inf; the mean subtracted from the data must be finite")
        if mean.ndim == 0 or mean.size == 1:
            return mean.reshape(())
        if mean.ndim == 1:  # mean_value list: one per channel (images) or per feature (vectors)
            if mean.size != shape[0]:
                unit = "channels" if len(shape) == 3 else "features"
                raise DataError(f"mean_value has {mean.size} values for {shape[0]} {unit}; give 1 or {shape[0]}")
            return mean.reshape((-1,) + (1,) * (len(shape) - 1))
        if mean.ndim == len(shape) + 1 and mean.shape[0] == 1:  # a [1, C, H, W] blob
            mean = mean[0]
        if mean.ndim == 2 and len(shape) == 3 and shape[0] == 1:  # [H, W] for one channel
            mean = mean[None]
        if mean.shape != shape:
            raise DataError(f"mean_file has shape {list(mean.shape)} but the samples are {list(shape)}")
        return mean

    @property
    def output_shape(self) -> tuple:
        """Shape of one transformed sample."""
        if self.crop_size:
            return (self.sample_shape[0], self.crop_size, self.crop_size)
        return self.sample_shape

    @property
    def is_random(self) -> bool:
        return self.train and (self.mirror or bool(self.crop_size))

    def __call__(self, x: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
        out = x.astype(np.float32)  # a copy: the data set is never modified
        if self.mean is not None:
            out -= self.mean
        n = len(out)
        if self.crop_size:
            c = self.crop_size
            h, w = self.sample_shape[1:]
            if self.train:
                hs, ws = rng.integers(0, h - c + 1, n), rng.integers(0, w - c + 1, n)
                out = np.stack([out[i, :, hs[i] : hs[i] + c, ws[i] : ws[i] + c] for i in range(n)])
            else:
                h0, w0 = (h - c) // 2, (w - c) // 2
                out = out[:, :, h0 : h0 + c, w0 : w0 + c]
        if self.mirror:
            flip = rng.random(n) < 0.5
            out[flip] = out[flip][..., ::-1]
        if self.scale != 1.0:
            out *= np.float32(self.scale)
        return np.ascontiguousarray(out)


def read_mean_file(path: str) -> np.ndarray:
    """A mean image from ``.npy`` or Caffe's ``.binaryproto`` (a serialized BlobProto); a DataError
    naming the file when it cannot be read, does not decode, or holds NaN or inf."""
    from tfconf.data.sources import _decode_error, _decode_errors, _regular

    if not os.path.exists(path):
        raise DataError(f"mean_file not found: {path}")
    if not path.lower().endswith((".npy", ".binaryproto")):
        raise DataError(f"mean_file must be .npy or .binaryproto. Received: {path}")
    _regular(path, "mean_file")
    try:
        if path.lower().endswith(".npy"):
            with open(path, "rb") as f:  # (np.load leaks the file it opens when it fails)
                mean = np.load(f, allow_pickle=False)
                if not isinstance(mean, np.ndarray):
                    raise DataError(f"{path}: the mean_file is an .npz archive, not an .npy array")
        else:
            with open(path, "rb") as f:
                mean = parse_blob_proto(f.read(), path)
    except DataError as e:
        raise DataError(f"mean_file {e}") from None
    except _decode_errors() as e:
        err = _decode_error(path, e, ".npy" if path.lower().endswith(".npy") else ".binaryproto")
        raise DataError(f"mean_file {err}") from None
    if mean.dtype.kind not in "iufb":
        raise DataError(f"{path}: the mean_file must hold numbers. Received dtype {mean.dtype}")
    if mean.size == 0:
        raise DataError(f"{path}: the mean_file holds no values")
    with np.errstate(all="ignore"):
        finite = np.isfinite(mean)
    if not finite.all():
        at = [int(i) for i in np.unravel_index(int(np.flatnonzero(~finite)[0]), mean.shape)]
        raise DataError(f"{path}: the mean_file holds NaN or inf (first at index {at})")
    return mean


def parse_blob_proto(buf: bytes, where: str = "binaryproto") -> np.ndarray:
    """Decode a caffe.BlobProto (the shape or the legacy num/channels/height/width fields, float or
    double data) with the caffemodel reader of tfconf.interop."""
    from tfconf.io.caffemodel import CaffemodelError, read_blob

    try:
        return read_blob(buf, where)
    except CaffemodelError as e:
        why = str(e).split(": ", 1)[-1].removesuffix(" (not a Caffe .caffemodel, or a truncated one)")
        raise DataError(f"{where}: not a valid Caffe BlobProto, or a truncated one ({why})") from None
