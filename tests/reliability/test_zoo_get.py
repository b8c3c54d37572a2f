"""``tfconf zoo get NAME DIR`` over a copy whose files were edited refuses (exit 2, naming the
edited file, nothing changed) instead of overwriting the user's work; ``--force`` overwrites."""

from __future__ import annotations

import pytest

from .util import ZOO, diff_states, success, tree_state, user_error


@pytest.fixture
def got(box):
    dest = box.work / "mlp"
    success(box.run(["zoo", "get", "mlp", dest], allowed=[dest]))
    assert (dest / "model.yaml").read_bytes() == (ZOO / "mlp" / "model.yaml").read_bytes()
    return dest


def _edit(dest, name):
    path = dest / name
    if name.endswith(".safetensors"):
        data = bytearray(path.read_bytes())
        data[-10] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_text(path.read_text() + "# my own change\n")
    return path


@pytest.mark.parametrize("name", ["model.yaml", "card.yaml", "weights.safetensors"])
def test_zoo_get_over_an_edited_copy_refuses(box, got, name):
    edited = _edit(got, name)
    mine = edited.read_bytes()
    before = tree_state(got)
    o = box.run(["zoo", "get", "mlp", got])
    user_error(o, name)
    assert edited.read_bytes() == mine, "the user's edit was overwritten"
    assert not diff_states(before, tree_state(got))


def test_zoo_get_force_overwrites_an_edited_copy(box, got):
    edited = _edit(got, "model.yaml")
    success(box.run(["zoo", "get", "mlp", got, "--force"], allowed=[got]))
    assert edited.read_bytes() == (ZOO / "mlp" / "model.yaml").read_bytes()


def test_zoo_get_into_a_folder_of_other_files_keeps_them(box):
    dest = box.work / "mine"
    dest.mkdir()
    (dest / "model.yaml").write_text("name: my_own_work\n")
    o = box.run(["zoo", "get", "mlp", dest])
    user_error(o, "model.yaml")
    assert (dest / "model.yaml").read_text() == "name: my_own_work\n"
