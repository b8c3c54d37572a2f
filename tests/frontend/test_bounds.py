"""Hostile and faulty config files: every read is bounded (aliases, nesting, size, base chains) and
every fault is a located ConfigError, never a hang, a RecursionError or the file's contents echoed."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli.util import LOCATED, one_error_line, run
from tfconf.frontend import ConfigError, load_config, load_config_string
from tfconf.frontend import located_yaml  # (the reading limits live there)

SECRET = "s3cr3t-token-do-not-print"


def _error(fn, *args, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kw)
    lines = info.value.lines
    assert len(lines) == 1, lines
    return lines[0]


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# aliases


def test_an_alias_bomb_fails_fast_and_located():
    start = time.perf_counter()
    line = _error(load_config_string, _bomb(), "bomb.yaml")
    assert time.perf_counter() - start < 2.0
    assert line.startswith("bomb.yaml:") and LOCATED.match(line)
    assert "expands to more than 1,000,000 values" in line and "alias bomb" in line


def test_a_small_alias_expansion_still_works():
    data = load_config_string(_bomb(levels=2, width=3), "ok.yaml").data
    assert len(data["a2"]) == 3 and data["a2"][0] == data["a1"] and len(data["a1"][0]) == 9


def test_too_many_aliases(monkeypatch):
    monkeypatch.setattr(located_yaml, "MAX_ALIASES", 50)
    text = "a: &x 1\nb: [" + ", ".join(["*x"] * 51) + "]\n"
    line = _error(load_config_string, text, "many.yaml")
    assert line.startswith("many.yaml:2:") and "more than 50 YAML aliases" in line
    load_config_string("a: &x 1\nb: [" + ", ".join(["*x"] * 49) + "]\n")


def test_a_recursive_alias_is_an_error():
    line = _error(load_config_string, "a: &x [1, *x]\n", "rec.yaml")
    assert line.startswith("rec.yaml:1:4") and "recursive YAML alias" in line


# ---------------------------------------------------------------------------------------------------
# nesting


@pytest.mark.parametrize("text", [
    "x: " + "[" * 10000 + "]" * 10000,
    "x: " + "{a: " * 5000 + "1" + "}" * 5000,
    "".join("  " * i + "k:\n" for i in range(3000)) + "  " * 3000 + "v: 1\n",
    "- " * 5000 + "1\n",
], ids=["flow-lists", "flow-mappings", "block-mappings", "block-lists"])
def test_deep_nesting_is_located_not_a_recursion_error(text):
    line = _error(load_config_string, text, "deep.yaml")
    assert line.startswith("deep.yaml:") and "nested more than 100 levels deep" in line


def test_nesting_up_to_the_bound_is_fine():
    # the root mapping, 98 lists and the value: 100 levels
    text = "x: " + "[" * 98 + "1" + "]" * 98
    node = load_config_string(text).data["x"]
    for _ in range(97):
        node = node[0]
    assert node == [1]
    with pytest.raises(ConfigError, match="nested more than 100 levels"):
        load_config_string("x: " + "[" * 99 + "1" + "]" * 99)


def test_aliases_cannot_nest_deeper_than_the_bound():
    # each file level stays shallow, but every anchor nests the previous one 60 levels deeper
    lines = ["a0: &a0 " + "[" * 60 + "1" + "]" * 60]
    lines += [f"a{i}: &a{i} " + "[" * 59 + f"*a{i - 1}" + "]" * 59 for i in range(1, 40)]
    line = _error(load_config_string, "\n".join(lines) + "\n", "chain.yaml")
    assert line.startswith("chain.yaml:") and "counting what aliases name" in line


# ---------------------------------------------------------------------------------------------------
# size and reading


def test_a_file_over_the_size_bound_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.truncate(17 * 1024 * 1024)  # sparse: reading it whole would take 17 MiB
    line = _error(load_config, str(path))
    assert line == f"{path}: config file is too large: 17.0 MiB (a config is at most 16.0 MiB)"


def test_a_device_is_read_up_to_the_bound_only():
    line = _error(load_config, "/dev/zero")
    assert line == "/dev/zero: config file is too large: more than 16.0 MiB (a config is at most 16.0 MiB)"


def test_a_base_over_the_size_bound(tmp_path):
    with open(tmp_path / "big.yaml", "wb") as f:
        f.truncate(20 * 1024 * 1024)
    (tmp_path / "child.yaml").write_text("base: big.yaml\nname: x\n")
    line = _error(load_config, str(tmp_path / "child.yaml"))
    assert line.startswith(f"{tmp_path / 'child.yaml'}:1:1: base: base config ") and "too large: 20.0 MiB" in line


def test_text_over_the_size_bound(monkeypatch):
    monkeypatch.setattr(located_yaml, "MAX_BYTES", 100)
    line = _error(load_config_string, "a: " + "x" * 200, "t.yaml")
    assert "more than a config may be (100 bytes)" in line
    line = _error(load_config_string, "name: x", overrides=["name=" + "y" * 200])
    assert line.startswith("--set name=yyy") and "more than a config may be" in line


def test_reading_errors_name_the_file(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    assert _error(load_config, str(tmp_path / "dir.yaml")).endswith("config file is a directory, not a file")
    (tmp_path / "f").write_text("x")
    assert "not found (a folder in its path is a file)" in _error(load_config, str(tmp_path / "f" / "c.yaml"))
    long = str(tmp_path / ("x" * 300 + ".yaml"))
    line = _error(load_config, long)
    assert line.endswith("config file cannot be read: file name too long") and len(line) < 200
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    assert _error(load_config, str(tmp_path / "latin1.yaml")) == \
        f"{tmp_path / 'latin1.yaml'}:1:10: not UTF-8 text (is this a YAML config?)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_config(tmp_path):
    path = tmp_path / "secret.yaml"
    path.write_text("name: x\n")
    path.chmod(0)
    assert _error(load_config, str(path)) == f"{path}: config file cannot be read: permission denied"


def test_a_control_character_is_located():
    line = _error(load_config_string, "name: x\nsolver: \x01\n", "ctl.yaml")
    assert line == ("ctl.yaml:2:9: invalid YAML: the non-printable character U+0001 is not allowed in YAML "
                    "text (is this a YAML config?)")


# ---------------------------------------------------------------------------------------------------
# base: files that are not configs


def _passwd_like(path):
    path.write_text("".join(f"user{i}:x:{i}:{i}:{SECRET} {i}:/home/u{i}:/bin/sh\n" for i in range(30)))


@pytest.mark.parametrize("make", ["csv", "passwd", "binary", "list", "zeros"])
def test_a_base_that_is_not_yaml_is_not_echoed(tmp_path, make):
    base = tmp_path / "other"
    if make == "csv":
        base.write_text("id,name,token\n" + "".join(f"{i},n{i},{SECRET}\n" for i in range(50)))
    elif make == "passwd":
        _passwd_like(base)
    elif make == "binary":
        base.write_bytes(SECRET.encode() + bytes(range(256)) * 4)
    elif make == "list":
        base.write_text(f"- {SECRET}\n- {SECRET}\n")
    else:
        base.write_bytes(SECRET.encode() + b"\0" * 100)
    child = tmp_path / "child.yaml"
    child.write_text("base: other\nname: x\n")
    line = _error(load_config, str(child))
    assert SECRET not in line and SECRET[:13] not in line
    assert len(line) < 300
    assert line.startswith(f"{base}:") or line.startswith(f"{child}:")


def test_a_base_that_is_text_says_so_without_its_contents(tmp_path):
    _passwd_like(tmp_path / "passwd")
    text = (tmp_path / "passwd").read_text()
    (tmp_path / "child.yaml").write_text("name: x\nbase: passwd\n")
    line = _error(load_config, str(tmp_path / "child.yaml"))
    assert line.startswith(f"{tmp_path / 'passwd'}:1:1: a config must be a mapping of sections (name:, layers:, "
                           f"solver:, ...); found text of ")
    assert line.endswith(f" characters, not YAML keys; it is named by the base: at {tmp_path / 'child.yaml'}:2:1")
    assert "user0" not in line and text.split(":")[0] not in line


def test_yaml_messages_quote_only_short_tokens():
    line = _error(load_config_string, "a: *" + "n" * 500 + "\n", "alias.yaml")
    assert "found undefined alias" in line and len(line) < 150


def test_a_base_chain_is_bounded(tmp_path):
    for i in range(40):
        (tmp_path / f"c{i}.yaml").write_text(f"base: c{i + 1}.yaml\n")
    (tmp_path / "c40.yaml").write_text("name: x\n")
    line = _error(load_config, str(tmp_path / "c0.yaml"))
    assert "the base configs are nested more than 32 files deep" in line


def test_base_fan_out_is_bounded(tmp_path):
    # each file names the next one 4 times: 4**6 reads without a bound
    for i in range(6):
        (tmp_path / f"f{i}.yaml").write_text(f"base: [f{i + 1}.yaml, f{i + 1}.yaml, f{i + 1}.yaml, f{i + 1}.yaml]\n")
    (tmp_path / "f6.yaml").write_text("name: x\n")
    line = _error(load_config, str(tmp_path / "f0.yaml"))
    assert "reads more than 256 base files" in line


def test_a_nul_byte_in_a_base_name(tmp_path):
    (tmp_path / "c.yaml").write_text('base: "a\\0b.yaml"\n')
    line = _error(load_config, str(tmp_path / "c.yaml"))
    assert line.startswith(f"{tmp_path / 'c.yaml'}:1:1: base: a file name cannot contain a NUL byte")


# ---------------------------------------------------------------------------------------------------
# scalars PyYAML cannot construct, --set


@pytest.mark.parametrize("value, expect", [
    ("1" * 5000, "as !!int (an integer of more than 4300 digits)"),
    ("2001-13-45", "as !!timestamp (month must be in 1..12)"),
    ("!!int ''", "as !!int"),
    ("!!int 12a", "as !!int"),
    ("!!float xyz", "as !!float"),
    ("!!timestamp nope", "as !!timestamp"),
])
def test_values_pyyaml_cannot_construct(value, expect):
    line = _error(load_config_string, f"name: x\nv: {value}\n", "s.yaml")
    assert line.startswith("s.yaml:2:4: cannot read ") and expect in line and len(line) < 200
    line = _error(load_config_string, "name: x", overrides=[f"v={value}"])
    assert line.startswith("--set v=") and expect in line


def test_set_bounds():
    line = _error(load_config_string, "name: x", overrides=["a=" + "[" * 5000])
    assert "nested more than 100 levels deep" in line and len(line) < 400
    line = _error(load_config_string, "name: x", overrides=["a." * 300 + "b=1"])
    assert "the key has 301 parts" in line and len(line) < 400


# ---------------------------------------------------------------------------------------------------
# fuzz: any text is a config or a ConfigError


_PIECES = st.sampled_from(list("abc:-[]{},&*!<>|'\"#%@`? \n\t.0123456789e+x\\") + [
    "!!int ", "!!float ", "!!str ", "!!binary ", "!!timestamp ", "!!python/name:os.system ", "<<: ", "&a ",
    "*a", "---", "...", "base: ", "- ", "layers:", "name: ", "\x00", "\ufeff", "\x85"])


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.text(max_size=80), st.lists(_PIECES, max_size=40).map("".join)))
def test_fuzz_yaml_loader(text):
    for call in (lambda: load_config_string(text, "f.yaml"),
                 lambda: load_config_string("name: x", overrides=[f"a.b={text}"])):
        try:
            call()
        except ConfigError as e:
            assert e.lines and all(line.strip() for line in e.lines)


# ---------------------------------------------------------------------------------------------------
# through the real CLI


@pytest.mark.parametrize("kind", ["bomb", "deep", "passwd"])
def test_cli_validate_hostile_configs(tmp_path, kind):
    cfg = tmp_path / "c.yaml"
    if kind == "bomb":
        cfg.write_text(_bomb())
    elif kind == "deep":
        cfg.write_text("x: " + "[" * 10000 + "]" * 10000 + "\n")
    else:
        _passwd_like(tmp_path / "passwd")
        cfg.write_text("base: passwd\n")
    r = run(["validate", cfg], timeout=60)
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert SECRET not in line and LOCATED.match(line), line
