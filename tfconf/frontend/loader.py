"""Reading config files: YAML with positions, ``base:`` composition, ``--set`` overrides, dumping.

``load_config(path, overrides)`` returns a :class:`LoadedConfig`: the resolved config as plain
dicts/lists/scalars (``.data``), a :class:`SourceMap` from every path in it to the
``file:line:column`` it came from (``.source_map``), and the files read (``.files``).

YAML
    Read with :class:`Loader`, a ``yaml.SafeLoader`` subclass (nothing is executed; unknown tags are
    errors). Floats are resolved as YAML 1.2 does: ``1e-3`` and ``5E4`` are floats (PyYAML's YAML 1.1
    rules read them as strings). A key repeated in one mapping is an error. ``<<`` merge keys and
    anchors/aliases work as usual. Every mapping key and every list item is located (1-based line and
    column of the key / the item); the root is located at the start of the document.

Composition (``base:``)
    A top-level ``base: other.yaml`` (or a list of files) names configs this one builds on; paths are
    relative to the file that names them, and a base may have a base of its own (a cycle is an error).
    The file's own keys are deep-merged over its base's:

    * mappings merge recursively, the including file's values win;
    * lists replace the base's list, **except** the top-level ``layers:`` list, which merges by layer
      ``name``: a child layer with the name of a base layer is deep-merged into that layer (in the base's
      position), a layer with a new name is appended, and ``{name: x, remove: true}`` deletes base layer
      ``x``;
    * ``key: null`` sets the value to null (it does not delete the key).

    Every value keeps the location of the file that supplied it, so an error in an inherited layer
    points into the base file.

Overrides (``--set key=value``)
    Applied after composition, in order. The key is a dotted path; in a list, a number is an index
    (``layers.0.name``) and anything else matches an item's ``name`` (``layers.conv1.num_output``). The
    value is parsed as YAML (``32`` → int, ``1e-3`` → float, ``[1, 2]`` → list, ``{type: step}`` → mapping)
    and replaces what was there (a mapping value replaces the whole mapping). A missing mapping key,
    intermediate or last, is created. Values set this way are located at the override text, e.g.
    ``--set solver.base_lr=-1: solver.base_lr: must be > 0. Received: -1``.

:func:`dump_yaml` writes a resolved config back as YAML that :func:`load_config` reads to the same data.

The parts: located_yaml.py (the Loader, the located tree, the reading limits), compose.py (files and
``base:``), overrides.py (``--set``); this module is the entry point and the LoadedConfig.
"""


from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .compose import _Composer
from .errors import MISSING, ConfigError, ConfigIssue, Location, format_path
from .located_yaml import (  # noqa: F401 - the reading limits and YAML classes, public here
    MAX_ALIASES, MAX_BASE_DEPTH, MAX_BASE_FILES, MAX_BYTES, MAX_DEPTH, MAX_VALUES, Dumper, Loader, SourceMap, _Entry,
    _flatten, dump_yaml,
)
from .overrides import _apply_override, parse_override


__all__ = [
    "Dumper", "LoadedConfig", "Loader", "SourceMap", "dump_yaml", "load_config", "load_config_string",
    "parse_override", "MAX_ALIASES", "MAX_BASE_DEPTH", "MAX_BASE_FILES", "MAX_BYTES", "MAX_DEPTH", "MAX_VALUES",
]


@dataclass
class LoadedConfig:
    """A resolved config: ``data`` (plain dicts/lists/scalars), where each value came from, the files read."""

    data: dict
    source_map: SourceMap
    files: list[Path] = field(default_factory=list)
    overrides: tuple[str, ...] = ()

    def location(self, path: Sequence) -> Location | None:
        """Where ``path`` (or its nearest located ancestor) came from."""
        return self.source_map.nearest(path)

    def issue(self, path: Sequence, message: str, received: Any = MISSING) -> ConfigIssue:
        """A located issue about ``path``; for checks done after validation (dangling bottoms, shapes...)."""
        return ConfigIssue(self.location(path), format_path(path, self.data), message, received)

    def error(self, path: Sequence, message: str, received: Any = MISSING) -> ConfigError:
        """``raise loaded.error(("layers", 3, "bottom"), "no earlier layer produces 'fc9'")``."""
        return ConfigError([self.issue(path, message, received)])

    def dump(self) -> str:
        return dump_yaml(self.data)


# ----------------------------------------------------------------------------------------------------
# public entry points

def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> LoadedConfig:
    """Load a config file, compose its ``base:`` chain, apply ``--set`` overrides, and locate every value.

    Raises :class:`~tfconf.frontend.errors.ConfigError` (located, one line per issue) for a missing or
    unreadable file, invalid YAML, a duplicate key, a bad ``base`` (missing file, cycle) or a bad override.
    """
    display = os.fspath(path)
    composer = _Composer()
    root = composer.load(display, display)
    return _finish(root, composer.files, overrides)


def load_config_string(text: str, filename: str = "<string>", overrides: Iterable[str] = ()) -> LoadedConfig:
    """Like :func:`load_config` for YAML text; ``base:`` paths are relative to the current directory."""
    composer = _Composer()
    root = composer.load("", filename, text=text)
    return _finish(root, composer.files, overrides)


def _finish(root: _Entry, files: list[Path], overrides: Iterable[str]) -> LoadedConfig:
    overrides = tuple(overrides)
    for text in overrides:
        _apply_override(root, text)
    smap = SourceMap()
    data = _flatten(root, (), smap)
    return LoadedConfig(data=data, source_map=smap, files=files, overrides=overrides)
