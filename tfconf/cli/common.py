"""What the commands share: the ``--set`` and ``--trust-python`` options, loading a config or a
``zoo:NAME`` entry, resolving ``--weights`` and checking ``--device``. Caffe's spellings of the
same (``--solver``, ``--model``, ``-gpu``, ``-snapshot``) are in :mod:`.caffe_args`."""

from __future__ import annotations

import typer

from tfconf.errors import UserError

SetOpt = typer.Option(None, "--set", help="Override a config value: KEY=VALUE (dotted path; "
                      "layers by name: layers.conv1.num_output=32; the value is parsed as YAML).")

TrustOpt = typer.Option(False, "--trust-python", help="Let a config from elsewhere (a zoo entry, a downloaded or "
                        "imported file) import the modules its `type: Python` layers name: that runs their code. "
                        "Your own configs need no flag (docs/cli.md).")


def trust(flag: bool):
    if flag:
        from tfconf.frontend.trust import trust_python

        trust_python()


def load_config(config: str, overrides, check=True):
    from tfconf.frontend import config as cfgmod
    from tfconf.zoo.registry import config_for

    return cfgmod.load(config_for(config), overrides or (), check=check)


def resolve_weights(weights, config=None):
    """``--weights zoo:NAME`` → that entry's verified weights; no --weights with a ``zoo:`` config →
    the entry's own."""
    from tfconf.zoo.registry import weights_for

    if weights is None and config is not None and config.startswith("zoo:"):
        weights = config
    return weights_for(weights) if weights is not None else None


def check_device(device, device_count, given=None):
    """An explicitly requested device must exist (a config's own `device` is placed softly).
    ``given``: the option as the user spelled it (``-gpu 0``), which the message names."""
    from tfconf.engine.devices import DeviceSpec, local_devices
    from tfconf.frontend.compiler import device_name

    name = device_name(device)
    if name is None:
        return
    said = given or f"--device {device}"
    try:
        spec = DeviceSpec.from_string(name)
    except ValueError as e:
        raise UserError(f"{said}: {e}") from None
    devices = local_devices(device_count)
    if not any(d.matches(spec) for d in devices):
        raise UserError(f"{said}: no such device here{'' if given is None else f' ({device})'}. Available: "
                        + ", ".join(d.name for d in devices))
