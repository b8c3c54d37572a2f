"""The sandbox every reliability case runs in (see util.Box), and a trained run's weights."""

import pytest

from .util import Box, spirals, train_ok


@pytest.fixture
def box(tmp_path):
    return Box(tmp_path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The final weights of a short spirals run (one per test module)."""
    box = Box(tmp_path_factory.mktemp("weights"))
    cfg = box.write("net.yaml", spirals())
    train_ok(box, cfg, box.work / "run")
    return box.work / "run" / "snapshots" / "tiny_iter_40.safetensors"
