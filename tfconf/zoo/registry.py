"""Where zoo entries are found, and the checks every use of their files goes through.

An entry is a folder ``<zoo>/<name>/`` holding ``model.yaml`` (a complete training config),
``card.yaml`` (:mod:`tfconf.zoo.card`) and the files the card lists with their sha256 (the weights,
a vocabulary...). Zoos are searched in this order, the first entry of a name winning:

1. folders given with ``tfconf zoo --zoo DIR`` (:func:`add_paths`),
2. ``TFCONF_ZOO_PATH`` (folders separated by ``:``),
3. the built-in ``model_zoo/`` beside the ``tfconf`` package (a checkout or an editable install).

Nothing from a zoo is executed or unpickled: configs are YAML (safe loading), weights are
safetensors, and a file is hashed and compared with its card before it is used.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from .card import CardFile, ZooCard, load_card

PREFIX = "zoo:"
ENV = "TFCONF_ZOO_PATH"
CONFIG = "model.yaml"
CARD = "card.yaml"
_extra: list[str] = []


class ZooError(ValueError):
    """A mistake of the user's or a zoo entry that cannot be used (printed without a traceback, exit 2)."""


class ChecksumError(ZooError):
    """A shipped or downloaded file whose sha256 differs from its card's."""


def builtin_root() -> Path:
    return Path(__file__).resolve().parents[2] / "model_zoo"


def set_paths(paths: Iterable[str]) -> None:
    """Zoos named on the command line (``--zoo DIR``): searched before the others."""
    paths = list(paths)
    for p in paths:
        if not os.path.isdir(p):
            raise ZooError(f"--zoo {p}: no such folder")
    _extra[:] = paths


def search_path() -> list[Path]:
    env = [p for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    out = []
    for p in [*_extra, *env, str(builtin_root())]:
        path = Path(p).expanduser().resolve()
        if path not in out:
            out.append(path)
    return out


@dataclasses.dataclass
class Entry:
    name: str
    dir: Path
    card: ZooCard
    builtin: bool

    @property
    def config(self) -> Path:
        return self.dir / CONFIG

    @property
    def card_path(self) -> Path:
        return self.dir / CARD

    @property
    def weights(self) -> Optional[Path]:
        return self.dir / self.card.weights.file if self.card.weights else None

    def where(self) -> str:
        return "built-in" if self.builtin else str(self.dir.parent)


def _entry_dirs():
    """(name, folder, built-in?) of every entry folder, in search order (shadowed ones included)."""
    builtin = builtin_root().resolve()
    for root in search_path():
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if d.is_dir() and (d / CARD).is_file():
                yield d.name, d, root == builtin


def names() -> list[str]:
    seen = []
    for name, _, _ in _entry_dirs():
        if name not in seen:
            seen.append(name)
    return sorted(seen)


def _load_entry(name, d, builtin) -> Entry:
    card = load_card(str(d / CARD))
    if card.name != name:
        raise ZooError(f"{d / CARD}: the card names {card.name!r} but its folder is {name!r}")
    if not (d / CONFIG).is_file():
        raise ZooError(f"{d}: the entry has no {CONFIG}")
    return Entry(name, d, card, builtin)


def find(name: str) -> Entry:
    """The entry called ``name`` (``zoo:`` prefix allowed); a ZooError listing the known names if none."""
    if name.startswith(PREFIX):
        name = name[len(PREFIX):]
    for n, d, builtin in _entry_dirs():
        if n == name:
            return _load_entry(n, d, builtin)
    known = names()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ZooError(f"zoo:{name}: no such zoo entry.{hint} Known: {', '.join(known) or 'none'} "
                   f"(searched {', '.join(map(str, search_path()))}; add folders with {ENV} or --zoo)")


def entries() -> list[Entry]:
    return [find(n) for n in names()]


# ---------------------------------------------------------------------------------------- checksums


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(entry: Entry, f: CardFile) -> str:
    """'ok', or 'remote' for a file not here that a url fetches; ChecksumError when it is wrong."""
    path = entry.dir / f.file
    if not path.is_file():
        if f.url:
            return "remote"
        raise ChecksumError(f"zoo:{entry.name}: {path} is missing (the card lists it with sha256 {f.sha256[:12]}…)")
    got = sha256_file(path)
    if got != f.sha256:
        raise ChecksumError(f"zoo:{entry.name}: {path} is corrupted or was replaced: its sha256 is {got} but "
                            f"the card says {f.sha256}; refusing to use it (restore the file, or "
                            f"`tfconf zoo build {entry.name}` to retrain it)")
    return "ok"


def verify(entry: Entry) -> list[tuple[str, str]]:
    """(file, status) of every shipped file; the first mismatch raises ChecksumError."""
    return [(f.file, check_file(entry, f)) for f in entry.card.shipped]


def weights_for(ref: str) -> str:
    """``zoo:NAME`` → the path of that entry's weights, verified; anything else is returned as is."""
    if not ref.startswith(PREFIX):
        return ref
    entry = find(ref)
    if entry.card.weights is None:
        raise ZooError(f"{ref}: the entry is config only: it ships no weights")
    status = check_file(entry, entry.card.weights)
    if status == "remote":
        raise ZooError(f"{ref}: the weights are not here; `tfconf zoo get {entry.name} DIR` downloads and "
                       f"verifies them (then use --weights DIR/{entry.card.weights.file})")
    return str(entry.weights)


def config_for(ref: str) -> str:
    """``zoo:NAME`` → the path of that entry's model.yaml; anything else is returned as is."""
    return str(find(ref).config) if ref.startswith(PREFIX) else ref


# -------------------------------------------------------------------------------------------- fetch


def fetch(url: str, dest: str, sha256: str, timeout: float = 60.0) -> str:
    """Download ``url`` (file://, http://, https://) to ``dest``, checking sha256 before the file
    takes its name: a mismatch deletes the download and raises ChecksumError."""
    import urllib.error
    import urllib.request

    if not url.startswith(("file://", "http://", "https://")):
        raise ZooError(f"{url}: only file://, http:// and https:// urls are fetched")
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=folder)
    h = hashlib.sha256()
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ZooError(f"{url}: download failed ({getattr(e, 'reason', e)})") from None
        got = h.hexdigest()
        if got != sha256:
            raise ChecksumError(f"{url}: the download's sha256 is {got} but the card says {sha256}; "
                                "the download was deleted")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def get(entry: Entry, dest: str) -> list[tuple[str, str]]:
    """Copy the entry (config, card, shipped files) into ``dest`` for editing; files not here are
    fetched from their url. Every file is verified. Returns (file, how) pairs."""
    os.makedirs(dest, exist_ok=True)
    done = []
    for f in entry.card.shipped:
        target = os.path.join(dest, f.file)
        if check_file(entry, f) == "remote":
            fetch(f.url, target, f.sha256)
            done.append((f.file, f"downloaded from {f.url}, sha256 ok"))
        else:
            shutil.copyfile(entry.dir / f.file, target)
            if sha256_file(target) != f.sha256:  # a copy gone wrong must not look verified
                os.unlink(target)
                raise ChecksumError(f"{target}: the copy's sha256 differs from the card's; deleted")
            done.append((f.file, "copied, sha256 ok"))
    for name in (CONFIG, CARD):
        shutil.copyfile(entry.dir / name, os.path.join(dest, name))
        done.append((name, "copied"))
    return done
