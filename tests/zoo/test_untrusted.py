"""Hostile zoo entries and copies: a download is bounded by the card's size, entry and file names
cannot leave their folder, and `zoo get` never overwrites an edited copy without --force."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from tests.cli.util import one_error_line
from tfconf.zoo import registry

from .util import ZOO, copy_entry, run_env

WEIGHTS = ZOO / "mlp" / "weights.safetensors"


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ------------------------------------------------------------------------------------------------ fetch


def test_dev_zero_stops_at_the_cards_size(tmp_path):
    dest = tmp_path / "w.safetensors"
    with pytest.raises(registry.ZooError, match=r"^file:///dev/zero: more than 1,000 bytes arrived but the card "
                                                r"says 1,000 bytes; the download was stopped and deleted$"):
        registry.fetch("file:///dev/zero", str(dest), "0" * 64, size=1000)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial download


def test_without_a_size_the_default_bound_applies(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "DEFAULT_MAX_DOWNLOAD", 4096)
    with pytest.raises(registry.ZooError, match="more than 4,096 bytes arrived but the limit for a card without a size is 4,096 bytes"):
        registry.fetch("file:///dev/zero", str(tmp_path / "w"), "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_a_short_download_is_refused(tmp_path):
    size = os.path.getsize(WEIGHTS)
    with pytest.raises(registry.ChecksumError, match=r"the download has 814,464 bytes but the card says "
                                                     r"1,048,576 bytes \(truncated\?\); the download was deleted"):
        registry.fetch(WEIGHTS.as_uri(), str(tmp_path / "w"), _sha(WEIGHTS), size=1 << 20)
    assert list(tmp_path.iterdir()) == []
    registry.fetch(WEIGHTS.as_uri(), str(tmp_path / "w"), _sha(WEIGHTS), size=size)
    assert (tmp_path / "w").read_bytes() == WEIGHTS.read_bytes()


def _remote(tmp_path, url: str, size: int | None):
    entry = copy_entry("mlp", tmp_path / "zoo", as_name="mlp_remote")
    os.unlink(entry / "weights.safetensors")
    card = entry / "card.yaml"
    text = card.read_text().replace(f"  size: {os.path.getsize(WEIGHTS)}\n", "")
    extra = f"  url: {url}\n" + (f"  size: {size}\n" if size is not None else "")
    card.write_text(text.replace(f"  sha256: {_sha(WEIGHTS)}\n", f"  sha256: {_sha(WEIGHTS)}\n{extra}"))
    return {"TFCONF_ZOO_PATH": str(tmp_path / "zoo")}


def test_cli_zoo_get_of_dev_zero_does_not_fill_the_disk(tmp_path):
    env = _remote(tmp_path, "file:///dev/zero", 100_000)
    r = run_env(["zoo", "get", "mlp_remote", tmp_path / "got"], env)
    assert r.returncode == 2
    assert one_error_line(r.stderr) == ("error: file:///dev/zero: more than 100,000 bytes arrived but the card "
                                        "says 100,000 bytes; the download was stopped and deleted")
    assert list((tmp_path / "got").iterdir()) == []


def test_a_card_with_a_url_needs_a_size(tmp_path):
    env = _remote(tmp_path, "file:///dev/zero", None)
    r = run_env(["zoo", "get", "mlp_remote", tmp_path / "got"], env)
    assert r.returncode == 2
    line = one_error_line(r.stderr)
    assert line.startswith(str(tmp_path / "zoo" / "mlp_remote" / "card.yaml") + ":") and \
        "weights.size: a file fetched from a url needs its size in bytes" in line
    assert not (tmp_path / "got").exists()


# ------------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("name, why", [
    ("../x", "it contains a path separator"),
    ("a/b", "it contains a path separator"),
    ("/etc", "it contains a path separator"),
    ("..", "it must be letters, digits"),
    (".hidden", "it must be letters, digits"),
    ("a\0b", "it contains a NUL byte"),
    ("x" * 201, "it has 201 characters (at most 200)"),
    ("", "it is empty"),
])
def test_bad_entry_names(name, why):
    with pytest.raises(registry.ZooError, match="not a valid zoo entry name: " + why.replace("(", r"\(")
                       .replace(")", r"\)")) as info:
        registry.find(name)
    assert len(str(info.value)) < 200


def test_cli_zoo_get_with_a_traversal_name_writes_nothing(tmp_path):
    r = run_env(["zoo", "get", "../../escape"], cwd=tmp_path)
    assert r.returncode == 2
    assert one_error_line(r.stderr) == ("error: zoo:'../../escape': not a valid zoo entry name: it contains a path "
                                        "separator (an entry is one folder of a zoo)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["a\\b.json", "x" * 201 + ".json"])
def test_card_file_names_are_plain(tmp_path, bad):
    entry = copy_entry("char_lstm", tmp_path / "zoo")
    card = entry / "card.yaml"
    card.write_text(card.read_text().replace("file: vocab.json", f"file: '{bad}'"))
    r = run_env(["zoo", "verify", "char_lstm"], {"TFCONF_ZOO_PATH": str(tmp_path / "zoo")})
    assert r.returncode == 2 and "files[0].file: must be a file name in the entry's folder" in r.stderr


# -------------------------------------------------------------------------------------- get over a copy


def test_get_again_over_an_unedited_copy_is_silent(tmp_path):
    entry = registry.find("mlp")
    registry.get(entry, str(tmp_path / "c"))
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "c").iterdir()}
    done = dict(registry.get(entry, str(tmp_path / "c")))
    assert done["weights.safetensors"] == "already there, sha256 ok"
    assert (tmp_path / "c" / "weights.safetensors").stat().st_mtime_ns == before["weights.safetensors"]
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(before)  # no temporary files left


@pytest.mark.parametrize("edited", ["model.yaml", "card.yaml", "weights.safetensors"])
def test_get_over_an_edited_copy_refuses_then_force_replaces(tmp_path, edited):
    entry = registry.find("mlp")
    dest = tmp_path / "c"
    registry.get(entry, str(dest))
    with open(dest / edited, "ab") as f:
        f.write(b"\n# mine\n")
    mine = (dest / edited).read_bytes()
    with pytest.raises(registry.ZooError, match=rf"^{dest / edited}: differs from zoo:mlp's copy \(edited since "
                                                r"`zoo get`\?\); refusing to overwrite it\. .*--force"):
        registry.get(entry, str(dest))
    assert (dest / edited).read_bytes() == mine
    done = dict(registry.get(entry, str(dest), force=True))
    assert done[edited].endswith("(replaced your edited copy: --force)")
    assert _sha(dest / edited) == _sha(entry.dir / edited)


def test_cli_zoo_get_force(tmp_path):
    dest = tmp_path / "c"
    assert run_env(["zoo", "get", "mlp", dest]).returncode == 0
    (dest / "model.yaml").write_text("name: edited\n")
    r = run_env(["zoo", "get", "mlp", dest])
    assert r.returncode == 2 and one_error_line(r.stderr).startswith(f"error: {dest / 'model.yaml'}: differs from")
    assert (dest / "model.yaml").read_text() == "name: edited\n"
    r = run_env(["zoo", "get", "mlp", dest, "--force"])
    assert r.returncode == 0, r.stderr
    assert "model.yaml: copied (replaced your edited copy: --force)" in r.stdout
    assert (dest / "model.yaml").read_bytes() == (ZOO / "mlp" / "model.yaml").read_bytes()


def test_a_link_in_the_copy_is_replaced_not_written_through(tmp_path):
    entry = registry.find("mlp")
    dest = tmp_path / "c"
    registry.get(entry, str(dest))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.unlink(dest / "card.yaml")
    os.symlink(victim, dest / "card.yaml")
    with pytest.raises(registry.ZooError, match="card.yaml: differs from"):
        registry.get(entry, str(dest))
    registry.get(entry, str(dest), force=True)
    assert victim.read_text() == "keep me"
    assert not os.path.islink(dest / "card.yaml")
    assert (dest / "card.yaml").read_bytes() == (entry.dir / "card.yaml").read_bytes()


def test_a_folder_where_a_file_goes(tmp_path):
    entry = registry.find("mlp")
    (tmp_path / "c" / "model.yaml").mkdir(parents=True)
    (tmp_path / "c" / "model.yaml" / "mine").write_text("x")
    for force in (False, True):
        with pytest.raises(registry.ZooError, match="model.yaml: is a folder where zoo:mlp's file goes"):
            registry.get(entry, str(tmp_path / "c"), force=force)
    assert (tmp_path / "c" / "model.yaml" / "mine").read_text() == "x"
    (tmp_path / "file").write_text("x")
    with pytest.raises(registry.ZooError, match="exists and is not a folder"):
        registry.get(entry, str(tmp_path / "file"))


def test_copies_get_the_usual_file_mode(tmp_path):
    registry.get(registry.find("mlp"), str(tmp_path / "c"))
    mask = os.umask(0)
    os.umask(mask)
    for p in (tmp_path / "c").iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask, p
    shutil.rmtree(tmp_path / "c")
