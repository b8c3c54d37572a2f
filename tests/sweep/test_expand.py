"""Expansion: grid × zip, random draws from a seed, key paths through the loader's --set code, and
every trial validated up front with located errors."""

from __future__ import annotations

import math
import re

import pytest

from tfconf.frontend.errors import ConfigError
from tfconf.frontend.loader import parse_override
from tfconf.sweep.expand import expand
from tfconf.sweep.expand import override_text

from .util import NET, sweep_config

LOCATED = re.compile(r"^\S+\.yaml:\d+:\d+: ")


def _line_col(path, needle):
    """1-based (line, column) of the first occurrence of ``needle`` in the file."""
    for i, line in enumerate(open(path).read().splitlines(), 1):
        if needle in line:
            return i, line.index(needle) + 1
    raise AssertionError(needle)


def _error(path, *a, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        expand(path, *a, **kw)
    return str(e.value)


def test_grid_times_zip_gives_the_product_in_order(tmp_path):
    path = sweep_config(tmp_path, """\
  grid:
    solver.base_lr: [0.1, 0.01]
    layers.ip1.num_output: [8, 16]
  zip:
    - {solver.momentum: [0.9, 0.0], solver.weight_decay: [0.0005, 0.0]}
""")
    s = expand(path)
    assert [t.id for t in s.trials] == [f"t{i:03d}" for i in range(8)]
    got = [(t.params["solver.base_lr"], t.params["layers.ip1.num_output"], t.params["solver.momentum"],
            t.params["solver.weight_decay"]) for t in s.trials]
    assert got == [(lr, n, m, wd) for lr in (0.1, 0.01) for n in (8, 16) for m, wd in ((0.9, 0.0005), (0.0, 0.0))]
    t = s.trials[5]
    assert t.overrides == ["solver.base_lr=0.01", "layers.ip1.num_output=8", "solver.momentum=0.0",
                           "solver.weight_decay=0.0"]
    # the values reached the validated trial configs; the sweep section is gone from them
    net = t.cfg.net
    assert (net.solver.base_lr, net.layers[0].num_output, net.solver.momentum) == (0.01, 8, 0.0)
    assert net.sweep is None and "sweep" not in t.config_text
    assert s.metric == "test.accuracy" and s.mode == "max" and s.rungs == [30]


def test_random_draws_depend_only_on_the_seed(tmp_path):
    sweep = """\
  grid: {layers.ip1.num_output: [8, 16]}
  random:
    samples: 5
    seed: SEED
    params:
      solver.base_lr: {loguniform: [1.0e-4, 0.1]}
      solver.momentum: {uniform: [0.5, 0.99]}
      solver.test_iter: {int: [1, 3]}
      layers.relu1.type: {choice: [ReLU, Sigmoid, TanH]}
"""
    a = expand(sweep_config(tmp_path, sweep.replace("SEED", "1"), name="a.yaml"))
    b = expand(sweep_config(tmp_path, sweep.replace("SEED", "1"), name="b.yaml"))
    c = expand(sweep_config(tmp_path, sweep.replace("SEED", "2"), name="c.yaml"))
    assert len(a.trials) == 10  # samples per grid point
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]
    assert [t.params["layers.ip1.num_output"] for t in a.trials] == [8] * 5 + [16] * 5
    for t in a.trials + c.trials:
        p = t.params
        assert 1e-4 <= p["solver.base_lr"] < 0.1 and 0.5 <= p["solver.momentum"] < 0.99
        assert type(p["solver.test_iter"]) is int and 1 <= p["solver.test_iter"] <= 3
        assert p["layers.relu1.type"] in ("ReLU", "Sigmoid", "TanH")
        assert t.cfg.net.solver.base_lr == p["solver.base_lr"]  # exactly, through the YAML text
    # the log of a log-uniform draw is spread over the decades
    logs = [math.log10(t.params["solver.base_lr"]) for t in a.trials + c.trials]
    assert min(logs) < -2.5 and max(logs) > -2.5


def test_key_paths_reach_any_value(tmp_path):
    path = sweep_config(tmp_path, """\
  grid:
    layers.0.num_output: [12]                 # a list item by index
    layers.relu1.type: [Sigmoid]              # a layer by name
    data.train.batch_size: [8]                # a nested mapping
    solver.lr_policy: [{type: step, gamma: 0.5, stepsize: 10}]   # a whole mapping as the value
    layers.ip2.param: [[{lr_mult: 1}, {lr_mult: 2}]]             # a list as the value
""")
    (t,) = expand(path).trials
    net = t.cfg.net
    assert net.layers[0].num_output == 12 and net.layers[1].type == "Sigmoid"
    assert net.data.train.batch_size == 8
    assert net.solver.learning_rate(25) == pytest.approx(0.1 * 0.5 ** 2)  # step policy, stepsize 10
    assert [p.lr_mult for p in net.layers[2].param] == [1, 2]


@pytest.mark.parametrize("key, message", [
    ("layers.ip3.num_output", "no layer named 'ip3' in layers; did you mean 'ip2'?"),
    ("layers.7.num_output", "index 7 is out of range: layers has 5 items"),
    ("solver.base_lr.value", "cannot set 'value' inside solver.base_lr: it holds the value 0.1, not a mapping or list"),
])
def test_a_bad_key_is_reported_once_at_its_line(tmp_path, key, message):
    path = sweep_config(tmp_path, f"  grid:\n    solver.momentum: [0.9, 0.5]\n    {key}: [4, 8]\n")
    err = _error(path)
    line, col = _line_col(path, key)
    assert err == f"{path}:{line}:{col}: sweep.grid['{key}']: {message}"


def test_an_invalid_value_names_its_trials_at_the_value(tmp_path):
    path = sweep_config(tmp_path, "  grid:\n    layers.ip1.num_output: [8, 16]\n    solver.base_lr: [0.1, -1]\n")
    err = _error(path)
    line, col = _line_col(path, "-1]")
    assert err == (f"{path}:{line}:{col}: solver.base_lr: trials t001, t003 (solver.base_lr=-1): "
                   "must be > 0. Received: -1")


def test_a_net_that_does_not_build_fails_the_whole_sweep_up_front(tmp_path):
    path = sweep_config(tmp_path, "  grid:\n    layers.ip2.bottom: [relu1, nowhere]\n")
    err = _error(path)
    assert LOCATED.match(err) and "trial t001 (layers.ip2.bottom=nowhere)" in err and "nowhere" in err
    assert "t000" not in err


def test_many_bad_trials_are_summarized(tmp_path):
    path = sweep_config(tmp_path, "  grid:\n    solver.base_lr: [-1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12]\n")
    lines = _error(path).splitlines()
    assert len(lines) == 11 and lines[-1] == "... and 2 more issues (12 of 12 trials are invalid)"
    assert all(LOCATED.match(ln) for ln in lines[:10])


@pytest.mark.parametrize("sweep, where, message", [
    ("  zip:\n    - {solver.momentum: [0.9, 0.0], solver.weight_decay: [0.1]}\n",
     "solver.weight_decay", "the lists of a zip group advance together"),
    ("  random:\n    samples: 2\n    params:\n      solver.base_lr: {normal: [0, 1]}\n",
     "solver.base_lr: {normal", "a distribution is one of"),
    ("  random:\n    samples: 2\n    params:\n      solver.base_lr: {loguniform: [0, 1]}\n",
     "solver.base_lr: {loguniform", "needs a low end > 0"),
    ("  grid: {solver.base_lr: [0.1]}\n  metric: accuracy\n", "metric:", "must be test.NAME"),
    ("  grid: {solver.base_lr: [0.1]}\n  scheduler: {type: successive_halving, min_iter: 30}\n",
     "scheduler:", "must be < solver.max_iter (30)"),
    ("  grid: {solver.base_lr: [0.1]}\n  grdi: {solver.momentum: [0.1]}\n", "grdi", "grid"),
    ("  grid: {sweep.metric: [test.loss]}\n", "sweep.metric", "a sweep cannot set 'sweep'"),
    ("  grid: {solver.base_lr: [0.1]}\n  metric: test.acuracy\n", "metric:",
     "the test net has no scalar output 'acuracy' (it has test.accuracy, test.loss); did you mean 'accuracy'?"),
])
def test_a_bad_sweep_section_is_located(tmp_path, sweep, where, message):
    path = sweep_config(tmp_path, sweep)
    err = _error(path)
    line, _ = _line_col(path, where)
    assert err.startswith(f"{path}:{line}:"), err
    assert message in err and len(err.splitlines()) == 1


def test_a_config_without_a_sweep_section(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text(NET)
    assert "a sweep config needs a 'sweep:' section" in _error(path)


def test_overrides_apply_to_every_trial_and_may_replace_the_sweep(tmp_path):
    path = sweep_config(tmp_path, "  grid: {solver.base_lr: [0.1, 0.2]}\n")
    s = expand(path, ["solver.max_iter=7", "sweep.grid={layers.ip1.num_output: [4, 5, 6]}"])
    assert [t.params for t in s.trials] == [{"layers.ip1.num_output": n} for n in (4, 5, 6)]
    assert {t.cfg.net.solver.max_iter for t in s.trials} == {7}


@pytest.mark.parametrize("value", [0.1, 1e-3, 3, True, None, "1e-3", "yes", "a: b", [1, "x"], {"type": "step"},
                                   0.1 + 0.2, 1e300])
def test_override_values_round_trip(value):
    assert parse_override(f"k={override_text(value)}")[1] == value
