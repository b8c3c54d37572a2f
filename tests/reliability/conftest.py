"""The sandbox every reliability case runs in (see util.Box)."""

import pytest

from .util import Box


@pytest.fixture
def box(tmp_path):
    return Box(tmp_path)
