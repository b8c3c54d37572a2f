"""The protobuf text-format reader: values, nesting, repetition, escapes, both layer syntaxes, and
errors located at file:line:column."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tfconf.frontend.errors import ConfigError
from tfconf.interop.prototxt import Enum, Message, parse, parse_file

HERE = Path(__file__).parent / "caffe"


def where(field):
    return (field.location.line, field.location.column)


def test_scalars_comments_and_positions():
    text = ('name: "LeNet"   # a comment: name: "not this"\n'
            "# a whole-line comment { with braces }\n"
            "  base_lr: 0.01\n"
            "max_iter: 10000 solver_mode: GPU\n"
            "neg: -3 hex: 0x1F oct: 017 exp: 1e-4 dot: .5 suffix: 2.5f big: 1E+3\n"
            "yes: true no: false inf: inf ninf: -inf nan: nan\n")
    m = parse(text, "s.prototxt")
    values = {f.name: f.value for f in m}
    assert values["name"] == "LeNet" and type(values["name"]) is str
    assert values["base_lr"] == 0.01 and values["max_iter"] == 10000 and isinstance(values["max_iter"], int)
    assert values["solver_mode"] == "GPU" and isinstance(values["solver_mode"], Enum)
    assert (values["neg"], values["hex"], values["oct"]) == (-3, 31, 15)
    assert (values["exp"], values["dot"], values["suffix"], values["big"]) == (1e-4, 0.5, 2.5, 1000.0)
    assert isinstance(values["big"], float)
    assert values["yes"] == "true" and isinstance(values["yes"], Enum)
    assert values["inf"] == math.inf and values["ninf"] == -math.inf and math.isnan(values["nan"])
    assert where(m.first("name")) == (1, 1)
    assert where(m.first("base_lr")) == (3, 3)
    assert where(m.first("solver_mode")) == (4, 17)
    assert str(m.first("suffix").location) == "s.prototxt:5:46"
    assert [f.name for f in m][:4] == ["name", "base_lr", "max_iter", "solver_mode"]  # comments are not fields


def test_strings_escapes_and_concatenation():
    m = parse(r'''a: "tab\there" b: 'single "quoted"' c: "q\"uote\\back" d: "\x41\101\n" '''
              r'''e: "caf\u00e9 \U0001F600" f: "one " 'two' "three" g: "" h: "#not a comment"''')
    v = {f.name: f.value for f in m}
    assert v["a"] == "tab\there"
    assert v["b"] == 'single "quoted"'
    assert v["c"] == 'q"uote\\back'
    assert v["d"] == "AA\n"
    assert v["e"] == "café 😀"
    assert v["f"] == "one twothree"
    assert v["g"] == "" and v["h"] == "#not a comment"
    # octal escapes are bytes: two of them make one UTF-8 character
    assert parse(r'x: "\303\251"').first("x").value == "é"


def test_nested_messages_repeated_fields_and_both_brace_styles():
    text = """
layer {
  name: "conv1"
  param { lr_mult: 1 }
  param: { lr_mult: 2 decay_mult: 0 }
  convolution_param <
    kernel_size: 5, stride: 1; pad: [1, 2]
    weight_filler { type: "xavier" }
  >
}
layer { name: "relu1" type: "ReLU" }
"""
    m = parse(text, "n.prototxt")
    layers = m.all("layer")
    assert len(layers) == 2 and all(isinstance(f.value, Message) for f in layers)
    conv = layers[0].value
    assert [p.value.first("lr_mult").value for p in conv.all("param")] == [1, 2]
    assert conv.all("param")[1].value.first("decay_mult").value == 0
    cp = conv.first("convolution_param").value
    assert [f.value for f in cp.all("pad")] == [1, 2]
    assert [where(f) for f in cp.all("pad")] == [(7, 38), (7, 41)]  # list items keep their own columns
    assert cp.first("weight_filler").value.first("type").value == "xavier"
    assert where(cp.first("weight_filler")) == (8, 5)
    assert conv.names() == ["name", "param", "convolution_param"]
    assert str(layers[1].location) == "n.prototxt:11:1"


def test_list_of_messages_and_empty_list():
    m = parse("shape: [{dim: 1 dim: 2}, {dim: 3}] empty: []")
    shapes = m.all("shape")
    assert [[d.value for d in s.value] for s in shapes] == [[1, 2], [3]]
    assert m.all("empty") == []


def test_both_layer_syntaxes_read_alike():
    v1 = parse_file(str(HERE / "lenet_v1_train_test.prototxt"))
    new = parse_file(str(HERE / "lenet_train_test.prototxt"))
    assert len(v1.all("layers")) == len(new.all("layer")) == 11
    first = v1.all("layers")[2].value
    assert first.first("type").value == "CONVOLUTION" and isinstance(first.first("type").value, Enum)
    assert [f.value for f in first.all("blobs_lr")] == [1, 2]
    assert v1.all("layers")[0].value.first("include").value.first("phase").value == "TRAIN"


@pytest.mark.parametrize("text, line, col, message", [
    ("layer {\n  name: \"x\"\n", 1, 7, "never closed"),
    ("layer { name: \"x\" }\n}\n", 2, 1, "unexpected '}'"),
    ("a: \"no end\n", 1, 4, "unterminated string"),
    ("layer {\n  kernel_size 5\n}", 2, 15, "expected ':' or '{' after the field name 'kernel_size'"),
    ("a: [1 2]", 1, 7, "expected ',' or ']'"),
    ("a: 3x3", 1, 4, "not a number or a name: 3x3"),
    ("a: }", 1, 4, "expected a value"),
    ("a: \"bad \\q escape\"", 1, 9, "unknown escape sequence \\q"),
    ("a: 019", 1, 4, "invalid octal number"),
    ("a: -foo", 1, 4, "expected a number after '-'"),
    ("\n\n   : 5", 3, 4, "expected a field name"),
    ("a: \"\\xZZ\"", 1, 5, "\\x must be followed by hex digits"),
])
def test_syntax_errors_are_located(text, line, col, message):
    with pytest.raises(ConfigError) as e:
        parse(text, "bad.prototxt")
    (issue,) = e.value.issues
    assert (issue.location.file, issue.location.line, issue.location.column) == ("bad.prototxt", line, col)
    assert message in str(e.value)
    assert str(e.value).startswith(f"bad.prototxt:{line}:{col}: ")


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        parse_file(str(tmp_path / "missing.prototxt"))
    binary = tmp_path / "w.caffemodel"
    binary.write_bytes(b"\x0a\x05LeNet\xa2\x06\xff\xfe")
    with pytest.raises(ConfigError, match="not a text file"):
        parse_file(str(binary))
