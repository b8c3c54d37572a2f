"""The benchmark models, built the same way in each framework from the same numpy weights."""

from __future__ import annotations

import numpy as np


def lenet_weights(rng, dtype=np.float32):
    def u(shape, fan_in):
        return rng.uniform(-1, 1, size=shape).astype(dtype) * np.sqrt(3.0 / fan_in).astype(dtype)

    return {
        "conv1_w": u((20, 1, 5, 5), 25), "conv1_b": np.zeros(20, dtype),
        "conv2_w": u((50, 20, 5, 5), 500), "conv2_b": np.zeros(50, dtype),
        "ip1_w": u((800, 500), 800), "ip1_b": np.zeros(500, dtype),
        "ip2_w": u((500, 10), 500), "ip2_b": np.zeros(10, dtype),
    }


def mlp_weights(rng, sizes=(784, 512, 512, 10), dtype=np.float32):
    w = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w[f"fc{i}_w"] = (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype)
        w[f"fc{i}_b"] = np.zeros(b, dtype)
    return w


# ----------------------------------------------------------------------------- tfconf
def tfconf_lenet(tc, weights, x):
    v = {k: tc.Variable(a, name=k) for k, a in weights.items()}
    h = tc.nn.bias_add(tc.nn.conv2d(x, v["conv1_w"]), v["conv1_b"])
    h = tc.nn.max_pool(h, 2, 2)
    h = tc.nn.bias_add(tc.nn.conv2d(h, v["conv2_w"]), v["conv2_b"])
    h = tc.nn.max_pool(h, 2, 2)
    h = tc.reshape(h, [-1, 800])
    h = tc.nn.relu(tc.matmul(h, v["ip1_w"]) + v["ip1_b"])
    return tc.matmul(h, v["ip2_w"]) + v["ip2_b"]


def tfconf_mlp(tc, weights, x):
    n = len(weights) // 2
    h = x
    for i in range(n):
        h = tc.matmul(h, tc.Variable(weights[f"fc{i}_w"], name=f"fc{i}_w")) + tc.Variable(
            weights[f"fc{i}_b"], name=f"fc{i}_b")
        if i < n - 1:
            h = tc.nn.relu(h)
    return h


def tfconf_train_step(model, weights, xshape, lr=0.01, momentum=0.9):
    """Returns (run_step(x, y), session) for one SGD-momentum training step per Session.run."""
    import tfconf as tc

    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, [None, *xshape], name="x")
        y = tc.placeholder(tc.int64, [None], name="y")
        logits = model(tc, weights, x)
        loss = tc.reduce_mean(tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tc.train.MomentumOptimizer(lr, momentum).minimize(loss)
        sess = tc.Session(graph=g)
        sess.run(tc.global_variables_initializer())

    def step(xv, yv):
        return sess.run([train, loss], {x: xv, y: yv})[1]

    return step, sess


# ----------------------------------------------------------------------------- torch
def torch_lenet(torch, weights):
    F = torch.nn.functional
    p = {k: torch.nn.Parameter(torch.from_numpy(a.copy())) for k, a in weights.items()}

    def forward(x):
        h = F.conv2d(x, p["conv1_w"], p["conv1_b"])
        h = F.max_pool2d(h, 2, 2)
        h = F.conv2d(h, p["conv2_w"], p["conv2_b"])
        h = F.max_pool2d(h, 2, 2)
        h = h.reshape(-1, 800)
        h = F.relu(h @ p["ip1_w"] + p["ip1_b"])
        return h @ p["ip2_w"] + p["ip2_b"]

    return forward, list(p.values())


def torch_mlp(torch, weights):
    F = torch.nn.functional
    p = {k: torch.nn.Parameter(torch.from_numpy(a.copy())) for k, a in weights.items()}
    n = len(weights) // 2

    def forward(x):
        h = x
        for i in range(n):
            h = h @ p[f"fc{i}_w"] + p[f"fc{i}_b"]
            if i < n - 1:
                h = F.relu(h)
        return h

    return forward, list(p.values())


def torch_train_step(torch, forward, params, lr=0.01, momentum=0.9):
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    F = torch.nn.functional

    def step(xv, yv):
        x = torch.from_numpy(xv)
        y = torch.from_numpy(yv)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step
