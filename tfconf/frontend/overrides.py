"""``--set key=value`` overrides: a dotted path into the located tree (list items by index or by
name), a YAML value located at the override text."""


from __future__ import annotations

import re
from typing import Any

from . import located_yaml as Y
from .compose import _kind, _layer_name
from .errors import ConfigError, ConfigIssue, Location, did_you_mean, format_path
from .located_yaml import _Entry, _parse, _plain, _shown



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
    if len(parts) > Y.MAX_DEPTH:
        raise fail(f"the key has {len(parts)} parts: more than the {Y.MAX_DEPTH} levels a config may nest")
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
