"""One registry class for everything tfconf looks up by name: op types (engine/registry.py), layer
types (frontend/layers/base.py), built-in data sets (data/builtin.py) and zoo entries (zoo/registry.py).

A registry refuses a second declaration under a name (two modules registering ``Conv2D`` would
otherwise silently shadow each other) and answers an unknown name with what is close and what
exists, in one wording everywhere.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, Mapping, TypeVar

from tfconf.errors import did_you_mean

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """``what``: the kind of name held, as a message says it ("op type", "layer type");
    ``hints``: how many close names an unknown-name message suggests."""

    def __init__(self, what: str, hints: int = 1):
        self.what = what
        self.hints = hints
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` under ``name``; a name registered twice is a ValueError naming both."""
        if name in self._items:
            first = getattr(self._items[name], "__module__", None)
            where = f" (first by {first})" if first else ""
            raise ValueError(f"{self.what} {name!r} is registered twice{where}")
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        """Take ``name`` out again (a test that registered a throwaway declaration)."""
        del self._items[name]

    def decorator(self, name_of: Callable[[T], str]) -> Callable[[T], T]:
        """A class decorator registering its class under ``name_of(cls)``."""
        return lambda item: self.add(name_of(item), item)

    def hint(self, name) -> str:
        """`` Did you mean 'x'?`` for an unknown ``name``, or ``""`` when nothing is close."""
        return did_you_mean(name, self._items, n=self.hints)

    def known(self) -> str:
        return ", ".join(sorted(self._items)) or "none"

    def unknown(self, name) -> str:
        """The message for a name that is not registered."""
        return f"unknown {self.what} {name!r}.{self.hint(name)} Known: {self.known()}"

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(self.unknown(name)) from None

    def __contains__(self, name) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self)} entries)"
