"""``base:`` composition: config files read within bounds, their base chains followed (cycles
and depth refused) and deep-merged, the top-level ``layers:`` list by layer name."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from . import located_yaml as Y
from .errors import ConfigError, ConfigIssue, Location, did_you_mean
from .located_yaml import _Entry, _parse, _plain, _shown, _size


# ----------------------------------------------------------------------------------------------------
# files and composition

def _read_bounded(path: str) -> bytes:
    """The file's bytes; ValueError when it holds more than Y.MAX_BYTES (checked before reading a regular
    file, and by reading one byte more than the bound from a device or pipe such as /dev/zero)."""
    mode = os.stat(path).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):  # opening a FIFO would wait for a writer forever
        raise _NotAFile()
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size > Y.MAX_BYTES:
            raise _TooLarge(info.st_size)
        raw = f.read(Y.MAX_BYTES + 1)
    if len(raw) > Y.MAX_BYTES:
        raise _TooLarge(None)
    return raw


class _NotAFile(Exception):
    pass


class _TooLarge(Exception):
    def __init__(self, size: int | None):
        super().__init__(size)
        self.size = size


def _read_text(path: str, display: str, where: Location | None, what: str) -> str:
    # a base config's problem is reported at the ``base:`` that names it, a top-level file's at its name
    loc = where or Location(_shown(display))
    subject = f"{what} {_shown(display)}" if where else what
    try:
        raw = _read_bounded(path)
    except FileNotFoundError:
        problem = "not found"
    except IsADirectoryError:
        problem = "is a directory, not a file"
    except NotADirectoryError:
        problem = "not found (a folder in its path is a file)"
    except PermissionError:
        problem = "cannot be read: permission denied"
    except _NotAFile:
        problem = "is a pipe or socket, not a file"
    except _TooLarge as exc:
        size = _size(exc.size) if exc.size is not None else f"more than {_size(Y.MAX_BYTES)}"
        problem = f"is too large: {size} (a config is at most {_size(Y.MAX_BYTES)})"
    except ValueError:  # open() refuses a name with a NUL byte
        problem = "cannot be read: its name contains a NUL byte"
    except OSError as exc:
        problem = f"cannot be read: {(exc.strerror or str(exc)).lower()}"
    else:
        problem = ""
    if problem:
        raise ConfigError([ConfigIssue(loc, "base" if where else "", f"{subject} {problem}")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError([ConfigIssue(Location(_shown(display), line, column), "",
                                       "not UTF-8 text (is this a YAML config?)")]) from None


class _Composer:
    def __init__(self) -> None:
        self.files: list[Path] = []
        self.reads = 0

    def load(self, path: str, display: str, chain: tuple = (), where: Location | None = None,
             text: str | None = None) -> _Entry:
        if "\0" in path:
            raise ConfigError([ConfigIssue(where or Location(_shown(display)), "base" if where else "",
                                           "a file name cannot contain a NUL byte", display)])
        if len(chain) >= Y.MAX_BASE_DEPTH:
            raise ConfigError([ConfigIssue(where, "base", f"the base configs are nested more than "
                                           f"{Y.MAX_BASE_DEPTH} files deep")])
        self.reads += 1
        if self.reads > Y.MAX_BASE_FILES:
            raise ConfigError([ConfigIssue(where, "base", f"composing this config reads more than "
                                           f"{Y.MAX_BASE_FILES} base files (each 'base:' entry is read again)")])
        real = os.path.realpath(path) if text is None else f"<text>:{display}"
        if real in [r for r, _ in chain]:
            names = [d for _, d in chain] + [display]
            raise ConfigError([ConfigIssue(where, "base", "base configs form a cycle: " + " -> ".join(names))])
        if text is None:
            text = _read_text(path, display, where, "base config" if where else "config file")
            self.files.append(Path(display))
        root = _parse(text, display)
        if root is None:
            root = _Entry(Location(display, 1, 1), {})
        if not isinstance(root.value, dict):
            named = (f"; it is named by the base: at {where}" if where is not None else "")
            raise ConfigError([ConfigIssue(root.loc, "", "a config must be a mapping of sections "
                                           "(name:, layers:, solver:, ...); found "
                                           f"{_kind(root.value)}{named}")])
        chain = chain + ((real, display),)
        base_entry = root.value.pop("base", None)
        if base_entry is None:
            _reject_removals(root)
            return root
        items = base_entry.value
        if isinstance(items, str):
            items = [_Entry(base_entry.loc, items)]
        if not (isinstance(items, list) and items and all(isinstance(i.value, str) for i in items)):
            raise ConfigError([ConfigIssue(base_entry.loc, "base",
                                           "must be a file name or a list of file names",
                                           _plain(base_entry))])
        merged: _Entry | None = None
        for item in items:
            name = os.path.expanduser(item.value)
            base_path = os.path.join(os.path.dirname(path), name)
            base_display = os.path.normpath(os.path.join(os.path.dirname(display), name))
            base = self.load(base_path, base_display, chain, item.loc)
            merged = base if merged is None else _merge(merged, base, ())
        assert merged is not None
        return _merge(merged, root, ())


def _kind(value: Any) -> str:
    """What a value is, for messages; never the text itself (a base: may name any file, /etc/passwd)."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return f"text of {len(value):,} characters, not YAML keys" if value.strip() else "blank text"
    shown = repr(value)
    return f"the value {shown if len(shown) <= 24 else shown[:21] + '...'}"


def _layer_name(entry: _Entry) -> Any:
    if isinstance(entry.value, dict) and "name" in entry.value:
        name = entry.value["name"].value
        return name if isinstance(name, str) else None
    return None


def _reject_removals(root: _Entry) -> None:
    layers = root.value.get("layers")
    if layers is None or not isinstance(layers.value, list):
        return
    for item in layers.value:
        if isinstance(item.value, dict) and "remove" in item.value:
            raise ConfigError([ConfigIssue(
                item.value["remove"].loc, "",
                "'remove' only applies to a layer inherited through 'base', and this file has no base")])


def _merge(base: _Entry, child: _Entry, path: tuple) -> _Entry:
    """Deep-merge ``child`` over ``base`` (see the module docstring for the rules)."""
    if isinstance(base.value, dict) and isinstance(child.value, dict):
        out = dict(base.value)
        for key, entry in child.value.items():
            out[key] = _merge(out[key], entry, path + (key,)) if key in out else entry
        return _Entry(child.loc, out)
    if path == ("layers",) and isinstance(base.value, list) and isinstance(child.value, list):
        return _Entry(child.loc, _merge_layers(base.value, child.value))
    return child


def _merge_layers(base: list[_Entry], child: list[_Entry]) -> list[_Entry]:
    out: list[_Entry | None] = list(base)
    index: dict[str, int] = {}
    repeated: set[str] = set()
    for i, item in enumerate(base):
        name = _layer_name(item)
        if name is not None:
            if name in index:
                repeated.add(name)
            index.setdefault(name, i)
    for item in child:
        name = _layer_name(item)
        fields = item.value if isinstance(item.value, dict) else {}
        remove = fields.get("remove")
        if remove is not None and not isinstance(remove.value, bool):
            raise ConfigError([ConfigIssue(remove.loc, "", "'remove' must be true or false",
                                           _plain(remove))])
        if remove is not None:
            fields = dict(fields)
            del fields["remove"]
            item = _Entry(item.loc, fields)
        if name is None or name not in index or out[index[name]] is None:
            if remove is not None and remove.value:
                known = [n for n in index if out[index[n]] is not None]
                raise ConfigError([ConfigIssue(
                    remove.loc, "", f"cannot remove layer {name!r}: the base config has no such layer"
                    + did_you_mean(name, known))])
            out.append(item)
            continue
        if name in repeated:
            raise ConfigError([ConfigIssue(
                item.loc, "", f"cannot merge layer {name!r}: its name appears more than once in the base config")])
        if remove is not None and remove.value:
            extra = [k for k in fields if k != "name"]
            if extra:
                raise ConfigError([ConfigIssue(
                    fields[extra[0]].loc, "",
                    f"a layer with 'remove: true' takes only 'name'; found {extra[0]!r}")])
            out[index[name]] = None
            continue
        out[index[name]] = _merge(out[index[name]], item, ())
    return [e for e in out if e is not None]
