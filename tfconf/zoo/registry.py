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
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from tfconf.errors import UserError
from tfconf.registry import Registry
from tfconf.frontend.trust import ZOO_ENV, builtin_zoo, set_zoo_folders, zoo_folders

from .card import MAX_NAME, NAME as NAME_RE, CardFile, ZooCard, load_card

PREFIX = "zoo:"
ENV = ZOO_ENV
CONFIG = "model.yaml"
CARD = "card.yaml"


class ZooError(UserError, ValueError):
    """A mistake of the user's or a zoo entry that cannot be used (printed without a traceback, exit 2)."""


class ChecksumError(ZooError):
    """A shipped or downloaded file whose sha256 differs from its card's."""


#: the built-in zoo, and every zoo folder in search order (kept by :mod:`tfconf.frontend.trust`,
#: below this package, which needs them to tell configs from elsewhere)
builtin_root, search_path = builtin_zoo, zoo_folders


def set_paths(paths: Iterable[str]) -> None:
    """Zoos named on the command line (``--zoo DIR``): searched before the others."""
    paths = list(paths)
    for p in paths:
        if not os.path.isdir(p):
            raise ZooError(f"--zoo {p}: no such folder")
    set_zoo_folders(paths)


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


def _catalogue() -> Registry:
    """Every entry name → (folder, built-in?) of the entry that wins it (the first in search order)."""
    found: Registry = Registry("zoo entry")
    for name, d, builtin in _entry_dirs():
        if name not in found:
            found.add(name, (d, builtin))
    return found


def names() -> list[str]:
    return sorted(_catalogue())


def _load_entry(name, d, builtin) -> Entry:
    card = load_card(str(d / CARD))
    if card.name != name:
        raise ZooError(f"{d / CARD}: the card names {card.name!r} but its folder is {name!r}")
    if not (d / CONFIG).is_file():
        raise ZooError(f"{d}: the entry has no {CONFIG}")
    return Entry(name, d, card, builtin)





def check_name(name: str, what: str = "zoo entry name") -> str:
    """``name`` if it can be a folder name inside a zoo (or the default ``zoo get`` folder); a ZooError
    saying why not otherwise: a '/', '..', an absolute path, a NUL byte or more than 200 characters."""
    shown = repr(name if len(name) <= 60 else name[:57] + "...")
    why = None
    if not name:
        why = "it is empty"
    elif "\0" in name:
        why = "it contains a NUL byte"
    elif len(name) > MAX_NAME:
        why = f"it has {len(name)} characters (at most {MAX_NAME})"
    elif "/" in name or "\\" in name or os.path.isabs(name):
        why = "it contains a path separator (an entry is one folder of a zoo)"
    elif name in (".", "..") or not NAME_RE.match(name):
        why = "it must be letters, digits, '_', '-' or '.', starting with a letter or a digit"
    if why:
        raise ZooError(f"{PREFIX}{shown}: not a valid {what}: {why}")
    return name


def find(name: str) -> Entry:
    """The entry called ``name`` (``zoo:`` prefix allowed); a ZooError listing the known names if none."""
    if name.startswith(PREFIX):
        name = name[len(PREFIX):]
    check_name(name)
    found = _catalogue()
    if name in found:
        return _load_entry(name, *found[name])
    raise ZooError(f"zoo:{name}: no such zoo entry.{found.hint(name)} Known: {found.known()} "
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


#: the bound of a download whose card gives no size (cards that name a url must give one)
DEFAULT_MAX_DOWNLOAD = 1 << 30


def _size(n: int) -> str:
    return f"{n:,} bytes"


def fetch(url: str, dest: str, sha256: str, size: Optional[int] = None, timeout: float = 60.0) -> str:
    """Download ``url`` (file://, http://, https://) to ``dest``, checking sha256 before the file
    takes its name: a mismatch deletes the download and raises ChecksumError.

    ``size`` (the card's, in bytes) bounds the download: it stops, and the partial file is deleted, as
    soon as more bytes arrive (a ``file:///dev/zero`` url cannot fill the disk), and fewer bytes are a
    truncated download. Without a size the bound is :data:`DEFAULT_MAX_DOWNLOAD`."""
    import urllib.error
    import urllib.request

    if not url.startswith(("file://", "http://", "https://")):
        raise ZooError(f"{url}: only file://, http:// and https:// urls are fetched")
    bound = DEFAULT_MAX_DOWNLOAD if size is None else int(size)
    folder = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=folder)
        _usual_mode(fd)
    except OSError as e:
        raise ZooError(f"{folder}: cannot write the download there ({(e.strerror or str(e)).lower()})") from None
    h = hashlib.sha256()
    got_bytes = 0
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
                declared = getattr(src, "headers", None) and src.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > bound:
                    raise ZooError(f"{url}: the server announces {_size(int(declared))} but the card says "
                                   f"{_size(bound)}; nothing was downloaded")
                while True:
                    chunk = src.read(min(1 << 20, bound - got_bytes + 1))
                    if not chunk:
                        break
                    got_bytes += len(chunk)
                    if got_bytes > bound:
                        said = "the card says" if size is not None else "the limit for a card without a size is"
                        raise ZooError(f"{url}: more than {_size(bound)} arrived but {said} {_size(bound)}; "
                                       "the download was stopped and deleted")
                    h.update(chunk)
                    out.write(chunk)
        except ZooError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ZooError(f"{url}: download failed ({getattr(e, 'reason', e)})") from None
        if size is not None and got_bytes != size:
            raise ChecksumError(f"{url}: the download has {_size(got_bytes)} but the card says {_size(size)} "
                                "(truncated?); the download was deleted")
        got = h.hexdigest()
        if got != sha256:
            raise ChecksumError(f"{url}: the download's sha256 is {got} but the card says {sha256}; "
                                "the download was deleted")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _usual_mode(fd: int) -> None:
    """Give a temporary file (mkstemp makes it 0600) the mode a plain new file would have."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)


def _same_file(path: str, sha256: str) -> bool:
    return sha256_file(path) == sha256


def edited_files(entry: Entry, dest: str) -> list[str]:
    """The files of an earlier ``zoo get`` copy in ``dest`` that differ from the entry's (edited since,
    or not the entry's at all); files that are not there yet are not listed."""
    out = []
    wanted = [(f.file, f.sha256) for f in entry.card.shipped]
    wanted += [(name, sha256_file(entry.dir / name)) for name in (CONFIG, CARD)]
    for name, sha in wanted:
        target = os.path.join(dest, name)
        if os.path.islink(target) or (os.path.lexists(target) and not os.path.isfile(target)):
            out.append(name)  # a link or a folder where the file goes: never written through
        elif os.path.isfile(target) and not _same_file(target, sha):
            out.append(name)
    return out


def _copy_into(src, target: str) -> None:
    """Copy ``src`` to ``target`` through a temporary file renamed over it (a link at ``target`` is
    replaced, never written through)."""
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=folder)
    try:
        _usual_mode(fd)
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def get(entry: Entry, dest: str, force: bool = False) -> list[tuple[str, str]]:
    """Copy the entry (config, card, shipped files) into ``dest`` for editing; files not here are
    fetched from their url (bounded by the card's size). Every file is verified. Returns (file, how) pairs.

    Over an earlier copy: unedited files are left as they are; a file that differs from the entry's
    (edited since) is a ZooError naming it, unless ``force``, which replaces it."""
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise ZooError(f"{dest}: exists and is not a folder; `tfconf zoo get {entry.name} DIR` copies into a folder")
    names = [f.file for f in entry.card.shipped] + [CONFIG, CARD]
    folders = [n for n in names if os.path.isdir(os.path.join(dest, n)) and not os.path.islink(os.path.join(dest, n))]
    if folders:
        raise ZooError(f"{os.path.join(dest, folders[0])}: is a folder where zoo:{entry.name}'s file goes; move it "
                       "away or get into another folder")
    edited = edited_files(entry, dest) if os.path.isdir(dest) else []
    if edited and not force:
        first = os.path.join(dest, edited[0])
        more = f" (and {', '.join(edited[1:])})" if len(edited) > 1 else ""
        raise ZooError(f"{first}{more}: differs from zoo:{entry.name}'s copy (edited since `zoo get`?); "
                       f"refusing to overwrite it. Move it away, get into another folder, or pass --force "
                       f"to replace it")
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as e:
        raise ZooError(f"{dest}: cannot create the folder ({(e.strerror or str(e)).lower()})") from None
    done = []

    def note(name: str, how: str) -> None:
        done.append((name, how + (" (replaced your edited copy: --force)" if name in edited else "")))

    for f in entry.card.shipped:
        target = os.path.join(dest, f.file)
        if f.file not in edited and os.path.isfile(target) and not os.path.islink(target):
            note(f.file, "already there, sha256 ok")  # an unedited earlier copy (verified by edited_files)
            continue
        if check_file(entry, f) == "remote":
            fetch(f.url, target, f.sha256, size=f.size)
            note(f.file, f"downloaded from {f.url}, sha256 ok")
        else:
            _copy_into(entry.dir / f.file, target)
            if sha256_file(target) != f.sha256:  # a copy gone wrong must not look verified
                os.unlink(target)
                raise ChecksumError(f"{target}: the copy's sha256 differs from the card's; deleted")
            note(f.file, "copied, sha256 ok")
    for name in (CONFIG, CARD):
        _copy_into(entry.dir / name, os.path.join(dest, name))
        note(name, "copied")
    return done
