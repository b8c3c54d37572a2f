"""Fuzzing the readers in-process with hypothesis: any text given to the YAML config loader (and
the net schema after it), the prototxt parser or the Caffe importer either gives a result or raises
tfconf's own ConfigError (located), never another exception, and each call ends within a bound.
Three kinds of text: arbitrary unicode, soups of the format's own tokens (anchors, aliases, tags,
merge keys, brackets, escapes), and single-edit mutations of real files."""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfconf.frontend.errors import ConfigError
from tfconf.frontend.loader import load_config_string
from tfconf.interop import prototxt

from .util import REPO, SPIRALS

SETTINGS = settings(max_examples=200, deadline=timedelta(milliseconds=2000), derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
BOUND = 10.0  # seconds: a call that takes longer is a hang
LENET = (REPO / "tests" / "interop" / "caffe" / "lenet_train_test.prototxt").read_text()


class Hang(Exception):
    pass


@contextlib.contextmanager
def bounded(seconds=BOUND):
    def alarm(signum, frame):
        raise Hang(f"did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def only_config_errors(fn, text):
    """``fn(text)``: a result or a ConfigError whose message is located and not empty."""
    with bounded():
        try:
            return fn(text)
        except ConfigError as e:
            assert str(e).strip(), "an empty ConfigError"
            assert e.issues and all(i.location is not None for i in e.issues), str(e)
            return None
        except Hang:
            raise
        except Exception as e:  # noqa: BLE001 - what the test looks for
            pytest.fail(f"{type(e).__name__}: {e}\non the text {text[:500]!r}")


# ------------------------------------------------------------------------------------- strategies
def mutations(base: str):
    """``base`` with one span deleted, replaced or duplicated, or a snippet inserted."""
    n = len(base)
    snippets = st.sampled_from(["{", "}", "[", "]", ":", ": ", "- ", "\n", "\t", "&a ", "*a", "!!python/object ",
                                "<<: *a", "'", '"', "#", "\\", "\0", "\ufeff", "1e999", ".nan", "-", "~", "null"])

    @st.composite
    def mutate(draw):
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 40)))
        how = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        if how == "delete":
            return base[:i] + base[j:]
        if how == "duplicate":
            return base[:j] + base[i:j] + base[j:]
        s = draw(st.one_of(snippets, st.text(max_size=8)))
        return base[:i] + s + (base[i:] if how == "insert" else base[j:])

    return mutate()


YAML_TOKENS = st.sampled_from([
    "name", "layers", "solver", "base", "data", ":", ": ", "-", "- ", "{", "}", "[", "]", ",", "\n", "  ", "\t",
    "&a", "&b", "*a", "*b", "<<", "<<: ", "!!str ", "!!map ", "!!python/name:os.system ", "!tag ", "? ",
    "'x'", '"\\x00"', '"\\uFFFF"', "|", ">", "#c", "---", "...", "%YAML 1.2\n", "1e-3", "0x1F", ".inf",
    "~", "null", "true", "yes", "1_000", "12:30", "2001-12-14", "-.5", "\ufeff", "\x85", "\u2028", "\0",
    "layers.0.name", "base: x.yaml\n", "remove: true",
])
PROTO_TOKENS = st.sampled_from([
    "layer", "name", "type", "bottom", "top", "param", "{", "}", "<", ">", ":", ";", ",", "[", "]", " ", "\n",
    '"', "'", '"a"', "'b'", '"\\x41"', '"\\777"', '"\\u12"', '"\\U0010FFFF"', '"\\', "#x\n", "-", "-1", "0x1F",
    "1e-4", ".5", "2.5f", "inf", "nan", "-inf", "TRAIN", "MAX", "true", "07", "08", "1e", "--", "\0", "\t",
    "convolution_param", "kernel_size", "num_output", "dim",
])


def soup(tokens):
    return st.lists(tokens, max_size=60).map("".join)


# --------------------------------------------------------------------------------------- YAML
def _load(text):
    return load_config_string(text, "fuzz.yaml")


def _load_and_validate(text):
    from tfconf.frontend.net_schema import NetConfig
    from tfconf.frontend.schema_base import validate_section

    return validate_section(NetConfig, load_config_string(text, "fuzz.yaml"))


@pytest.fixture(scope="module", autouse=True)
def _warm():
    """Import the schema once, so that no example pays for it against the deadline."""
    _load_and_validate(SPIRALS)


@SETTINGS
@given(st.text(max_size=300))
def test_yaml_loader_on_any_text(text):
    only_config_errors(_load, text)


@SETTINGS
@given(soup(YAML_TOKENS))
def test_yaml_loader_on_yaml_token_soup(text):
    only_config_errors(_load, text)


@SETTINGS
@given(mutations(SPIRALS))
def test_yaml_loader_and_net_schema_on_a_mutated_config(text):
    only_config_errors(_load_and_validate, text)


@SETTINGS
@given(st.integers(1, 40), st.integers(1, 5), st.sampled_from(["[", "{a: "]))
def test_yaml_loader_on_nesting_and_aliases(depth, width, opener):
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + ("1" if opener != "[" else "") + closer * depth
    aliases = "x: &a [" + ", ".join(["1"] * width) + "]\n" + "".join(
        f"y{i}: &a{i} [" + ", ".join(["*a" if i == 0 else f"*a{i - 1}"] * width) + "]\n" for i in range(depth % 6))
    only_config_errors(_load, f"deep: {nested}\n{aliases}")


def test_yaml_loader_deep_nesting_is_a_config_error():
    for text in ["deep: " + "[" * 10000 + "]" * 10000, "deep: " + "{a: " * 10000 + "1" + "}" * 10000,
                 "deep:\n  " + "- " * 10000 + "1"]:
        with pytest.raises(ConfigError):
            with bounded():
                _load(text)


def test_yaml_loader_alias_bomb_is_a_config_error_quickly():
    text = "a0: &a0 [" + ", ".join(["lol"] * 9) + "]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    t0 = time.monotonic()
    with pytest.raises(ConfigError):
        with bounded():
            _load(text)
    assert time.monotonic() - t0 < 5


# -------------------------------------------------------------------------------------- prototxt
def _parse(text):
    return prototxt.parse(text, "fuzz.prototxt")


@SETTINGS
@given(st.text(max_size=300))
def test_prototxt_parser_on_any_text(text):
    only_config_errors(_parse, text)


@SETTINGS
@given(soup(PROTO_TOKENS))
def test_prototxt_parser_on_token_soup(text):
    only_config_errors(_parse, text)


@SETTINGS
@given(mutations(LENET))
def test_prototxt_parser_on_a_mutated_lenet(text):
    only_config_errors(_parse, text)


def test_prototxt_deep_nesting_is_a_config_error():
    for text in ["a { " * 10000 + "}" * 10000, "a < " * 10000 + ">" * 10000,
                 "a: " + "[" * 10000 + "1" + "]" * 10000, "a: [" + "{ " * 10000 + "}" * 10000 + "]"]:
        with pytest.raises(ConfigError):
            with bounded():
                _parse(text)


@settings(max_examples=100, deadline=timedelta(milliseconds=3000), derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutations(LENET))
def test_caffe_importer_on_a_mutated_lenet(text):
    from tfconf.interop.caffe_import import convert

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "net.prototxt"
        path.write_text(text, errors="surrogatepass")
        only_config_errors(lambda _: convert(str(path)), text)
