"""`zoo test` and `zoo build`: measure an entry's shipped weights against its card, and retrain an
entry deterministically (its model.yaml fixes random_seed) to rewrite weights, checksum and card."""

from __future__ import annotations

import os
import platform
import tempfile
import time

from tfconf.io.atomic import atomic_write_bytes

from .registry import Entry, ZooError, sha256_file, weights_for

DEFAULT_TOLERANCE = 0.001


def load_config(entry: Entry, overrides=()):
    from tfconf.frontend import config as cfgmod

    return cfgmod.load(str(entry.config), overrides)


def measure(entry: Entry) -> dict:
    """The test-phase metrics of the entry's shipped weights (verified first)."""
    from tfconf.train import runner

    weights = weights_for(f"zoo:{entry.name}")
    return runner.test(load_config(entry), weights)


def compare(entry: Entry, measured: dict):
    """Rows (metric, card, measured, |diff|, ok) and whether all are within the card's tolerance."""
    m = entry.card.metrics
    rows = []
    for k, want in m.values.items():
        got = measured.get(k)
        diff = None if got is None else abs(got - want)
        rows.append((k, want, got, diff, diff is not None and diff <= m.tolerance))
    return rows, all(r[-1] for r in rows)


def _round(v: float) -> float:
    return float(f"{v:.6g}")


def build(entry: Entry, echo=print, quiet=True) -> dict:
    """Retrain the entry from its model.yaml, then rewrite its weights, their sha256, the card's
    metrics (measured by the same function as `tfconf test zoo:NAME`), params, FLOPs and build info."""
    from tfconf.train import runner, snapshot as snap

    if entry.card.weights is None:
        raise ZooError(f"zoo:{entry.name} is config only (no weights to build); `tfconf zoo build "
                       f"{entry.name} --counts-only` refreshes its params and FLOPs")
    cfg = load_config(entry)
    if cfg.net.solver is None or cfg.net.data is None or cfg.net.data.train is None:
        raise ZooError(f"zoo:{entry.name}: model.yaml needs data.train and a solver to be built")
    seed = cfg.net.solver.random_seed
    if seed is None:
        raise cfg.loaded.error(("solver",), "a zoo entry must fix solver.random_seed (builds are deterministic)")
    with tempfile.TemporaryDirectory(prefix=f"zoo-build-{entry.name}-") as tmp:
        t0 = time.perf_counter()
        result = runner.train(cfg, out=tmp, quiet=quiet, echo=echo)
        seconds = time.perf_counter() - t0
        spath = result["snapshot"]
        if spath is None:
            raise ZooError(f"zoo:{entry.name}: training left no snapshot (set solver.snapshot_after_train)")
        wpath = spath[: -len(".solverstate.safetensors")] + ".safetensors"
        tensors, _ = snap.load_tensors(wpath)
        # other shipped files the run writes (a character model's vocab.json) come from this run too
        extra = {}
        for f in entry.card.files:
            made = os.path.join(tmp, f.file)
            if os.path.isfile(made):
                with open(made, "rb") as fh:
                    atomic_write_bytes(str(entry.dir / f.file), fh.read())
                extra[f.file] = sha256_file(entry.dir / f.file)
    dtype = entry.card.weights.dtype
    if dtype is not None:
        tensors = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in tensors.items()}
    target = entry.weights
    # NOTE: one metadata key only: safetensors writes its metadata map in hash order, so with
    # several keys the same weights could give different bytes (and sha256) from build to build.
    snap.save_tensors(str(target), tensors, {"format": "tfconf-weights"})
    metrics = runner.test(cfg, str(target))  # measured on exactly the file that ships
    update_card(entry, metrics=metrics, sha256=sha256_file(target), size=os.path.getsize(target), files=extra,
                build={"command": f"tfconf zoo build {entry.name}", "iterations": int(result["iterations"]),
                       "seconds": round(seconds, 1), "machine": _machine()})
    return {"metrics": metrics, "seconds": seconds, "iterations": result["iterations"],
            "sha256": sha256_file(target)}


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"


def update_card(entry: Entry, *, metrics=None, sha256=None, size=None, build=None, counts=True, files=None):
    """Rewrite the measured fields of card.yaml, keeping the others and their order."""
    import yaml

    from .card import load_card
    from .flops import count

    path = entry.card_path
    with open(path) as f:
        data = yaml.safe_load(f)
    if counts:
        cost = count(load_config(entry))
        data["params"] = int(cost.params)
        data["flops"] = int(cost.flops)
        if cost.input_shape is not None:
            data["input_shape"] = [int(d) for d in cost.input_shape]
    if metrics is not None:
        old = data.get("metrics") or {}
        data["metrics"] = {
            "values": {k: _round(v) for k, v in metrics.items()},
            "tolerance": old.get("tolerance", DEFAULT_TOLERANCE),
            "command": f"tfconf test zoo:{entry.name}",
            **({"primary": old["primary"]} if old.get("primary") in metrics else {}),
        }
    if sha256 is not None:
        data["weights"] = {**data.get("weights", {}), "sha256": sha256, **({"size": size} if size else {})}
    if build is not None:
        data["build"] = build
    for f in data.get("files") or []:
        if files and f.get("file") in files:
            f["sha256"] = files[f["file"]]
    text = dump_card(data)
    atomic_write_bytes(str(path), text.encode())
    entry.card = load_card(str(path))  # what was written must read back
    return entry.card


def dump_card(data: dict) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper, s):
        style = "|" if "\n" in s else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style=style)

    def _list(dumper, v):  # short lists of numbers/strings on one line: input_shape: [1, 28, 28]
        flow = all(isinstance(x, (int, float, str)) and not isinstance(x, bool) for x in v)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=flow or None)

    _Dumper.add_representer(str, _str)
    _Dumper.add_representer(list, _list)
    from .card import ZooCard

    order = list(ZooCard.model_fields)
    data = dict(sorted(data.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)


def counts_only(entry: Entry):
    return update_card(entry, counts=True)


__all__ = ["build", "compare", "counts_only", "measure", "update_card", "DEFAULT_TOLERANCE"]
