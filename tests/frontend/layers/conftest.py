"""The layer tests' coverage, declared and verified, in any order (tests/coverage.py):

- each layer test module names in ``LAYER_CASES`` the layer types its tests check against numpy,
  each with a minimal config and input shapes (the first input is the default bottom;
  ``"labels"`` means integer class ids). test_registry.py runs the shipped harness on every case
  and tests/interop/test_caffe_import.py writes each as prototxt;
- collecting this folder whole fails when a registered layer type has no case (a new layer needs
  its case, in its family's test module, before anything runs), or has one in two modules;
- a module whose tests all ran and passed fails at its teardown when one of its declared types was
  never run by a passing test (helpers.Net records what it ran).
"""

from pathlib import Path

import pytest

from tests import coverage

from .helpers import RAN

HERE = Path(__file__).parent


def pytest_collection_modifyitems(session, config, items):
    from tfconf.frontend.layers import LAYERS

    coverage.require_declared(items, HERE, "LAYER_CASES", set(LAYERS),
                              "give the layer's case in its family's test module, beside its value test",
                              unique=True)


@pytest.fixture(scope="module", autouse=True)
def _declared_layers_are_run(request):
    yield from coverage.verified(request, "LAYER_CASES", RAN, "ran through helpers.build")
