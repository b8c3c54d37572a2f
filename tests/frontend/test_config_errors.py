"""Every broken config gives located, one-line errors in the exact format.

The corpus lives in ``configs/errors/``: each file starts with ``# expect: <line>`` comments (the exact
lines of the error, in order) and optional ``# set: KEY=VALUE`` overrides. Files under
``configs/errors/bases/`` are only used as ``base:`` targets. Adding a case is adding a file.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import pytest
from pydantic import Field, ValidationError

from tfconf.frontend import (
    ConfigError, ConfigIssue, Location, PositiveInt, PositiveIntPair, SolverConfig, StrictModel, format_path,
    format_value, from_pydantic, load_config, load_config_string, validate_section,
)

CONFIGS = Path(__file__).parent / "configs"
CORPUS = sorted(p.name for p in (CONFIGS / "errors").glob("*.yaml"))
LINE = re.compile(r"^(--set \S.*|[^\s:]+(:\d+:\d+)?): .+$")


def _header(name: str) -> tuple[list[str], list[str]]:
    expect, sets = [], []
    for line in (CONFIGS / "errors" / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("# expect: "):
            expect.append(line[len("# expect: "):])
        elif line.startswith("# set: "):
            sets.append(line[len("# set: "):])
    return expect, sets


def _check(path: str, overrides=()) -> None:
    """What ``tfconf validate`` does with the parts this package owns: load, then validate the solver."""
    loaded = load_config(path, overrides)
    if "solver" in loaded.data:
        validate_section(SolverConfig, loaded, ("solver",))


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("name", CORPUS)
def test_broken_config(name, monkeypatch):
    monkeypatch.chdir(CONFIGS)
    expect, sets = _header(name)
    assert expect, f"{name} has no '# expect:' line"
    with pytest.raises(ConfigError) as info:
        _check(f"errors/{name}", sets)
    err = info.value
    assert err.lines == expect
    assert str(err) == "\n".join(expect)
    for line in err.lines:
        assert "\n" not in line and "Traceback" not in line and 'File "' not in line
        assert "pydantic" not in line.lower() and "errors.pydantic.dev" not in line
        assert LINE.match(line), line


def test_missing_top_level_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("lenet.yaml")
    assert str(info.value) == "lenet.yaml: config file not found"


def test_directory_instead_of_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config("configs")
    assert str(info.value) == "configs: config file is a directory, not a file"


def test_not_utf8(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.yaml").write_bytes(b"name: lenet\nsolver:\n  base_lr: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config("net.yaml")
    assert str(info.value) == "net.yaml:3:12: not UTF-8 text (is this a YAML config?)"


def test_error_is_picklable():
    err = ConfigError([ConfigIssue(Location("a.yaml", 1, 2), "solver.base_lr", "must be > 0", -1)])
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) == "a.yaml:1:2: solver.base_lr: must be > 0. Received: -1"


# ---------------------------------------------------------------------------------------------------
# message format


def test_issue_format_matches_the_issue_example():
    issue = ConfigIssue(Location("lenet.yaml", 14, 5), "layers[3] (conv2).kernel_size", "must be > 0", 0)
    assert str(issue) == "lenet.yaml:14:5: layers[3] (conv2).kernel_size: must be > 0. Received: 0"


def test_issue_without_path_or_value():
    assert str(ConfigIssue(Location("a.yaml", 2, 1), "", "invalid YAML: oops")) == "a.yaml:2:1: invalid YAML: oops"
    assert str(ConfigIssue(None, "solver", "field required")) == "solver: field required"
    assert str(ConfigIssue(Location("a.yaml", 2, 1), "x", "did you mean 'y'?", 3)) == \
        "a.yaml:2:1: x: did you mean 'y'? Received: 3"


def test_multiline_values_are_rendered_on_one_line():
    issue = ConfigIssue(Location("a.yaml", 1, 1), "name", "bad\nmessage", "two\nlines")
    assert str(issue) == r"a.yaml:1:1: name: bad message. Received: 'two\nlines'"


def test_format_path_names_list_items():
    data = {"layers": [{"name": "a"}, {"type": "ReLU"}, {"name": "conv2"}], "sweep": {"grid": {}}}
    assert format_path(("layers", 2, "kernel_size"), data) == "layers[2] (conv2).kernel_size"
    assert format_path(("layers", 1, "type"), data) == "layers[1].type"
    assert format_path(("layers", 7), data) == "layers[7]"
    assert format_path(("sweep", "grid", "solver.base_lr"), data) == "sweep.grid['solver.base_lr']"
    assert format_path(()) == ""


def test_format_value():
    assert format_value(None) == "null"
    assert format_value(True) == "true"
    assert format_value(0.001) == "0.001"
    assert format_value("abc") == "'abc'"
    assert format_value({"type": "inv", "gamma": [1, 2]}) == "{type: 'inv', gamma: [1, 2]}"
    assert format_value(list(range(100))).endswith("...")
    assert len(format_value(list(range(100)))) == 80


# ---------------------------------------------------------------------------------------------------
# from_pydantic on a small layer schema, as the net schema will use it


class Conv(StrictModel):
    __synonyms__ = {"filters": "num_output"}
    type: Literal["Convolution"]
    name: str
    num_output: PositiveInt
    kernel_size: PositiveIntPair = 3


class Pool(StrictModel):
    type: Literal["Pooling"]
    name: str
    pool: Literal["max", "ave"] = "max"
    kernel_size: PositiveIntPair = 2


class Scale(StrictModel):
    type: Literal["Scale"]
    name: str
    value: Union[int, list[int]] = 1


Layer = Annotated[Union[Conv, Pool, Scale], Field(discriminator="type")]


class Net(StrictModel):
    name: str
    layers: list[Layer]
    solver: Optional[SolverConfig] = None


NET = """\
name: toy
layers:
  - {name: conv1, type: Convolution, num_output: 20, kernel_size: 5}
  - name: pool1
    type: Pooling
    pool: avg
  - name: conv2
    type: Convolution
    filters: 50
    kernel_size: 0
  - {name: conv3, type: Convolutoin}
  - {name: nothing}
  - {name: s, type: Scale, value: x}
solver:
  base_lr: 0.01
  max_iter: 10
"""


def _net_errors(text: str, overrides=()) -> list[str]:
    loaded = load_config_string(text, "net.yaml", overrides)
    with pytest.raises(ConfigError) as info:
        validate_section(Net, loaded)
    return info.value.lines


def test_from_pydantic_on_a_layer_list():
    assert _net_errors(NET) == [
        "net.yaml:6:5: layers[1] (pool1).pool: unknown value; did you mean 'ave'? Expected one of: max, ave. "
        "Received: 'avg'",
        "net.yaml:9:5: layers[2] (conv2).filters: unknown key; did you mean 'num_output'?",
        "net.yaml:10:5: layers[2] (conv2).kernel_size: must be an integer > 0 or a [h, w] pair of such "
        "integers. Received: 0",
        "net.yaml:11:19: layers[3] (conv3).type: unknown type 'Convolutoin'; did you mean 'Convolution'? "
        "Known types: Convolution, Pooling, Scale",
        "net.yaml:12:5: layers[4] (nothing): needs a 'type' key (one of: Convolution, Pooling, Scale)",
        "net.yaml:13:28: layers[5] (s).value: must be an integer or a list. Received: 'x'",
    ]


def test_from_pydantic_points_at_overrides():
    lines = _net_errors(NET.split("  - {name: conv3")[0].replace("pool: avg", "pool: ave")
                        .replace("filters: 50", "num_output: 50").replace("kernel_size: 0", "kernel_size: 1"),
                        overrides=["layers.conv2.kernel_size=[3, 0]", "name=[1]"])
    assert lines == [
        "--set layers.conv2.kernel_size=[3, 0]: layers[2] (conv2).kernel_size: must be an integer > 0 or a "
        "[h, w] pair of such integers. Received: [3, 0]",
        "--set name=[1]: name: must be a string. Received: [1]",
    ]


def test_from_pydantic_without_a_source_map():
    try:
        SolverConfig.model_validate({"base_lr": -1, "max_iter": 5})
    except ValidationError as exc:
        err = from_pydantic(exc, None, ("solver",), data={"base_lr": -1, "max_iter": 5})
    assert err.lines == ["solver.base_lr: must be > 0. Received: -1"]


def test_from_pydantic_finds_the_model_from_the_error_title():
    loaded = load_config_string("solver: {base_lr: 0.1, max_iter: 3, momentun: 0.9}\n", "s.yaml")
    try:
        SolverConfig.model_validate(loaded.data["solver"])
    except ValidationError as exc:
        err = from_pydantic(exc, loaded, ("solver",))
    assert err.lines == ["s.yaml:1:37: solver.momentun: unknown key; did you mean 'momentum'?"]


def test_loaded_config_error_helper():
    loaded = load_config_string(NET, "net.yaml")
    err = loaded.error(("layers", 2, "bottom"), "no earlier layer produces 'fc9'", "fc9")
    assert str(err) == "net.yaml:7:5: layers[2] (conv2).bottom: no earlier layer produces 'fc9'. Received: 'fc9'"


def test_a_validator_message_that_names_the_value_is_not_told_twice():
    from tfconf.frontend.errors import ConfigIssue

    said = ConfigIssue(None, "local_size", "must be odd (the window is centred). Received: 4", received=4)
    assert str(said) == "local_size: must be odd (the window is centred). Received: 4"
    plain = ConfigIssue(None, "local_size", "must be odd", received=4)
    assert str(plain) == "local_size: must be odd. Received: 4"
