"""Bounded parsers and reads: an input built to exhaust time, stack or disk is a located error,
exit 2, quickly. YAML alias bombs, YAML and prototxt nested 10,000 deep, config files over 16 MiB
(and endless ones), ``base:`` files that are not configs (never echoed back), a zoo card whose url
serves more than its ``size``. (A deeply nested sweep status.json: test_bad_files.py.)"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil

import pytest

from .util import ZOO, Box, spirals, user_error

DEPTH = 10000
QUICK = 10.0  # seconds a refusal may take


def _bomb(levels=9, width=9) -> str:
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _quick(o):
    assert o.code != "timeout" and o.seconds < QUICK, f"took {o.seconds:.1f} s\n{o}"


# ---------------------------------------------------------------------------------------- YAML
@pytest.mark.parametrize("command", ["validate", "train"])
def test_yaml_alias_bomb_is_refused_quickly(box, command):
    cfg = box.write("bomb.yaml", spirals() + "bomb:\n" + "".join("  " + ln + "\n" for ln in _bomb().splitlines()))
    args = [command, cfg] + (["--out", box.work / "run"] if command == "train" else [])
    o = box.run(args, timeout=60)
    _quick(o)
    user_error(o, r"(?i)alias|anchor|expan|too (large|big|many)", located=cfg)


def test_yaml_alias_bomb_in_a_base_file_is_refused_quickly(box):
    box.write("bomb.yaml", _bomb())
    cfg = box.write("net.yaml", "base: bomb.yaml\n" + spirals())
    o = box.run(["validate", cfg], timeout=60)
    _quick(o)
    user_error(o, r"bomb\.yaml:\d+")


def test_yaml_alias_bomb_in_a_set_value_is_refused_quickly(box):
    cfg = box.write("net.yaml", spirals())
    levels = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    for i in range(1, 9):  # each level is 9 copies of the one before: 9**9 items in all
        levels.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    value = "[" + ", ".join(levels) + "]"
    o = box.run(["validate", cfg, "--set", f"name={value}"], timeout=60)
    _quick(o)
    user_error(o, r"^--set name=")


@pytest.mark.parametrize("shape", ["flow-lists", "flow-mappings", "block-lists"])
def test_yaml_nested_10000_deep_is_refused(box, shape):
    if shape == "flow-lists":
        deep = "[" * DEPTH + "]" * DEPTH
    elif shape == "flow-mappings":
        deep = "{a: " * DEPTH + "1" + "}" * DEPTH
    else:
        deep = "\n  " + "- " * DEPTH + "1"  # a list in a list in a list...
    cfg = box.write("deep.yaml", spirals() + f"deep: {deep}\n")
    o = box.run(["validate", cfg], timeout=60)
    _quick(o)
    user_error(o, r"(?i)deep|nest", located=cfg, not_in=("RecursionError", "recursion"))


def test_yaml_nested_10000_deep_in_a_set_value_is_refused(box):
    cfg = box.write("net.yaml", spirals())
    o = box.run(["validate", cfg, "--set", "name=" + "[" * DEPTH + "]" * DEPTH], timeout=60)
    user_error(o, r"^--set name=", not_in=("RecursionError",))


# ---------------------------------------------------------------------------------------- size
def test_config_over_16_mib_is_refused(box):
    cfg = box.work / "huge.yaml"
    with open(cfg, "w") as f:
        f.write(spirals())
        line = "# " + "x" * 1000 + "\n"
        for _ in range((17 << 20) // len(line)):
            f.write(line)
    o = box.run(["validate", cfg], timeout=60)
    _quick(o)
    user_error(o, r"(?i)huge\.yaml.*(MiB|MB|bytes|too (large|big))")


@pytest.mark.parametrize("how", ["config", "base"])
def test_endless_config_file_is_refused(box, how):
    if how == "config":
        args, culprit = ["validate", "/dev/zero"], r"/dev/zero"
    else:
        cfg = box.write("net.yaml", "base: /dev/zero\n" + spirals())
        args, culprit = ["validate", cfg], r"/dev/zero"
    o = box.run(args, timeout=60)
    _quick(o)
    user_error(o, culprit)


# ------------------------------------------------------------------------------- base: non-configs
SECRET = "SECRET-TOKEN-4f1c9"


def test_base_csv_is_not_echoed(box):
    rows = "".join(f"{SECRET}-{i},{i * 0.5},{i % 3}\n" for i in range(200))
    box.write("data.csv", "id,value,label\n" + rows)
    cfg = box.write("net.yaml", "base: data.csv\n" + spirals())
    o = box.run(["validate", cfg])
    line = user_error(o, r"data\.csv", not_in=(SECRET,))
    assert len(line) < 1000, line


def test_base_etc_passwd_is_not_echoed(box):
    if not os.path.isfile("/etc/passwd"):
        pytest.skip("no /etc/passwd here")
    cfg = box.write("net.yaml", "base: /etc/passwd\n" + spirals())
    o = box.run(["validate", cfg])
    user_error(o, r"/etc/passwd", not_in=("root:", "/bin/"))


def test_base_binary_file_is_not_echoed(box):
    blob = os.urandom(4096)
    (box.work / "blob.yaml").write_bytes(blob)
    cfg = box.write("net.yaml", "base: blob.yaml\n" + spirals())
    o = box.run(["validate", cfg])
    line = user_error(o, r"blob\.yaml")
    assert len(line) < 1000, line


def test_base_that_is_a_yaml_list_of_secrets_is_not_echoed(box):
    box.write("list.yaml", "".join(f"- {SECRET}-{i}\n" for i in range(500)))
    cfg = box.write("net.yaml", "base: list.yaml\n" + spirals())
    o = box.run(["validate", cfg])
    user_error(o, r"list\.yaml", not_in=(f"{SECRET}-10",))


# ------------------------------------------------------------------------------------- prototxt
def test_prototxt_nested_10000_deep_is_refused(box):
    text = 'name: "deep"\nlayer { name: "a" type: "ReLU" ' + "x { " * DEPTH + "}" * DEPTH + " }\n"
    net = box.write("deep.prototxt", text)
    o = box.run(["import-caffe", net, "-o", box.work / "deep.yaml"], timeout=60)
    _quick(o)
    user_error(o, r"deep\.prototxt", not_in=("RecursionError",))
    assert not (box.work / "deep.yaml").exists()


def test_prototxt_list_nested_deep_is_refused(box):
    text = 'name: "deep"\ninput_shape { dim: ' + "[" * DEPTH + "1" + "]" * DEPTH + " }\n"
    net = box.write("deeplist.prototxt", text)
    o = box.run(["import-caffe", net, "-o", box.work / "deep.yaml"], timeout=60)
    user_error(o, r"deeplist\.prototxt", not_in=("RecursionError",))


# ------------------------------------------------------------------------------------ zoo urls
def _url_entry(box: Box, url: str, size: int):
    """A user-zoo copy of mlp whose weights only a url holds, the card saying ``size`` bytes."""
    entry = box.root / "zoo" / "big"
    shutil.copytree(ZOO / "mlp", entry)
    (entry / "weights.safetensors").unlink()
    card = (entry / "card.yaml").read_text().replace("name: mlp\n", "name: big\n", 1)
    start = card.index("weights:\n")
    end = card.index("build:\n")
    sha = hashlib.sha256(b"\0" * size).hexdigest()
    card = card[:start] + f"weights:\n  file: weights.safetensors\n  sha256: {sha}\n  url: {url}\n  size: {size}\n" \
        + card[end:]
    (entry / "card.yaml").write_text(card)
    return {"TFCONF_ZOO_PATH": str(box.root / "zoo")}


def _limit_file_size():
    # a fetch that ignores the card's size dies of SIGXFSZ at 64 MiB instead of filling the disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))


def _largest_file(root) -> int:
    sizes = [os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files]
    return max(sizes, default=0)


def test_zoo_url_of_dev_zero_stops_at_the_card_size(box):
    env = _url_entry(box, "file:///dev/zero", 4096)
    o = box.run(["zoo", "get", "big", box.work / "got"], env=env, timeout=60, preexec_fn=_limit_file_size,
                allowed=[box.work / "got"])
    _quick(o)
    user_error(o, r"(?i)(size|bytes|larger|bigger|more than)")
    assert _largest_file(box.root) < (1 << 20), "a big download was left on disk"
    assert not (box.work / "got" / "weights.safetensors").exists()


def test_zoo_url_of_a_big_file_stops_at_the_card_size(box):
    big = box.root / "server" / "big.safetensors"
    big.parent.mkdir()
    with open(big, "wb") as f:  # a sparse 200 MiB file: no disk used by the source
        f.truncate(200 << 20)
    env = _url_entry(box, big.as_uri(), 4096)
    o = box.run(["zoo", "get", "big", box.work / "got"], env=env, timeout=60, preexec_fn=_limit_file_size,
                allowed=[box.work / "got"])
    _quick(o)
    user_error(o, r"(?i)(size|bytes|larger|bigger|more than)")
    assert not (box.work / "got" / "weights.safetensors").exists()
    assert _largest_file(box.work) < (1 << 20), "a big download was left on disk"
