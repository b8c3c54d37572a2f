"""The solver section: validation rules, Caffe's learning-rate formulas, and Caffe's own solver files."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from tfconf.frontend import (
    LR_POLICIES, SOLVER_TYPES, ConfigError, LrPolicy, SolverConfig, learning_rate, load_config_string,
    validate_section,
)

_ROOT = Path(__file__).resolve().parents[2]
# Caffe's example files: shared/caffe inside the checkout or beside it (absent from a plain clone)
CAFFE = next((p for p in (_ROOT / "shared" / "caffe", _ROOT.parent / "shared" / "caffe") if p.exists()),
             _ROOT / "shared" / "caffe")


def solver(**kw) -> SolverConfig:
    kw.setdefault("base_lr", 0.01)
    kw.setdefault("max_iter", 1000)
    return SolverConfig.model_validate(kw)


# ---------------------------------------------------------------------------------------------------
# defaults and vocabulary


def test_defaults_follow_caffe():
    s = solver()
    assert s.type == "SGD" and s.lr_policy.type == "fixed"
    assert (s.momentum, s.momentum2, s.delta, s.rms_decay) == (0.0, 0.999, 1e-8, 0.99)
    assert (s.weight_decay, s.regularization_type, s.iter_size) == (0.0, "L2", 1)
    assert (s.display, s.average_loss, s.test_interval, s.test_iter, s.snapshot) == (0, 1, 0, None, 0)
    assert s.test_initialization is True and s.clip_gradients is None and s.random_seed is None
    assert s.warmup is None


def test_adam_momentum_defaults_to_beta1():
    assert solver(type="Adam").momentum == 0.9
    assert solver(type="AdamW").momentum == 0.9
    assert solver(type="Adam", momentum=0.5).momentum == 0.5
    assert solver(type="Nesterov").momentum == 0.0


def test_vocabulary():
    assert SOLVER_TYPES == ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam", "AdamW")
    assert LR_POLICIES == ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "cosine")
    for t in SOLVER_TYPES:
        assert solver(type=t).type == t


def test_flat_and_mapping_policies_are_the_same():
    flat = solver(lr_policy="step", gamma=0.1, stepsize=100)
    nested = solver(lr_policy={"type": "step", "gamma": 0.1, "stepsize": 100})
    assert flat.policy() == nested.policy() == LrPolicy(type="step", gamma=0.1, stepsize=100)
    assert [learning_rate(flat, i) for i in range(0, 500, 7)] == [learning_rate(nested, i) for i in range(0, 500, 7)]


def test_policy_fills_in_max_iter_where_used():
    assert solver(lr_policy={"type": "poly", "power": 1.0}).policy().max_iter == 1000
    assert solver(lr_policy={"type": "poly", "power": 1.0, "max_iter": 10}).policy().max_iter == 10
    assert solver(lr_policy="cosine").policy().max_iter == 1000
    assert solver(lr_policy="fixed").policy().max_iter is None


def test_warmup_shorthand():
    s = solver(warmup=50)
    assert (s.warmup.iters, s.warmup.start_factor) == (50, 0.1)


def test_assignment_is_validated():
    s = solver()
    with pytest.raises(ValidationError):
        s.base_lr = -1.0
    s.base_lr = 0.5
    assert s.base_lr == 0.5


def test_model_dump_round_trips():
    s = solver(type="Adam", lr_policy={"type": "multistep", "gamma": 0.5, "stepvalue": [10, 20]}, warmup=5,
               clip_gradients=10.0, random_seed=3)
    again = SolverConfig.model_validate(s.model_dump(exclude_none=True))
    assert again == s


def test_json_schema_is_available():
    schema = SolverConfig.model_json_schema()
    assert {"base_lr", "lr_policy", "max_iter", "warmup"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"base_lr", "max_iter"}


@pytest.mark.parametrize("kw, message", [
    (dict(lr_policy="exp"), "lr_policy 'exp' needs gamma"),
    (dict(lr_policy="inv", gamma=0.1), "lr_policy 'inv' needs power"),
    (dict(lr_policy="multistep"), "lr_policy 'multistep' needs gamma and stepvalue"),
    (dict(lr_policy="poly"), "lr_policy 'poly' needs power"),
    (dict(lr_policy="sigmoid", gamma=-0.1), "lr_policy 'sigmoid' needs stepsize"),
    (dict(lr_policy="step", gamma=-0.1, stepsize=10), "must be > 0 for lr_policy 'step'"),
    (dict(lr_policy="sigmoid", gamma=0.0, stepsize=10), "must not be 0 for lr_policy 'sigmoid'"),
    (dict(lr_policy="poly", power=0.0), "must be > 0 for lr_policy 'poly'"),
    (dict(lr_policy="multistep", gamma=0.1, stepvalue=[]), "must list at least one iteration"),
    (dict(lr_policy="multistep", gamma=0.1, stepvalue=[5, 5]), "must be strictly increasing"),
    (dict(lr_policy="cosine", gamma=0.1), "is not used by lr_policy 'cosine'"),
    (dict(lr_policy={"type": "step", "gamma": 0.1, "stepsize": 5}, stepsize=5), "is also set in lr_policy"),
])
def test_policy_rules(kw, message):
    with pytest.raises(ValidationError) as info:
        solver(**kw)
    assert message in str(info.value)


# ---------------------------------------------------------------------------------------------------
# learning rates, against values worked out by hand


def lr(it, **kw):
    return learning_rate(solver(**kw), it)


def test_fixed():
    assert [lr(i) for i in (0, 1, 999, 5000)] == [0.01] * 4


def test_step():
    kw = dict(lr_policy="step", gamma=0.1, stepsize=100)
    assert lr(0, **kw) == 0.01 and lr(99, **kw) == 0.01
    assert lr(100, **kw) == pytest.approx(0.001, rel=1e-12)
    assert lr(250, **kw) == pytest.approx(0.0001, rel=1e-12)


def test_exp():
    assert lr(2, lr_policy="exp", gamma=0.99) == pytest.approx(0.009801, rel=1e-12)
    assert lr(0, lr_policy="exp", gamma=0.99) == 0.01


def test_inv():
    assert lr(2, lr_policy="inv", gamma=0.5, power=1.0) == pytest.approx(0.005, rel=1e-12)
    assert lr(2, lr_policy="inv", gamma=0.5, power=2.0) == pytest.approx(0.0025, rel=1e-12)
    # LeNet's schedule at its last iteration: 0.01 * 2^-0.75
    assert lr(10000, lr_policy="inv", gamma=0.0001, power=0.75, max_iter=10000) == \
        pytest.approx(0.01 / 1.681792830507429, rel=1e-12)


def test_multistep():
    kw = dict(lr_policy="multistep", gamma=0.5, stepvalue=[10, 20])
    assert [lr(i, **kw) for i in (0, 9, 10, 19, 20, 999)] == pytest.approx(
        [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025], rel=1e-12)


def test_poly():
    assert lr(50, lr_policy="poly", power=2.0, max_iter=100) == pytest.approx(0.0025, rel=1e-12)
    assert lr(25, lr_policy="poly", power=1.0, max_iter=100) == pytest.approx(0.0075, rel=1e-12)
    assert lr(100, lr_policy="poly", power=2.0, max_iter=100) == 0.0
    assert lr(150, lr_policy="poly", power=0.5, max_iter=100) == 0.0  # held at the end, not NaN
    assert lr(50, lr_policy={"type": "poly", "power": 1.0, "max_iter": 200}, max_iter=100) == \
        pytest.approx(0.0075, rel=1e-12)


def test_sigmoid():
    gamma = -math.log(3) / 10  # so that exp(-gamma * (iter - stepsize)) is 3 at iter = stepsize + 10
    kw = dict(lr_policy="sigmoid", gamma=gamma, stepsize=50)
    assert lr(50, **kw) == pytest.approx(0.005, rel=1e-12)
    assert lr(60, **kw) == pytest.approx(0.0025, rel=1e-12)
    assert lr(40, **kw) == pytest.approx(0.0075, rel=1e-12)
    assert lr(10**7, lr_policy="sigmoid", gamma=-1.0, stepsize=50) == 0.0  # no overflow
    assert lr(10**7, lr_policy="sigmoid", gamma=1.0, stepsize=50) == 0.01


def test_cosine():
    kw = dict(lr_policy="cosine", max_iter=100)
    assert lr(0, **kw) == 0.01
    assert lr(50, **kw) == pytest.approx(0.005, rel=1e-12)
    assert lr(25, **kw) == pytest.approx(0.005 * (1 + math.sqrt(0.5)), rel=1e-12)
    assert lr(100, **kw) == pytest.approx(0.0, abs=1e-18)
    assert lr(1000, **kw) == pytest.approx(0.0, abs=1e-18)


def test_warmup_multiplies_linearly():
    kw = dict(warmup={"iters": 10, "start_factor": 0.1})
    assert lr(0, **kw) == pytest.approx(0.001, rel=1e-12)
    assert lr(5, **kw) == pytest.approx(0.0055, rel=1e-12)
    assert lr(10, **kw) == 0.01 and lr(11, **kw) == 0.01
    # on top of a decaying policy
    s = solver(lr_policy="step", gamma=0.1, stepsize=4, warmup={"iters": 8, "start_factor": 0.0})
    assert learning_rate(s, 6) == pytest.approx(0.001 * 0.75, rel=1e-12)
    assert s.learning_rate(6) == learning_rate(s, 6)


def test_negative_iteration_is_an_error():
    with pytest.raises(ValueError):
        lr(-1)


# ---------------------------------------------------------------------------------------------------
# Caffe's solver files: their numbers, copied by hand, fit the schema


LENET_SOLVER = {  # shared/caffe/lenet_solver.prototxt (net and solver_mode are not solver settings here)
    "test_iter": 100, "test_interval": 500, "base_lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005,
    "lr_policy": "inv", "gamma": 0.0001, "power": 0.75, "display": 100, "max_iter": 10000, "snapshot": 5000,
    "snapshot_prefix": "examples/mnist/lenet",
}
CIFAR10_QUICK_SOLVER = {  # shared/caffe/cifar10_quick_solver.prototxt
    "test_iter": 100, "test_interval": 500, "base_lr": 0.001, "momentum": 0.9, "weight_decay": 0.004,
    "lr_policy": "fixed", "display": 100, "max_iter": 4000, "snapshot": 4000,
    "snapshot_prefix": "examples/cifar10/cifar10_quick",
}


@pytest.mark.parametrize("name, values", [("lenet_solver.prototxt", LENET_SOLVER),
                                          ("cifar10_quick_solver.prototxt", CIFAR10_QUICK_SOLVER)])
def test_caffe_solver_values_fit(name, values):
    path = CAFFE / name
    assert path.exists() or not (_ROOT.parent / "shared").exists()
    if path.exists():  # the hand-copied numbers are the file's (a line check, not a prototxt parser)
        text = path.read_text()
        for key, value in values.items():
            assert re.search(rf'^{key}: "?{re.escape(str(value))}"?\s*$', text, re.M), key
    s = SolverConfig.model_validate(values)
    assert s.base_lr == values["base_lr"] and s.max_iter == values["max_iter"]
    assert s.type == "SGD"


def test_lenet_solver_flat_equals_design_md_mapping():
    flat = SolverConfig.model_validate(LENET_SOLVER)
    mapping = {k: v for k, v in LENET_SOLVER.items() if k not in ("gamma", "power")}
    mapping["lr_policy"] = {"type": "inv", "gamma": 0.0001, "power": 0.75}
    nested = SolverConfig.model_validate(mapping)
    for it in (0, 1, 100, 5000, 9999, 10000):
        assert learning_rate(flat, it) == learning_rate(nested, it)
    assert learning_rate(flat, 5000) == pytest.approx(0.01 * 1.5 ** -0.75, rel=1e-12)


def test_design_md_worked_config_solver(monkeypatch):
    monkeypatch.chdir(Path(__file__).parent / "configs")
    from tfconf.frontend import load_config

    s = validate_section(SolverConfig, load_config("lenet.yaml"), ("solver",))
    assert s.policy() == LrPolicy(type="inv", gamma=0.0001, power=0.75)
    assert (s.max_iter, s.test_interval, s.test_iter, s.display, s.snapshot) == (10000, 500, 100, 100, 5000)


def test_validate_section_of_an_absent_solver():
    loaded = load_config_string("name: x\n", "n.yaml")
    with pytest.raises(ConfigError) as info:
        validate_section(SolverConfig, loaded, ("solver",))
    assert info.value.lines == ["n.yaml:1:1: solver.base_lr: field required",
                                "n.yaml:1:1: solver.max_iter: field required"]
