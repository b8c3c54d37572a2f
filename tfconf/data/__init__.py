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
from tfconf.data.sources import load_source, resolve
from tfconf.data.transforms import Transform, read_mean_file

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
    x, y = load_source(spec, split, root=root, seed=seed)
    transform = make_transform(spec, x.shape[1:], phase, root)
    shuffle = phase == "train" and (spec.shuffle if spec.shuffle is not None else True)
    return Batcher(x, y, spec.batch_size, shuffle=shuffle, seed=seed, transform=transform, prefetch=prefetch)
