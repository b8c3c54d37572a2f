"""What every layer shares: the spec base class, the registry keyed by Caffe type name, Caffe's
include/exclude rules, ``param`` specs, and the build context a layer adds its ops through.

A layer is a thin builder: a pydantic spec (``type: Literal["Convolution"]``) plus
``build(self, ctx, bottoms) -> tops`` that only adds ops and Variables. Autodiff gives the backward."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_serializer

from tfconf.registry import Registry
from ..schema_base import StrictModel
from .caffe_map import CaffeLayer

#: every layer type's spec class, by its ``type`` (Caffe's type string)
LAYERS: Registry[type["LayerSpec"]] = Registry("layer type")

#: class decorator: register a layer spec under its ``type`` literal (duplicates rejected)
register_layer = LAYERS.decorator(lambda cls: cls.model_fields["type"].annotation.__args__[0])


def get_layer_class(type_name: str):
    """The spec class of layer type ``type_name`` (a KeyError saying what is close for an unknown one)."""
    return LAYERS[type_name]


class NetStateRule(StrictModel):
    """Caffe's NetStateRule: a layer is included when every given condition holds."""
    phase: Literal["train", "test"] | None = None
    min_level: int | None = None
    max_level: int | None = None
    stage: list[str] = Field(default_factory=list)
    not_stage: list[str] = Field(default_factory=list)

    @field_validator("phase", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v

    @field_validator("stage", "not_stage", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, str) else v

    def matches(self, state: "NetState") -> bool:
        if self.phase is not None and self.phase != state.phase:
            return False
        if self.min_level is not None and state.level < self.min_level:
            return False
        if self.max_level is not None and state.level > self.max_level:
            return False
        if any(s not in state.stages for s in self.stage):
            return False
        if any(s in state.stages for s in self.not_stage):
            return False
        return True


class NetState(BaseModel):
    phase: Literal["train", "test"] = "train"
    level: int = 0
    stages: list[str] = Field(default_factory=list)


class ParamSpec(StrictModel):
    """One learnable blob's multipliers, and optionally a name that shares it between layers."""
    name: str | None = None
    lr_mult: float = 1.0
    decay_mult: float = 1.0


def _listify(v):
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    return list(v) if isinstance(v, (list, tuple)) else v  # anything else: the type check reports it


def per_sample(shape, batch_axis=0) -> int:
    """Elements of ``shape`` per sample (the batch axis and unknown dimensions count 1)."""
    if shape is None:
        return 0
    return int(math.prod(1 if (i == batch_axis or d is None) else d for i, d in enumerate(shape)))


class LayerSpec(StrictModel):
    """Fields every layer has (Caffe's LayerParameter minus the per-type nesting)."""

    name: str = Field(min_length=1)
    type: str
    bottom: list[str] | None = None
    top: list[str] | None = None
    include: list[NetStateRule] = Field(default_factory=list)
    exclude: list[NetStateRule] = Field(default_factory=list)
    loss_weight: list[float] | None = None
    param: list[ParamSpec] = Field(default_factory=list)
    propagate_down: list[bool] | None = None
    device: str | None = Field(None, description="Where this layer runs: auto, cpu, gpu, gpu:1 or a full "
                               "device name (default: the net's device).")

    # Class-level facts a subclass may override.
    is_loss: ClassVar[bool] = False          # loss layers default to loss_weight 1
    num_bottoms: ClassVar[tuple[int, int | None]] = (1, 1)  # (min, max) bottoms
    num_tops: ClassVar[int | None] = 1       # None: as many as the spec's ``top`` lists
    #: forward FLOPs per output element (activations 1, BatchNorm 2, Softmax 3, reshaping 0), or
    #: None for the rule of :meth:`flops` (layers that override it, layers with matrices)
    flops_per_output: ClassVar[int | None] = None
    #: the layer's Caffe counterpart: the parameter messages it reads and its blob order
    #: (frontend/layers/caffe_map.py; interop/caffe_import.py reads prototxt and caffemodel with it)
    caffe: ClassVar["CaffeLayer | None"] = None
    #: why the layer has no :meth:`to_onnx`, for the layers that have none (the registry test
    #: asks every layer for one or the other)
    onnx_absent: ClassVar[str | None] = None
    #: the layer makes a net's inputs itself (DummyData): a net with one trains without a data section
    makes_inputs: ClassVar[bool] = False

    def flops(self, bottoms, outs, weights, axis=0) -> int:
        """Forward FLOPs per sample (a multiply-add counts 2; tfconf/zoo/flops.py sums them):
        ``bottoms``/``outs`` are shapes, ``weights`` the shapes of the layer's parameters in
        creation order, ``axis`` the batch axis. Losses count 0, other layers
        ``flops_per_output`` per output element; a layer that declares neither (a user's
        registered layer) counts one per output element."""
        if self.is_loss:
            return 0
        return (1 if self.flops_per_output is None else self.flops_per_output) * sum(per_sample(s, axis) for s in outs)

    @field_validator("bottom", "top", mode="before")
    @classmethod
    def _names(cls, v):
        return _listify(v)

    @model_serializer(mode="wrap")
    def _keep_type(self, handler):
        # ``type`` is the union's tag: keep it even when dumping with exclude_defaults.
        out = handler(self)
        return {"name": out.pop("name", self.name), "type": self.type, **out}

    @field_validator("include", "exclude", mode="before")
    @classmethod
    def _rules(cls, v):
        if v is None:
            return []
        return [v] if isinstance(v, dict) else v

    @field_validator("loss_weight", mode="before")
    @classmethod
    def _weights(cls, v):
        if v is None:
            return None
        return [float(v)] if isinstance(v, (int, float)) else v

    def included(self, state: NetState) -> bool:
        """Caffe's rule: any include rule matching (or none given) and no exclude rule matching."""
        if self.include and not any(r.matches(state) for r in self.include):
            return False
        return not any(r.matches(state) for r in self.exclude)

    def build(self, ctx: "BuildContext", bottoms: list) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_onnx(self, b, xs: list, ins: list, outs: list) -> None:
        """Write this layer into an ONNX graph (interop/onnx_export.py's builder ``b``): its bottoms
        are the tensors ``xs`` of static shapes ``ins`` (None: known at run time), its tops (of
        shapes ``outs``) go to the names ``b.y(i)``. Raise ValueError for a configuration ONNX
        cannot express. A layer without an export states ``onnx_absent`` instead."""
        raise NotImplementedError(self.onnx_absent or f"{self.type} has no ONNX export")

    @classmethod
    def exports_onnx(cls) -> bool:
        return cls.to_onnx is not LayerSpec.to_onnx

    def output_names(self) -> list[str]:
        return self.top if self.top else [self.name]


class BuildContext:
    """What a layer may use while building: its parameters (created once and shared by name across
    layers and phases), the phase, and a list for update ops (e.g. BatchNorm's moving averages)."""

    def __init__(self, graph, state: NetState, params: dict, param_meta: dict, dtype, inputs=None):
        self.graph = graph
        self.inputs = inputs if inputs is not None else {}  # input top name → placeholder
        self.state = state
        self.params = params          # full param name → Variable (shared across phases)
        self.param_meta = param_meta  # full param name → {"lr_mult", "decay_mult", "trainable", ...}
        self.dtype = dtype
        self.updates: list = []
        self.layer: LayerSpec | None = None

    @property
    def phase(self) -> str:
        return self.state.phase

    @property
    def training(self) -> bool:
        return self.state.phase == "train"

    def param(self, index: int, suffix: str, shape, filler, trainable: bool = True):
        """The layer's ``index``-th learnable blob: created from ``filler`` on first use, shared when
        ``param[index].name`` names a blob another layer already created (shapes must agree)."""
        from tfconf.engine import api as tc

        from ..fillers import filler_tensor

        layer = self.layer
        spec = layer.param[index] if index < len(layer.param) else ParamSpec()
        key = spec.name or f"{layer.name}/{suffix}"
        shape = tuple(int(d) for d in shape)
        var = self.params.get(key)
        if var is not None:
            if tuple(var.shape.as_list()) != shape:
                raise ValueError(
                    f"shared parameter {key!r} has shape {list(var.shape.as_list())} but layer "
                    f"{layer.name!r} needs {list(shape)}"
                )
            return var
        with self.graph.as_default(), self.graph.name_scope(None):
            var = tc.Variable(filler_tensor(filler, shape, self.dtype), name=key, trainable=trainable)
        self.params[key] = var
        self.param_meta[key] = {"lr_mult": spec.lr_mult, "decay_mult": spec.decay_mult,
                                "trainable": trainable, "layer": layer.name}
        return var

    def input(self, name: str, shape, dtype):
        """The placeholder for an external input top (one per name, shared across phases)."""
        from tfconf.engine import api as tc

        ph = self.inputs.get(name)
        if ph is None:
            with self.graph.as_default(), self.graph.name_scope(None):
                ph = tc.placeholder(dtype, shape, name=name)
            self.inputs[name] = ph
        elif ph.shape.as_list() != list(shape) or ph.dtype != tc.as_dtype(dtype):
            raise ValueError(
                f"input {name!r} is declared as {list(shape)} {tc.as_dtype(dtype).name} but an earlier "
                f"declaration made it {ph.shape.as_list()} {ph.dtype.name}"
            )
        return ph

    def state_var(self, suffix: str, value):
        """A non-trainable Variable owned by the current layer (running statistics), shared across phases."""
        import numpy as np

        from tfconf.engine import api as tc

        key = f"{self.layer.name}/{suffix}"
        var = self.params.get(key)
        if var is None:
            with self.graph.as_default(), self.graph.name_scope(None):
                var = tc.Variable(np.asarray(value, dtype=self.dtype.np), name=key, trainable=False)
            self.params[key] = var
            self.param_meta[key] = {"lr_mult": 0.0, "decay_mult": 0.0, "trainable": False,
                                    "layer": self.layer.name}
        return var

