"""Located configuration errors.

Every mistake a user can make in a config is reported as one line per issue::

    lenet.yaml:14:5: layers[3] (conv2).kernel_size: must be > 0. Received: 0

that is ``LOCATION: PATH: MESSAGE. Received: VALUE``, where

* ``LOCATION`` is ``file:line:column`` (1-based) of the key or list item the issue is about, the bare
  file name when no position exists (a config file that cannot be opened), or the override text
  (``--set solver.base_lr=-1``) when the value came from the command line;
* ``PATH`` is the dotted path into the resolved config; list items are ``[i]`` and a list item that has a
  ``name`` shows it in parentheses (``layers[3] (conv2)``). It is left out for issues about the file as a
  whole (YAML syntax);
* ``Received: VALUE`` is present when the offending value is known.

:class:`ConfigError` carries a list of :class:`ConfigIssue`; ``str(error)`` is their lines joined by
newlines. :func:`from_pydantic` turns a pydantic ``ValidationError`` into such issues, using the source map
of a :class:`~tfconf.frontend.loader.LoadedConfig` to find each value's position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from tfconf.errors import UserError, suggest

from .model_lookup import model_at, model_by_name, union_tags_at

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel, ValidationError

    from .loader import LoadedConfig

__all__ = [
    "MISSING", "ConfigError", "ConfigIssue", "Location", "did_you_mean", "format_path", "format_value",
    "from_pydantic", "suggest",
]

class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
"""Marks 'no received value' (``None`` is a value a user can write: ``null``)."""


@dataclass(frozen=True)
class Location:
    """Where a value came from: ``file:line:column`` (1-based).

    ``line``/``column`` are ``None`` when there is no position: a file that could not be opened, or a
    command-line override, whose ``file`` is then the override text (``--set solver.base_lr=-1``).
    """

    file: str
    line: int | None = None
    column: int | None = None

    @property
    def is_override(self) -> bool:
        return self.file.startswith("--set")

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.column if self.column is not None else 1}"


@dataclass(frozen=True)
class ConfigIssue:
    """One located problem; ``str()`` gives its one-line report."""

    location: Location | None
    path: str  # already rendered (see format_path)
    message: str
    received: Any = field(default=MISSING, compare=False)

    def __str__(self) -> str:
        parts = []
        if self.location is not None:
            parts.append(str(self.location))
        if self.path:
            parts.append(self.path)
        message = _one_line(self.message)
        if self.received is not MISSING and "Received:" not in message:  # a validator may say it
            message = _end_sentence(message) + " Received: " + format_value(self.received)
        parts.append(message)
        return ": ".join(parts)


class ConfigError(UserError):
    """A config that cannot be used; carries one or more located :class:`ConfigIssue`."""

    def user_message(self) -> str:  # its lines say file:line:col themselves
        return str(self)

    def __init__(self, issues: ConfigIssue | Iterable[ConfigIssue]):
        if isinstance(issues, ConfigIssue):
            issues = [issues]
        self.issues: list[ConfigIssue] = list(issues)
        if not self.issues:
            raise ValueError("ConfigError needs at least one issue")
        super().__init__("\n".join(str(issue) for issue in self.issues))

    @classmethod
    def at(cls, location: Location | None, message: str, *, path: Sequence = (), data: Any = None,
           received: Any = MISSING) -> "ConfigError":
        """A one-issue error: ``ConfigError.at(loc, "must be > 0", path=("solver", "base_lr"))``."""
        return cls([ConfigIssue(location, format_path(path, data), message, received)])

    @property
    def lines(self) -> list[str]:
        return [str(issue) for issue in self.issues]

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def __reduce__(self):  # picklable (sweeps run trials in other processes)
        return (type(self), (self.issues,))


# ----------------------------------------------------------------------------------------------------
# rendering helpers

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def format_path(path: Sequence, data: Any = None) -> str:
    """Render a config path: ``("layers", 3, "kernel_size")`` → ``layers[3] (conv2).kernel_size``.

    When ``data`` (the resolved config) is given, a list item that is a mapping with a string ``name``
    shows that name in parentheses. Keys that are not plain identifiers are quoted (``grid['solver.base_lr']``).
    """
    out = ""
    node = data
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
            if isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    out += f" ({node['name']})"
            else:
                node = None
        else:
            text = str(part)
            if _PLAIN_KEY.match(text):
                out += ("." if out else "") + text
            else:
                out += f"[{text!r}]"
            node = node.get(part) if isinstance(node, dict) else None
    return out


def format_value(value: Any, limit: int = 80) -> str:
    """A short, one-line, YAML-flavoured rendering of a received value."""
    text = _render(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_render_key(k)}: {_render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    return _one_line(str(value))


def _render_key(key: Any) -> str:
    return key if isinstance(key, str) and _PLAIN_KEY.match(key) else _render(key)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _end_sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def did_you_mean(name: Any, choices: Iterable[Any]) -> str:
    """``"; did you mean 'conv1'?"`` or ``""`` when nothing is close."""
    best = suggest(name, choices)
    return f"; did you mean {best[0]!r}?" if best else ""


def _known_list(choices: Iterable[Any], limit: int = 60) -> str:
    names = [str(c) for c in choices]
    if len(names) > limit:
        return ", ".join(names[:limit]) + f", ... ({len(names) - limit} more)"
    return ", ".join(names)


# ----------------------------------------------------------------------------------------------------
# pydantic → located issues

_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
    "none_required": "must be null",
    "callable_type": "must be callable",
    "is_instance_of": "has the wrong type",
}


def _quoted_choices(expected: str) -> list[str]:
    found = re.findall(r"'((?:[^'\\]|\\.)*)'", expected)
    return found or [e.strip() for e in re.split(r",| or ", expected) if e.strip()]


def _message(err: dict) -> tuple[str, Any]:
    """(short message, received value) for one pydantic error dict."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    received = err.get("input", MISSING)
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind], received
    if kind == "missing":
        return "field required", MISSING
    if kind == "greater_than":
        return f"must be > {_num(ctx['gt'])}", received
    if kind == "greater_than_equal":
        return f"must be >= {_num(ctx['ge'])}", received
    if kind == "less_than":
        return f"must be < {_num(ctx['lt'])}", received
    if kind == "less_than_equal":
        return f"must be <= {_num(ctx['le'])}", received
    if kind == "multiple_of":
        return f"must be a multiple of {_num(ctx['multiple_of'])}", received
    if kind in ("too_short", "too_long"):
        word = "at least" if kind == "too_short" else "at most"
        bound = ctx.get("min_length" if kind == "too_short" else "max_length")
        unit = "character" if isinstance(received, str) else "item"
        return f"must have {word} {bound} {unit}{'' if bound == 1 else 's'}", received
    if kind in ("string_too_short", "string_too_long"):
        word = "at least" if kind == "string_too_short" else "at most"
        bound = ctx.get("min_length" if kind == "string_too_short" else "max_length")
        return f"must have {word} {bound} character{'' if bound == 1 else 's'}", received
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}", received
    if kind in ("literal_error", "enum"):
        choices = _quoted_choices(str(ctx.get("expected", "")))
        hint = did_you_mean(received, choices) if isinstance(received, str) else ""
        head = "unknown value" + hint if hint else "must be one of"
        tail = f" Expected one of: {_known_list(choices)}" if hint else f" {_known_list(choices)}"
        return head + tail, received
    if kind == "union_tag_invalid":
        tags = _quoted_choices(str(ctx.get("expected_tags", "")))
        disc = str(ctx.get("discriminator", "'type'")).strip("'")
        tag = ctx.get("tag")
        hint = did_you_mean(tag, tags)
        head = f"unknown {disc} {tag!r}" + (hint if hint else ".")
        return f"{head} Known {disc}s: {_known_list(tags)}", MISSING
    if kind == "union_tag_not_found":
        disc = str(ctx.get("discriminator", "'type'")).strip("'")
        return f"needs a '{disc}' key", MISSING  # completed by the caller, which knows the model
    if kind == "extra_forbidden":
        return "unknown key", MISSING  # completed by the caller, which knows the model
    if kind == "value_error":
        msg = str(err.get("msg", ""))
        return _strip_period(msg.removeprefix("Value error, ")), received
    if kind == "assertion_error":
        msg = str(err.get("msg", ""))
        return _strip_period(msg.removeprefix("Assertion failed, ")), received
    if "tfconf_path" in ctx:  # raised by a model validator with schema_base.located(): input is the model's
        return str(err.get("msg", "")), ctx.get("tfconf_received", MISSING)
    if kind.startswith("tfconf"):
        return str(err.get("msg", "")), ctx.get("tfconf_received", received)
    msg = str(err.get("msg", kind))
    msg = msg.replace("Input should be", "must be").replace("Input ", "value ")
    return _strip_period(msg[:1].lower() + msg[1:]), received


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _strip_period(text: str) -> str:
    return text[:-1] if text.endswith(".") and not text.endswith("..") else text


def _resolve_path(loc: Sequence, data: Any, keep_last: bool) -> tuple[tuple, bool]:
    """Map a pydantic ``loc`` onto a path that exists in ``data``.

    pydantic inserts union member names (a discriminated union's tag, ``'int'``, ``'list[int]'``,
    ``'function-after[...]'``) into ``loc``; those do not exist in the data and are dropped. With
    ``keep_last`` the final component is kept even when absent (the key of a missing field).
    Returns (path, dropped_something).
    """
    path: list = []
    node = data
    dropped = False
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif (isinstance(node, list) and isinstance(part, int) and not isinstance(part, bool)
              and 0 <= part < len(node)):
            path.append(part)
            node = node[part]
        elif last and keep_last:
            path.append(part)
            node = None
        else:
            dropped = True
    return tuple(path), dropped


def from_pydantic(validation_error: "ValidationError", loaded_config: "LoadedConfig | None" = None,
                  root_path: Sequence = (), *, model: "type[BaseModel] | None" = None,
                  data: Any = MISSING) -> "ConfigError":
    """Convert a pydantic v2 ``ValidationError`` into a located :class:`ConfigError`.

    ``root_path`` is where the validated value sits in the whole config (``("solver",)`` when only the
    solver section was validated). Each error's ``loc`` is mapped onto the config data (dropping pydantic's
    union member names); its location is the nearest recorded one (a missing key falls back to its parent,
    saying "field required"). Unknown keys get a did-you-mean from ``model``'s field names (found from the
    error's title when ``model`` is not given); unknown discriminator tags list the known ones.
    Errors raised by validators with :func:`tfconf.frontend.schema_base.located` carry their own path.
    """
    root_path = tuple(root_path)
    whole = loaded_config.data if loaded_config is not None else (None if data is MISSING else data)
    if data is MISSING:
        data = _get(whole, root_path)
    if model is None:
        model = model_by_name(validation_error.title)

    issues: list[ConfigIssue] = []
    seen: dict[tuple, int] = {}
    for err in validation_error.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        ctx = err.get("ctx") or {}
        message, received = _message(err)
        kind = err["type"]
        extra_path = tuple(ctx.get("tfconf_path", ()))
        rel, dropped = _resolve_path(loc, data, keep_last=kind in ("missing", "extra_forbidden"))
        if extra_path:
            sub, _ = _resolve_path(extra_path, _get(data, rel), keep_last=True)
            rel = rel + sub
        if kind == "extra_forbidden":
            key = loc[-1] if loc else None
            owner = model_at(model, loc[:-1]) if model is not None else None
            if owner is not None:
                names = _field_names(owner)
                synonyms = getattr(owner, "__synonyms__", {}) or {}
                best = synonyms.get(str(key)) if str(key) in synonyms else None
                best = best or (suggest(key, names) or [None])[0]
                if best:
                    message = f"unknown key; did you mean {best!r}?"
                else:
                    message = f"unknown key; valid keys: {_known_list(names)}"
        elif kind == "union_tag_not_found" and model is not None:
            tags = union_tags_at(model, loc, str(ctx.get("discriminator", "'type'")).strip("'"))
            if tags:
                message += f" (one of: {_known_list(tags)})"
        elif kind == "union_tag_invalid":
            disc = str(ctx.get("discriminator", "'type'")).strip("'")
            if isinstance(_get(data, rel), dict) and disc in _get(data, rel):
                rel = rel + (disc,)
            received = MISSING
        full = root_path + rel
        location = _locate(loaded_config, full)
        issue = ConfigIssue(location, format_path(full, whole), message, received)
        # a value that fails every member of a plain union gives one error per member: merge them
        if dropped and full in seen and kind not in ("missing", "extra_forbidden"):
            prev = issues[seen[full]]
            if message not in prev.message:
                tail = message.removeprefix("must be ") if prev.message.startswith("must be ") else message
                issues[seen[full]] = ConfigIssue(prev.location, prev.path, f"{prev.message} or {tail}",
                                                 prev.received)
            continue
        if str(issue) in (str(i) for i in issues):
            continue
        seen.setdefault(full, len(issues))
        issues.append(issue)
    issues = _merge_misspelt_required(issues)
    issues.sort(key=_issue_order)
    return ConfigError(issues)


def _merge_misspelt_required(issues):
    """A misspelt required key is one mistake, not two: drop 'X: field required' when a sibling
    'Y: unknown key; did you mean X?' already says it."""
    suggested = set()
    for i in issues:
        if i.message.startswith("unknown key; did you mean "):
            parent = i.path.rpartition(".")[0]
            name = i.message.removeprefix("unknown key; did you mean ").rstrip("?").strip("'\"")
            suggested.add((parent, name))
    return [i for i in issues
            if not (i.message.startswith("field required") and
                    (i.path.rpartition(".")[0], i.path.rpartition(".")[2]) in suggested)]


def _issue_order(issue: ConfigIssue):
    loc = issue.location
    if loc is None:
        return (1, "", 0, 0)
    return (0, loc.file, loc.line or 0, loc.column or 0)


def _field_names(model_cls: Any) -> list[str]:
    names = []
    for name, info in model_cls.model_fields.items():
        names.append(info.alias or name)
    return names


def _get(data: Any, path: Sequence) -> Any:
    node = data
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _locate(loaded_config: Any, path: tuple) -> Location | None:
    if loaded_config is None:
        return None
    return loaded_config.source_map.nearest(path)
