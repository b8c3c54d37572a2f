"""Helpers of the reliability corpus: every case runs the real ``tfconf`` executable in a sandbox
folder and checks what a user would see (the exit code, one message naming the culprit, never a
traceback) and what a user would lose (no file outside the allowed run folder changed).

A :class:`Box` is a temporary folder laid out as::

    TMP/work/        the command's working directory (configs are written here)
    TMP/sentinel/    files nothing may touch (a sibling a bad path could reach with '..')
    TMP/home/        $HOME of the command
    TMP/tmp/         $TMPDIR of the command (a temp file left behind is a change too)
    TMP/pylib/       on PYTHONPATH: the Python-layer modules of the trust cases

``box.run(args, allowed=[...])`` hashes the whole TMP tree (and lists the repository's model zoo)
before and after the command; :attr:`Outcome.changed` is every path that appeared, vanished or
changed outside ``allowed``."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.cli.util import ENV, REPO, SLOW, SPIRALS, complete_snapshots, wait_for  # noqa: F401

TFCONF = [sys.executable, "-m", "tfconf.cli"]
ZOO = REPO / "model_zoo"
_DROP = ("TFCONF_TRUST_PYTHON", "TFCONF_ZOO_PATH", "TFCONF_TRACEBACK", "PYTHONPATH")
BASE_ENV = {k: v for k, v in ENV.items() if k not in _DROP}
BASE_ENV["PYTHONDONTWRITEBYTECODE"] = "1"

#: "file:line:col: ..." (what a located config error looks like)
LOCATED = r"^{file}:\d+(:\d+)?: "
HASH_LIMIT = 4 << 20  # files bigger than this are compared by size and mtime only


# ------------------------------------------------------------------------------------------ trees
def tree_state(*roots) -> dict:
    """path → fingerprint of every file, folder and link under ``roots`` (missing roots: nothing)."""
    out = {}
    for root in roots:
        root = str(root)
        if not os.path.lexists(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            out[dirpath] = ("dir",)
            for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                out[os.path.join(dirpath, name)] = _fingerprint(os.path.join(dirpath, name))
    return out


def _fingerprint(path):
    try:
        st = os.lstat(path)
    except OSError:
        return ("gone",)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if not stat.S_ISREG(st.st_mode):
        return ("special", stat.S_IFMT(st.st_mode))
    if st.st_size > HASH_LIMIT:
        return ("big", st.st_size, st.st_mtime_ns)
    try:
        with open(path, "rb") as f:
            return ("file", st.st_size, hashlib.sha256(f.read()).hexdigest())
    except OSError:
        return ("unreadable", st.st_size, st.st_mtime_ns)


def diff_states(before: dict, after: dict, allowed=()) -> list[str]:
    allowed = [os.path.abspath(str(a)) for a in allowed]
    changed = sorted((set(before) ^ set(after)) | {k for k in set(before) & set(after) if before[k] != after[k]})

    def inside(p):
        return any(p == a or p.startswith(a.rstrip(os.sep) + os.sep) for a in allowed)

    return [p for p in changed if not inside(p)]


# ------------------------------------------------------------------------------------------ runs
@dataclasses.dataclass
class Outcome:
    args: list
    code: int
    out: str
    err: str
    changed: list
    seconds: float

    def __str__(self):
        return (f"$ tfconf {' '.join(map(str, self.args))}\nexit {self.code} after {self.seconds:.1f} s\n"
                f"--- stdout\n{self.out[-2500:]}\n--- stderr\n{self.err[-4000:]}\n"
                f"--- changed outside the allowed folders\n{self.changed[:20]}")

    @property
    def lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.strip()]


class Box:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.work = self.root / "work"
        self.sentinel = self.root / "sentinel"
        self.home = self.root / "home"
        self.tmp = self.root / "tmp"
        self.pylib = self.root / "pylib"
        for d in (self.work, self.sentinel / "deep", self.home, self.tmp, self.pylib):
            d.mkdir(parents=True, exist_ok=True)
        (self.sentinel / "notes.txt").write_text("do not touch\n")
        (self.sentinel / "deep" / "data.bin").write_bytes(bytes(range(256)) * 4)
        (self.home / ".profile").write_text("# home\n")
        # the Python-layer modules, then this checkout's tfconf (what the tests test), then the caller's path
        path = [str(self.pylib), str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self.env = {**BASE_ENV, "HOME": str(self.home), "TMPDIR": str(self.tmp), "PYTHONPATH": os.pathsep.join(path)}
        self.watch = [self.root, ZOO]

    # files ------------------------------------------------------------------------------------
    def write(self, name: str, text: str | bytes) -> Path:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def module(self, name: str, text: str) -> Path:
        path = self.pylib / f"{name}.py"
        path.write_text(text)
        return path

    def state(self) -> dict:
        return tree_state(*self.watch)

    # commands ---------------------------------------------------------------------------------
    def run(self, args, allowed=(), timeout=90, env=None, prefix=(), cwd=None, **kw) -> Outcome:
        """``tfconf ARGS`` as a real process in ``work/``; ``prefix`` wraps it (``unshare ...``)."""
        args = [str(a) for a in args]
        environ = {**self.env, **(env or {})}
        environ = {k: v for k, v in environ.items() if v is not None}
        before = self.state()
        t0 = time.monotonic()
        try:
            p = subprocess.run([*prefix, *TFCONF, *args], cwd=cwd or self.work, env=environ,
                               capture_output=True, text=True, errors="replace", timeout=timeout, **kw)
            code, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            code = "timeout"
            out = (e.stdout or b"").decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = (e.stderr or b"").decode("utf-8", "replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        seconds = time.monotonic() - t0
        changed = diff_states(before, self.state(), allowed)
        return Outcome(args, code, out, err, changed, seconds)

    def popen(self, args, stdout=None, env=None):
        environ = {**self.env, **(env or {})}
        return subprocess.Popen([*TFCONF, *map(str, args)], cwd=self.work, env=environ, text=True,
                                stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE)


# ------------------------------------------------------------------------------------------ checks
def user_error(o: Outcome, culprit: str, *, one_line: bool = True, located: str | None = None,
               not_in: tuple = ()) -> str:
    """Exit code 2, no traceback, no numpy warning, one line on stderr that matches ``culprit``
    (a regex), nothing changed outside the allowed folders. Returns the error line."""
    assert o.code == 2, str(o)
    assert "Traceback" not in o.err and "Traceback" not in o.out, str(o)
    assert "RuntimeWarning" not in o.err, str(o)
    assert o.lines, f"no message on stderr\n{o}"
    if one_line:
        assert len(o.lines) == 1, f"expected one line on stderr\n{o}"
    assert re.search(culprit, o.err), f"{culprit!r} is not in the message\n{o}"
    if located is not None:
        assert re.search(LOCATED.format(file=re.escape(str(located))), o.lines[-1]), \
            f"the message is not located at {located}:LINE\n{o}"
    for text in not_in:
        assert text not in o.err, f"{text!r} must not be in the message\n{o}"
    assert not o.changed, f"files changed outside the allowed folders\n{o}"
    return o.lines[-1]


def success(o: Outcome) -> Outcome:
    assert o.code == 0, str(o)
    assert "Traceback" not in o.err, str(o)
    assert "RuntimeWarning" not in o.err, str(o)
    assert not o.changed, f"files changed outside the allowed folders\n{o}"
    return o


def no_traceback(o: Outcome):
    assert "Traceback" not in o.err and "Traceback" not in o.out, str(o)
    assert "RecursionError" not in o.err, str(o)


# ------------------------------------------------------------------------------------------ configs
def spirals(name: str = "tiny", data: str | None = None, layers_extra: str = "", solver_extra: str = "",
            max_iter: int = 40, snapshot: int = 10, test: bool = True) -> str:
    """The spirals MLP of tests/cli/util.py with a few knobs."""
    text = SPIRALS.replace("name: tiny\n", f"name: {name}\n")
    text = text.replace("max_iter: 40", f"max_iter: {max_iter}").replace("snapshot: 10", f"snapshot: {snapshot}")
    if data is not None:
        start, end = text.index("data:\n"), text.index("layers:\n")
        text = text[:start] + data + text[end:]
    if layers_extra:
        text = text.replace("  - {name: loss,", layers_extra + "  - {name: loss,")
    if not test:
        text = text.replace("  test: {source: spirals, num_samples: 100, batch_size: 50}\n", "")
        text = text.replace("  - {name: accuracy, type: Accuracy, bottom: [ip2, label], include: {phase: test}}\n", "")
        text = text.replace("  test_interval: 10\n  test_iter: 2\n", "")
    return text + solver_extra


def python_layer_config(module: str, layer: str, params: str = "{}", name: str = "py") -> str:
    """The spirals MLP with a ``type: Python`` layer after ip1."""
    line = f"  - {{name: {name}, type: Python, bottom: ip1, module: {module}, layer: {layer}, params: {params}}}\n"
    text = SPIRALS.replace("  - {name: relu1, type: ReLU}\n", line + "  - {name: relu1, type: ReLU}\n")
    return text


TIMES_TWO = """\
import tfconf as tc

class TimesTwo(tc.PythonLayer):
    def build(self, bottoms):
        return bottoms[0] * 2.0
"""


def side_effect_module(marker: Path, body: str = TIMES_TWO) -> str:
    """A module that writes ``marker`` when it is imported (then defines a proper layer)."""
    return f"open({str(marker)!r}, 'w').write('imported')\n" + body


def set_origin_url(path: Path, url: str = "https://example.org/downloads/net.yaml") -> bool:
    """Mark ``path`` as downloaded (what browsers, wget and curl --xattr do); False if the file
    system keeps no user xattrs."""
    try:
        os.setxattr(path, "user.xdg.origin.url", url.encode())
        return os.getxattr(path, "user.xdg.origin.url") == url.encode()
    except (OSError, AttributeError):
        return False


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def can_unshare_mount(tmp: Path) -> bool:
    """Whether ``unshare -m`` may mount a tmpfs here (root in a machine that allows it)."""
    if shutil.which("unshare") is None:
        return False
    target = tmp / "probe-mount"
    target.mkdir(exist_ok=True)
    try:
        p = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {target}"],
                           capture_output=True, timeout=20)
        return p.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        target.rmdir()


def mounted(target: Path, options: str) -> list[str]:
    """A command prefix running tfconf with a fresh tmpfs (``options``: ro, size=...) at ``target``."""
    script = f'mount -t tmpfs -o {options} tmpfs "{target}" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "tfconf-mount"]


def train_ok(box: Box, cfg, out: Path, *extra) -> Outcome:
    """A training that must succeed, writing only into ``out``."""
    return success(box.run(["train", cfg, "--out", out, "-q", *extra], allowed=[out]))


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
