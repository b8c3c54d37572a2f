"""``type: Python``: a layer written in Python from tfconf ops, named by the config.

    - {name: myscale, type: Python, module: my_layers, layer: TimesTwo, params: {factor: 2}}

Only the module the config names is imported (``importlib.import_module``; it must be on the
Python path), and only when the config may import code (:mod:`tfconf.frontend.trust`: a zoo entry or
a downloaded file needs ``--trust-python``). ``layer`` must name a class deriving from
:class:`tfconf.PythonLayer`, checked before anything is called. The class is instantiated with ``layer(**params)`` (or ``layer(params)`` when its
constructor takes one positional argument instead), Caffe's ``param_str`` is set as an attribute
when given, and then

* ``obj.build(bottoms)`` returns the tops (a tensor or a list of tensors), or
* ``obj.setup(bottoms)`` (optional) then ``obj.forward(bottoms)`` do.

Either may take a ``ctx`` keyword argument to receive the :class:`BuildContext` (for learned
parameters: ``ctx.param(0, "w", shape, filler)``). A Python layer has at least one bottom
(defaulting to the previous top) and as many tops as ``top`` names (default: one). The backward is autodiff's: nothing else is
written. Unlike Caffe's Python layers, these build graph ops; they never see arrays."""

from __future__ import annotations

import importlib
import inspect
from typing import Any, ClassVar, Literal

from pydantic import Field

from tfconf.engine import api as tc
from tfconf.python_layer import PythonLayer

from .base import LayerSpec, register_layer
from .caffe_map import CaffeLayer, Ignored, text


def _call(fn, bottoms, ctx, where):
    """Call the user's method; an exception it raises becomes a ValueError naming the method and
    the line of user code it came from (the compiler reports it against the layer)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        params = {}
    try:
        if "ctx" in params:
            return fn(bottoms, ctx=ctx)
        return fn(bottoms)
    except Exception as e:
        tb = e.__traceback__
        last = None
        while tb is not None:
            last = tb
            tb = tb.tb_next
        at = f" ({last.tb_frame.f_code.co_filename}:{last.tb_lineno})" if last is not None else ""
        raise ValueError(f"Python layer: {where}.{fn.__name__} raised {type(e).__name__}: {e}{at}") from None


@register_layer
class Python(LayerSpec):
    """A user layer: ``module`` (imported by name), ``layer`` (a class in it), ``params`` (its
    constructor's keyword arguments) and optionally Caffe's ``param_str``."""

    type: Literal["Python"] = "Python"
    flops_per_output: ClassVar[int | None] = 0
    caffe = CaffeLayer(
        {"python_param": {"module": text("module"), "layer": text("layer"), "param_str": text("param_str"),
                          "share_in_parallel": Ignored("tfconf does not run data-parallel solvers")}},
        note=lambda spec: ("a Caffe Python layer computes on arrays; a tfconf Python layer builds its output "
                           "from tfconf ops (see tfconf/frontend/layers/python_layer.py): rewrite "
                           f"{spec.get('module', '?')}.{spec.get('layer', '?')} before this net builds"))
    onnx_absent = "its build is the user's own code, which has no fixed ONNX form"
    module: str = Field(min_length=1)
    layer: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    param_str: str | None = None
    # At least one bottom, so that ``bottom`` defaults to the previous top like every other layer.
    num_bottoms: ClassVar = (1, None)
    num_tops: ClassVar = None

    def load_class(self):
        try:
            mod = importlib.import_module(self.module)
        except ModuleNotFoundError as e:
            if e.name and self.module.startswith(e.name):
                raise ValueError(f"Python layer: module {self.module!r} was not found (is its directory "
                                 f"on PYTHONPATH?)") from None
            raise ValueError(f"Python layer: importing module {self.module!r} failed: {e}") from None
        except Exception as e:  # the user's module raised while importing
            raise ValueError(f"Python layer: importing module {self.module!r} failed: "
                             f"{type(e).__name__}: {e}") from None
        cls = getattr(mod, self.layer, None)
        if cls is None:
            public = sorted(n for n, v in vars(mod).items() if isinstance(v, type) and not n.startswith("_"))
            raise ValueError(f"Python layer: module {self.module!r} has no class {self.layer!r}. "
                             f"Classes in it: {', '.join(public) or 'none'}")
        if not (isinstance(cls, type) and issubclass(cls, PythonLayer)):
            what = "a class" if isinstance(cls, type) else f"a {type(cls).__name__}, not a class"
            raise ValueError(f"Python layer: {self.module}.{self.layer} is {what} that does not derive from "
                             "tfconf.PythonLayer; a config may only name PythonLayer classes")
        return cls

    def instantiate(self, cls):
        try:
            sig = inspect.signature(cls)
        except (TypeError, ValueError):
            sig = None
        args, kwargs = (), dict(self.params)
        if sig is not None:
            try:
                sig.bind(**self.params)
            except TypeError as kw_err:
                try:
                    sig.bind(self.params)
                    args, kwargs = (dict(self.params),), {}
                except TypeError:
                    raise ValueError(f"Python layer: {self.module}.{self.layer}{sig} does not accept "
                                     f"params {self.params}: {kw_err}") from None
        try:
            obj = cls(*args, **kwargs)
        except Exception as e:
            raise ValueError(f"Python layer: creating {self.module}.{self.layer} raised "
                             f"{type(e).__name__}: {e}") from None
        if self.param_str is not None:
            obj.param_str = self.param_str
        return obj

    def build(self, ctx, bottoms):
        obj = self.instantiate(self.load_class())
        where = f"{self.module}.{self.layer}"
        if callable(getattr(obj, "build", None)):
            outs = _call(obj.build, list(bottoms), ctx, where)
        elif callable(getattr(obj, "forward", None)):
            if callable(getattr(obj, "setup", None)):
                _call(obj.setup, list(bottoms), ctx, where)
            outs = _call(obj.forward, list(bottoms), ctx, where)
        else:
            raise ValueError(f"Python layer: {where} has neither a build(bottoms) method nor "
                             f"forward(bottoms); one of them must return the tops as tfconf tensors")
        if outs is None:
            raise ValueError(f"Python layer: {where} returned None; return the tops (a tensor or a list)")
        if isinstance(outs, (tc.Tensor, tc.Variable)) or not isinstance(outs, (list, tuple)):
            outs = [outs]
        outs = [tc.convert_to_tensor(t) if isinstance(t, tc.Variable) else t for t in outs]
        bad = [type(t).__name__ for t in outs if not isinstance(t, tc.Tensor)]
        if bad:
            raise ValueError(f"Python layer: {where} must return tfconf tensors (graph ops, not arrays); "
                             f"received {', '.join(bad)}")
        names = self.output_names()
        if len(outs) != len(names):
            raise ValueError(f"Python layer: {where} returned {len(outs)} tops but the layer names "
                             f"{len(names)}: {names}")
        return [tc.identity(t, name=f"{self.name}_{i}" if len(outs) > 1 else self.name)
                for i, t in enumerate(outs)]
