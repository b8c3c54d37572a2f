"""``tfconf validate``, ``schema``, ``devices`` and ``draw``: looking at a config and at the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from tfconf.errors import UserError

from . import common, errors


def validate(
    config: str = typer.Argument(..., help="The config (YAML)."),
    set_: Optional[List[str]] = common.SetOpt,
    print_config: bool = typer.Option(False, "--print-config", help="Also print the resolved config."),
    trust_python: bool = common.TrustOpt,
):
    """Check a config: prints a one-line summary or the located errors (exit code 2)."""
    common.trust(trust_python)

    def go():
        from tfconf.frontend import config as cfgmod

        cfg = common.load_config(config, set_, check=False)
        nets, params = cfgmod.check_net(cfg)
        return cfg, nets, params

    cfg, nets, params = errors.run(go)
    if print_config:
        typer.echo(cfg.loaded.dump())
    n_params = sum(int(__import__("numpy").prod(v.shape.as_list())) for v in params.values()
                   if v.trainable)
    outs = ", ".join(f"{k} {t.shape.as_list()}" for k, t in nets["test"].outputs.items())
    typer.echo(f"{cfg.path}: ok: {cfg.net.name}, {len(cfg.net.layers)} layers, {n_params:,} parameters; "
               f"test outputs: {outs or 'none'}")


def schema(out: Optional[str] = typer.Option(None, "-o", "--out", help="Write to this file instead of stdout.")):
    """Write the JSON Schema of configs (for editor completion)."""
    from tfconf.frontend.net_schema import NetConfig

    text = json.dumps(NetConfig.model_json_schema(), indent=2)
    if out:
        Path(out).write_text(text + "\n")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text)


def devices(
    device_count: Optional[List[str]] = typer.Option(
        None, "--device-count", help="TYPE=N, e.g. CPU=4 for four virtual CPU devices (repeatable)."),
):
    """List the devices the engine sees, with memory and a measured throughput."""
    from tfconf.engine.devices import describe_devices

    def go():
        counts = {}
        for item in device_count or ():
            kind, sep, n = item.partition("=")
            if not sep or not n.strip().isdigit():
                raise UserError(f"--device-count {item}: expected TYPE=N, e.g. CPU=4.")
            counts[kind.strip().upper()] = int(n)
        try:
            return describe_devices(counts)
        except ValueError as e:
            raise UserError(f"--device-count: {e}") from None

    for d in errors.run(go):
        typer.echo(f"{d['name']}  {d['type']}  memory {d['memory_gb']:.1f} GiB  "
                   f"float32 matmul {d['gflops']:.0f} GFLOP/s")
    from tfconf.engine.kernel_choice import describe_providers

    for line in describe_providers():
        typer.echo(line)


def draw(
    config: str = typer.Argument(..., help="The config (YAML)."),
    out: str = typer.Option(..., "-o", "--out", help="Output file: .dot always; .svg/.png need graphviz's `dot`."),
    phase: str = typer.Option("train", "--phase", help="train or test."),
    set_: Optional[List[str]] = common.SetOpt,
    trust_python: bool = common.TrustOpt,
):
    """Draw the net as a graph of layers and blobs (Caffe's draw_net)."""
    common.trust(trust_python)

    def go():
        from tfconf.frontend.draw import draw_net

        if phase not in ("train", "test"):
            raise UserError(f"--phase must be train or test. Received: {phase}")
        return draw_net(common.load_config(config, set_, check=False), out, phase)

    typer.echo(f"wrote {errors.run(go)}")
