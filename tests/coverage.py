"""Coverage that follows from a registry, declared by test modules and verified in any order.

A test folder whose modules each declare, in a module attribute, the registered types their tests
check (the op tests' ``GRAD_CHECKS``, the layer tests' ``LAYER_CASES``) uses this in its conftest:

- :func:`require_declared` (from ``pytest_collection_modifyitems``): collecting the folder whole
  fails when a registered type is declared by no module, so a new op or layer needs its case
  before anything runs;
- :func:`verified` (a module-scoped autouse fixture's body): a module whose tests all ran and
  passed fails at its teardown when a type it declares was never exercised by a passing check,
  as recorded through a :class:`Collector`; so a declaration cannot claim what is not tested.
"""

from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path

import pytest


class Collector:
    """Where the running test module collects the types its passing checks exercised."""

    def __init__(self, name: str):
        self._into: contextvars.ContextVar = contextvars.ContextVar(name, default=None)

    @contextlib.contextmanager
    def collecting(self, into: set):
        token = self._into.set(into)
        try:
            yield into
        finally:
            self._into.reset(token)

    def record(self, types) -> None:
        into = self._into.get()
        if into is not None:
            into.update(types)


def _declared(module, attr):
    return set(getattr(module, attr, ()))


def require_declared(items, here: Path, attr: str, required: set, advice: str, unique: bool = False) -> None:
    """Raise a collection error when the modules of ``here`` (all of them collected) leave a type of
    ``required`` undeclared in ``attr`` (or, with ``unique``, declare one in two modules)."""
    collected = {item.module for item in items if Path(str(item.path)).parent == here}
    if {Path(m.__file__).name for m in collected} != {p.name for p in here.glob("test_*.py")}:
        return  # a partial run: the declarations of the modules left out are not here to count
    seen: dict = {}
    twice = sorted(t for m in collected for t in _declared(m, attr) if seen.setdefault(t, m) is not m)
    missing = sorted(required - set(seen))
    twice = twice if unique else []
    if missing or twice:
        raise pytest.UsageError(
            f"{here.name}: types that no test module declares in {attr} ({advice}): {missing}"
            if missing else f"{here.name}: types declared in {attr} by two modules: {twice}")


def verified(request, attr: str, collector: Collector, what: str):
    """Generator body of a module-scoped fixture: collect while the module runs, then compare."""
    from tests.conftest import DESELECTED

    seen: set = set()
    failed_before = request.session.testsfailed
    with collector.collecting(seen):
        yield
    module = request.module
    declared = _declared(module, attr)
    left_out = any(item.module is module for item in DESELECTED)
    if declared and not left_out and request.session.testsfailed == failed_before:
        unchecked = sorted(declared - seen)
        if unchecked:
            pytest.fail(f"{Path(module.__file__).name} declares {attr} that none of its passing tests "
                        f"{what}: {unchecked}")
