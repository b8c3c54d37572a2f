"""YAML read with positions: the bounded safe Loader (YAML 1.2 floats, duplicate keys refused),
the located tree every value of a config is read into (each mapping key and list item with its
file:line:column), the SourceMap it flattens to, and the Dumper that writes a config back."""


from __future__ import annotations

import re
from typing import Any, Iterator, Mapping, Sequence

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError, ConfigIssue, Location


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"


def _shown(name: str, limit: int = 120) -> str:
    """A file name as messages show it (a name of thousands of characters is cut)."""
    return name if len(name) <= limit else name[: limit - 3] + "..."


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


def dump_yaml(data: Any) -> str:
    """The resolved config as YAML (keys in their order); :func:`load_config` reads it back to equal data."""
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                     width=100)
