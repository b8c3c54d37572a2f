"""Data sources, transforms and batches (pure numpy; nothing here downloads).

    from tfconf.data import make_dataset
    train = make_dataset({"source": "mnist", "batch_size": 64, "scale": 1 / 256}, "train", prefetch=2)
    x, y = next(train)              # float32 [64, 1, 28, 28], int64 [64]
    state = train.state()           # saved with a snapshot; train.restore(state) resumes exactly

Data comes from files the user has or from packages that ship it (see :mod:`tfconf.data.builtin`).
A missing optional package raises :class:`DataUnavailableError` naming the extra to install; any
other problem with a source raises :class:`DataError` with a short message.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Union

from tfconf.data.batcher import Batcher
from tfconf.data.errors import DataError, DataUnavailableError
from tfconf.data.schema import BUILTIN_SOURCES, DataSection, DataSpec
from tfconf.data.sources import guess_format, load_source, resolve
from tfconf.data.transforms import Transform, read_mean_file
from tfconf.data.windows import WindowBatcher, parse_windows

__all__ = [
    "BUILTIN_SOURCES",
    "Batcher",
    "DataError",
    "DataSection",
    "DataSpec",
    "DataUnavailableError",
    "Transform",
    "load_source",
    "input_tops",
    "make_dataset",
    "make_transform",
    "sample_shape",
]

PHASES = ("train", "test")


def _phase(phase: str) -> str:
    p = str(phase).lower()
    if p not in PHASES:
        raise ValueError(f"phase must be 'train' or 'test'. Received: {phase!r}")
    return p


def make_transform(spec: DataSpec, sample_shape, phase: str, root: Optional[str] = None) -> Transform:
    """The spec's transform_param for samples of ``sample_shape`` in ``phase``."""
    mean = spec.mean_value
    if spec.mean_file is not None:
        mean = read_mean_file(resolve(spec.mean_file, root))
    return Transform(
        sample_shape,
        scale=spec.scale,
        mean=mean,
        crop_size=spec.crop_size,
        mirror=spec.mirror,
        train=_phase(phase) == "train",
    )


def input_tops(spec: DataSpec):
    """The tops a source feeds when it declares them (text: data, label, cont [T, N]), else None
    (image-style sources feed ``data`` float [B, ...] and ``label`` int64 [B])."""
    if spec.is_text:
        from tfconf.data.text import input_tops as text_tops

        return text_tops(spec.seq_len)
    return None


def make_dataset(
    spec: Union[DataSpec, Mapping[str, Any]],
    phase: str,
    *,
    root: Optional[Union[str, os.PathLike]] = None,
    seed: Optional[int] = None,
    prefetch: int = 0,
) -> Batcher:
    """A :class:`Batcher` for one phase's data spec.

    ``phase`` is ``"train"`` or ``"test"``: it is the default ``split``, and in test the order is fixed
    (no shuffle), crops are centred and nothing is mirrored. ``root`` is the folder relative paths are
    resolved against (the config's folder). ``seed`` is used when the spec has none (the solver's
    ``random_seed``; 0 when both are missing). ``prefetch=n`` prepares ``n`` batches in a background thread.
    """
    if not isinstance(spec, DataSpec):
        spec = DataSpec.model_validate(spec)
    phase = _phase(phase)
    split = spec.split or phase
    seed = spec.seed if spec.seed is not None else (seed if seed is not None else 0)
    root = os.fspath(root) if root is not None else None
    if spec.is_text:
        from tfconf.data.text import make_text_dataset

        return make_text_dataset(spec, phase, root=root, seed=seed)
    if spec.format == "windows" or (spec.format is None and not spec.is_builtin
                                    and _guess(resolve(spec.source, root)) == "windows"):
        return _window_dataset(spec, phase, root, seed, prefetch)
    x, y = load_source(spec, split, root=root, seed=seed)
    transform = make_transform(spec, x.shape[1:], phase, root)
    shuffle = phase == "train" and (spec.shuffle if spec.shuffle is not None else True)
    return Batcher(x, y, spec.batch_size, shuffle=shuffle, seed=seed, transform=transform, prefetch=prefetch)


def sample_shape(spec: DataSpec, phase: str, root: Optional[str] = None):
    """The shape of one sample of ``spec`` as the net gets it (after the transform)."""
    if spec.format == "windows" or (spec.format is None and not spec.is_builtin
                                    and _guess(resolve(spec.source, root)) == "windows"):
        with _window_dataset(spec, phase, root, 0, 0) as ds:
            return ds.output_shape[1:]
    x, _ = load_source(spec, spec.split or _phase(phase), root=root, seed=0)
    return make_transform(spec, x.shape[1:], phase, root).output_shape


def _guess(path: str):
    try:
        return guess_format(path) if os.path.exists(path) else None
    except DataError:
        return None


def _window_dataset(spec: DataSpec, phase: str, root, seed: int, prefetch: int):
    """Caffe's WindowData over the spec's windows file."""
    path = resolve(spec.source, root)
    if not os.path.exists(path):
        raise DataError(f"windows file not found: {path}")
    root_folder = spec.root_folder
    if root_folder is not None and not os.path.isabs(os.path.expanduser(root_folder)):
        root_folder = resolve(root_folder, root)
    mean = spec.mean_value
    if spec.mean_file is not None:
        mean = read_mean_file(resolve(spec.mean_file, root))
    cache = int(spec.cache_mb * (1 << 20)) if spec.cache_mb is not None else 256 << 20
    return WindowBatcher(parse_windows(path, root_folder), spec.batch_size, crop_size=spec.crop_size,
                         fg_threshold=spec.fg_threshold, bg_threshold=spec.bg_threshold, fg_fraction=spec.fg_fraction,
                         context_pad=spec.context_pad, crop_mode=spec.crop_mode, mirror=spec.mirror, mean=mean,
                         scale=spec.scale, is_color=spec.is_color, train=_phase(phase) == "train", seed=seed,
                         prefetch=prefetch, cache_bytes=cache, where=path)
