"""Every OS error is one line naming the path, exit 2, never a traceback: an --out under a
read-only folder or on a full disk, through a regular file, a name too long, a config without read
permission, a directory (or a FIFO) given as the config, output files of draw/schema/import-caffe
that cannot be written. Read-only and full disks are small tmpfs mounts inside ``unshare -m`` (as
root); permission cases need a user that permissions apply to (skipped as root)."""

from __future__ import annotations

import os
import re
import stat

import pytest

from .util import Box, can_unshare_mount, is_root, mounted, spirals, user_error


@pytest.fixture
def cfg(box):
    return box.write("net.yaml", spirals())


# ------------------------------------------------------------------------------------- --out
def test_out_under_a_read_only_folder(box, cfg):
    ro = box.root / "ro"
    ro.mkdir()
    if is_root():
        if not can_unshare_mount(box.root):
            pytest.skip("as root, a read-only folder needs a tmpfs mounted with unshare -m")
        o = box.run(["train", cfg, "--out", ro / "run", "-q"], prefix=mounted(ro, "ro,size=64k"))
    else:
        ro.chmod(0o555)
        try:
            o = box.run(["train", cfg, "--out", ro / "run", "-q"])
        finally:
            ro.chmod(0o755)
    user_error(o, re.escape(str(ro)) + r".*(?i:read-only|permission)")


def test_out_on_a_full_disk(box, cfg):
    full = box.root / "full"
    full.mkdir()
    if not can_unshare_mount(box.root):
        pytest.skip("a full disk needs a tmpfs mounted with unshare -m (as root)")
    o = box.run(["train", cfg, "--out", full / "run", "-q", "--max-iter", "400", "--set", "solver.snapshot=1"],
                prefix=mounted(full, "size=16k"))
    user_error(o, re.escape(str(full / "run")) + r".*(?i:disk is full|no space)")


def test_out_through_a_regular_file(box, cfg):
    (box.work / "plain.txt").write_text("a file, not a folder\n")
    o = box.run(["train", cfg, "--out", box.work / "plain.txt" / "run", "-q"])
    user_error(o, r"plain\.txt.*(?i:not a (directory|folder))")


def test_out_that_is_a_regular_file(box, cfg):
    (box.work / "plain.txt").write_text("a file, not a folder\n")
    o = box.run(["train", cfg, "--out", box.work / "plain.txt", "-q"])
    user_error(o, r"plain\.txt")
    assert (box.work / "plain.txt").read_text() == "a file, not a folder\n"


def test_out_name_too_long(box, cfg):
    o = box.run(["train", cfg, "--out", box.work / ("r" * 300), "-q"])
    user_error(o, r"r{20}.*(?i:too long)|(?i:too long).*r{20}")


# ------------------------------------------------------------------------------------- configs
def test_config_without_read_permission(box, cfg):
    if is_root():
        pytest.skip("root reads files without read permission")
    os.chmod(cfg, 0)
    try:
        o = box.run(["validate", cfg])
    finally:
        os.chmod(cfg, 0o644)
    user_error(o, r"net\.yaml.*(?i:permission)")


@pytest.mark.parametrize("command", ["validate", "train", "test", "time", "draw"])
def test_directory_given_as_the_config(box, command):
    folder = box.work / "configs"
    folder.mkdir()
    extra = {"train": ["--out", box.work / "run"], "test": ["--weights", box.work / "w.safetensors"],
             "time": [], "draw": ["-o", box.work / "net.dot"], "validate": []}[command]
    o = box.run([command, folder, *extra])
    user_error(o, r"configs.*(?i:directory|folder)")


def test_fifo_given_as_the_config_does_not_hang(box):
    fifo = box.work / "net.yaml"
    os.mkfifo(fifo)
    o = box.run(["validate", fifo], timeout=8)
    assert o.code != "timeout", "validate blocked reading a FIFO"
    user_error(o, r"net\.yaml")


def test_config_that_is_not_utf8(box):
    cfg = box.write("latin1.yaml", spirals().replace("name: tiny", "name: caf\xe9").encode("latin-1"))
    user_error(box.run(["validate", cfg]), r"(?i)utf-8", located=cfg)


def test_empty_config_file(box):
    cfg = box.write("empty.yaml", "")
    user_error(box.run(["train", cfg, "--out", box.work / "run"]), r"empty\.yaml")


# ------------------------------------------------------------------------------- other outputs
def test_draw_into_a_missing_folder(box, cfg):
    o = box.run(["draw", cfg, "-o", box.work / "no" / "such" / "net.dot"])
    user_error(o, r"no/such")


def test_draw_through_a_regular_file(box, cfg):
    (box.work / "plain.txt").write_text("x\n")
    o = box.run(["draw", cfg, "-o", box.work / "plain.txt" / "net.dot"])
    user_error(o, r"plain\.txt")


def test_schema_into_a_directory(box):
    (box.work / "schema.json").mkdir()
    o = box.run(["schema", "-o", box.work / "schema.json"])
    user_error(o, r"schema\.json")


def test_import_caffe_output_through_a_regular_file(box):
    net = box.write("net.prototxt", 'name: "n"\ninput: "data"\ninput_shape { dim: 1 dim: 2 }\n'
                    'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                    'inner_product_param { num_output: 2 } }\n')
    (box.work / "plain.txt").write_text("x\n")
    o = box.run(["import-caffe", net, "-o", box.work / "plain.txt" / "net.yaml"])
    user_error(o, r"plain\.txt")


def test_import_caffe_of_a_binary_file(box):
    net = box.write("random.prototxt", os.urandom(2000))
    user_error(box.run(["import-caffe", net]), r"random\.prototxt")


def test_import_caffe_with_a_truncated_caffemodel(box):
    net = box.write("net.prototxt", 'name: "n"\ninput: "data"\ninput_shape { dim: 1 dim: 2 }\n'
                    'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                    'inner_product_param { num_output: 2 } }\n')
    model = box.write("net.caffemodel", b"\x0a\x05lenet\x12\xff\xff\xff\x0f\x0a\x03ip")
    o = box.run(["import-caffe", net, "--weights", model, "-o", box.work / "out.yaml"])
    user_error(o, r"net\.caffemodel")
    assert not (box.work / "out.yaml").exists()


def test_data_source_that_is_a_folder_named_npz(box):
    (box.work / "d.npz").mkdir()
    cfg = box.write("net.yaml", spirals(data="data:\n  train: {source: d.npz, batch_size: 16}\n", test=False))
    user_error(box.run(["validate", cfg]), r"d\.npz", located=cfg)


def test_special_file_as_data_source(box):
    if not stat.S_ISCHR(os.stat("/dev/zero").st_mode):
        pytest.skip("no /dev/zero")
    cfg = box.write("net.yaml", spirals(data="data:\n  train: {source: /dev/zero, format: npz, batch_size: 16}\n",
                                        test=False))
    o = box.run(["validate", cfg], timeout=60)
    assert o.code != "timeout", "reading /dev/zero as data did not stop"
    user_error(o, r"/dev/zero")
