"""The op tests' gradient coverage, declared and verified, in any order:

- each op test module names in ``GRAD_CHECKS`` the op types whose gradients its tests check
  through the harness (tests/engine/harness.check_op);
- collecting this folder whole fails when a registered op type with a gradient rule is in no
  module's ``GRAD_CHECKS`` (a new op needs its case before anything runs);
- a module whose tests all ran and passed fails at its teardown when one of its declared op types
  was never differentiated by a passing check (the declaration cannot claim what is not tested).
"""

from pathlib import Path

import pytest

from tests.engine import harness

HERE = Path(__file__).parent


def _modules(items):
    return {item.module for item in items if Path(str(item.path)).parent == HERE}


def _differentiable_op_types():
    import tfconf.engine.ops  # noqa: F401 - registers every op type of the library
    from tfconf.engine import registry

    return {n for n, d in registry.registered_ops().items()
            if d.__module__.startswith("tfconf.") and d.grad is not None and not d.nondifferentiable}


def pytest_collection_modifyitems(session, config, items):
    collected = _modules(items)
    files = {p.name for p in HERE.glob("test_*.py")}
    if {Path(m.__file__).name for m in collected} != files:
        return  # a partial run: the declarations of the modules left out are not here to count
    declared = set().union(*(getattr(m, "GRAD_CHECKS", frozenset()) for m in collected))
    missing = sorted(_differentiable_op_types() - declared)
    if missing:
        raise pytest.UsageError(
            "op types with a gradient rule that no op test module declares in GRAD_CHECKS (add the "
            f"op's gradient check to its family's test module, and its name there): {missing}")


@pytest.fixture(scope="module", autouse=True)
def _declared_gradients_are_checked(request):
    from tests.conftest import DESELECTED

    seen: set = set()
    failed_before = request.session.testsfailed
    with harness.collecting(seen):
        yield
    module = request.module
    declared = getattr(module, "GRAD_CHECKS", frozenset())
    left_out = any(item.module is module for item in DESELECTED)
    if declared and not left_out and request.session.testsfailed == failed_before:
        unchecked = sorted(declared - seen)
        if unchecked:
            pytest.fail(f"{Path(module.__file__).name} declares GRAD_CHECKS that none of its passing tests "
                        f"differentiated through check_op: {unchecked}")
