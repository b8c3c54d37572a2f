"""Shared pytest setup: a fresh default graph per test, and the op registry sweep run last."""

import pytest

import tfconf as tc

SWEEP_FILE = "test_registry_sweep.py"
DESELECTED: list = []


@pytest.fixture(autouse=True)
def _fresh_default_graph():
    tc.reset_default_graph()
    yield


@pytest.fixture
def g():
    """A fresh graph made the default for the test's duration."""
    graph = tc.Graph()
    with graph.as_default():
        yield graph


def pytest_collection_modifyitems(config, items):
    # The sweep reads what the op tests recorded, so it must run after all of them.
    items.sort(key=lambda item: item.nodeid.split("::")[0].endswith(SWEEP_FILE))


def pytest_deselected(items):
    DESELECTED.extend(items)
