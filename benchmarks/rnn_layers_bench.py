"""One recurrent layer alone, forward + backward: tfconf's LSTMLayer and GRULayer ops (oneDNN's
RNN primitives, and the numpy reference scan) against PyTorch's nn.LSTM / nn.GRU on the same
shapes (the benchmark nets' two layers: [50, 32, 64] -> 256 and [50, 32, 256] -> 256).

    python benchmarks/rnn_layers_bench.py

Shows where the LSTM and GRU models' time goes: whether the layers themselves or what surrounds
them separates the frameworks. Best of five means, ms.
"""

from __future__ import annotations

import time

import numpy as np

T, N, H = 50, 32, 256


def best_ms(fn, reps=10, rounds=5):
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best * 1e3


def tfconf_layer(kind, C, kernels):
    import tfconf as tc
    from tfconf.engine.ops.rnn import gru_layer, lstm_layer

    g = tc.Graph()
    rng = np.random.default_rng(0)
    with g.as_default():
        x = tc.placeholder(tc.float32, [T, N, C])
        mask = np.ones((T, N, 1), np.float32)
        h0 = np.zeros((N, H), np.float32)
        if kind == "lstm":
            ws = [tc.Variable((rng.standard_normal(s) * 0.05).astype(np.float32)) for s in ([4 * H, C], [4 * H],
                                                                                             [4 * H, H])]
            hs = lstm_layer(x, *ws, mask, h0, h0)[0]
        else:
            ws = [tc.Variable((rng.standard_normal(s) * 0.05).astype(np.float32)) for s in ([3 * H, C], [3 * H],
                                                                                             [3 * H, H], [3 * H])]
            hs = gru_layer(x, *ws, mask, h0)[0]
        grads = tc.gradients(tc.reduce_sum(hs), [x] + ws)
        sess = tc.Session(graph=g, config=tc.SessionConfig(kernels=kernels))
        sess.run(tc.global_variables_initializer())
    feed = {x: np.random.default_rng(1).random((T, N, C), dtype=np.float32)}
    return lambda: sess.run(grads, feed)


def torch_layer(kind, C):
    import torch

    torch.set_num_threads(2)
    layer = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(C, H)
    x = torch.rand(T, N, C, requires_grad=True)

    def step():
        y, _ = layer(x)
        y.sum().backward()

    return step


def main():
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    print("| layer | tfconf oneDNN ms | tfconf numpy ms | PyTorch ms | oneDNN / PyTorch |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("lstm", "gru"):
        for C in (64, 256):
            fast = best_ms(tfconf_layer(kind, C, "onednn"))
            ref = best_ms(tfconf_layer(kind, C, "numpy"), reps=2, rounds=2)
            peer = best_ms(torch_layer(kind, C)) if have_torch else float("nan")
            print(f"| {kind.upper()} [{T}, {N}, {C}] -> {H} | {fast:.2f} | {ref:.2f} | {peer:.2f} | {fast / peer:.2f} |")


if __name__ == "__main__":
    main()
