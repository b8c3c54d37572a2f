"""Static shapes. Internally a shape is a tuple whose entries are ints or None (unknown), or None
for an unknown rank; ``TensorShape`` is the public view with TensorFlow 1's methods."""

from __future__ import annotations

import numbers


class TensorShape:
    """A possibly partial shape: ``TensorShape([None, 784])``. Compares equal to tuples and lists."""

    __slots__ = ("dims",)

    def __init__(self, dims):
        if isinstance(dims, TensorShape):
            dims = dims.dims
        self.dims = None if dims is None else tuple(None if d is None else int(d) for d in dims)

    @property
    def ndims(self):
        return None if self.dims is None else len(self.dims)

    rank = ndims

    def as_list(self):
        if self.dims is None:
            raise ValueError("as_list() is not defined on an unknown TensorShape.")
        return list(self.dims)

    def as_tuple(self):
        return self.dims

    def is_fully_defined(self) -> bool:
        return self.dims is not None and all(d is not None for d in self.dims)

    def num_elements(self):
        if not self.is_fully_defined():
            return None
        n = 1
        for d in self.dims:
            n *= d
        return n

    def is_compatible_with(self, other) -> bool:
        return compatible(self.dims, TensorShape(other).dims)

    def __len__(self):
        if self.dims is None:
            raise ValueError("Cannot take the length of a shape with unknown rank.")
        return len(self.dims)

    def __iter__(self):
        if self.dims is None:
            raise ValueError("Cannot iterate over a shape with unknown rank.")
        return iter(self.dims)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return TensorShape(self.dims[i])
        return self.dims[i]

    def __eq__(self, other):
        if isinstance(other, TensorShape):
            return self.dims == other.dims
        if isinstance(other, (tuple, list)):
            return self.dims == tuple(other)
        return NotImplemented

    def __hash__(self):
        return hash(self.dims)

    def __repr__(self):
        return f"TensorShape({fmt(self.dims)})"

    def __str__(self):
        return fmt(self.dims)


def as_shape(value):
    """Normalise a user shape (list/tuple/TensorShape/None) to the internal tuple form."""
    if value is None:
        return None
    if isinstance(value, TensorShape):
        return value.dims
    if isinstance(value, int):
        return (value,)
    return tuple(None if d is None or (isinstance(d, int) and d < 0) else int(d) for d in value)


def fmt(shape) -> str:
    """Human form used in every error message: ``[None, 784]`` or ``<unknown>``."""
    if shape is None:
        return "<unknown>"
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def compatible(a, b) -> bool:
    """True when a value of static shape ``b`` could have static shape ``a`` (None matches anything)."""
    if a is None or b is None:
        return True
    if len(a) != len(b):
        return False
    return all(x is None or y is None or x == y for x, y in zip(a, b))


def broadcast(a, b, what=""):
    """Static numpy broadcasting of two partial shapes; ValueError naming both when incompatible."""
    if a is None or b is None:
        return None
    n = max(len(a), len(b))
    pa = (1,) * (n - len(a)) + tuple(a)
    pb = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(pa, pb):
        if x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif x is None:
            out.append(y)
        elif y is None or x == y:
            out.append(x)
        else:
            raise ValueError(f"{what}shapes {fmt(a)} and {fmt(b)} are not broadcast-compatible")
    return tuple(out)


def num_elements(shape):
    if shape is None or any(d is None for d in shape):
        return None
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------- cost estimates
#: the size assumed for a dimension unknown at build time (batch sizes, mostly) when an op's cost
#: is estimated for placement
UNKNOWN_DIM = 32


def static_numel(shape):
    """Elements of a static ``shape``, or None when its rank or a dimension is unknown."""
    if shape is None or None in shape:
        return None
    n = 1
    for d in shape:
        n *= d
    return n


def pair(v, what):
    """An (h, w) pair from an int, a pair, or TF's 4-element form ([1, 1, h, w] for NCHW)."""
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    v = tuple(int(a) for a in v)
    if len(v) == 4:
        v = v[2:]
    if len(v) != 2:
        raise ValueError(f"{what} must be an int or a pair, received {v}")
    return v


def estimate_numel(shape):
    """Elements of a static ``shape``, unknown dimensions (and an unknown rank) counted as
    UNKNOWN_DIM: the placement cost model's guess."""
    if shape is None:
        return UNKNOWN_DIM
    n = 1
    for d in shape:
        n *= UNKNOWN_DIM if d is None else d
    return n


def estimate_dims(shape):
    """``shape`` with unknown dimensions as UNKNOWN_DIM (None for an unknown rank)."""
    return [UNKNOWN_DIM if d is None else d for d in shape] if shape is not None else None


def conv_flops(big_shape, filter_shape):
    """2 · (elements of the [N, O, OH, OW] tensor) · (C_in/groups · kh · kw): a convolution or
    either of its adjoints (whose dy is that tensor)."""
    if filter_shape is None:
        return estimate_numel(big_shape)
    _, cg, kh, kw = estimate_dims(filter_shape)
    return 2 * estimate_numel(big_shape) * cg * kh * kw

