"""Shared pytest setup: a fresh default graph per test, and the deselected tests (for the op tests'
coverage check, tests/engine/ops/conftest.py)."""

import pytest

import tfconf as tc

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


def pytest_deselected(items):
    DESELECTED.extend(items)
