"""``type: Python`` layers: user classes from the module the config names, built from tfconf ops."""

import sys
import textwrap

import numpy as np
import pytest

from tfconf.frontend.compiler import NetBuildError

from .helpers import X4, build, rng, roundtrip

# the layer types this module checks against numpy: minimal config, input shapes (conftest.py)
LAYER_CASES = {
    "Python": ({"module": "tests.frontend.layers.helpers", "layer": "Double"}, {"data": X4}),
}

USER_MODULE = '''
import tfconf as tc
from tfconf.frontend.fillers import ConstantFiller


class TimesK(tc.PythonLayer):
    """y = k·x + shift."""
    def __init__(self, k, shift=0.0):
        self.k, self.shift = k, shift

    def build(self, bottoms):
        return bottoms[0] * self.k + self.shift


class FromDict(tc.PythonLayer):
    def __init__(self, params):
        self.p = params

    def build(self, bottoms):
        return [tc.tanh(bottoms[0]) * self.p["a"] + bottoms[1]]


class Learned(tc.PythonLayer):
    """setup/forward style with a learned per-column weight from ctx."""
    def setup(self, bottoms, ctx):
        n = bottoms[0].shape.as_list()[1]
        self.w = ctx.param(0, "w", [n], ConstantFiller(value=2.0))

    def forward(self, bottoms, ctx):
        return [bottoms[0] * self.w]


class TwoTops(tc.PythonLayer):
    def build(self, bottoms):
        x = bottoms[0]
        return [tc.reduce_sum(x, 1), tc.reduce_max(x, 1)]


class UsesParamStr(tc.PythonLayer):
    def build(self, bottoms):
        return bottoms[0] + float(self.param_str)


class NoBuild(tc.PythonLayer):
    pass


class ReturnsArray(tc.PythonLayer):
    def build(self, bottoms):
        import numpy
        return numpy.zeros(3)


class Raises(tc.PythonLayer):
    def build(self, bottoms):
        return {}["missing"]


class NotALayer:
    """A class that does not derive from tc.PythonLayer."""
    def build(self, bottoms):
        return bottoms[0]


def not_a_class_but_callable():
    return NoBuild()
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch, request):
    name = f"tfconf_user_layers_{request.node.name.replace('[', '_').replace(']', '').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_build_with_keyword_params_and_autodiff(user_module):
    layer = {"name": "py", "type": "Python", "module": user_module, "layer": "TimesK",
             "params": {"k": 3.0, "shift": 1.0}}
    s = roundtrip(layer)
    assert user_module not in sys.modules  # validating a config imports nothing
    x = rng(0).standard_normal((2, 3))
    net = build([layer], {"data": x})
    assert user_module in sys.modules
    np.testing.assert_allclose(net.run("py"), 3 * x + 1, rtol=1e-12)
    net.grad_check("py", ["data"])
    assert s.params == {"k": 3.0, "shift": 1.0}


def test_constructor_taking_the_params_dict_and_two_bottoms(user_module):
    layer = {"name": "py", "type": "Python", "module": user_module, "layer": "FromDict", "params": {"a": 0.5},
             "bottom": ["x", "y"]}
    roundtrip(layer)
    x, y = rng(1).standard_normal((2, 3)), rng(2).standard_normal((2, 3))
    net = build([layer], {"x": x, "y": y})
    np.testing.assert_allclose(net.run("py"), 0.5 * np.tanh(x) + y, rtol=1e-12)
    net.grad_check("py", ["x", "y"])


def test_setup_forward_with_learned_parameter(user_module):
    layer = {"name": "py", "type": "Python", "module": user_module, "layer": "Learned", "param": [{"lr_mult": 2.0}]}
    roundtrip(layer)
    x = rng(3).standard_normal((2, 3))
    net = build([layer], {"data": x})
    np.testing.assert_allclose(net.run("py"), 2 * x)
    assert net.meta["py/w"]["lr_mult"] == 2.0 and net.meta["py/w"]["trainable"]
    net.load("py/w", [1.0, -1.0, 0.5])
    np.testing.assert_allclose(net.run("py"), x * [1.0, -1.0, 0.5])
    net.grad_check("py", ["data", "py/w"])


def test_multiple_tops_and_param_str(user_module):
    x = rng(4).standard_normal((2, 4))
    net = build([{"name": "py", "type": "Python", "module": user_module, "layer": "TwoTops", "top": ["s", "m"]},
                 {"name": "ps", "type": "Python", "module": user_module, "layer": "UsesParamStr", "param_str": "1.5",
                  "bottom": "s"}], {"data": x})
    s, m, ps = net.run(["s", "m", "ps"])
    np.testing.assert_allclose(s, x.sum(1))
    np.testing.assert_allclose(m, x.max(1))
    np.testing.assert_allclose(ps, x.sum(1) + 1.5)


@pytest.mark.parametrize("cfg,match", [
    ({"module": "tfconf_no_such_module_xyz", "layer": "A"}, "was not found"),
    ({"layer": "Missing"}, "has no class 'Missing'.*TimesK"),
    ({"layer": "NoBuild"}, "neither a build"),
    ({"layer": "ReturnsArray"}, "must return tfconf tensors"),
    ({"layer": "TimesK", "params": {"q": 1}}, "does not accept params"),
    ({"layer": "TimesK", "params": {"k": 1.0}, "top": ["a", "b"]}, "returned 1 tops"),
    ({"layer": "Raises"}, "Raises.build raised KeyError"),
    ({"layer": "NotALayer"}, "NotALayer is a class that does not derive from tfconf.PythonLayer"),
    ({"layer": "not_a_class_but_callable"}, "is a function, not a class"),
    ({"module": "os", "layer": "system", "params": {"command": "touch /tmp/x"}}, "os.system is a builtin_function"),
    ({"module": "subprocess", "layer": "Popen"}, "subprocess.Popen is a class that does not derive"),
])
def test_errors_are_clear_and_name_the_layer(user_module, cfg, match):
    layer = dict({"name": "py", "type": "Python", "module": user_module}, **cfg)
    with pytest.raises(NetBuildError, match=match) as err:
        build([layer], {"data": np.zeros((2, 3))})
    assert err.value.layer.name == "py"


def test_module_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "tfconf_broken_user_mod.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(NetBuildError, match="importing module 'tfconf_broken_user_mod' failed: RuntimeError: boom"):
            build([{"name": "py", "type": "Python", "module": "tfconf_broken_user_mod", "layer": "A"}],
                  {"data": np.zeros(2)})
    finally:
        sys.modules.pop("tfconf_broken_user_mod", None)
