"""Validation that knows in advance: names that become file names, integers no net can be built
with, and a net that cannot fit in this machine's memory are located config errors."""

from __future__ import annotations

import pytest

from tfconf.frontend import ConfigError, load_config_string
from tfconf.frontend.config import Config, check_memory, check_net
from tfconf.frontend.net_schema import NetConfig
from tfconf.frontend.schema_base import validate_section

NET = """\
name: {name}
data:
  train: {{source: spirals, num_samples: 64, batch_size: {batch}}}
layers:
  - {{name: ip1, type: InnerProduct, bottom: data, num_output: {n}}}
  - {{name: ip2, type: InnerProduct, num_output: 3}}
  - {{name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}}
solver: {{base_lr: 0.1, max_iter: 2{extra}}}
"""


def _cfg(name="net", batch=16, n=8, extra=""):
    loaded = load_config_string(NET.format(name=name, batch=batch, n=n, extra=extra), "n.yaml")
    return Config(validate_section(NetConfig, loaded), loaded, "n.yaml")


@pytest.mark.parametrize("name,why", [
    ("../../x", "contains a path separator"), ("/abs/x", "contains a path separator"),
    ("a/b", "contains a path separator"), ("'..'", "is '..'"), ("''", "is empty"),
    ("x" * 201, "is 201 bytes long"), ('"a\\0b"', "contains a control character"), ("-rf", "starts with '-'"),
])
def test_a_net_name_is_one_plain_file_name(name, why):
    with pytest.raises(ConfigError) as e:
        _cfg(name=name)
    (line,) = e.value.lines
    assert line.startswith("n.yaml:1:1: name: becomes a file name") and why in line, line


def test_snapshot_prefix_keeps_only_its_last_component():
    assert _cfg(extra=", snapshot_prefix: examples/mnist/lenet").net.solver.snapshot_prefix == "lenet"
    assert _cfg(extra=", snapshot_prefix: ../../evil").net.solver.snapshot_prefix == "evil"
    with pytest.raises(ConfigError, match="snapshot_prefix: becomes a file name"):
        _cfg(extra=", snapshot_prefix: a/..")


def test_integers_beyond_int32_are_refused_at_their_key():
    with pytest.raises(ConfigError) as e:
        _cfg(n=10**12)
    assert e.value.lines == ["n.yaml:5:51: layers[0] (ip1).num_output: is larger than any size tfconf can "
                             "build (2,147,483,647). Received: 1000000000000"]


def test_a_net_too_big_for_memory_is_refused_at_its_biggest_layer():
    cfg = _cfg(n=1000)
    nets, params = check_net(cfg)  # fits this machine
    meta = {k: {"layer": k.split("/")[0]} for k in params}
    # ip1: weights 1000x2 + bias, x3 when training; its top [16, 1000] twice (activation, gradient)
    ip1 = (1000 * 2 + 1000) * 4 * 3 + 16 * 1000 * 4 * 2
    ip2 = (3 * 1000 + 3) * 4 * 3 + 16 * 3 * 4 * 2
    loss, data = 4 * 2, 16 * 2 * 4 + 16 * 8
    total = ip1 + ip2 + loss + data
    check_memory(cfg, nets, params, meta, limit=total)  # exactly enough
    with pytest.raises(ConfigError) as e:
        check_memory(cfg, nets, params, meta, limit=total - 1)
    (line,) = e.value.lines
    assert line.startswith("n.yaml:5:5: layers[0] (ip1): training the net needs at least ")
    assert f"layer 'ip1' needs the most, {ip1 / 2**20:,.1f} MiB (the largest part: train top [16, 1000] float32)" in line


def test_a_batch_too_big_for_memory_names_the_data():
    cfg = _cfg(batch=10**6, n=1)
    nets, params = check_net(cfg)
    with pytest.raises(ConfigError) as e:
        check_memory(cfg, nets, params, {}, limit=10**6)
    (line,) = e.value.lines
    assert line.startswith("n.yaml:3:3: data.train") or "layer 'ip2'" in line or "data.train batch" in line, line
