"""Which configs may import the modules their ``type: Python`` layers name.

Importing a module runs its code, so a config that came from elsewhere must not make tfconf import
anything unasked (the rule of Hugging Face's ``trust_remote_code``). A config is *from elsewhere*
when it, or a ``base:`` file it builds on,

* lies in a model zoo (``zoo:NAME``, or any file under a zoo folder of ``tfconf zoo path``),
* carries the extended attribute browsers, ``wget`` and ``curl --xattr`` set on downloads
  (``user.xdg.origin.url``), or tfconf's own ``user.tfconf.origin`` (``tfconf import-caffe`` marks
  the configs it writes with the prototxt they came from).

Such a config builds Python layers only with ``--trust-python`` (or ``TFCONF_TRUST_PYTHON=1``,
which the flag sets for the trials and workers a command starts); without it the config is refused
at the layer's ``module`` before the module is imported. Every config, trusted or not, may only name
a class deriving from :class:`tfconf.PythonLayer` (checked before it is instantiated)."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "TFCONF_TRUST_PYTHON"
ORIGIN_ATTRS = ("user.xdg.origin.url", "user.tfconf.origin")
#: folders of model zoos beside the built-in one (tfconf/zoo/registry.py explains the order)
ZOO_ENV = "TFCONF_ZOO_PATH"
_zoo_folders: list[str] = []


def builtin_zoo() -> Path:
    """The built-in ``model_zoo/`` beside the ``tfconf`` package."""
    return Path(__file__).resolve().parents[2] / "model_zoo"


def set_zoo_folders(paths) -> None:
    """The zoos named on the command line (``tfconf zoo --zoo DIR``), searched first."""
    _zoo_folders[:] = list(paths)


def zoo_folders() -> list[Path]:
    """Every zoo folder in search order: ``--zoo`` folders, ``TFCONF_ZOO_PATH``, the built-in one.
    Kept here, below the zoo package, because a config under any of them is from elsewhere."""
    env = [p for p in os.environ.get(ZOO_ENV, "").split(os.pathsep) if p]
    out = []
    for p in [*_zoo_folders, *env, str(builtin_zoo())]:
        path = Path(p).expanduser().resolve()
        if path not in out:
            out.append(path)
    return out


def trust_python() -> None:
    """``--trust-python``: this process and those it starts may import Python layers' modules."""
    os.environ[ENV] = "1"


def trusted_by_user() -> bool:
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no")


def origin(path) -> str | None:
    """Why the file at ``path`` counts as from elsewhere, or None for a file of the user's own."""
    try:
        p = Path(path).resolve()
    except (OSError, RuntimeError):
        return None
    for root in zoo_folders():
        if p.is_relative_to(root):
            return f"{path} is in the model zoo {root}"
    for attr in ORIGIN_ATTRS:
        try:
            value = os.getxattr(p, attr)
        except (OSError, AttributeError):  # no such attribute, or a filesystem without them
            continue
        text = value.decode("utf-8", "replace")[:200]
        return f"{path} came from {text}" if attr.endswith("origin") else f"{path} was downloaded from {text}"
    return None


def mark_origin(path, where: str) -> None:
    """Record where a written config came from (best effort: not every filesystem keeps xattrs)."""
    try:
        os.setxattr(path, ORIGIN_ATTRS[1], where.encode("utf-8")[:1000])
    except (OSError, AttributeError):
        pass


def check(cfg) -> None:
    """Refuse the config's Python layers when it came from elsewhere and the user did not say
    --trust-python: a located error at the first such layer's ``module``; nothing is imported."""
    layers = [(i, layer) for i, layer in enumerate(cfg.net.layers) if layer.type == "Python"]
    if not layers or trusted_by_user():
        return
    for f in cfg.loaded.files:
        why = origin(f)
        if why:
            i, layer = layers[0]
            raise cfg.loaded.error(
                ("layers", i, "module"),
                f"this config would import and run the Python module {layer.module!r}, but {why}. "
                "Read that module first; run it only if you trust it, with --trust-python "
                "(or TFCONF_TRUST_PYTHON=1)")
