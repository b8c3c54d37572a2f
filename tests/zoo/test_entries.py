"""Every built-in entry: its card parses, its model.yaml validates, and the card's params and FLOPs
are what the counter finds in the built net."""

from __future__ import annotations

import pytest

from tfconf.frontend import config as cfgmod
from tfconf.zoo import registry
from tfconf.zoo.card import load_card
from tfconf.zoo.flops import count

from .util import BUILTIN, WITH_WEIGHTS, ZOO


def test_the_built_in_zoo_has_the_promised_entries():
    assert {"lenet", "mlp", "mnist_autoencoder", "cifar10_quick", "resnet20_cifar", "vgg11_cifar",
            "caffenet", "char_lstm"} <= set(BUILTIN)
    assert registry.builtin_root() == ZOO


@pytest.mark.parametrize("name", BUILTIN)
def test_card_parses_and_config_validates(name):
    card = load_card(str(ZOO / name / "card.yaml"))
    assert card.name == name
    assert card.license and card.task and card.dataset.split
    cfg = cfgmod.load(str(ZOO / name / "model.yaml"))  # builds both phases: shapes fit
    cfgmod.check_net(cfg)
    if name in WITH_WEIGHTS:
        assert card.weights is not None and card.metrics is not None
        assert card.metrics.command == f"tfconf test zoo:{name}"
        assert card.build is not None and card.build.command == f"tfconf zoo build {name}"
        assert cfg.net.solver.random_seed is not None  # builds are deterministic
    else:  # config only
        assert card.weights is None and card.metrics is None


@pytest.mark.parametrize("name", BUILTIN)
def test_card_params_and_flops_match_the_built_net(name):
    entry = registry.find(name)
    cost = count(cfgmod.load(str(entry.config), check=False))
    assert (entry.card.params, entry.card.flops) == (cost.params, cost.flops)
    assert entry.card.input_shape == cost.input_shape


def test_config_only_entries_say_why_and_give_references():
    for name in ("cifar10_quick", "caffenet", "resnet20_cifar"):
        card = registry.find(name).card
        assert "not available offline" in card.dataset.description
        assert card.reference is not None
    assert registry.find("cifar10_quick").card.reference.value == 0.75
    caffenet = cfgmod.load(str(ZOO / "caffenet" / "model.yaml"))
    assert caffenet.net.data is None and caffenet.net.layers[0].type == "Input"
    assert caffenet.net.layers[0].shape == [[-1, 3, 227, 227]]


def test_weights_ship_small():
    total = sum(p.stat().st_size for p in ZOO.rglob("*") if p.is_file())
    assert total < 12_000_000, total  # four entries ship weights (two as float16)
