"""How a layer reads from Caffe: the declarations a layer spec puts in its ``caffe`` class attribute.

A layer says, next to its build, which ``*_param`` messages of Caffe's LayerParameter it reads and
what becomes of each of their fields, and in which order Caffe stores its learnable blobs::

    caffe = CaffeLayer({"lrn_param": {"local_size": integer("local_size"), "alpha": number("alpha"),
                                      "engine": ENGINE}})

The declarations are data: ``tfconf/interop/caffe_import.py`` reads a prototxt against them
(converting values, locating errors, writing comments for ignored fields) and matches a
``.caffemodel``'s blobs to parameters with them.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Callable, Union

from pydantic import BeforeValidator

__all__ = ["CaffeLayer", "Carry", "Choice", "ENGINE", "Fixed", "Ignored", "LOSS_PARAM", "SOFTMAX_PARAM", "choice", "filler",
           "filler_list", "flag", "integer", "number", "shape", "text"]

#: value kinds a Caffe field converts from (a :class:`Choice` is the fifth)
INT, FLOAT, BOOL, STR, FILLER, SHAPE = "int", "float", "bool", "str", "filler", "shape"


@dataclasses.dataclass(frozen=True)
class Choice:
    """A Caffe enum: its names → tfconf's values; ``unsupported``: Caffe's names tfconf lacks → why."""

    mapping: dict
    unsupported: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Carry:
    """A Caffe field carried over as the spec's field ``key``. ``card``: one (written once), list
    (repeated: always a list), pair (repeated: one value → a number, two → [h, w])."""

    key: str
    kind: Union[str, Choice]
    card: str = "one"


@dataclasses.dataclass(frozen=True)
class Ignored:
    """A Caffe field with no meaning in tfconf: kept as a comment saying ``why``."""

    why: str


@dataclasses.dataclass(frozen=True)
class Fixed:
    """A Caffe field tfconf supports at one value only (Caffe's default); other values are errors."""

    value: Any
    why: str


def integer(key: str, card: str = "one") -> Carry:
    return Carry(key, INT, card)


def number(key: str, card: str = "one") -> Carry:
    return Carry(key, FLOAT, card)


def flag(key: str) -> Carry:
    return Carry(key, BOOL)


def text(key: str) -> Carry:
    return Carry(key, STR)


def filler(key: str) -> Carry:
    return Carry(key, FILLER)


def filler_list(key: str) -> Carry:
    """A repeated filler field (DummyData's data_filler): always a list."""
    return Carry(key, FILLER, "list")


def shape(key: str, card: str = "one") -> Carry:
    return Carry(key, SHAPE, card)


def caffe_dims(v):
    """Sizes written as Caffe's BlobShape (``{dim: [2, 3]}``) as their list; anything else as it is."""
    if isinstance(v, dict) and set(v) <= {"dim"}:
        return v.get("dim", [])
    return v


#: a spec field of sizes that also takes Caffe's ``{dim: [...]}`` (Reshape's and Parameter's shape)
Dims = Annotated[list[int], BeforeValidator(caffe_dims)]


def choice(key: str, mapping: dict, unsupported: dict | None = None) -> Carry:
    return Carry(key, Choice(dict(mapping), dict(unsupported or {})))


@dataclasses.dataclass(frozen=True)
class CaffeLayer:
    """A layer type's Caffe counterpart (the same type string).

    - ``params``: {Caffe parameter message: {its field: Carry | Ignored | Fixed}}.
    - ``blobs``: the suffixes tfconf names the layer's learnable blobs with, in Caffe's blob order;
      ``blobs_for(spec)`` instead, when they depend on the spec (a Scale with a second bottom).
    - ``legacy_ranks``: {suffix: rank} for blobs that V1 models store 4-D (leading 1s dropped).
    - ``read_blobs(name, arrays) -> {parameter or state name: array}``: for blobs that are not
      parameters as they are (BatchNorm's running sums).
    - ``note(spec) -> str``: a comment every import of this type carries.

    A Caffe default that differs from tfconf's is written out by the importer: an absent
    ``weight_filler`` (Caffe: constant 0, tfconf: xavier) on any layer that carries one.
    """

    params: dict = dataclasses.field(default_factory=dict)
    blobs: tuple = ()
    blobs_for: Callable[[dict], tuple] | None = None
    legacy_ranks: dict = dataclasses.field(default_factory=dict)
    read_blobs: Callable[[str, list], dict] | None = None
    note: Callable[[dict], str] | None = None

    def blob_names(self, spec: dict) -> tuple:
        """The blob suffixes of one layer (its spec as a dict), in Caffe's order."""
        return tuple(self.blobs_for(spec)) if self.blobs_for is not None else self.blobs


#: ``engine: CAFFE | CUDNN`` on the layers that have one
ENGINE = Ignored("tfconf chooses its own kernels")

#: Caffe's softmax_param, read by Softmax and SoftmaxWithLoss
SOFTMAX_PARAM = {"axis": integer("axis"), "engine": ENGINE}

#: Caffe's loss_param, read by the loss layers that normalize
LOSS_PARAM = {"ignore_label": integer("ignore_label"),
              "normalization": choice("normalization", {"FULL": "full", "VALID": "valid",
                                                        "BATCH_SIZE": "batch_size", "NONE": "none"}),
              "normalize": flag("normalize")}
