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
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tfconf.errors import suggest

from .errors import MISSING, ConfigError, ConfigIssue, Location, did_you_mean, format_path

__all__ = [
    "Dumper", "LoadedConfig", "Loader", "SourceMap", "dump_yaml", "load_config", "load_config_string",
    "parse_override", "MAX_ALIASES", "MAX_BASE_DEPTH", "MAX_BASE_FILES", "MAX_BYTES", "MAX_DEPTH", "MAX_VALUES",
]

#: the largest config file (and ``--set`` value) read, in bytes
MAX_BYTES = 16 * 1024 * 1024
#: how deep lists and mappings may nest (a config needs about 6 levels)
MAX_DEPTH = 100
#: aliases (``*name``) in one file
MAX_ALIASES = 10_000
#: values (scalars, lists, mappings) one file expands to once aliases are resolved
MAX_VALUES = 1_000_000
#: files in one ``base:`` chain, and files read for one config in all
MAX_BASE_DEPTH, MAX_BASE_FILES = 32, 256

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
    """SafeLoader with YAML 1.2 floats (``1e-3`` is a float). Used for files and ``--set`` values.

    Composition is bounded: more than :data:`MAX_DEPTH` nested lists/mappings or more than
    :data:`MAX_ALIASES` aliases raise a located :class:`ConfigError` as soon as they are met."""

    def __init__(self, stream, file: str = "<string>", fixed_loc: Location | None = None):
        super().__init__(stream)
        self.tfconf_file = file
        self.tfconf_fixed_loc = fixed_loc
        self._depth = 0
        self._aliases = 0

    def _bound(self, mark: Any, message: str) -> ConfigError:
        loc = self.tfconf_fixed_loc or (_mark_location(self.tfconf_file, mark) if mark is not None
                                        else Location(self.tfconf_file))
        return ConfigError([ConfigIssue(loc, "", message)])

    def compose_node(self, parent, index):  # noqa: D102
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise self._bound(self.peek_event().start_mark,
                                  f"more than {MAX_ALIASES:,} YAML aliases (*name) in one file; "
                                  "a config needs far fewer (is this an alias bomb?)")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise self._bound(self.peek_event().start_mark,
                                  f"lists and mappings are nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


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


def _snippet(text: Any, limit: int = 12) -> str:
    """At most the first ``limit`` characters of the first token of ``text``, quoted: what an error may
    show of a file's contents (never whole lines of a file that is not a config)."""
    words = str(text).split()
    word = words[0] if words else str(text)
    more = len(word) > limit or len(words) > 1
    return repr(word[:limit] + ("..." if more else ""))


def _short_quotes(message: str, limit: int = 40) -> str:
    """Shorten every quoted token of a PyYAML message (an alias, an anchor, a tag) to ``limit`` characters."""
    return re.sub(r"'([^'\n]{%d,})'" % (limit + 1), lambda m: repr(m.group(1)[:limit] + "..."), message)


def _yaml_error(exc: yaml.YAMLError, file: str, override: Location | None = None, text: str | None = None
                ) -> ConfigError:
    """A one-line located message for a PyYAML error."""
    if isinstance(exc, yaml.reader.ReaderError):
        where = override or _position(file, text, exc.position)
        char = exc.character
        code = ord(char) if isinstance(char, str) else int(char)
        return ConfigError([ConfigIssue(where, "", f"invalid YAML: the non-printable character U+{code:04X} is not "
                                                   "allowed in YAML text (is this a YAML config?)")])
    problem = _short_quotes(getattr(exc, "problem", None) or str(exc).splitlines()[0])
    context = getattr(exc, "context", None)
    context = _short_quotes(context) if context else context
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


def _position(file: str, text: str | None, position: int) -> Location:
    if text is None:
        return Location(file)
    before = text[:position]
    return Location(file, before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1)


def _tag(tag: str) -> str:
    return _short_quotes(repr(tag.replace("tag:yaml.org,2002:", "!!")))


class _Builder:
    """Turns a composed YAML node tree into a located _Entry tree (with duplicate-key detection)."""

    def __init__(self, loader: Loader, file: str, fixed_loc: Location | None = None):
        self.loader = loader
        self.file = file
        self.fixed_loc = fixed_loc  # overrides: every value is located at the override text
        self.values = 0  # values built so far: aliases repeat a node, so this bounds their expansion

    def loc(self, node: Node) -> Location:
        return self.fixed_loc or _mark_location(self.file, node.start_mark)

    def fail(self, node: Node, message: str) -> ConfigError:
        return ConfigError([ConfigIssue(self.loc(node), "", message)])

    def build(self, node: Node, loc: Location, stack: tuple = ()) -> _Entry:
        if id(node) in stack:
            raise self.fail(node, "recursive YAML alias (a value that contains itself)")
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.fail(node, f"the YAML expands to more than {MAX_VALUES:,} values (aliases repeat what "
                                  "they name); a config needs far fewer (is this an alias bomb?)")
        if isinstance(node, ScalarNode):
            try:
                return _Entry(loc, self.loader.construct_object(node, deep=True))
            except yaml.YAMLError as exc:
                raise _yaml_error(exc, self.file, self.fixed_loc) from None
            except Exception as exc:  # noqa: BLE001 - any failure of a scalar's constructor is a bad value
                # PyYAML's constructors assume their resolver's pattern: an explicit tag (!!int 12a), a
                # date that does not exist (2001-13-45) or an integer of thousands of digits fail here
                why = " ".join(str(exc).split(";")[0].split())
                if why.startswith("Exceeds the limit"):
                    why = "an integer of more than 4300 digits"
                why = why if len(why) <= 80 else why[:77] + "..."
                raise self.fail(node, f"cannot read {_snippet(node.value, 24)} as {_tag(node.tag)[1:-1]}"
                                      f" ({_short_quotes(why)})") from None
        if len(stack) >= MAX_DEPTH:  # aliases can nest what each file keeps shallow
            raise self.fail(node, f"lists and mappings are nested more than {MAX_DEPTH} levels deep "
                                  "(counting what aliases name)")
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

    def check_size(self, node: Node) -> None:
        """Fail before building when ``node`` would expand (aliases repeat what they name) to more
        than MAX_VALUES values or nest deeper than MAX_DEPTH; counted once per distinct node."""
        sizes: dict[int, int] = {}

        def size(n: Node, depth: int, stack: frozenset) -> int:
            key = id(n)
            if key in sizes:
                return sizes[key]
            if isinstance(n, ScalarNode):
                return 1
            if key in stack:
                raise self.fail(n, "recursive YAML alias (a value that contains itself)")
            if depth > MAX_DEPTH:
                raise self.fail(n, f"lists and mappings are nested more than {MAX_DEPTH} levels deep "
                                   "(counting what aliases name)")
            inner = stack | {key}
            items = n.value if isinstance(n, SequenceNode) else [x for kv in n.value for x in kv]
            total = 1 + sum(size(c, depth + 1, inner) for c in items)
            if total > MAX_VALUES:
                raise self.fail(n, f"the YAML expands to more than {MAX_VALUES:,} values (aliases repeat "
                                   "what they name); a config needs far fewer (is this an alias bomb?)")
            sizes[key] = total
            return total

        size(node, 1, frozenset())

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
    if len(text) > MAX_BYTES:
        raise ConfigError([ConfigIssue(fixed_loc or Location(file), "",
                                       f"the text is {_size(len(text))}: more than a config may be "
                                       f"({_size(MAX_BYTES)})")])
    try:
        loader = Loader(text, file, fixed_loc)  # checks that every character may be in YAML text
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, file, fixed_loc, text) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, file, fixed_loc, text) from None
        if node is None:
            return None
        builder = _Builder(loader, file, fixed_loc)
        builder.check_size(node)
        return builder.build(node, builder.loc(node))
    finally:
        loader.dispose()


# ----------------------------------------------------------------------------------------------------
# files and composition

def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"


def _shown(name: str, limit: int = 120) -> str:
    """A file name as messages show it (a name of thousands of characters is cut)."""
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _read_bounded(path: str) -> bytes:
    """The file's bytes; ValueError when it holds more than MAX_BYTES (checked before reading a regular
    file, and by reading one byte more than the bound from a device or pipe such as /dev/zero)."""
    mode = os.stat(path).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):  # opening a FIFO would wait for a writer forever
        raise _NotAFile()
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        if stat.S_ISREG(info.st_mode) and info.st_size > MAX_BYTES:
            raise _TooLarge(info.st_size)
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
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
        size = _size(exc.size) if exc.size is not None else f"more than {_size(MAX_BYTES)}"
        problem = f"is too large: {size} (a config is at most {_size(MAX_BYTES)})"
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
        if len(chain) >= MAX_BASE_DEPTH:
            raise ConfigError([ConfigIssue(where, "base", f"the base configs are nested more than "
                                           f"{MAX_BASE_DEPTH} files deep")])
        self.reads += 1
        if self.reads > MAX_BASE_FILES:
            raise ConfigError([ConfigIssue(where, "base", f"composing this config reads more than "
                                           f"{MAX_BASE_FILES} base files (each 'base:' entry is read again)")])
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


# ----------------------------------------------------------------------------------------------------
# overrides

def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"layers.conv1.num_output=32"`` into (``["layers", "conv1", "num_output"]``, ``32``)."""
    keys, entry = _parse_override(text)
    return keys, _plain(entry)


def _parse_override(text: str) -> tuple[list[str], _Entry]:
    loc = Location(f"--set {_shown(text, 200)}")

    def fail(message: str) -> ConfigError:
        return ConfigError([ConfigIssue(loc, "", message)])

    if "=" not in text:
        raise fail("expected KEY=VALUE (for example solver.base_lr=0.01)")
    key, raw = text.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p.strip() for p in parts):
        raise fail(f"bad key {_shown(key, 60)!r}: expected a dotted path such as layers.conv1.num_output")
    if len(parts) > MAX_DEPTH:
        raise fail(f"the key has {len(parts)} parts: more than the {MAX_DEPTH} levels a config may nest")
    entry = _parse(raw, loc.file, fixed_loc=loc)
    if entry is None:
        entry = _Entry(loc, None)
    return [p.strip() for p in parts], entry


def _apply_override(root: _Entry, text: str) -> None:
    loc = Location(f"--set {_shown(text, 200)}")
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
