"""Caffe's SolverParameter → the config's solver: section."""

from __future__ import annotations

import os

from tfconf.frontend.errors import Location
from tfconf.frontend.layers.base import NetState, NetStateRule
from tfconf.frontend.layers.caffe_map import STR, Carry, Ignored, choice, flag, integer, number, text

from ..prototxt import Message
from .fields import Origin, _Issues, _MessageReader, _pydantic_issues, _show


# =============================================================================== the solver
_SOLVER_TYPES = {"SGD": "SGD", "Nesterov": "Nesterov", "AdaGrad": "AdaGrad", "RMSProp": "RMSProp",
                 "AdaDelta": "AdaDelta", "Adam": "Adam"}
_SOLVER_ENUM = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad", "RMSPROP": "RMSProp",
                "ADADELTA": "AdaDelta", "ADAM": "Adam"}
_POLICY_USES = {"fixed": (), "step": ("gamma", "stepsize"), "exp": ("gamma",), "inv": ("gamma", "power"),
                "multistep": ("gamma", "stepvalue"), "poly": ("power",), "sigmoid": ("gamma", "stepsize")}
_SOLVER = {
    "base_lr": number("base_lr"), "lr_policy": text("lr_policy"), "gamma": number("gamma"), "power": number("power"),
    "stepsize": integer("stepsize"), "stepvalue": integer("stepvalue", "list"), "momentum": number("momentum"),
    "momentum2": number("momentum2"), "delta": number("delta"), "rms_decay": number("rms_decay"),
    "weight_decay": number("weight_decay"), "regularization_type": text("regularization_type"),
    "clip_gradients": number("clip_gradients"), "iter_size": integer("iter_size"), "max_iter": integer("max_iter"),
    "display": integer("display"), "average_loss": integer("average_loss"), "test_iter": integer("test_iter", "list"),
    "test_interval": integer("test_interval"), "test_initialization": flag("test_initialization"),
    "snapshot": integer("snapshot"), "snapshot_prefix": text("snapshot_prefix"),
    "snapshot_after_train": flag("snapshot_after_train"), "random_seed": integer("random_seed"),
    "type": text("type"), "solver_type": choice("solver_type", _SOLVER_ENUM),
    "net": Ignored("the net is the file converted above"),
    "train_net": Ignored("the net is the file converted above"),
    "test_net": Ignored("the net is the file converted above; tfconf tests the same net in its test phase"),
    "solver_mode": Ignored("tfconf places ops itself; set device: gpu in the config to ask for a GPU"),
    "device_id": Ignored("tfconf places ops itself; set device: gpu:N in the config for one GPU"),
    "snapshot_format": Ignored("tfconf snapshots are safetensors"),
    "snapshot_diff": Ignored("tfconf snapshots hold weights and solver state, not gradients"),
    "debug_info": Ignored("`tfconf time` shows per-layer costs"),
    "test_compute_loss": Ignored("tfconf reports every test-phase loss and metric"),
    "layer_wise_reduce": Ignored("tfconf does not run data-parallel solvers"),
    "weights": Ignored("pass initial weights with `tfconf train --weights FILE.safetensors`"),
}
_SOLVER_UNSUPPORTED = {
    "net_param": "an inline net_param is not supported: write the net in its own prototxt",
    "train_net_param": "an inline train_net_param is not supported: write the net in its own prototxt",
    "test_net_param": "inline test nets are not supported: tfconf tests the net in its test phase",
    "train_state": "train_state is not supported: tfconf chooses the phase itself",
}
#: Caffe's NetState, as a test_state gives it (each test net is built in the TEST phase)
_TEST_STATE = {"stage": Carry("stage", STR, "list"), "level": integer("level"),
               "phase": choice("phase", {"TEST": "test"}, {"TRAIN": "a test net is built in the TEST phase"})}


# =============================================================================== the nets
def default_states() -> list:
    """(name, NetState) of the nets of a solver without test_state: train, and one test net."""
    return [("train", NetState(phase="train")), ("test", NetState(phase="test"))]


def test_states(msg: Message | None) -> list | None:
    """(name, NetState) of the nets a solver builds: train, then one test net per test_state (named as
    :func:`convert_solver` names them); None without a solver or without test_state. Problems with
    the test_states are :func:`convert_solver`'s to report."""
    if msg is None or not msg.all("test_state"):
        return None
    nets, _ = _test_nets(msg, _Issues())
    return [("train", NetState(phase="train"))] + [
        (net["name"], NetState(phase="test", level=net.get("level", 0), stages=_listed(net.get("stage", []))))
        for net in nets]


def _listed(v) -> list:
    return [v] if isinstance(v, str) else list(v)


def included(spec: dict, state: NetState) -> bool:
    """Whether a converted layer (its spec's include/exclude rule dicts) is in the net of ``state``:
    Caffe's rule, as LayerSpec.included applies it."""
    def matches(rule):
        try:
            return NetStateRule.model_validate(rule).matches(state)
        except ValueError:  # a rule whose problems were reported (its bad fields left out)
            return False

    include, exclude = spec.get("include") or [], spec.get("exclude") or []
    if include and not any(matches(r) for r in include):
        return False
    return not any(matches(r) for r in exclude)


def _test_nets(msg: Message, issues: _Issues):
    """([{name, stage, level}] of the test_states in order, the first one's origin). A test net is named
    by its stages (joined by +), else test (test1, test2... for several)."""
    fields = msg.all("test_state")
    reader = _MessageReader(issues, [], {})
    nets, used = [], set()
    for i, f in enumerate(fields):
        rule = reader.submessage(f, _TEST_STATE, f"test_state[{i}]")
        stages = list(rule.get("stage", []))
        name = "+".join(stages) if stages else ("test" if len(fields) == 1 else f"test{i + 1}")
        if name == "train":
            name = "train-stage"
        base, k = name, 2
        while name in used:
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        net = {"name": name}
        if stages:
            net["stage"] = stages[0] if len(stages) == 1 else stages
        if rule.get("level"):
            net["level"] = rule["level"]
        nets.append(net)
    return nets, (Origin(fields[0].location, "test_state") if fields else None)


def convert_solver(msg: Message, issues: _Issues):
    """(solver dict in file order, comments by key, origins): Caffe's SolverParameter → ``solver:``."""
    out: dict = {}
    comments: list[str] = []
    origins: dict = {}
    for key in msg.names():
        if key in _SOLVER_UNSUPPORTED:
            issues.add(msg.first(key).location, key, _SOLVER_UNSUPPORTED[key])
    reader = _MessageReader(issues, comments, origins)
    nets, nets_origin = _test_nets(msg, issues)
    filtered = Message([f for f in msg if f.name not in _SOLVER_UNSUPPORTED and f.name != "test_state"],
                       msg.location)
    raw: dict = {}
    reader.read(filtered, _SOLVER, "solver", raw)
    solver_type, enum_type = raw.get("type"), raw.get("solver_type")
    if solver_type is not None and solver_type not in _SOLVER_TYPES:
        issues.add(origins["type"].location, "type", "unknown solver type; tfconf has "
                   + ", ".join(_SOLVER_TYPES), solver_type)
    elif solver_type is not None and enum_type is not None and enum_type != solver_type:
        issues.add(origins["solver_type"].location, "solver_type", f"disagrees with type: {solver_type}",
                   enum_type)
    for key, value in raw.items():  # in the file's order
        if key == "solver_type":
            if solver_type is None:
                out["type"] = value
                origins["type"] = origins["solver_type"]
        elif key == "test_iter":
            if nets:  # one test_iter per test_state, in order (Caffe's rule): each net takes its own
                if len(value) != len(nets):
                    issues.add(origins["test_iter"].location, "test_iter", f"gives {len(value)} values for "
                               f"{len(nets)} test_state{'s' if len(nets) > 1 else ''}: Caffe needs one test_iter "
                               "per test net", value)
                for net, n in zip(nets, value):
                    net["test_iter"] = n
                out["test_nets"] = nets
                origins["test_nets"] = origins["test_iter"]
            else:
                if len(value) > 1:
                    issues.add(origins["test_iter"].location, "test_iter", f"gives {len(value)} values for one test "
                               "net: several test nets are declared by test_state (one test_iter for each)", value)
                out["test_iter"] = value[0]
        else:
            out[key] = value
    if nets and "test_nets" not in out:
        issues.add(nets_origin.location, "test_state", "the test nets need their test_iter (one per test_state, "
                   "as Caffe requires)")
    policy = out.get("lr_policy")
    if policy is not None:
        if policy not in _POLICY_USES:
            issues.add(origins["lr_policy"].location, "lr_policy", "unknown lr_policy; Caffe's are "
                       + ", ".join(_POLICY_USES), policy)
        else:
            for k in ("gamma", "power", "stepsize", "stepvalue"):
                if k in out and k not in _POLICY_USES[policy]:
                    comments.append(f"{k}: {_show(out.pop(k))} (left out: lr_policy {policy} does not use it)")
    if out.get("clip_gradients") is not None and out["clip_gradients"] < 0:
        comments.append(f"clip_gradients: {out.pop('clip_gradients')} (Caffe's 'no clipping')")
    if out.get("random_seed") is not None and out["random_seed"] < 0:
        comments.append(f"random_seed: {out.pop('random_seed')} (Caffe's 'seed from the clock'; tfconf "
                        "picks a fixed seed unless told)")
    if "snapshot_prefix" in out:
        prefix = out["snapshot_prefix"]
        base = os.path.basename(prefix.rstrip("/")) or "snapshot"
        if base != prefix:
            comments.append(f"snapshot_prefix: {prefix} in Caffe; tfconf writes snapshots into the run "
                            "folder's snapshots/, named by the prefix's last part")
            out["snapshot_prefix"] = base
    if "regularization_type" in out and out["regularization_type"] not in ("L1", "L2"):
        issues.add(origins["regularization_type"].location, "regularization_type", "expects L1 or L2",
                   out["regularization_type"])
    for required in ("base_lr", "max_iter"):
        if required not in out:
            issues.add(Location(msg.location.file, 1, 1), required, f"the solver needs {required} (tfconf has "
                       "no default for it)")
    return out, comments, origins


def _check_solver(solver: dict, origins: dict, fallback: Location, issues: _Issues) -> None:
    from pydantic import ValidationError

    from tfconf.frontend.solver_schema import SolverConfig

    try:
        SolverConfig.model_validate(solver)
    except ValidationError as e:
        _pydantic_issues(e, origins, Origin(fallback, "solver"), issues)
