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
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import MISSING, ConfigError, ConfigIssue, Location, did_you_mean, format_path, suggest

__all__ = [
    "Dumper", "LoadedConfig", "Loader", "SourceMap", "dump_yaml", "load_config", "load_config_string",
    "parse_override",
]

# YAML 1.2's float syntax: like PyYAML's YAML 1.1 rule, but an exponent needs neither a dot nor a sign.
_FLOAT_RE = re.compile(r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats (``1e-3`` is a float). Used for files and ``--set`` values."""


class Dumper(yaml.SafeDumper):
    """SafeDumper that agrees with :class:`Loader` (so the string ``"1e-3"`` is quoted) and writes tuples as lists."""

    def increase_indent(self, flow: bool = False, indentless: bool = False):  # noqa: D102
        # NOTE: indent list items under their key (``layers:\n  - name: ...``), as people write them.
        return super().increase_indent(flow, False)


for _cls in (Loader, Dumper):
    _cls.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))
Dumper.add_representer(tuple, lambda dumper, data: dumper.represent_list(list(data)))


# ----------------------------------------------------------------------------------------------------
# source map and result

class SourceMap(Mapping):
    """Maps a path tuple (``("layers", 3, "kernel_size")``) to the :class:`Location` that supplied it."""

    def __init__(self, entries: Mapping[tuple, Location] | None = None):
        self._entries: dict[tuple, Location] = dict(entries or {})

    def __getitem__(self, path: tuple) -> Location:
        return self._entries[tuple(path)]

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __setitem__(self, path: tuple, location: Location) -> None:
        self._entries[tuple(path)] = location

    def nearest(self, path: Sequence) -> Location | None:
        """The location of ``path`` or, when it has none (a missing key), of its nearest ancestor."""
        path = tuple(path)
        for k in range(len(path), -1, -1):
            loc = self._entries.get(path[:k])
            if loc is not None:
                return loc
        return None

    def __repr__(self) -> str:
        return f"SourceMap({len(self._entries)} entries)"


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
# located tree: every dict/list value is made of _Entry objects until flattened

class _Entry:
    __slots__ = ("loc", "value")

    def __init__(self, loc: Location, value: Any):
        self.loc = loc
        self.value = value  # scalar | dict[key, _Entry] | list[_Entry]


def _flatten(entry: _Entry, path: tuple, smap: SourceMap) -> Any:
    smap[path] = entry.loc
    value = entry.value
    if isinstance(value, dict):
        return {k: _flatten(v, path + (k,), smap) for k, v in value.items()}
    if isinstance(value, list):
        return [_flatten(v, path + (i,), smap) for i, v in enumerate(value)]
    return value


def _plain(entry: _Entry) -> Any:
    return _flatten(entry, (), SourceMap())


def _mark_location(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


def _yaml_error(exc: yaml.YAMLError, file: str, override: Location | None = None) -> ConfigError:
    """A one-line located message for a PyYAML error."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if "'\\t'" in problem:
        message = "invalid YAML: tab character; indent with spaces, not tabs"
    elif problem.startswith("could not determine a constructor for the tag"):
        tag = problem.rsplit(" ", 1)[-1].replace("tag:yaml.org,2002:", "!!")
        message = f"unsupported YAML tag {tag} (only plain values, lists and mappings are allowed)"
    else:
        message = f"invalid YAML: {problem}"
        context_mark = getattr(exc, "context_mark", None)
        if context:
            where = ""
            if context_mark is not None and override is None:
                where = f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
            message += f" ({context}{where})"
    if override is not None:
        loc = override
    elif mark is not None:
        loc = _mark_location(file, mark)
    else:
        loc = Location(file)
    return ConfigError([ConfigIssue(loc, "", message)])


def _tag(tag: str) -> str:
    return repr(tag.replace("tag:yaml.org,2002:", "!!"))


class _Builder:
    """Turns a composed YAML node tree into a located _Entry tree (with duplicate-key detection)."""

    def __init__(self, loader: Loader, file: str, fixed_loc: Location | None = None):
        self.loader = loader
        self.file = file
        self.fixed_loc = fixed_loc  # overrides: every value is located at the override text

    def loc(self, node: Node) -> Location:
        return self.fixed_loc or _mark_location(self.file, node.start_mark)

    def fail(self, node: Node, message: str) -> ConfigError:
        return ConfigError([ConfigIssue(self.loc(node), "", message)])

    def build(self, node: Node, loc: Location, stack: tuple = ()) -> _Entry:
        if id(node) in stack:
            raise self.fail(node, "recursive YAML alias (a value that contains itself)")
        if isinstance(node, ScalarNode):
            try:
                return _Entry(loc, self.loader.construct_object(node, deep=True))
            except yaml.YAMLError as exc:
                raise _yaml_error(exc, self.file, self.fixed_loc) from None
        stack = stack + (id(node),)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ_TAG:
                raise self.fail(node, f"unsupported YAML tag {_tag(node.tag)} (only plain values, lists and mappings are allowed)")
            return _Entry(loc, [self.build(item, self.loc(item), stack) for item in node.value])
        if isinstance(node, MappingNode):
            if node.tag != _MAP_TAG:
                raise self.fail(node, f"unsupported YAML tag {_tag(node.tag)} (only plain values, lists and mappings are allowed)")
            return _Entry(loc, self.mapping(node, stack))
        raise self.fail(node, "unsupported YAML node")  # pragma: no cover

    def mapping(self, node: MappingNode, stack: tuple) -> dict:
        out: dict = {}
        first_line: dict = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.extend(value_node.value if isinstance(value_node, SequenceNode) else [value_node])
                continue
            if not isinstance(key_node, ScalarNode):
                raise self.fail(key_node, "a mapping key must be a plain value, not a list or mapping")
            key = self.build(key_node, self.loc(key_node)).value
            try:
                hash(key)
            except TypeError:  # pragma: no cover - scalars are hashable
                raise self.fail(key_node, "unhashable mapping key") from None
            if key in out:
                raise ConfigError([ConfigIssue(
                    self.loc(key_node), "",
                    f"duplicate key {key!r} (first defined at line {first_line[key]})")])
            first_line[key] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, self.loc(key_node), stack)
        # ``<<: *defaults`` fills in keys the mapping does not set (earlier merge sources win)
        for source in merges:
            if not isinstance(source, MappingNode):
                raise self.fail(source, "a '<<' merge needs a mapping or a list of mappings")
            merged = self.build(source, self.loc(source), stack).value
            for key, entry in merged.items():
                out.setdefault(key, entry)
        return out


def _parse(text: str, file: str, fixed_loc: Location | None = None) -> _Entry | None:
    loader = Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, file, fixed_loc) from None
        if node is None:
            return None
        builder = _Builder(loader, file, fixed_loc)
        return builder.build(node, builder.loc(node))
    finally:
        loader.dispose()


# ----------------------------------------------------------------------------------------------------
# files and composition

def _read_text(path: str, display: str, where: Location | None, what: str) -> str:
    # a base config's problem is reported at the ``base:`` that names it, a top-level file's at its name
    loc = where or Location(display)
    subject = f"{what} {display}" if where else what
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        problem = "not found"
    except IsADirectoryError:
        problem = "is a directory, not a file"
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror or exc}"
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
        raise ConfigError([ConfigIssue(Location(display, line, column), "",
                                       "not UTF-8 text (is this a YAML config?)")]) from None


class _Composer:
    def __init__(self) -> None:
        self.files: list[Path] = []

    def load(self, path: str, display: str, chain: tuple = (), where: Location | None = None,
             text: str | None = None) -> _Entry:
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
            raise ConfigError([ConfigIssue(root.loc, "", "a config must be a mapping of sections "
                                           "(name:, layers:, solver:, ...); found "
                                           f"{_kind(root.value)}")])
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
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"the value {value!r}"


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


# ----------------------------------------------------------------------------------------------------
# overrides

def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"layers.conv1.num_output=32"`` into (``["layers", "conv1", "num_output"]``, ``32``)."""
    keys, entry = _parse_override(text)
    return keys, _plain(entry)


def _parse_override(text: str) -> tuple[list[str], _Entry]:
    loc = Location(f"--set {text}")

    def fail(message: str) -> ConfigError:
        return ConfigError([ConfigIssue(loc, "", message)])

    if "=" not in text:
        raise fail("expected KEY=VALUE (for example solver.base_lr=0.01)")
    key, raw = text.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p.strip() for p in parts):
        raise fail(f"bad key {key!r}: expected a dotted path such as layers.conv1.num_output")
    entry = _parse(raw, loc.file, fixed_loc=loc)
    if entry is None:
        entry = _Entry(loc, None)
    return [p.strip() for p in parts], entry


def _apply_override(root: _Entry, text: str) -> None:
    loc = Location(f"--set {text}")
    parts, value = _parse_override(text)

    def fail(message: str) -> ConfigError:
        return ConfigError([ConfigIssue(loc, "", message)])

    if parts[0] == "base":
        raise fail("'base' cannot be overridden: it is resolved before overrides apply")
    node = root
    path: list = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = format_path(path, _plain(root)) or "the config"
        container = node.value
        if isinstance(container, dict):
            key: Any = part
            if key not in container:
                for alt in _scalar_keys(part):
                    if alt in container:
                        key = alt
                        break
            if last:
                container[key] = value
                return
            if key not in container or container[key].value is None:
                container[key] = _Entry(loc, {})
            node = container[key]
            path.append(key)
        elif isinstance(container, list):
            if re.fullmatch(r"[0-9]+", part):
                idx = int(part)
                if idx >= len(container):
                    raise fail(f"index {idx} is out of range: {where} has {len(container)} "
                               f"item{'' if len(container) == 1 else 's'}")
            else:
                names = [_layer_name(e) for e in container]
                noun = "layer" if path == ["layers"] else "item"
                if part not in names:
                    known = [n for n in names if n is not None]
                    hint = did_you_mean(part, known)
                    if not hint and known:
                        hint = "; known: " + ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
                    raise fail(f"no {noun} named {part!r} in {where}{hint}")
                idx = names.index(part)
            if last:
                container[idx] = value
                return
            node = container[idx]
            path.append(idx)
        else:
            shown = format_path(path, _plain(root))
            raise fail(f"cannot set {part!r} inside {shown}: it holds {_kind(container)}, "
                       f"not a mapping or list")


def _scalar_keys(part: str) -> list:
    """Non-string keys a path component may mean (``--set map.1=x`` where the YAML key is the int 1)."""
    out: list = []
    try:
        out.append(int(part))
    except ValueError:
        pass
    lowered = part.lower()
    if lowered in ("true", "false"):
        out.append(lowered == "true")
    return out


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


def dump_yaml(data: Any) -> str:
    """The resolved config as YAML (keys in their order); :func:`load_config` reads it back to equal data."""
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=100)
