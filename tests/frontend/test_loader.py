"""YAML loading with positions, base: composition, --set overrides and dumping."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tfconf.frontend import (
    ConfigError, Loader, Location, SourceMap, dump_yaml, load_config, load_config_string, parse_override,
)

CONFIGS = Path(__file__).parent / "configs"


@pytest.fixture
def in_configs(monkeypatch):
    monkeypatch.chdir(CONFIGS)


# ---------------------------------------------------------------------------------------------------
# positions


def test_every_key_and_item_is_located(in_configs):
    loaded = load_config("lenet.yaml")
    smap = loaded.source_map
    assert smap[()] == Location("lenet.yaml", 2, 1)  # the document starts after the comment
    assert smap[("name",)] == Location("lenet.yaml", 2, 1)
    assert smap[("data", "train", "batch_size")] == Location("lenet.yaml", 4, 40)
    assert smap[("layers", 0)] == Location("lenet.yaml", 7, 5)
    assert smap[("layers", 0, "weight_filler")] == Location("lenet.yaml", 8, 6)
    assert smap[("layers", 0, "param", 1, "lr_mult")] == Location("lenet.yaml", 8, 52)
    assert smap[("layers", 2, "kernel_size")] == Location("lenet.yaml", 10, 54)
    assert smap[("solver", "lr_policy", "power")] == Location("lenet.yaml", 22, 41)
    assert smap[("sweep", "grid", "layers.conv1.num_output")] == Location("lenet.yaml", 31, 5)
    # every path of the data is in the source map, and nothing else
    paths = set()

    def walk(node, path):
        paths.add(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + (i,))

    walk(loaded.data, ())
    assert paths == set(smap)
    assert loaded.files == [Path("lenet.yaml")]


def test_lenet_data_is_plain(in_configs):
    data = load_config("lenet.yaml").data
    assert type(data) is dict and type(data["layers"]) is list
    assert data["layers"][0]["param"] == [{"lr_mult": 1}, {"lr_mult": 2}]
    assert data["solver"]["lr_policy"] == {"type": "inv", "gamma": 0.0001, "power": 0.75}
    assert data["data"]["train"]["scale"] == 0.00390625


def test_block_style_positions():
    loaded = load_config_string("a:\n  b:\n    - x: 1\n      y: 2\n    - 3\n", "t.yaml")
    smap = loaded.source_map
    assert smap[("a",)] == Location("t.yaml", 1, 1)
    assert smap[("a", "b")] == Location("t.yaml", 2, 3)
    assert smap[("a", "b", 0)] == Location("t.yaml", 3, 7)
    assert smap[("a", "b", 0, "y")] == Location("t.yaml", 4, 7)
    assert smap[("a", "b", 1)] == Location("t.yaml", 5, 7)


def test_nearest_location_falls_back_to_the_parent():
    smap = SourceMap({(): Location("a", 1, 1), ("solver",): Location("a", 3, 1)})
    assert smap.nearest(("solver", "max_iter")) == Location("a", 3, 1)
    assert smap.nearest(("other", 1, "x")) == Location("a", 1, 1)
    assert SourceMap().nearest(("x",)) is None
    assert len(smap) == 2 and ("solver",) in smap


def test_empty_file_is_an_empty_config():
    loaded = load_config_string("# nothing here\n", "empty.yaml")
    assert loaded.data == {}
    assert loaded.source_map[()] == Location("empty.yaml", 1, 1)


# ---------------------------------------------------------------------------------------------------
# YAML details


@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), ("1E-3", 0.001), ("5e4", 50000.0), ("-2.5e-3", -0.0025), ("+1e2", 100.0),
    ("1.0e-5", 1e-5), ("0.5", 0.5), (".5", 0.5), ("-.5e1", -5.0), ("1_000.5", 1000.5), (".inf", math.inf),
    ("-.inf", -math.inf),
])
def test_floats_with_exponents(text, value):
    got = load_config_string(f"x: {text}\n").data["x"]
    assert type(got) is float and got == value


@pytest.mark.parametrize("text, value", [
    ("10", 10), ("0x10", 16), ("-3", -3), ("'1e-3'", "1e-3"), ("e5", "e5"), ("1e", "1e"),
    ("1.2.3", "1.2.3"), ("true", True), ("null", None), ("v1e3", "v1e3"),
])
def test_other_scalars_keep_their_types(text, value):
    got = load_config_string(f"x: {text}\n").data["x"]
    assert type(got) is type(value) and got == value


def test_nan_is_read():
    assert math.isnan(load_config_string("x: .nan\n").data["x"])


def test_loader_is_a_safe_loader():
    assert issubclass(Loader, yaml.SafeLoader)
    assert yaml.load("x: 1e-3", Loader=Loader) == {"x": 0.001}
    assert yaml.safe_load("x: 1e-3") == {"x": "1e-3"}  # the default resolver is left alone


def test_merge_keys_and_anchors():
    text = "defaults: &d {lr_mult: 1, decay_mult: 1}\nparam:\n  - <<: *d\n    lr_mult: 2\n  - *d\n"
    loaded = load_config_string(text, "m.yaml")
    assert loaded.data["param"] == [{"lr_mult": 2, "decay_mult": 1}, {"lr_mult": 1, "decay_mult": 1}]
    assert loaded.source_map[("param", 0, "lr_mult")] == Location("m.yaml", 4, 5)
    assert loaded.source_map[("param", 0, "decay_mult")] == Location("m.yaml", 1, 27)


def test_duplicate_key_in_a_flow_mapping():
    with pytest.raises(ConfigError) as info:
        load_config_string("layers:\n  - {name: a, type: ReLU, name: b}\n", "d.yaml")
    assert str(info.value) == "d.yaml:2:27: duplicate key 'name' (first defined at line 2)"


# ---------------------------------------------------------------------------------------------------
# composition


def test_base_chain_merges_deeply(in_configs):
    loaded = load_config("compose/sub/grandchild.yaml")
    data = loaded.data
    assert "base" not in data
    assert data["name"] == "child"
    # mappings merge recursively
    assert data["data"] == {"train": {"source": "mnist", "batch_size": 32, "shuffle": True}}
    # layers merge by name: conv1 updated in place, pool1 removed, loss appended
    assert data["layers"] == [
        {"name": "conv1", "type": "Convolution", "num_output": 32, "kernel_size": 5},
        {"name": "ip1", "type": "InnerProduct", "num_output": 10},
        {"name": "loss", "type": "SoftmaxWithLoss"},
    ]
    # other lists replace; the file's own keys win at every level
    assert data["solver"] == {"base_lr": 0.1, "stepvalue": [500], "max_iter": 1000}
    assert loaded.files == [Path("compose/sub/grandchild.yaml"), Path("compose/child.yaml"),
                            Path("compose/base.yaml")]


def test_locations_point_into_the_file_that_supplied_the_value(in_configs):
    smap = load_config("compose/sub/grandchild.yaml").source_map
    assert smap[("solver", "base_lr")] == Location("compose/sub/grandchild.yaml", 3, 3)
    assert smap[("solver", "stepvalue")] == Location("compose/child.yaml", 10, 3)
    assert smap[("solver", "stepvalue", 0)] == Location("compose/child.yaml", 10, 15)
    assert smap[("solver", "max_iter")] == Location("compose/base.yaml", 18, 3)
    assert smap[("layers", 0, "num_output")] == Location("compose/child.yaml", 6, 19)
    assert smap[("layers", 0, "kernel_size")] == Location("compose/base.yaml", 8, 5)
    assert smap[("layers", 1, "num_output")] == Location("compose/base.yaml", 14, 5)  # ip1 moved up
    assert smap[("layers", 2, "type")] == Location("compose/child.yaml", 8, 18)
    assert smap[("data", "train", "shuffle")] == Location("compose/base.yaml", 3, 42)


def test_several_bases_merge_in_order(in_configs):
    loaded = load_config("compose/two_bases.yaml")
    assert loaded.data["name"] == "extra"
    assert loaded.data["solver"] == {"base_lr": 0.5, "stepvalue": [100, 200], "max_iter": 50, "momentum": 0.9}
    assert loaded.source_map[("solver", "base_lr")] == Location("compose/extra.yaml", 3, 3)


def test_base_from_a_string_is_relative_to_the_working_directory(in_configs):
    loaded = load_config_string("base: compose/base.yaml\nname: s\n", "<string>")
    assert loaded.data["name"] == "s" and len(loaded.data["layers"]) == 3
    assert loaded.files == [Path("compose/base.yaml")]


def test_base_absolute_path(tmp_path):
    (tmp_path / "b.yaml").write_text("solver: {base_lr: 0.1, max_iter: 3}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text(f"base: {tmp_path / 'b.yaml'}\nname: c\n")
    loaded = load_config(tmp_path / "sub" / "c.yaml")
    assert loaded.data == {"solver": {"base_lr": 0.1, "max_iter": 3}, "name": "c"}


def test_null_in_the_child_sets_null(in_configs):
    loaded = load_config_string("base: compose/base.yaml\ndata: null\n")
    assert loaded.data["data"] is None


def test_removal_entry_with_other_keys_is_an_error(in_configs):
    with pytest.raises(ConfigError) as info:
        load_config_string("base: compose/base.yaml\nlayers:\n  - {name: pool1, remove: true, stride: 2}\n",
                           "r.yaml")
    assert str(info.value) == "r.yaml:3:33: a layer with 'remove: true' takes only 'name'; found 'stride'"


def test_remove_false_keeps_the_layer(in_configs):
    loaded = load_config_string("base: compose/base.yaml\nlayers:\n  - {name: pool1, remove: false, stride: 2}\n")
    assert loaded.data["layers"][1] == {"name": "pool1", "type": "Pooling", "kernel_size": 2, "stride": 2}


# ---------------------------------------------------------------------------------------------------
# overrides


def test_overrides_by_layer_name_index_and_dotted_path(in_configs):
    loaded = load_config("lenet.yaml", [
        "layers.conv1.num_output=32", "layers.1.stride=1", "solver.base_lr=1e-3",
        "solver.lr_policy={type: step, gamma: 0.1, stepsize: 100}", "solver.warmup.iters=5",
        "layers.conv1.param.1.lr_mult=3", "data.train.shuffle=false", "name=lenet 2",
    ])
    data = loaded.data
    assert data["layers"][0]["num_output"] == 32
    assert data["layers"][1]["stride"] == 1
    assert data["solver"]["base_lr"] == 0.001 and type(data["solver"]["base_lr"]) is float
    assert data["solver"]["lr_policy"] == {"type": "step", "gamma": 0.1, "stepsize": 100}
    assert data["solver"]["warmup"] == {"iters": 5}  # a missing intermediate key creates a mapping
    assert data["layers"][0]["param"][1] == {"lr_mult": 3}
    assert data["data"]["train"]["shuffle"] is False
    assert data["name"] == "lenet 2"
    smap = loaded.source_map
    assert smap[("layers", 0, "num_output")] == Location("--set layers.conv1.num_output=32")
    assert smap[("solver", "lr_policy", "gamma")] == Location("--set solver.lr_policy={type: step, gamma: 0.1, stepsize: 100}")
    assert smap[("solver", "warmup")] == Location("--set solver.warmup.iters=5")
    assert smap[("solver", "momentum")] == Location("lenet.yaml", 20, 3)
    assert smap[("solver", "warmup")].is_override and not smap[("solver", "momentum")].is_override
    assert loaded.overrides[0] == "layers.conv1.num_output=32"


def test_overrides_apply_in_order_after_composition(in_configs):
    loaded = load_config("compose/child.yaml", ["solver.base_lr=0.2", "solver.base_lr=0.3", "layers.loss.loss_weight=2"])
    assert loaded.data["solver"]["base_lr"] == 0.3
    assert loaded.data["layers"][-1] == {"name": "loss", "type": "SoftmaxWithLoss", "loss_weight": 2}


def test_override_into_a_null_value_creates_a_mapping():
    loaded = load_config_string("solver:\n", overrides=["solver.base_lr=0.1"])
    assert loaded.data == {"solver": {"base_lr": 0.1}}


def test_override_empty_value_is_null():
    assert load_config_string("a: 1\n", overrides=["a="]).data == {"a": None}


def test_override_of_a_sweep_grid_key_with_an_integer_key():
    loaded = load_config_string("m:\n  1: one\n", overrides=["m.1=uno"])
    assert loaded.data == {"m": {1: "uno"}}


def test_parse_override():
    assert parse_override("layers.conv1.num_output=32") == (["layers", "conv1", "num_output"], 32)
    assert parse_override("solver.base_lr=1e-3") == (["solver", "base_lr"], 0.001)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a = x=y") == (["a"], "x=y")


def test_bad_override_in_a_list_of_unnamed_items():
    with pytest.raises(ConfigError) as info:
        load_config_string("xs: [{a: 1}]\n", overrides=["xs.b.a=2"])
    assert str(info.value) == "--set xs.b.a=2: no item named 'b' in xs"


def test_bad_override_lists_known_layers_when_nothing_is_close(in_configs):
    with pytest.raises(ConfigError) as info:
        load_config("compose/base.yaml", ["layers.zzz.num_output=1"])
    assert str(info.value) == "--set layers.zzz.num_output=1: no layer named 'zzz' in layers; known: conv1, pool1, ip1"


# ---------------------------------------------------------------------------------------------------
# dumping


def test_dump_round_trips(in_configs, tmp_path):
    for name in ["lenet.yaml", "compose/sub/grandchild.yaml"]:
        loaded = load_config(name, ["solver.base_lr=1e-5"])
        text = dump_yaml(loaded.data)
        out = tmp_path / "resolved.yaml"
        out.write_text(text, encoding="utf-8")
        assert load_config(out).data == loaded.data
        assert "base:" not in text


def test_dump_quotes_strings_that_would_read_back_as_numbers(tmp_path):
    data = {"a": "1e-3", "b": 1e-3, "c": "yes", "d": "5E4", "e": (1, 2), "f": "naïve", "g": None,
            "h": ["1e5", 1e5], "i": 1e-300, "j": math.inf, "k": "", "l": "line\nbreak", "m": 3}
    text = dump_yaml(data)
    back = load_config_string(text).data
    assert back == {**data, "e": [1, 2]}
    assert "naïve" in text


def test_dump_keeps_key_order_and_indents_lists():
    text = dump_yaml({"name": "x", "layers": [{"name": "a", "type": "ReLU"}], "solver": {"base_lr": 0.1}})
    assert text == "name: x\nlayers:\n  - name: a\n    type: ReLU\nsolver:\n  base_lr: 0.1\n"


def test_loaded_config_dump(in_configs):
    loaded = load_config("compose/child.yaml")
    assert load_config_string(loaded.dump()).data == loaded.data


# ---------------------------------------------------------------------------------------------------
# import weight


def test_import_tfconf_does_not_load_the_front_end():
    code = ("import sys, tfconf; "
            "print(any(m.startswith('tfconf.frontend') for m in sys.modules), 'yaml' in sys.modules, "
            "'pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.split() == ["False", "False", "False"]
