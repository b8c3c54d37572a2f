"""Loss layers besides SoftmaxWithLoss (core.py): SigmoidCrossEntropyLoss, EuclideanLoss,
HingeLoss, ContrastiveLoss, MultinomialLogisticLoss, InfogainLoss. Each produces a scalar;
``loss_weight`` is applied by the compiler (default 1 for the first top of a loss layer)."""

from __future__ import annotations

import math
import os
from typing import ClassVar, Literal

import numpy as np
from pydantic import field_validator, model_validator

from tfconf.engine import api as tc

from .base import LayerSpec, register_layer
from .caffe_map import LOSS_PARAM, CaffeLayer, choice, flag, integer, number, text
from .shape import canonical_axis, dim_of, prod_dims, reshape_to

#: Caffe's kLOG_THRESHOLD: probabilities are clipped here before the log.
LOG_THRESHOLD = 1e-20


class _Loss(LayerSpec):
    is_loss: ClassVar[bool] = True
    onnx_absent = "a deploy net drops its losses"
    num_bottoms: ClassVar = (2, 2)


def _rows(x):
    """x as [N, count/N] (Caffe's num × dim view)."""
    shp = x.shape.as_list()
    if None in shp[1:]:
        raise ValueError(f"the sizes after axis 0 must be known; shape {shp}")
    return reshape_to(x, [dim_of(x, 0), int(np.prod(shp[1:], dtype=np.int64))])


def _batch(x):
    """N = shape[0] as a scalar of x's dtype."""
    n = x.shape.as_list()[0]
    return float(n) if n is not None else tc.cast(tc.shape(x)[0], x.dtype)


def _like(t, x):
    """``t`` reshaped to ``x``'s shape (Caffe only requires equal counts), in x's dtype."""
    t = tc.cast(t, x.dtype)
    if t.shape.as_list() == x.shape.as_list():
        return t
    return reshape_to(t, [dim_of(x, i) for i in range(len(x.shape.as_list()))])


def _labels(label):
    """Integer labels (Caffe stores them as floats and truncates)."""
    return label if label.dtype in (tc.int32, tc.int64) else tc.cast(label, tc.int32)


class _NormalizedLoss(_Loss):
    """Caffe's LossParameter: ignore_label and normalization (full | valid | batch_size | none);
    the legacy ``normalize`` flag means valid (true) or batch_size (false)."""

    ignore_label: int | None = None
    normalization: Literal["full", "valid", "batch_size", "none"] | None = None
    normalize: bool | None = None
    default_normalization: ClassVar[str] = "valid"

    @field_validator("normalization", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v

    def norm_mode(self):
        if self.normalization is not None:
            return self.normalization
        if self.normalize is not None:
            return "valid" if self.normalize else "batch_size"
        return self.default_normalization

    def normalizer(self, valid_count, full_count, batch_size, dtype):
        """Caffe's get_normalizer, with its max(1, ·)."""
        mode = self.norm_mode()
        if mode == "none":
            return None
        n = {"full": full_count, "valid": valid_count, "batch_size": batch_size}[mode]
        if isinstance(n, (int, float)):
            return float(max(1.0, n))
        return tc.maximum(n, tc.constant(1.0, dtype=dtype))


@register_layer
class SigmoidCrossEntropyLoss(_NormalizedLoss):
    """Σ [max(x, 0) - x·t + log(1 + exp(-|x|))] over all elements (stable), skipping targets equal
    to ``ignore_label``, divided per ``normalization`` (Caffe's default here: batch_size)."""

    type: Literal["SigmoidCrossEntropyLoss"] = "SigmoidCrossEntropyLoss"
    caffe = CaffeLayer({"loss_param": LOSS_PARAM})
    default_normalization: ClassVar[str] = "batch_size"

    def build(self, ctx, bottoms):
        x, t = bottoms
        t = _like(t, x)
        per = tc.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=x)
        full = tc.cast(tc.size(x), x.dtype)
        if self.ignore_label is not None:
            valid = tc.cast(tc.not_equal(tc.cast(t, tc.int32), tc.constant(self.ignore_label, dtype=tc.int32)),
                            x.dtype)
            total = tc.reduce_sum(per * valid)
            count = tc.reduce_sum(valid)
        else:
            total, count = tc.reduce_sum(per), full
        norm = self.normalizer(count, full, _batch(x), x.dtype)
        return [tc.identity(total if norm is None else total / norm, name=self.name)]


@register_layer
class EuclideanLoss(_Loss):
    """Σ (a - b)² / (2N), N the batch size (axis 0)."""

    type: Literal["EuclideanLoss"] = "EuclideanLoss"
    caffe = CaffeLayer()

    def build(self, ctx, bottoms):
        a, b = bottoms
        d = a - _like(b, a)
        return [tc.divide(tc.reduce_sum(tc.square(d)), _batch(a) * 2.0, name=self.name)]


@register_layer
class HingeLoss(_Loss):
    """One-vs-all hinge loss over the [N, K] scores (axes after 0 flattened): with
    t_k = +1 for the label and -1 otherwise, Σ max(0, 1 - t_k·x_k) / N (``l1``), or the sum of
    squares / N (``l2``)."""

    type: Literal["HingeLoss"] = "HingeLoss"
    caffe = CaffeLayer({"hinge_loss_param": {"norm": choice("norm", {"L1": "l1", "L2": "l2"})}})
    norm: Literal["l1", "l2"] = "l1"

    @field_validator("norm", mode="before")
    @classmethod
    def _lower(cls, v):
        return v.lower() if isinstance(v, str) else v

    def build(self, ctx, bottoms):
        x, label = bottoms
        x2 = _rows(x)
        k = x2.shape.as_list()[1]
        onehot = tc.one_hot(tc.reshape(_labels(label), [-1]), k, dtype=x.dtype)
        margin = tc.nn.relu(1.0 - x2 * (onehot * 2.0 - 1.0))
        total = tc.reduce_sum(margin if self.norm == "l1" else tc.square(margin))
        return [tc.divide(total, _batch(x), name=self.name)]


@register_layer
class ContrastiveLoss(_Loss):
    """Siamese loss over pairs (a, b) with similarity y: with d² = Σ (a - b)² per pair,
    Σ [y·d² + (1-y)·max(margin - d, 0)²] / (2N); ``legacy_version`` uses max(margin - d², 0)
    for dissimilar pairs. The gradient at d = 0 is 0 for dissimilar pairs (as in Caffe)."""

    type: Literal["ContrastiveLoss"] = "ContrastiveLoss"
    caffe = CaffeLayer({"contrastive_loss_param": {"margin": number("margin"),
                                                   "legacy_version": flag("legacy_version")}})
    margin: float = 1.0
    legacy_version: bool = False
    num_bottoms: ClassVar = (3, 3)

    def build(self, ctx, bottoms):
        a, b, y = bottoms
        d2 = tc.reduce_sum(tc.square(_rows(a) - _rows(_like(b, a))), 1)
        y = tc.reshape(_labels(y), [-1])
        sim = tc.not_equal(y, tc.zeros_like(y))
        if self.legacy_version:
            dis = tc.nn.relu(self.margin - d2)
        else:
            pos = d2 > 0
            d = tc.where(pos, tc.sqrt(tc.where(pos, d2, tc.ones_like(d2))), tc.zeros_like(d2))
            dis = tc.square(tc.nn.relu(self.margin - d))
        per = tc.where(sim, d2, dis)
        return [tc.divide(tc.reduce_sum(per), _batch(a) * 2.0, name=self.name)]


@register_layer
class MultinomialLogisticLoss(_Loss):
    """-Σ log(max(p[label], 1e-20)) / N for probabilities p of shape [N, K] (axes after 0
    flattened) — follow a Softmax layer, or use SoftmaxWithLoss (stabler) on the logits."""

    type: Literal["MultinomialLogisticLoss"] = "MultinomialLogisticLoss"
    caffe = CaffeLayer()

    def build(self, ctx, bottoms):
        p, label = bottoms
        p2 = _rows(p)
        k = p2.shape.as_list()[1]
        onehot = tc.one_hot(tc.reshape(_labels(label), [-1]), k, dtype=p.dtype)
        pl = tc.reduce_sum(p2 * onehot, 1)
        logp = tc.log(tc.maximum(pl, tc.constant(LOG_THRESHOLD, dtype=p.dtype)))
        return [tc.divide(-tc.reduce_sum(logp), _batch(p), name=self.name)]


@register_layer
class InfogainLoss(_NormalizedLoss):
    """Caffe's (current) InfogainLoss: with p = softmax(x) along ``axis`` and an infogain matrix H
    [K, K], -Σ_i Σ_k H[label_i, k] · log(max(p_ik, 1e-20)) over the (non-ignored) positions,
    divided per ``normalization`` (default valid). H is the third bottom or a ``source`` .npy file
    (Caffe's binaryproto is not read). An optional second top is the softmax output."""

    type: Literal["InfogainLoss"] = "InfogainLoss"
    caffe = CaffeLayer({"infogain_loss_param": {"source": text("source"), "axis": integer("axis")},
                        "loss_param": LOSS_PARAM})
    source: str | None = None
    axis: int = 1
    num_bottoms: ClassVar = (2, 3)
    num_tops: ClassVar = None

    @model_validator(mode="after")
    def _check(self):
        if self.normalize is not None:
            raise ValueError("normalize is deprecated for InfogainLoss (as in Caffe); use normalization")
        if self.top is not None and len(self.top) > 2:
            raise ValueError(f"InfogainLoss has at most 2 tops (loss, probabilities). Received: {self.top}")
        return self

    def _matrix(self, bottoms, k, dtype):
        if len(bottoms) == 3:
            h = tc.cast(bottoms[2], dtype)
            if h.shape.num_elements() not in (None, k * k):
                raise ValueError(f"the infogain matrix (third bottom) has shape {h.shape.as_list()}; need {k}x{k}")
            return tc.reshape(h, [k, k])
        if self.source is None:
            raise ValueError("InfogainLoss needs the infogain matrix: a third bottom or source: FILE.npy")
        if not self.source.endswith(".npy"):
            raise ValueError(f"source must be a .npy file (Caffe's binaryproto is not supported). "
                             f"Received: {self.source!r}")
        if not os.path.isfile(self.source):
            raise ValueError(f"infogain matrix file not found: {self.source!r}")
        h = np.load(self.source, allow_pickle=False)
        if h.size != k * k:
            raise ValueError(f"the infogain matrix in {self.source!r} has shape {list(h.shape)}; need {k}x{k}")
        return tc.constant(h.reshape(k, k).astype(dtype.np))

    def build(self, ctx, bottoms):
        x, label = bottoms[:2]
        shp = x.shape.as_list()
        rank = len(shp)
        a = canonical_axis(self.axis, rank)
        k = shp[a]
        if k is None:
            raise ValueError(f"the class axis {a} of {x.name} must have a known size; shape {shp}")
        h = self._matrix(bottoms, k, x.dtype)
        logp = tc.maximum(tc.nn.log_softmax(x, axis=a), tc.constant(math.log(LOG_THRESHOLD), dtype=x.dtype))
        perm = [i for i in range(rank) if i != a] + [a]
        lp = reshape_to(tc.transpose(logp, perm) if a != rank - 1 else logp, [-1, k])
        lab = tc.reshape(_labels(label), [-1])
        full = tc.cast(tc.size(lab), x.dtype)
        if self.ignore_label is not None:
            ok = tc.not_equal(lab, tc.constant(self.ignore_label, dtype=lab.dtype))
            lab = tc.where(ok, lab, tc.zeros_like(lab))
            valid = tc.cast(ok, x.dtype)
            count = tc.reduce_sum(valid)
        else:
            valid, count = None, full
        per = -tc.reduce_sum(tc.gather(h, lab) * lp, 1)
        total = tc.reduce_sum(per if valid is None else per * valid)
        outer = prod_dims([dim_of(x, i) for i in range(a)])  # Caffe's outer_num_ (batch_size mode)
        outer = float(outer) if isinstance(outer, int) else tc.cast(outer, x.dtype)
        norm = self.normalizer(count, full, outer, x.dtype)
        loss = tc.identity(total if norm is None else total / norm, name=self.name)
        if len(self.output_names()) == 2:
            return [loss, tc.nn.softmax(x, axis=a)]
        return [loss]
