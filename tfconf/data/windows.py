"""Caffe's WindowData (R-CNN): batches of windows cut from images and warped to ``crop_size``.

The windows file lists, for each image, its windows with their class and their overlap with a
ground-truth box::

    # 0
    images/000001.jpg
    3
    500
    353
    2
    12 0.92 48 240 195 371
    0 0.1 8 12 352 498

(``# image_index``, the path, channels, height, width, the window count, then per window
``class overlap x1 y1 x2 y2`` in pixels, inclusive). A window overlapping a box by at least
``fg_threshold`` is foreground with its class; one below ``bg_threshold`` is background, label 0.
Each batch holds ``batch_size * fg_fraction`` foreground windows and background ones for the rest,
drawn at random; each window is widened by ``context_pad`` pixels of context (at the scale of the
output), made square first with ``crop_mode: square``, cut out (the part outside the image left 0),
warped to ``crop_size`` x ``crop_size``, flipped at random with ``mirror`` (train), its mean
subtracted and scaled: Caffe's WindowDataLayer step by step, in BGR as Caffe reads images. Batch ``i``
is a pure function of ``(seed, i)``, so a resumed run sees the batches of an uninterrupted one.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

import numpy as np

from tfconf.data.batcher import Batcher
from tfconf.data.caffe_db import read_image, resize
from tfconf.data.errors import DataError
from tfconf.data.lazy import BoundedCache
from tfconf.data.paths import regular, resolve
from tfconf.data.transforms import Transform

__all__ = ["Windows", "parse_windows", "WindowBatcher"]

_WINDOWS = 2  # the SeedSequence stream of window draws (0 and 1 are the batcher's shuffle and augment)


class Windows:
    """A parsed windows file: the images, and per window its image, label, overlap and box."""

    def __init__(self, images: list, channels: int, image: np.ndarray, label: np.ndarray, overlap: np.ndarray,
                 box: np.ndarray):
        self.images, self.channels = images, channels
        self.image, self.label, self.overlap, self.box = image, label, overlap, box


def parse_windows(path: str, root_folder: Optional[str] = None) -> Windows:
    regular(path, "windows file")
    images, image, label, overlap, box = [], [], [], [], []
    channels = None
    try:
        with open(path, encoding="utf-8") as f:
            lines = [(n, line.strip()) for n, line in enumerate(f, 1)]
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text windows file (byte {e.start} is not UTF-8 text)") from None
    lines = [(n, s) for n, s in lines if s]
    i = 0

    def take(what: str, kind=int):
        nonlocal i
        if i >= len(lines):
            raise DataError(f"{path}: the file ends where {what} should be")
        n, s = lines[i]
        i += 1
        try:
            return kind(s) if kind is not str else s
        except ValueError:
            raise DataError(f"{path}:{n}: {what} should be a number. Received: {s[:60]!r}") from None

    base = os.path.dirname(path)
    while i < len(lines):
        n, s = lines[i]
        if not s.startswith("#"):
            raise DataError(f"{path}:{n}: expected `# image_index` to start an image. Received: {s[:60]!r}")
        i += 1
        name = take("the image path", str)
        c, h, w = take("channels"), take("height"), take("width")
        if channels is None:
            channels = c
        elif c != channels:
            raise DataError(f"{path}:{n}: the images have {channels} and {c} channels; a batch needs one count")
        count = take("the number of windows")
        images.append(root_folder + name if root_folder else resolve(name, base))
        for _ in range(count):
            if i >= len(lines):
                raise DataError(f"{path}: the file ends inside the windows of {name}")
            n, s = lines[i]
            i += 1
            parts = s.split()
            try:
                cls, ov, x1, y1, x2, y2 = int(parts[0]), float(parts[1]), *(int(round(float(v))) for v in parts[2:6])
                if len(parts) != 6:
                    raise ValueError
            except (ValueError, IndexError):
                raise DataError(f"{path}:{n}: a window is `class overlap x1 y1 x2 y2`. Received: {s[:80]!r}") from None
            if x2 < x1 or y2 < y1:
                raise DataError(f"{path}:{n}: the window's box {x1} {y1} {x2} {y2} is empty (x2 < x1 or y2 < y1)")
            image.append(len(images) - 1)
            label.append(cls)
            overlap.append(ov)
            box.append((x1, y1, x2, y2))
    if not box:
        raise DataError(f"{path}: the windows file lists no windows")
    return Windows(images, int(channels), np.asarray(image), np.asarray(label, np.int64), np.asarray(overlap),
                   np.asarray(box, np.int64))


class WindowBatcher(Batcher):
    """Batches of warped windows (``x float32 [B, C, crop, crop]``, ``y int64 [B]``) from a
    :class:`Windows`; the batcher's stream, state and prefetch, with Caffe's sampling."""

    def __init__(self, windows: Windows, batch_size: int, *, crop_size: int, fg_threshold=0.5, bg_threshold=0.5,
                 fg_fraction=0.25, context_pad=0, crop_mode="warp", mirror=False, mean=None, scale=1.0,
                 is_color=True, train=True, seed=0, prefetch=0, cache_bytes=256 << 20, where="windows"):
        if crop_size < 1:
            raise DataError(f"{where}: WindowData needs crop_size: the side its windows are warped to")
        if 2 * context_pad >= crop_size:
            raise DataError(f"{where}: context_pad {context_pad} leaves nothing of a {crop_size} crop")
        self.windows = w = windows
        self.fg = np.flatnonzero(w.overlap >= fg_threshold)
        self.bg = np.flatnonzero(w.overlap < bg_threshold)
        self.num_fg = int(batch_size * fg_fraction)
        for pool, n, what in ((self.fg, self.num_fg, "foreground"), (self.bg, batch_size - self.num_fg, "background")):
            if n and not len(pool):
                raise DataError(f"{where}: no {what} windows (overlap {'>=' if what[0] == 'f' else '<'} "
                                f"{fg_threshold if what[0] == 'f' else bg_threshold}) for the {n} a batch takes")
        self.crop, self.pad, self.square = int(crop_size), int(context_pad), crop_mode == "square"
        self.mirror_windows = bool(mirror) and train
        self.channels = 3 if is_color else 1
        self.is_color = is_color
        shape = (self.channels, self.crop, self.crop)
        self.mean = None if mean is None else _window_mean(np.asarray(mean, np.float32), shape, where)
        self.scale = np.float32(scale)
        # the Batcher's stream over the windows (its state says where a run is)
        self.x, self.y = None, w.label
        self.batch_size, self.shuffle, self.seed = int(batch_size), False, int(seed)
        self.transform = Transform(shape, train=False)
        self.prefetch, self.iteration = int(prefetch), 0
        self._orders: dict = {}
        self._lock = threading.Lock()
        self._worker = None
        self._images = BoundedCache(cache_bytes)

    def _image(self, k: int) -> np.ndarray:
        im = self._images[k]
        if im is None:
            im = read_image(self.windows.images[k], self.is_color)
            self._images.put(k, im, im.nbytes)
        return im

    def picks_at(self, iteration: int):
        """(window indices, mirror flags) of batch ``iteration``: background windows, then foreground."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, _WINDOWS, int(iteration)]))
        n_bg = self.batch_size - self.num_fg
        picks = np.concatenate([self.bg[rng.integers(0, len(self.bg), n_bg)] if n_bg else np.zeros(0, np.int64),
                                self.fg[rng.integers(0, len(self.fg), self.num_fg)] if self.num_fg
                                else np.zeros(0, np.int64)])
        flips = rng.random(self.batch_size) < 0.5 if self.mirror_windows else np.zeros(self.batch_size, bool)
        return picks.astype(np.int64), flips

    def batch_at(self, iteration: int):
        picks, flips = self.picks_at(iteration)
        out = np.zeros((self.batch_size, self.channels, self.crop, self.crop), np.float32)
        labels = np.empty(self.batch_size, np.int64)
        for b, (k, flip) in enumerate(zip(picks, flips)):
            fg = b >= self.batch_size - self.num_fg
            labels[b] = self.windows.label[k] if fg else 0
            self._warp(k, flip, out[b])
        return out, labels

    def _warp(self, k: int, flip: bool, out: np.ndarray) -> None:
        """Window ``k`` cut out, warped and placed into ``out`` [C, crop, crop] as Caffe's layer does."""
        image = self._image(int(self.windows.image[k]))
        rows, cols = image.shape[1:]
        x1, y1, x2, y2 = (int(v) for v in self.windows.box[k])
        crop = self.crop
        pad_w = pad_h = 0
        crop_w = crop_h = crop
        if self.pad > 0 or self.square:
            scale = crop / (crop - 2.0 * self.pad)
            half_h, half_w = (y2 - y1 + 1) / 2.0, (x2 - x1 + 1) / 2.0
            cx, cy = x1 + half_w, y1 + half_h
            if self.square:
                half_h = half_w = max(half_h, half_w)
            x1, x2 = int(round(cx - half_w * scale)), int(round(cx + half_w * scale))
            y1, y2 = int(round(cy - half_h * scale)), int(round(cy + half_h * scale))
            unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
            px1, py1 = max(0, -x1), max(0, -y1)
            px2, py2 = max(0, x2 - cols + 1), max(0, y2 - rows + 1)
            x1, x2 = min(max(x1, 0), cols - 1), min(max(x2, 0), cols - 1)
            y1, y2 = min(max(y1, 0), rows - 1), min(max(y2, 0), rows - 1)
            sx, sy = crop / unclipped_w, crop / unclipped_h
            crop_w, crop_h = int(round((x2 - x1 + 1) * sx)), int(round((y2 - y1 + 1) * sy))
            px1, px2 = int(round(px1 * sx)), int(round(px2 * sx))
            py1 = int(round(py1 * sy))
            pad_h = py1
            pad_w = px2 if flip else px1
            crop_h, crop_w = max(1, min(crop_h, crop - pad_h)), max(1, min(crop_w, crop - pad_w))
        else:
            x1, x2 = min(max(x1, 0), cols - 1), min(max(x2, 0), cols - 1)
            y1, y2 = min(max(y1, 0), rows - 1), min(max(y2, 0), rows - 1)
        roi = resize(np.ascontiguousarray(image[:, y1:y2 + 1, x1:x2 + 1]), crop_h, crop_w).astype(np.float32)
        if flip:
            roi = roi[:, :, ::-1]
        if self.mean is not None:
            m = self.mean
            image_mean = m.shape[1:] != (1, 1)  # a mean image, else a value per channel
            roi = roi - (m[:, pad_h:pad_h + crop_h, pad_w:pad_w + crop_w] if image_mean else m)
        out[:, pad_h:pad_h + crop_h, pad_w:pad_w + crop_w] = roi * self.scale

    def state(self) -> dict:
        s = super().state()
        s["windows"] = int(len(self.windows.box))
        return s


def _window_mean(mean: np.ndarray, shape: tuple, where: str) -> np.ndarray:
    """mean_value (a number or one per channel) as [C, 1, 1]; a mean image's centre crop_size
    square (Caffe's mean offset) as [C, crop, crop]."""
    c, crop, _ = shape
    if mean.size == 1:
        return mean.reshape(1, 1, 1)
    if mean.ndim == 1:
        if mean.size != c:
            raise DataError(f"{where}: mean_value has {mean.size} values for {c} channels")
        return mean.reshape(c, 1, 1)
    if mean.ndim == 4 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.ndim != 3 or mean.shape[0] != c or min(mean.shape[1:]) < crop:
        raise DataError(f"{where}: the mean_file is {list(mean.shape)}; WindowData needs [{c}, H, W] with H, W >= "
                        f"crop_size {crop}")
    oh, ow = (mean.shape[1] - crop) // 2, (mean.shape[2] - crop) // 2
    return np.ascontiguousarray(mean[:, oh:oh + crop, ow:ow + crop])
