"""Which pydantic model validates a value: the lookups that let a config error suggest field names
(frontend/errors.py's from_pydantic) and list a union's tags. Every StrictModel subclass is recorded
here by name (frontend/schema_base.py), so that an error's title finds its model."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Sequence, Union

from pydantic import BaseModel

__all__ = ["MODELS_BY_NAME", "model_at", "model_by_name", "union_tags_at"]

#: class name → the StrictModel subclasses of that name (usually one)
MODELS_BY_NAME: dict[str, list[type]] = {}


def model_by_name(name: str) -> type[BaseModel] | None:
    """The StrictModel subclass titled ``name`` (its class name unless it declares a title), if exactly
    one exists."""
    found = MODELS_BY_NAME.get(name, [])
    return found[0] if len(found) == 1 else None


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list | None:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return [_unwrap(a) for a in typing.get_args(tp) if a is not type(None)]
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tags(model: type[BaseModel]) -> set:
    tags: set = {model.__name__}
    for info in model.model_fields.values():
        ann = _unwrap(info.annotation)
        if typing.get_origin(ann) is Literal:
            tags.update(typing.get_args(ann))
    return tags


def _step(tp: Any, part: Any) -> tuple[Any, bool]:
    """One step of a pydantic loc through a type: (next type, consumed?)."""
    tp = _unwrap(tp)
    members = _union_members(tp)
    if members is not None:
        if len(members) == 1:
            return _step(members[0], part)
        for member in members:  # a union member name or discriminator tag in the loc
            if _is_model(member) and part in _tags(member):
                return member, True
            if getattr(member, "__name__", None) == part:
                return member, True
        for member in members:
            nxt, ok = _step(member, part)
            if ok:
                return nxt, True
        return None, False
    if _is_model(tp):
        for name, info in tp.model_fields.items():
            if part == name or part == info.alias:
                return info.annotation, True
        return None, False
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple, set, frozenset) or (origin is not None and origin.__name__ == "Sequence"):
        if isinstance(part, int):
            if origin is tuple and args and args[-1] is not Ellipsis:
                return (args[part] if part < len(args) else None), True
            return (args[0] if args else Any), True
        return None, False
    if origin is dict:
        return (args[1] if len(args) == 2 else Any), True
    return None, False


def model_at(root: Any, loc: Sequence) -> type[BaseModel] | None:
    """The model class validating the value at pydantic ``loc`` under ``root`` (None when unknown)."""
    tp: Any = root
    for part in loc:
        tp, ok = _step(tp, part)
        if not ok or tp is None:
            return None
    tp = _unwrap(tp)
    members = _union_members(tp)
    if members is not None:
        models = [m for m in members if _is_model(m)]
        tp = models[0] if len(models) == 1 else None
    return tp if _is_model(tp) else None


def union_tags_at(root: Any, loc: Sequence, discriminator: str = "type") -> list:
    """The discriminator tags of the union validating the value at ``loc`` (empty when not a union)."""
    tp: Any = root
    for part in loc:
        tp, ok = _step(tp, part)
        if not ok or tp is None:
            return []
    tags: list = []
    for member in _union_members(_unwrap(tp)) or []:
        if _is_model(member):
            info = member.model_fields.get(discriminator)
            ann = _unwrap(info.annotation) if info is not None else None
            if typing.get_origin(ann) is Literal:
                tags.extend(a for a in typing.get_args(ann) if a not in tags)
    return tags
