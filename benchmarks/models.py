"""The benchmark models, built the same way in each framework from the same numpy weights."""

from __future__ import annotations

import os

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


def cifar_weights(rng, dtype=np.float32):
    """Caffe's CIFAR-10 quick: conv 32 (pad 2) → max pool 3/2 → relu → conv 32 → relu → ave pool
    → conv 64 → relu → ave pool → ip 64 → ip 10."""
    def g(shape, std):
        return (rng.standard_normal(shape) * std).astype(dtype)

    return {
        "conv1_w": g((32, 3, 5, 5), 1e-4 ** 0.5 * 10), "conv1_b": np.zeros(32, dtype),
        "conv2_w": g((32, 32, 5, 5), 0.01), "conv2_b": np.zeros(32, dtype),
        "conv3_w": g((64, 32, 5, 5), 0.01), "conv3_b": np.zeros(64, dtype),
        "ip1_w": g((1024, 64), 0.1), "ip1_b": np.zeros(64, dtype),
        "ip2_w": g((64, 10), 0.1), "ip2_b": np.zeros(10, dtype),
    }


LSTM_SHAPE = {"steps": 50, "batch": 32, "input": 64, "hidden": 256, "classes": 98, "layers": 2}


def lstm_weights(rng, dtype=np.float32):
    """Two LSTM layers (gate order i, f, o, g as Caffe; torch uses i, f, g, o: the torch model
    permutes) and an output layer over the time axis, sized like configs/char_lstm.yaml."""
    s = LSTM_SHAPE
    h, w = s["hidden"], {}
    d = s["input"]
    for k in range(s["layers"]):
        lim = 1 / np.sqrt(h)
        w[f"l{k}_wx"] = rng.uniform(-lim, lim, (4 * h, d)).astype(dtype)
        w[f"l{k}_wh"] = rng.uniform(-lim, lim, (4 * h, h)).astype(dtype)
        w[f"l{k}_b"] = rng.uniform(-lim, lim, 4 * h).astype(dtype)
        d = h
    w["out_w"] = rng.uniform(-1 / np.sqrt(h), 1 / np.sqrt(h), (s["classes"], h)).astype(dtype)
    w["out_b"] = np.zeros(s["classes"], dtype)
    return w


GRU_SHAPE = dict(LSTM_SHAPE)  # the LSTM's twin: the same sizes


def gru_weights(rng, dtype=np.float32):
    """Two GRU layers (gate order r, z, n, PyTorch's and the front end's GRU alike: no permutation)
    with both biases (b_x and b_h), and an output layer over the time axis like the LSTM's."""
    s = GRU_SHAPE
    h, w = s["hidden"], {}
    d = s["input"]
    lim = 1 / np.sqrt(h)
    for k in range(s["layers"]):
        w[f"l{k}_wx"] = rng.uniform(-lim, lim, (3 * h, d)).astype(dtype)
        w[f"l{k}_bx"] = rng.uniform(-lim, lim, 3 * h).astype(dtype)
        w[f"l{k}_wh"] = rng.uniform(-lim, lim, (3 * h, h)).astype(dtype)
        w[f"l{k}_bh"] = rng.uniform(-lim, lim, 3 * h).astype(dtype)
        d = h
    w["out_w"] = rng.uniform(-lim, lim, (s["classes"], h)).astype(dtype)
    w["out_b"] = np.zeros(s["classes"], dtype)
    return w


def resnet20_blocks():
    """The basic blocks of model_zoo/resnet20_cifar/model.yaml: (name, in channels, out channels,
    stride, projection shortcut). Stages 3 and 4 start with stride 2 and a 1x1 projection."""
    out, cin = [], 16
    for stage, cout in ((2, 16), (3, 32), (4, 64)):
        for b in "abc":
            first = b == "a" and stage > 2
            out.append((f"res{stage}{b}", cin, cout, 2 if first else 1, first))
            cin = cout
    return out


def resnet20_convs():
    """(convolution layer name, in, out, kernel, stride) of every convolution, in layer order."""
    out = [("conv1", 3, 16, 3, 1)]
    for name, cin, cout, stride, proj in resnet20_blocks():
        out += [(f"{name}_branch2a", cin, cout, 3, stride), (f"{name}_branch2b", cout, cout, 3, 1)]
        if proj:
            out.append((f"{name}_branch1", cin, cout, 1, stride))
    return out


def resnet20_weights(rng, dtype=np.float32):
    """ResNet-20 (the zoo's resnet20_cifar), keyed by the zoo's layer names: per convolution C
    ``C_w`` (OIHW, msra: He normal over fan-in) and the gamma/beta of its ``C_scale`` layer
    (``C_gamma`` ones, ``C_beta`` zeros; its ``C_bn`` has no parameters); ``fc10_w`` [64, 10]
    ([in, out] like the other models' inner products, msra) and ``fc10_b``."""
    w = {}
    for name, cin, cout, k, _ in resnet20_convs():
        w[f"{name}_w"] = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(dtype)
        w[f"{name}_gamma"] = np.ones(cout, dtype)
        w[f"{name}_beta"] = np.zeros(cout, dtype)
    w["fc10_w"] = (rng.standard_normal((64, 10)) * np.sqrt(2.0 / 64)).astype(dtype)
    w["fc10_b"] = np.zeros(10, dtype)
    return w


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


def tfconf_cifar(tc, weights, x):
    v = {k: tc.Variable(a, name=k) for k, a in weights.items()}
    h = tc.nn.bias_add(tc.nn.conv2d(x, v["conv1_w"], padding=2), v["conv1_b"])
    h = tc.nn.relu(tc.nn.max_pool(h, 3, 2, ceil_mode=True))
    h = tc.nn.relu(tc.nn.bias_add(tc.nn.conv2d(h, v["conv2_w"], padding=2), v["conv2_b"]))
    h = tc.nn.avg_pool(h, 3, 2, ceil_mode=True)
    h = tc.nn.relu(tc.nn.bias_add(tc.nn.conv2d(h, v["conv3_w"], padding=2), v["conv3_b"]))
    h = tc.nn.avg_pool(h, 3, 2, ceil_mode=True)
    h = tc.reshape(h, [-1, 1024])
    h = tc.matmul(h, v["ip1_w"]) + v["ip1_b"]
    return tc.matmul(h, v["ip2_w"]) + v["ip2_b"]


def _tfconf_recurrent(tc, model, kind, s, blobs, weights, x):
    """Two of the front end's own recurrent layers of type ``kind`` (what a config gets) and the
    output layer, with these weights loaded: ``blobs`` maps each layer's parameter names (Caffe's
    blob order) to the weight keys. Sets ``model``'s feeds, updates and load."""
    from tfconf.frontend.compiler import build_net
    from tfconf.frontend.layers import NetState, get_layer_class

    prefix = kind.lower()
    spec = [{"name": "cont", "type": "Input", "shape": [s["steps"], s["batch"]]}]
    bottom = "x"
    for k in range(s["layers"]):
        spec.append({"name": f"{prefix}{k}", "type": kind, "bottom": [bottom, "cont"], "num_output": s["hidden"]})
        bottom = f"{prefix}{k}"
    spec.append({"name": "out", "type": "InnerProduct", "bottom": bottom, "num_output": s["classes"], "axis": 2})
    specs = [get_layer_class(d["type"]).model_validate(d) for d in spec]
    params, meta = {}, {}
    inputs = {"x": x}
    net = build_net(specs, NetState(phase="train"), x.graph, params, meta, inputs)
    model.feeds = {inputs["cont"]: np.ones((s["steps"], s["batch"]), np.float32)}
    model.updates = net.updates
    model.load = {}
    for k in range(s["layers"]):
        for key, w in blobs:
            model.load[_find_param(params, f"{prefix}{k}/{key}")] = weights[f"l{k}_{w}"]
    model.load[_find_param(params, "out/weights")] = weights["out_w"]
    model.load[_find_param(params, "out/bias")] = weights["out_b"]
    return tc.reshape(net.tops["out"], [-1, s["classes"]])


def tfconf_lstm(tc, weights, x):
    """The front end's own LSTM layers, with these weights loaded."""
    return _tfconf_recurrent(tc, tfconf_lstm, "LSTM", LSTM_SHAPE,
                             (("weights_x", "wx"), ("bias", "b"), ("weights_h", "wh")), weights, x)


tfconf_lstm.full_shape = True  # its xshape is [T, N, input]: the batch is part of it


def tfconf_gru(tc, weights, x):
    """The front end's own GRU layers (Caffe's blob order: W_x, b (b_x), W_h, b_h), with these
    weights loaded."""
    return _tfconf_recurrent(tc, tfconf_gru, "GRU", GRU_SHAPE,
                             (("weights_x", "wx"), ("bias", "bx"), ("weights_h", "wh"), ("bias_h", "bh")), weights, x)


tfconf_gru.full_shape = True  # its xshape is [T, N, input]: the batch is part of it


def tfconf_resnet20(tc, weights, x):
    """The zoo's ResNet-20 (model_zoo/resnet20_cifar/model.yaml) as the front end builds it for the
    train phase (BatchNorm on the batch's own statistics, its moving-average updates in
    ``.updates``), without the loss and accuracy layers, with these weights loaded."""
    from tfconf.frontend.compiler import build_net
    from tfconf.frontend.layers import NetState, get_layer_class
    from tfconf.frontend.loader import load_config
    from tfconf.zoo.registry import builtin_root

    layers = load_config(builtin_root() / "resnet20_cifar" / "model.yaml").data["layers"]
    specs = [get_layer_class(d["type"]).model_validate(d) for d in layers]
    specs = [sp for sp in specs if not sp.is_loss and sp.type != "Accuracy" and not sp.type.endswith("Data")]
    params = {}
    net = build_net(specs, NetState(phase="train"), x.graph, params, {}, {"data": x})
    load = {}
    for name, *_ in resnet20_convs():
        load[params[f"{name}/weights"]] = weights[f"{name}_w"]
        load[params[f"{name}_scale/scale"]] = weights[f"{name}_gamma"]
        load[params[f"{name}_scale/bias"]] = weights[f"{name}_beta"]
    load[params["fc10/weights"]] = np.ascontiguousarray(weights["fc10_w"].T)  # Caffe's [out, in]
    load[params["fc10/bias"]] = weights["fc10_b"]
    tfconf_resnet20.load, tfconf_resnet20.updates = load, net.updates
    return net.tops["fc10"]


def _find_param(params, suffix):
    hits = [v for k, v in params.items() if str(k).endswith(suffix)]
    if len(hits) != 1:
        raise KeyError(f"{suffix}: {sorted(map(str, params))}")
    return hits[0]


def tfconf_train_step(model, weights, xshape, lr=0.01, momentum=0.9):
    """Returns (run_step(x, y), session) for one SGD-momentum training step per Session.run.

    A model built by the front end says what else its step needs through attributes of the
    model function, set when it builds: ``updates`` (ops run with every step: BatchNorm's moving
    averages, the LSTM's carried state), ``feeds`` (placeholder → value fed every step) and
    ``load`` (Variable → value loaded after initialisation: the given weights into the layers'
    parameters); ``full_shape`` (set once) means ``xshape`` includes the batch axis."""
    import tfconf as tc

    g = tc.Graph()
    with g.as_default():
        x = tc.placeholder(tc.float32, xshape if getattr(model, "full_shape", False) else [None, *xshape],
                           name="x")
        y = tc.placeholder(tc.int64, [None], name="y")
        logits = model(tc, weights, x)
        loss = tc.reduce_mean(tc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tc.train.MomentumOptimizer(lr, momentum).minimize(loss)
        updates = list(getattr(model, "updates", ()))
        if updates:
            train = tc.group(train, *updates)
        feed = dict(getattr(model, "feeds", {}))
        sess = tc.Session(graph=g)
        sess.run(tc.global_variables_initializer())
        for var, value in getattr(model, "load", {}).items():
            var.load(value, sess)

    def step(xv, yv):
        feed[x], feed[y] = xv, yv
        return sess.run([train, loss], feed)[1]

    return step, sess


# ----------------------------------------------------------------------------- torch
def _torch_params(torch, weights, device=None):
    return {k: torch.nn.Parameter(torch.from_numpy(a.copy()).to(device or "cpu")) for k, a in weights.items()}


def torch_lenet(torch, weights, device=None):
    F = torch.nn.functional
    p = _torch_params(torch, weights, device)

    def forward(x):
        h = F.conv2d(x, p["conv1_w"], p["conv1_b"])
        h = F.max_pool2d(h, 2, 2)
        h = F.conv2d(h, p["conv2_w"], p["conv2_b"])
        h = F.max_pool2d(h, 2, 2)
        h = h.reshape(-1, 800)
        h = F.relu(h @ p["ip1_w"] + p["ip1_b"])
        return h @ p["ip2_w"] + p["ip2_b"]

    return forward, list(p.values())


def torch_cifar(torch, weights, device=None):
    F = torch.nn.functional
    p = _torch_params(torch, weights, device)

    def forward(x):
        h = F.conv2d(x, p["conv1_w"], p["conv1_b"], padding=2)
        h = F.relu(F.max_pool2d(h, 3, 2, ceil_mode=True))
        h = F.relu(F.conv2d(h, p["conv2_w"], p["conv2_b"], padding=2))
        h = F.avg_pool2d(h, 3, 2, ceil_mode=True)
        h = F.relu(F.conv2d(h, p["conv3_w"], p["conv3_b"], padding=2))
        h = F.avg_pool2d(h, 3, 2, ceil_mode=True)
        h = h.reshape(-1, 1024)
        h = h @ p["ip1_w"] + p["ip1_b"]
        return h @ p["ip2_w"] + p["ip2_b"]

    return forward, list(p.values())


def _torch_recurrent_step(torch, rnn, weights, s, detach):
    """(forward, params) of a recurrent torch model: ``rnn`` then the output layer from
    ``weights``, carrying the state between steps as ``detach`` leaves it (truncated BPTT: the
    state, not its graph)."""
    out = torch.nn.Linear(s["hidden"], s["classes"])
    with torch.no_grad():
        out.weight.copy_(torch.from_numpy(weights["out_w"]))
        out.bias.copy_(torch.from_numpy(weights["out_b"]))
    state = {}

    def forward(x):
        hs, st = rnn(x, state.get("s"))
        state["s"] = detach(st)
        return out(hs).reshape(-1, s["classes"])

    return forward, list(rnn.parameters()) + list(out.parameters())


def torch_lstm(torch, weights):
    """torch.nn.LSTM (its fused CPU kernel) with the same weights: Caffe's gate order i, f, o, g
    becomes torch's i, f, g, o; torch's two biases are b and 0."""
    s = LSTM_SHAPE
    lstm = torch.nn.LSTM(s["input"], s["hidden"], num_layers=s["layers"])
    h = s["hidden"]

    def reorder(a):
        return np.concatenate([a[:2 * h], a[3 * h:], a[2 * h:3 * h]])

    with torch.no_grad():
        for k in range(s["layers"]):
            getattr(lstm, f"weight_ih_l{k}").copy_(torch.from_numpy(reorder(weights[f"l{k}_wx"])))
            getattr(lstm, f"weight_hh_l{k}").copy_(torch.from_numpy(reorder(weights[f"l{k}_wh"])))
            getattr(lstm, f"bias_ih_l{k}").copy_(torch.from_numpy(reorder(weights[f"l{k}_b"])))
            getattr(lstm, f"bias_hh_l{k}").zero_()
    return _torch_recurrent_step(torch, lstm, weights, s, lambda st: tuple(t.detach() for t in st))


def torch_gru(torch, weights):
    """torch.nn.GRU (its fused CPU kernel) with the same weights: the gate order (r, z, n) and the
    two biases are the front end's GRU's, so they copy over as they are."""
    s = GRU_SHAPE
    gru = torch.nn.GRU(s["input"], s["hidden"], num_layers=s["layers"])
    with torch.no_grad():
        for k in range(s["layers"]):
            getattr(gru, f"weight_ih_l{k}").copy_(torch.from_numpy(weights[f"l{k}_wx"]))
            getattr(gru, f"bias_ih_l{k}").copy_(torch.from_numpy(weights[f"l{k}_bx"]))
            getattr(gru, f"weight_hh_l{k}").copy_(torch.from_numpy(weights[f"l{k}_wh"]))
            getattr(gru, f"bias_hh_l{k}").copy_(torch.from_numpy(weights[f"l{k}_bh"]))
    return _torch_recurrent_step(torch, gru, weights, s, lambda st: st.detach())


def torch_mlp(torch, weights, device=None):
    F = torch.nn.functional
    p = _torch_params(torch, weights, device)
    n = len(weights) // 2

    def forward(x):
        h = x
        for i in range(n):
            h = h @ p[f"fc{i}_w"] + p[f"fc{i}_b"]
            if i < n - 1:
                h = F.relu(h)
        return h

    return forward, list(p.values())


def torch_resnet20(torch, weights, device=None):
    """ResNet-20 with nn.BatchNorm2d (affine: the Scale layers' gamma and beta) in train mode, so
    it normalises with the batch's statistics (biased variance, eps 1e-5) as Caffe's train phase."""
    F = torch.nn.functional
    dev = device or "cpu"
    p = _torch_params(torch, {k: a for k, a in weights.items() if k.endswith("_w") or k == "fc10_b"}, device)
    bn = {}
    for name, _, cout, _, _ in resnet20_convs():
        m = torch.nn.BatchNorm2d(cout, eps=1e-5, affine=True).to(dev)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(weights[f"{name}_gamma"]))
            m.bias.copy_(torch.from_numpy(weights[f"{name}_beta"]))
        bn[name] = m.train()

    def conv_bn(h, name, stride, pad):
        return bn[name](F.conv2d(h, p[f"{name}_w"], stride=stride, padding=pad))

    def forward(x):
        h = F.relu(conv_bn(x, "conv1", 1, 1))
        for name, _, _, stride, proj in resnet20_blocks():
            r = F.relu(conv_bn(h, f"{name}_branch2a", stride, 1))
            r = conv_bn(r, f"{name}_branch2b", 1, 1)
            h = F.relu((conv_bn(h, f"{name}_branch1", stride, 0) if proj else h) + r)
        h = h.mean((2, 3))
        return h @ p["fc10_w"] + p["fc10_b"]

    return forward, list(p.values()) + [q for m in bn.values() for q in m.parameters()]


def torch_train_step(torch, forward, params, lr=0.01, momentum=0.9, device=None):
    """One SGD-momentum step per call; with ``device`` the batch is copied there first."""
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    F = torch.nn.functional

    def step(xv, yv):
        x = torch.from_numpy(xv).to(device or "cpu")
        y = torch.from_numpy(yv).to(device or "cpu")
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


# ----------------------------------------------------------------------------- TensorFlow compat.v1
def _nhwc(w):
    return w.transpose(2, 3, 1, 0)  # OIHW → HWIO


def _rows_chw_to_hwc(w, c, h, wd):
    """An InnerProduct weight [C·H·W, out] reordered for an NHWC flatten, so that the net computes
    the same function as the NCHW ones."""
    return w.reshape(c, h, wd, -1).transpose(1, 2, 0, 3).reshape(c * h * wd, -1)


def tf_train_step(tf, kind, weights, lr=0.01, momentum=0.9, threads=None):
    """TensorFlow 1 graph mode (tf.compat.v1: placeholders, a Session, MomentumOptimizer), images
    in TensorFlow's own CPU layout (NHWC: inputs are transposed once, outside the timed step).
    Returns (run_step(x, y), session)."""
    v1 = tf.compat.v1
    g = tf.Graph()
    s = LSTM_SHAPE
    with g.as_default():
        if kind == "lenet":
            w = dict(weights, conv1_w=_nhwc(weights["conv1_w"]), conv2_w=_nhwc(weights["conv2_w"]),
                     ip1_w=_rows_chw_to_hwc(weights["ip1_w"], 50, 4, 4))
        elif kind == "cifar":
            w = dict(weights, conv1_w=_nhwc(weights["conv1_w"]), conv2_w=_nhwc(weights["conv2_w"]),
                     conv3_w=_nhwc(weights["conv3_w"]), ip1_w=_rows_chw_to_hwc(weights["ip1_w"], 64, 4, 4))
        elif kind == "resnet20":
            w = {k: _nhwc(a) if k.endswith("_w") and a.ndim == 4 else a for k, a in weights.items()}
        else:
            w = dict(weights)
        v = {k: v1.Variable(a, name=k) for k, a in w.items()}
        nn = tf.nn
        extra = []
        if kind == "lenet":
            x = v1.placeholder(tf.float32, [None, 28, 28, 1])
            h = nn.bias_add(nn.conv2d(x, v["conv1_w"], 1, "VALID"), v["conv1_b"])
            h = nn.max_pool2d(h, 2, 2, "VALID")
            h = nn.bias_add(nn.conv2d(h, v["conv2_w"], 1, "VALID"), v["conv2_b"])
            h = nn.max_pool2d(h, 2, 2, "VALID")
            h = tf.reshape(h, [-1, 800])
            h = nn.relu(tf.matmul(h, v["ip1_w"]) + v["ip1_b"])
            logits = tf.matmul(h, v["ip2_w"]) + v["ip2_b"]
        elif kind == "cifar":
            x = v1.placeholder(tf.float32, [None, 32, 32, 3])
            pad = [[0, 0], [2, 2], [2, 2], [0, 0]]
            h = nn.bias_add(nn.conv2d(x, v["conv1_w"], 1, pad), v["conv1_b"])
            h = nn.relu(nn.max_pool2d(h, 3, 2, "SAME"))
            h = nn.relu(nn.bias_add(nn.conv2d(h, v["conv2_w"], 1, pad), v["conv2_b"]))
            h = nn.avg_pool2d(h, 3, 2, "SAME")
            h = nn.relu(nn.bias_add(nn.conv2d(h, v["conv3_w"], 1, pad), v["conv3_b"]))
            h = nn.avg_pool2d(h, 3, 2, "SAME")
            h = tf.reshape(h, [-1, 1024])
            h = tf.matmul(h, v["ip1_w"]) + v["ip1_b"]
            logits = tf.matmul(h, v["ip2_w"]) + v["ip2_b"]
        elif kind == "resnet20":
            x = v1.placeholder(tf.float32, [None, 32, 32, 3])

            def conv_bn(h, name, stride, pad):
                # explicit padding: "SAME" at stride 2 pads only after, Caffe's pad 1 both sides
                h = nn.conv2d(h, v[f"{name}_w"], stride, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
                y, mean, var = v1.nn.fused_batch_norm(h, v[f"{name}_gamma"], v[f"{name}_beta"], epsilon=1e-5,
                                                      is_training=True)
                # moving averages as BatchNorm keeps them (momentum 0.9), run with every step
                c = h.shape[-1]
                mm = v1.Variable(np.zeros(c, np.float32), trainable=False, name=f"{name}_mean")
                mv = v1.Variable(np.ones(c, np.float32), trainable=False, name=f"{name}_var")
                extra.extend([mm.assign(0.9 * mm + 0.1 * mean), mv.assign(0.9 * mv + 0.1 * var)])
                return y

            h = nn.relu(conv_bn(x, "conv1", 1, 1))
            for name, _, _, stride, proj in resnet20_blocks():
                r = nn.relu(conv_bn(h, f"{name}_branch2a", stride, 1))
                r = conv_bn(r, f"{name}_branch2b", 1, 1)
                h = nn.relu((conv_bn(h, f"{name}_branch1", stride, 0) if proj else h) + r)
            h = tf.reduce_mean(h, [1, 2])
            logits = tf.matmul(h, v["fc10_w"]) + v["fc10_b"]
        elif kind == "mlp":
            n = len(weights) // 2
            x = v1.placeholder(tf.float32, [None, weights["fc0_w"].shape[0]])
            h = x
            for i in range(n):
                h = tf.matmul(h, v[f"fc{i}_w"]) + v[f"fc{i}_b"]
                if i < n - 1:
                    h = nn.relu(h)
            logits = h
        else:  # lstm, unrolled like tfconf's layer: one input matmul for all steps, then T cells
            T, N, H = s["steps"], s["batch"], s["hidden"]
            x = v1.placeholder(tf.float32, [T, N, s["input"]])
            seq = x
            for k in range(s["layers"]):
                hv = v1.Variable(np.zeros((N, H), np.float32), trainable=False, name=f"h{k}")
                cv = v1.Variable(np.zeros((N, H), np.float32), trainable=False, name=f"c{k}")
                d = seq.shape[-1]
                gx = tf.reshape(tf.matmul(tf.reshape(seq, [-1, d]), v[f"l{k}_wx"], transpose_b=True)
                                + v[f"l{k}_b"], [T, N, 4 * H])
                hh, cc = hv.read_value(), cv.read_value()
                outs = []
                for t, gt in enumerate(tf.unstack(gx, axis=0)):
                    i, f, o, gg = tf.split(gt + tf.matmul(hh, v[f"l{k}_wh"], transpose_b=True), 4, axis=1)
                    cc = tf.sigmoid(f) * cc + tf.sigmoid(i) * tf.tanh(gg)
                    hh = tf.sigmoid(o) * tf.tanh(cc)
                    outs.append(hh)
                extra += [hv.assign(hh), cv.assign(cc)]
                seq = tf.stack(outs, axis=0)
            logits = tf.reshape(tf.matmul(tf.reshape(seq, [-1, H]), v["out_w"], transpose_b=True) + v["out_b"],
                                [-1, s["classes"]])
        y = v1.placeholder(tf.int64, [None])
        loss = tf.reduce_mean(nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = v1.train.MomentumOptimizer(lr, momentum).minimize(loss)
        if extra:
            train = tf.group(train, *extra)
        threads = threads or os.cpu_count() or 1
        sess = v1.Session(graph=g, config=v1.ConfigProto(intra_op_parallelism_threads=threads,
                                                         inter_op_parallelism_threads=1))
        sess.run(v1.global_variables_initializer())
    cache = {}

    def step(xv, yv):
        if kind in ("lenet", "cifar", "resnet20"):
            key = id(xv)
            if key not in cache:
                cache.clear()
                cache[key] = np.ascontiguousarray(xv.transpose(0, 2, 3, 1))
            xv = cache[key]
        return sess.run([train, loss], {x: xv, y: yv})[1]

    return step, sess
