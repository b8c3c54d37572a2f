"""A run's fetches and feeds: a nested fetch structure (lists, tuples, namedtuples, dicts) flattened
into the graph elements it names and rebuilt around their values; feed values checked and
converted to their tensor's dtype and shape; the error for a placeholder left unfed."""

from __future__ import annotations

import collections

import numpy as np

from . import errors
from .rewrite.ir import user_op
from .shapes import fmt


class Leaf:
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


def flatten(fetch, graph, elements, index):
    """Turn a fetch structure into a template whose leaves index into ``elements``."""
    if isinstance(fetch, (list, tuple)):
        items = [flatten(f, graph, elements, index) for f in fetch]
        if isinstance(fetch, tuple) and hasattr(fetch, "_fields"):
            return type(fetch)(*items)
        return type(fetch)(items) if isinstance(fetch, tuple) else items
    if isinstance(fetch, dict):
        items = [(k, flatten(v, graph, elements, index)) for k, v in fetch.items()]
        return same_mapping(fetch, items)
    if fetch is None:
        raise TypeError("Fetch argument None has invalid type NoneType.")
    el = graph.as_graph_element(fetch)
    i = index.get(el)
    if i is None:
        i = index[el] = len(elements)
        elements.append(el)
    return Leaf(i)


def same_mapping(like, items):
    """A mapping of ``like``'s type holding ``items`` (a defaultdict keeps its default_factory)."""
    if isinstance(like, collections.defaultdict):
        return type(like)(like.default_factory, items)
    return type(like)(items)


def rebuild(template, values):
    if isinstance(template, Leaf):
        return values[template.index]
    if isinstance(template, list):
        return [rebuild(t, values) for t in template]
    if isinstance(template, tuple):
        items = [rebuild(t, values) for t in template]
        return type(template)(*items) if hasattr(template, "_fields") else tuple(items)
    if isinstance(template, dict):
        return same_mapping(template, [(k, rebuild(v, values)) for k, v in template.items()])
    raise AssertionError(template)  # pragma: no cover


def check_unfed(op):
    op = user_op(op)
    if op.op_def.type_name == "Placeholder":
        t = op.outputs[0]
        raise errors.InvalidArgumentError(
            f"You must feed a value for placeholder tensor '{t.name}' with dtype {t.dtype.name} and "
            f"shape {fmt(t._shape)} ({op.describe()}).",
            op,
        )


def aliases(v, ids):
    """True when array ``v`` is, or is a view into, one of the arrays whose ids are ``ids``."""
    while v is not None:
        if id(v) in ids:
            return True
        v = getattr(v, "base", None)
    return False


def convert_feed(t, dt, shape, value):
    if value.__class__ is np.ndarray and value.dtype == dt:
        arr = value
    else:
        arr = np.asarray(value)
        if arr.dtype != dt:
            if not np.can_cast(arr.dtype, dt, "same_kind"):
                raise TypeError(
                    f"Cannot feed a value of dtype {arr.dtype} to tensor '{t.name}' of dtype "
                    f"{t.dtype.name} (created at {t.op.location})."
                )
            arr = arr.astype(dt)
    if shape is not None:
        ash = arr.shape
        if len(ash) != len(shape) or any(d is not None and d != a for d, a in zip(shape, ash)):
            raise ValueError(
                f"Cannot feed value of shape {list(ash)} for tensor '{t.name}', which has shape "
                f"{fmt(shape)} (created at {t.op.location})."
            )
    return arr
