"""``tfconf sample``: generate text from a trained character model, one character per ``Session.run``.

The net is the config's test phase built for one stream and one step (data, label, cont of shape
[1, 1]); its recurrent layers carry their state from step to step in their state Variables (the
update ops run with every step), exactly as between training batches. The prime is fed first (cont 0
at its first character, so it starts a new sequence), then each sampled character is fed back.
The scores are the first bottom of the net's SoftmaxWithLoss layer; the next character is drawn from
softmax(scores / temperature) with ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import os

import numpy as np

from . import snapshot as snap
from .errors import TrainError, _op_errors_located
from .runner import _weights_path


def find_vocab(weights: str, vocab: str | None = None) -> str:
    """``vocab`` if given, else the vocab.json of the run the weights come from (beside the weights
    file or one folder up, for runs/NAME/snapshots/...)."""
    if vocab:
        if not os.path.isfile(vocab):
            raise FileNotFoundError(f"--vocab {vocab}: no such file")
        return vocab
    here = os.path.dirname(os.path.abspath(weights))
    for folder in (here, os.path.dirname(here)):
        path = os.path.join(folder, "vocab.json")
        if os.path.isfile(path):
            return path
    raise TrainError(f"no vocab.json beside {weights} or in its run folder; pass --vocab PATH "
                     "(training writes it into the run folder)")


def _text_spec(cfg):
    data = cfg.net.data
    for phase in ("train", "test"):
        spec = getattr(data, phase, None) if data is not None else None
        if spec is not None and spec.is_text:
            return spec
    raise cfg.loaded.error(("data",) if data is not None else ("layers",),
                           "sampling needs a character model: data.train.source must be text or pystdlib")


def _scores_layer(cfg, net):
    for spec in net.layers:
        if spec.type == "SoftmaxWithLoss" and spec.bottom:
            return spec.bottom[0]
    raise cfg.loaded.error(("layers",), "sampling needs a SoftmaxWithLoss layer: its first bottom gives "
                           "the next character's scores")


def check_prime(prime: str, vocab: list[str]) -> list[int]:
    index = {c: i for i, c in enumerate(vocab)}
    bad = sorted({c for c in prime if c not in index})
    if bad:
        shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in bad[:8])
        raise TrainError(f"--prime has characters outside the model's vocabulary of {len(vocab)}: {shown}")
    return [index[c] for c in prime]


def sample(cfg, weights: str, *, prime: str = "", length: int = 500, temperature: float = 1.0,
           seed: int = 0, vocab: str | None = None) -> str:
    """The prime followed by ``length`` sampled characters."""
    from tfconf.engine import api as tc
    from tfconf.data.text import input_tops, read_vocab

    from ..frontend.config import build_phase

    if length < 0:
        raise TrainError(f"--length must be >= 0. Received: {length}")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise TrainError(f"--temperature must be a positive number. Received: {temperature}")
    _text_spec(cfg)
    w, _ = snap.load_tensors(_weights_path(weights))
    chars = read_vocab(find_vocab(weights, vocab))
    ids = check_prime(prime, chars)
    if not ids:  # start a new sequence from a newline (or the first character of the vocabulary)
        ids = [chars.index("\n") if "\n" in chars else 0]
        prime_text = ""
    else:
        prime_text = prime

    g = tc.Graph()
    with g.as_default():
        inputs = {n: tc.placeholder(tc.as_dtype(dt), [1, 1], name=n) for n, (_, dt) in input_tops(1).items()}
    params = {}
    net = build_phase(cfg, "test", g, params, {}, inputs=inputs)
    scores = net.tops[_scores_layer(cfg, net)]
    width = scores.shape.as_list()[-1]
    if width != len(chars):
        raise TrainError(f"the net scores {width} characters but the vocabulary ({len(chars)} characters) "
                         "does not match: is --vocab from the run that wrote these weights?")
    missing = [k for k in params if k not in w]
    if missing:
        raise TrainError(f"--weights {weights}: lacks parameters: {', '.join(missing)}")
    sess = tc.Session(graph=g)
    try:
        with g.as_default():
            sess.run(tc.variables_initializer(g.get_collection("recurrent_state")))
        for k, v in params.items():
            if tuple(w[k].shape) != tuple(v.shape.as_list()):
                raise TrainError(f"--weights {weights}: parameter {k!r} has shape {list(w[k].shape)} in the "
                                 f"weights file but the net needs {v.shape.as_list()}")
            v.load(w[k], sess)
        rng = np.random.default_rng(seed)
        data, label, cont = inputs["data"], inputs["label"], inputs["cont"]
        zero = np.zeros((1, 1), np.int64)

        def step(i, first):
            feed = {data: np.full((1, 1), i, np.int64), label: zero,
                    cont: np.full((1, 1), 0.0 if first else 1.0, np.float32)}
            out, _ = sess.run([scores, net.updates], feed)
            return np.asarray(out, np.float64).reshape(-1)

        out = []
        with _op_errors_located(cfg):
            for j, i in enumerate(ids):
                logits = step(i, j == 0)
            for k in range(length):
                z = logits / temperature
                p = np.exp(z - z.max())
                nxt = int(rng.choice(len(p), p=p / p.sum()))
                out.append(chars[nxt])
                if k + 1 < length:
                    logits = step(nxt, False)
        return prime_text + "".join(out)
    finally:
        sess.close()
