"""Reading Caffe messages: values converted by kind (caffe_map.py's Carry / Ignored / Fixed),
fillers, the issue list every located error goes to, and the record of one converted layer."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from tfconf.errors import did_you_mean
from tfconf.frontend.errors import MISSING, ConfigError, ConfigIssue, Location
from tfconf.frontend.layers.caffe_map import (BOOL, FILLER, FLOAT, INT, SHAPE, STR, Carry, Choice, Fixed, Ignored,
                                              choice, integer, number, text)

from ..prototxt import Enum, Field, Message


# =============================================================================== field conversion
# What a Caffe field becomes is declared with tfconf/frontend/layers/caffe_map.py's Carry / Ignored /
# Fixed: by each layer type on its spec (``caffe``), and below for the messages that are not a
# layer's (data layers, rules, param specs, fillers, the solver).
class _Bad(Exception):
    """A value that cannot be converted; the caller locates it."""


class _Reported(_Bad):
    """A value whose problems were already reported (with better locations)."""


def _int(v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"expects an integer. Received: {_show(v)}")
    return v


def _float(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"expects a number. Received: {_show(v)}")
    return v


_TRUE, _FALSE = {"true", "True", "t"}, {"false", "False", "f"}


def _bool(v):
    if isinstance(v, Enum) and v in _TRUE | _FALSE:
        return v in _TRUE
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise _Bad(f"expects true or false. Received: {_show(v)}")


def _str(v):
    if not isinstance(v, str):  # quoted strings, and (leniently) bare identifiers
        raise _Bad(f"expects a string. Received: {_show(v)}")
    return str(v)


_CONVERT = {INT: _int, FLOAT: _float, BOOL: _bool, STR: _str}


def _convert(kind, v):
    """A scalar prototxt value as ``kind`` (a caffe_map value kind or a Choice)."""
    if not isinstance(kind, Choice):
        return _CONVERT[kind](v)
    key = str(v) if isinstance(v, str) else v
    if key in kind.mapping:
        return kind.mapping[key]
    if key in kind.unsupported:
        raise _Bad(kind.unsupported[key])
    known = ", ".join(k for k in kind.mapping if isinstance(k, str))
    raise _Bad(f"expects one of {known}. Received: {_show(v)}")


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Message):
        return "a message { ... }"
    if isinstance(v, Enum):
        return str(v)
    return repr(v) if isinstance(v, str) else str(v)


# =============================================================================== fillers
FILLER_TYPES = ("constant", "uniform", "gaussian", "xavier", "msra", "bilinear", "positive_unitball")
_FILLER_APPLIES = {"constant": ("value",), "uniform": ("min", "max"), "gaussian": ("mean", "std", "sparse"),
                   "xavier": ("variance_norm",), "msra": ("variance_norm",), "bilinear": (), "positive_unitball": ()}
_FILLER_FIELDS = {"type": STR, "value": FLOAT, "min": FLOAT, "max": FLOAT, "mean": FLOAT, "std": FLOAT,
                  "sparse": INT,
                  "variance_norm": Choice({"FAN_IN": "FAN_IN", "FAN_OUT": "FAN_OUT", "AVERAGE": "AVERAGE"})}


_PHASES = {"TRAIN": "train", "TEST": "test"}
_RULE = {"phase": choice("phase", _PHASES), "min_level": integer("min_level"), "max_level": integer("max_level"),
         "stage": Carry("stage", STR, "list"), "not_stage": Carry("not_stage", STR, "list")}
_PARAM_SPEC = {"name": text("name"), "lr_mult": number("lr_mult"), "decay_mult": number("decay_mult"),
               "share_mode": Fixed(Enum("STRICT"), "tfconf shares parameters of equal shape only")}


# =============================================================================== the conversion
@dataclasses.dataclass
class Origin:
    location: Location
    path: str  # the Caffe field path, e.g. "layer[3] (conv1).convolution_param.kernel_size"


@dataclasses.dataclass
class _Layer:
    index: int
    path: str                 # "layer[3] (conv1)"
    location: Location        # of the layer's block
    caffe_name: str
    type: str                 # tfconf type, or the data layer type
    spec: dict
    origins: dict             # tfconf key → Origin
    comments: list
    data: bool = False
    phases: tuple = ()        # data layers: the phases they feed
    failed: bool = False      # its conversion reported errors (so the schema check is skipped)


class _Bare:
    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


class _Issues:
    def __init__(self):
        self.issues: list[ConfigIssue] = []

    def add(self, location, path: str, message: str, received: Any = MISSING):
        if isinstance(received, Enum):  # shown bare, as written (MAX, not 'MAX')
            received = _Bare(str(received))
        self.issues.append(ConfigIssue(location, path, message, received))

    def raise_if_any(self):
        if self.issues:
            def order(issue):
                loc = issue.location
                return (loc.file if loc else "", loc.line or 0 if loc else 0, loc.column or 0 if loc else 0)

            raise ConfigError(sorted(self.issues, key=order))


class _MessageReader:
    """Reads one Caffe message against a table: {caffe field: Carry | Ignored | Fixed}."""

    def __init__(self, issues: _Issues, comments: list, origins: dict):
        self.issues = issues
        self.comments = comments
        self.origins = origins

    def read(self, msg: Message, table: dict, path: str, out: dict) -> None:
        for name in msg.names():
            fields = msg.all(name)
            entry = table.get(name)
            fpath = f"{path}.{name}"
            if entry is None:
                self.issues.add(fields[0].location, fpath, f"unknown field {name!r}"
                                + (_did_you_mean(name, table) or _known(table)))
                continue
            if isinstance(entry, Ignored):
                shown = ", ".join(_show(f.value) for f in fields)
                self.comments.append(f"{fpath.split('.', 1)[-1]}: {shown} (ignored: {entry.why})")
                continue
            if isinstance(entry, Fixed):
                for f in fields:
                    value = _maybe_bool(f.value) if isinstance(entry.value, bool) else f.value
                    same = value == entry.value
                    if not same:
                        self.issues.add(f.location, fpath, f"only {_show(entry.value)} is supported: {entry.why}",
                                        f.value)
                continue
            value = self.value(fields, entry, fpath)
            if value is not MISSING:
                out[entry.key] = value
                self.origins[entry.key] = Origin(fields[0].location, fpath)

    def value(self, fields: list[Field], entry: Carry, path: str):
        if entry.card == "one" and len(fields) > 1:
            self.issues.add(fields[1].location, path, f"is given {len(fields)} times; Caffe allows it once")
            return MISSING
        values = []
        for f in fields:
            try:
                values.append(self.one(f, entry, path))
            except _Reported:
                return MISSING
            except _Bad as e:
                self.issues.add(f.location, path, str(e))
                return MISSING
        if entry.card == "one":
            return values[0]
        if entry.card == "pair":
            if len(values) == 1:
                return values[0]
            if len(values) == 2:
                return values
            self.issues.add(fields[0].location, path, f"has {len(values)} values: tfconf supports 2-D images "
                                                      "only (one value, or two for height and width)")
            return MISSING
        return values

    def one(self, f: Field, entry: Carry, path: str):
        if entry.kind == FILLER:
            return self.filler(f, path)
        if entry.kind == SHAPE:
            return _shape(f)
        if isinstance(f.value, Message):
            raise _Bad("expects a value, not a message { ... }")
        return _convert(entry.kind, f.value)

    def filler(self, f: Field, path: str):
        if not isinstance(f.value, Message):
            raise _Bad("expects a filler message, e.g. { type: \"xavier\" }")
        raw: dict = {}
        for name in f.value.names():
            fields = f.value.all(name)
            kind = _FILLER_FIELDS.get(name)
            if kind is None:
                self.issues.add(fields[0].location, f"{path}.{name}", f"unknown filler field {name!r}"
                                + (_did_you_mean(name, _FILLER_FIELDS) or _known(_FILLER_FIELDS)))
                continue
            if len(fields) > 1:
                self.issues.add(fields[1].location, f"{path}.{name}", "is given twice")
                continue
            try:
                raw[name] = (_convert(kind, fields[0].value), fields[0])
            except _Bad as e:
                self.issues.add(fields[0].location, f"{path}.{name}", str(e))
        kind = raw.pop("type", ("constant", None))[0]  # Caffe's default filler is constant
        if kind not in FILLER_TYPES:
            where = f.value.first("type").location
            self.issues.add(where, f"{path}.type", f"unknown filler type {kind!r}; tfconf has "
                            + ", ".join(FILLER_TYPES))
            raise _Reported()
        out = {"type": kind}
        for name, (value, field) in raw.items():
            if name in _FILLER_APPLIES[kind]:
                out[name] = value
            else:
                self.comments.append(f"{path.split('.', 1)[-1]}.{name}: {_show(field.value)} (ignored: a {kind} "
                                     f"filler does not use it, in Caffe either)")
        return kind if len(out) == 1 else out

    # nested messages that map to a dict/list (include rules, param specs)
    def submessage(self, f: Field, table: dict, path: str) -> dict:
        if not isinstance(f.value, Message):
            self.issues.add(f.location, path, "expects a message { ... }", _Bare(_show(f.value)))
            return {}
        out: dict = {}
        _MessageReader(self.issues, self.comments, {}).read(f.value, table, path, out)
        return out


def _maybe_bool(v):
    try:
        return _bool(v)
    except _Bad:
        return None


def _shape(f: Field) -> list:
    if not isinstance(f.value, Message):
        raise _Bad("expects a shape message, e.g. { dim: 1 dim: 28 }")
    dims = []
    for d in f.value:
        if d.name != "dim":
            raise _Bad(f"a shape has only dim fields. Received: {d.name}")
        dims.append(_int(d.value))
    return dims


def _did_you_mean(name: str, table) -> str:
    hint = did_you_mean(name, table)
    return "." + hint if hint else ""


def _known(table) -> str:
    names = sorted(table)
    return f" (known here: {', '.join(names)})" if names else " (this message takes no fields)"


# =============================================================================== validation by tfconf's schema
def _pydantic_issues(exc, origins: dict, fallback: Origin, issues: _Issues) -> None:
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        ctx = err.get("ctx") or {}
        if "tfconf_path" in ctx:
            loc = tuple(ctx["tfconf_path"])
        origin = origins.get(loc[0]) if loc else None
        origin = origin or fallback
        message = err.get("msg", "invalid")
        message = re.sub(r"^(Value error|Assertion failed), ", "", message)
        received = ctx.get("tfconf_received", err.get("input", MISSING)) if loc else MISSING
        if err.get("type") in ("missing",):
            message = f"{loc[-1] if loc else 'a field'} is required"
            received = MISSING
        if isinstance(received, dict):
            received = MISSING
        issues.add(origin.location, origin.path, message, received)
