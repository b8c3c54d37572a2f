"""Weights named by a url are fetched only by `zoo get`, verified by sha256 before they take their
name; a mismatch deletes the download. Tested offline with file:// urls."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from tfconf.zoo import registry

from .util import ZOO, copy_entry, run_env


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_file_url(tmp_path):
    src = ZOO / "mlp" / "weights.safetensors"
    dest = tmp_path / "out" / "w.safetensors"
    registry.fetch(src.as_uri(), str(dest), _sha(src))
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["w.safetensors"]


def test_fetch_mismatch_deletes_the_download(tmp_path):
    src = ZOO / "mlp" / "weights.safetensors"
    dest = tmp_path / "w.safetensors"
    with pytest.raises(registry.ChecksumError, match="the download was deleted"):
        registry.fetch(src.as_uri(), str(dest), "0" * 64)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial download


def test_fetch_errors(tmp_path):
    with pytest.raises(registry.ZooError, match="download failed"):
        registry.fetch((tmp_path / "nothing").as_uri(), str(tmp_path / "w"), "0" * 64)
    with pytest.raises(registry.ZooError, match="only file://"):
        registry.fetch("ftp://example.org/w", str(tmp_path / "w"), "0" * 64)
    assert list(tmp_path.iterdir()) == []


def _remote_entry(tmp_path, sha=None):
    """A user-zoo copy of mlp whose weights live elsewhere, named by a file:// url in its card."""
    entry = copy_entry("mlp", tmp_path / "zoo", as_name="mlp_remote")
    store = tmp_path / "server"
    store.mkdir()
    shutil.move(entry / "weights.safetensors", store / "mlp.safetensors")
    card = entry / "card.yaml"
    text = card.read_text()
    real = _sha(store / "mlp.safetensors")
    text = text.replace(f"  sha256: {real}\n", f"  sha256: {sha or real}\n  url: {(store / 'mlp.safetensors').as_uri()}\n")
    card.write_text(text)
    return entry, store / "mlp.safetensors", {"TFCONF_ZOO_PATH": str(tmp_path / "zoo")}


def test_zoo_get_downloads_and_verifies(tmp_path):
    entry, served, env = _remote_entry(tmp_path)
    r = run_env(["zoo", "verify", "mlp_remote"], env)
    assert r.returncode == 0 and "not here (fetched by `tfconf zoo get`" in r.stdout
    r = run_env(["test", "zoo:mlp_remote"], env)
    assert r.returncode == 2 and "zoo get mlp_remote" in r.stderr
    r = run_env(["zoo", "list"], env)
    assert any(ln.startswith("mlp_remote") and ln.split()[-2] == "url" for ln in r.stdout.splitlines())
    r = run_env(["zoo", "get", "mlp_remote", tmp_path / "got"], env)
    assert r.returncode == 0, r.stderr
    assert f"downloaded from {served.as_uri()}, sha256 ok" in r.stdout
    assert (tmp_path / "got" / "weights.safetensors").read_bytes() == served.read_bytes()
    r = run_env(["test", tmp_path / "got" / "model.yaml", "--weights", tmp_path / "got" / "weights.safetensors"], env)
    assert r.returncode == 0, r.stderr


def test_zoo_get_with_a_wrong_checksum_deletes_and_says_so(tmp_path):
    entry, served, env = _remote_entry(tmp_path, sha="ab" * 32)
    r = run_env(["zoo", "get", "mlp_remote", tmp_path / "got"], env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "the download was deleted" in r.stderr and "ab" * 32 in r.stderr
    assert not (tmp_path / "got" / "weights.safetensors").exists()
    assert [p.name for p in (tmp_path / "got").iterdir()] == []
