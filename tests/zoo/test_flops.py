"""The parameter and FLOP counter against hand-computed numbers."""

from __future__ import annotations

from tfconf.frontend import config as cfgmod
from tfconf.zoo.flops import count

from .util import ZOO


def test_lenet_by_hand():
    cost = count(cfgmod.load(str(ZOO / "lenet" / "model.yaml")))
    # conv1 20·(1·5·5)+20, conv2 50·(20·5·5)+50, ip1 500·(50·4·4)+500, ip2 10·500+10
    assert cost.params == 520 + 25_050 + 400_500 + 5_010 == 431_080
    by = {c.name: c for c in cost.layers}
    assert by["conv1"].flops == 2 * (20 * 24 * 24) * 25 + 20 * 24 * 24       # 587,520
    assert by["pool1"].flops == 20 * 12 * 12 * 4
    assert by["conv2"].flops == 2 * (50 * 8 * 8) * (20 * 25) + 50 * 8 * 8    # 3,203,200
    assert by["pool2"].flops == 50 * 4 * 4 * 4
    assert by["ip1"].flops == 2 * 500 * 800 + 500
    assert by["relu1"].flops == 500
    assert by["ip2"].flops == 2 * 10 * 500 + 10
    assert by["loss"].flops == by["accuracy"].flops == 0
    assert cost.flops == 4_616_450
    assert cost.input_shape == [1, 28, 28]


def test_caffenet_grouped_convolutions_and_lrn():
    cost = count(cfgmod.load(str(ZOO / "caffenet" / "model.yaml")))
    assert cost.params == 60_965_224  # Caffe's bvlc_reference_caffenet
    by = {c.name: c for c in cost.layers}
    assert by["conv2"].params == 256 * (96 // 2) * 25 + 256  # group 2 halves the inputs per filter
    assert by["conv2"].flops == 2 * (256 * 27 * 27) * (48 * 25) + 256 * 27 * 27
    assert by["norm1"].flops == 96 * 27 * 27 * (5 + 3)
    assert by["prob"].flops == 3 * 1000
    assert cost.input_shape == [3, 227, 227]


def test_resnet_shortcuts_and_batchnorm():
    cost = count(cfgmod.load(str(ZOO / "resnet20_cifar" / "model.yaml")))
    by = {c.name: c for c in cost.layers}
    assert by["res2a"].flops == 16 * 32 * 32             # Eltwise SUM of two bottoms
    assert by["conv1_bn"].flops == 2 * 16 * 32 * 32
    assert by["conv1_bn"].params == 0                      # moving statistics are not trained
    assert by["conv1_scale"].params == 32
    assert by["pool"].flops == 64 * 8 * 8                  # global average pooling
