"""Data types: a thin, hashable wrapper around numpy dtypes with TensorFlow 1 names."""

from __future__ import annotations

import numpy as np


class DType:
    """A tensor element type (``tc.float32``...). Compares equal to its numpy dtype and its name."""

    __slots__ = ("name", "np", "is_floating", "is_integer", "is_bool")

    def __init__(self, name: str, np_dtype):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating = self.np.kind == "f"
        self.is_integer = self.np.kind in "iu"
        self.is_bool = self.np.kind == "b"

    @property
    def as_numpy_dtype(self):
        return self.np.type

    @property
    def size(self) -> int:
        """Bytes per element (TF's ``DType.size``)."""
        return self.np.itemsize

    @property
    def base_dtype(self) -> "DType":
        return self

    def __repr__(self) -> str:
        return f"tc.{self.name}"

    def __reduce__(self):
        # one object per type (equality is identity): unpickling gives back the same DType
        return (as_dtype, (self.name,))

    def __eq__(self, other) -> bool:
        if isinstance(other, DType):
            return self is other
        try:
            return as_dtype(other) is self
        except TypeError:
            return False

    def __hash__(self) -> int:
        return hash(self.name)


float16 = DType("float16", np.float16)
float32 = DType("float32", np.float32)
float64 = DType("float64", np.float64)
int8 = DType("int8", np.int8)
int16 = DType("int16", np.int16)
int32 = DType("int32", np.int32)
int64 = DType("int64", np.int64)
uint8 = DType("uint8", np.uint8)
bool_ = DType("bool", np.bool_)

#: a reference to a Variable's storage (TF's DT_RESOURCE): the output of a VarHandle op, taken by
#: the ops that update or test the variable. Never fed, fetched or converted from numpy; an edge
#: of this type never crosses devices (placement keeps its ends together).
resource = DType("resource", np.object_)

_ALL = [float16, float32, float64, int8, int16, int32, int64, uint8, bool_]
_BY_NP = {d.np: d for d in _ALL}
_BY_NAME = {d.name: d for d in _ALL + [resource]}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "int": int32, "bool_": bool_})


def as_dtype(value) -> DType:
    """Convert a DType, numpy dtype, Python type or name to a DType; raise TypeError otherwise."""
    if isinstance(value, DType):
        return value
    if isinstance(value, str):
        try:
            return _BY_NAME[value]
        except KeyError:
            raise TypeError(f"Unknown dtype name {value!r}. Known: {sorted(_BY_NAME)}") from None
    if value is float:
        return float32
    if value is int:
        return int32
    if value is bool:
        return bool_
    try:
        return _BY_NP[np.dtype(value)]
    except (KeyError, TypeError):
        raise TypeError(f"Unsupported dtype {value!r}. Known: {[d.name for d in _ALL]}") from None


def dtype_of_value(value) -> DType:
    """TensorFlow's choice of dtype for a Python/numpy constant: float → float32, int → int32."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        return as_dtype(value.dtype)
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return float32
    if arr.dtype.kind in "iu":
        return int32
    return as_dtype(arr.dtype)
