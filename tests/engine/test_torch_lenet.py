"""Caffe's MNIST LeNet (NCHW) against PyTorch: forward values and every parameter gradient.

conv 20@5x5 → maxpool 2/2 → conv 50@5x5 → maxpool 2/2 → ip 500 → relu → ip 10 → softmax loss
(mean over the batch). Filters are [out, in, kh, kw] in both libraries and shared as arrays;
an InnerProduct weight is [in, out] here (x @ W) and [out, in] in torch (its transpose).
float64 throughout, compared to 1e-5 relative."""

import numpy as np
import pytest

import tfconf as tc

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


def _params(rng):
    def init(*shape, fan_in):
        return rng.uniform(-1.0, 1.0, size=shape) * np.sqrt(3.0 / fan_in)

    return {
        "conv1_w": init(20, 1, 5, 5, fan_in=25), "conv1_b": init(20, fan_in=25),
        "conv2_w": init(50, 20, 5, 5, fan_in=500), "conv2_b": init(50, fan_in=500),
        "ip1_w": init(800, 500, fan_in=800), "ip1_b": init(500, fan_in=800),
        "ip2_w": init(500, 10, fan_in=500), "ip2_b": init(10, fan_in=500),
    }


def _tfconf_lenet(p, images, labels):
    with tc.Graph().as_default():
        x = tc.placeholder(tc.float64, [None, 1, 28, 28], name="data")
        y = tc.placeholder(tc.int32, [None], name="label")
        v = {k: tc.Variable(a, name=k) for k, a in p.items()}
        h = tc.nn.bias_add(tc.nn.conv2d(x, v["conv1_w"], strides=1, padding="VALID"), v["conv1_b"])
        h = tc.nn.max_pool(h, ksize=2, strides=2)
        h = tc.nn.bias_add(tc.nn.conv2d(h, v["conv2_w"], strides=1, padding="VALID"), v["conv2_b"])
        h = tc.nn.max_pool(h, ksize=2, strides=2)
        assert h.shape.as_list() == [None, 50, 4, 4]
        h = tc.reshape(h, [-1, 800])
        h = tc.nn.relu(tc.matmul(h, v["ip1_w"]) + v["ip1_b"])
        logits = tc.matmul(h, v["ip2_w"]) + v["ip2_b"]
        loss = tc.reduce_mean(tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        names = sorted(p)
        grads = tc.gradients(loss, [v[k] for k in names] + [x])
        with tc.Session() as sess:
            sess.run(tc.global_variables_initializer())
            out = sess.run({"logits": logits, "loss": loss, "grads": grads},
                           {x: images, y: labels})
    out["grads"] = dict(zip(names + ["data"], out["grads"]))
    return out


def _torch_lenet(p, images, labels):
    F = torch.nn.functional
    t = {k: torch.tensor(a, dtype=torch.float64, requires_grad=True) for k, a in p.items()}
    x = torch.tensor(images, dtype=torch.float64, requires_grad=True)
    h = F.max_pool2d(F.conv2d(x, t["conv1_w"], t["conv1_b"]), 2, 2)
    h = F.max_pool2d(F.conv2d(h, t["conv2_w"], t["conv2_b"]), 2, 2)
    h = F.relu(F.linear(h.reshape(-1, 800), t["ip1_w"].T, t["ip1_b"]))
    logits = F.linear(h, t["ip2_w"].T, t["ip2_b"])
    loss = F.cross_entropy(logits, torch.tensor(labels, dtype=torch.int64), reduction="mean")
    loss.backward()
    grads = {k: a.grad.numpy() for k, a in t.items()}
    grads["data"] = x.grad.numpy()
    return {"logits": logits.detach().numpy(), "loss": loss.item(), "grads": grads}


def test_lenet_forward_and_gradients_match_pytorch():
    rng = np.random.default_rng(0)
    p = _params(rng)
    images = rng.uniform(0.0, 1.0, size=(4, 1, 28, 28))
    labels = np.array([3, 0, 9, 3], np.int32)
    ours = _tfconf_lenet(p, images, labels)
    ref = _torch_lenet(p, images, labels)
    np.testing.assert_allclose(ours["logits"], ref["logits"], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(ours["loss"], ref["loss"], rtol=1e-5)
    assert set(ours["grads"]) == set(ref["grads"])
    for k, want in ref["grads"].items():
        got = ours["grads"][k]
        assert got.shape == want.shape, k
        assert np.abs(want).max() > 0, k  # every parameter is actually exercised
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(), err_msg=k)
