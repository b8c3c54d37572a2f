"""Helpers of the zoo tests: the built-in entries, user zoos in temporary folders, the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.cli.util import ENV, REPO

ZOO = REPO / "model_zoo"
BUILTIN = sorted(p.name for p in ZOO.iterdir() if (p / "card.yaml").is_file())
WITH_WEIGHTS = ("lenet", "mlp", "mnist_autoencoder", "char_lstm")


def env_without_user_zoo() -> dict:
    return {k: v for k, v in ENV.items() if k != "TFCONF_ZOO_PATH"}


def copy_entry(name: str, zoo: Path, as_name: str | None = None) -> Path:
    """A copy of a built-in entry in the user zoo ``zoo`` (renamed: the card's name follows)."""
    dest = Path(zoo) / (as_name or name)
    shutil.copytree(ZOO / name, dest)
    if as_name:
        card = dest / "card.yaml"
        card.write_text(card.read_text().replace(f"name: {name}\n", f"name: {as_name}\n", 1))
    return dest


def flip_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0x01
    Path(path).write_bytes(bytes(data))


def run_env(args, extra_env=None, **kw):
    """``tfconf ARGS`` as a real process with TFCONF_ZOO_PATH from ``extra_env`` only."""
    from tests.cli.util import run

    return run(args, env={**env_without_user_zoo(), **(extra_env or {})}, **kw)

