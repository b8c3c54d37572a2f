"""A reader for protobuf text format (Caffe's ``.prototxt``) that keeps the line and column of every
field, so that the importer can point at the line a problem came from.

The format, as Caffe's files use it::

    name: "LeNet"                      # a scalar field: NAME ':' VALUE
    layer {                            # a message field: NAME [':'] '{' FIELDS '}'  (or '<' ... '>')
      name: "conv1"
      param { lr_mult: 1 }             # a field repeated by writing it again
      param { lr_mult: 2 }
      convolution_param { kernel_size: 5 pool: MAX dim: [1, 2] }   # identifiers (enums), lists
    }

Values are double- or single-quoted strings (C escapes; adjacent strings concatenate), numbers
(``-1``, ``0x1F``, ``1e-4``, ``.5``, ``2.5f``, ``inf``, ``nan``) or identifiers (enum values and
``true``/``false``). Fields may be separated by ``,`` or ``;``; ``#`` starts a comment. The reader
knows no schema: it returns a tree of :class:`Message` objects, each a list of :class:`Field` in file
order, and leaves the meaning of each name (and whether a field may repeat) to its caller.

Errors are :class:`~tfconf.frontend.errors.ConfigError` located at ``file:line:column`` (1-based).
Reading is bounded: a file holds at most :data:`MAX_BYTES` bytes (checked before it is read whole)
and messages nest at most :data:`MAX_DEPTH` levels deep; any malformed input, however hostile, is such
a located error.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator, Union

from tfconf.frontend.errors import ConfigError, ConfigIssue, Location

__all__ = ["Enum", "Field", "Message", "parse", "parse_file", "MAX_BYTES", "MAX_DEPTH"]

#: the largest .prototxt read, in bytes (Caffe's largest nets are a few hundred kB)
MAX_BYTES = 16 * 1024 * 1024
#: how deep ``{ ... }`` blocks may nest (Caffe's messages nest about 4 levels)
MAX_DEPTH = 100


class Enum(str):
    """An identifier value (``MAX``, ``TRAIN``, ``true``): a ``str`` that remembers it was not quoted."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Enum({str.__repr__(self)})"


Scalar = Union[str, int, float, Enum]


@dataclasses.dataclass
class Field:
    """One ``name: value`` (or ``name { ... }``) as written, with where it was written."""

    name: str
    value: "Scalar | Message"
    location: Location

    @property
    def is_message(self) -> bool:
        return isinstance(self.value, Message)


@dataclasses.dataclass
class Message:
    """The fields of one message (the whole file, or a ``{ ... }`` block) in file order."""

    fields: list[Field]
    location: Location

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def all(self, name: str) -> list[Field]:
        """Every field called ``name``, in order."""
        return [f for f in self.fields if f.name == name]

    def first(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def names(self) -> list[str]:
        """The distinct field names, in order of first appearance."""
        return list(dict.fromkeys(f.name for f in self.fields))


# ---------------------------------------------------------------------------------------- tokens
_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[fF]?)(?![A-Za-z0-9_.]))
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>["'])
  | (?P<punct>[{}<>:,;\[\]])
  | (?P<bad>[-.\w]+)
""", re.VERBOSE)

_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}
_SPECIAL_FLOATS = {"inf": float("inf"), "infinity": float("inf"), "nan": float("nan")}


@dataclasses.dataclass
class _Tok:
    kind: str     # number, ident, string, punct, eof
    text: str     # the source text (for messages)
    value: object  # the decoded value
    line: int
    col: int


class _Tokenizer:
    def __init__(self, text: str, file: str):
        self.text = text
        self.file = file

    def error(self, line: int, col: int, message: str) -> ConfigError:
        return ConfigError(ConfigIssue(Location(self.file, line, col), "", message))

    def tokens(self) -> Iterator[_Tok]:
        text, pos, line, line_start = self.text, 0, 1, 0
        n = len(text)
        while pos < n:
            m = _TOKEN.match(text, pos)
            col = pos - line_start + 1
            if m is None:
                raise self.error(line, col, f"unexpected character {text[pos]!r}")
            kind = m.lastgroup
            if kind == "nl":
                line, line_start = line + 1, m.end()
                pos = m.end()
                continue
            if kind in ("ws", "comment"):
                pos = m.end()
                continue
            if kind == "string":
                value, end, line2, start2 = self._string(pos, line, line_start)
                yield _Tok("string", text[pos:end], value, line, col)
                pos, line, line_start = end, line2, start2
                continue
            word = m.group()
            pos = m.end()
            if kind == "bad":
                raise self.error(line, col, f"not a number or a name: {word}")
            if kind == "number":
                yield _Tok("number", word, self._number(word, line, col), line, col)
            elif kind == "ident":
                bare = word.lstrip("-").lower()
                if bare in _SPECIAL_FLOATS:  # inf, -inf, nan as numbers
                    value = _SPECIAL_FLOATS[bare] * (-1 if word.startswith("-") else 1)
                    yield _Tok("number", word, value, line, col)
                elif word.startswith("-"):
                    raise self.error(line, col, f"expected a number after '-'. Received: {word}")
                else:
                    yield _Tok("ident", word, Enum(word), line, col)
            else:
                yield _Tok("punct", word, word, line, col)
        yield _Tok("eof", "end of file", None, line, pos - line_start + 1)

    def _number(self, word: str, line: int, col: int):
        body = word.lstrip("-")
        sign = -1 if word.startswith("-") else 1
        if len(body) > 400:  # int() refuses thousands of digits; no protobuf number has that many
            raise self.error(line, col, f"the number {word[:20]}... has {len(body)} characters; no protobuf "
                             "number is that long")
        if body[:2].lower() == "0x":
            return sign * int(body, 16)
        if body[-1:] in "fF" and not body[:2].lower() == "0x":
            return sign * float(body[:-1])
        if any(c in body for c in ".eE"):
            return sign * float(body)
        if len(body) > 1 and body.startswith("0"):
            if not set(body) <= set("01234567"):
                raise self.error(line, col, f"invalid octal number {word}")
            return sign * int(body, 8)
        return sign * int(body)

    def _string(self, pos: int, line: int, line_start: int):
        """Decode the quoted string at ``pos``: (str, end, line, line_start)."""
        text = self.text
        quote = text[pos]
        start_line, start_col = line, pos - line_start + 1
        out = bytearray()
        i = pos + 1
        while True:
            if i >= len(text) or text[i] == "\n":
                raise self.error(start_line, start_col, "unterminated string (a string may not span lines)")
            c = text[i]
            if c == quote:
                i += 1
                break
            if c != "\\":
                try:
                    out += c.encode("utf-8")
                except UnicodeEncodeError:  # a lone surrogate (only in text not read from a file)
                    raise self.error(line, i - line_start + 1, f"the character U+{ord(c):04X} cannot be "
                                     "in a string") from None
                i += 1
                continue
            esc = text[i + 1] if i + 1 < len(text) else ""
            ecol = i - line_start + 1
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
                i += 2
            elif esc in "01234567" and esc:
                m = re.match(r"[0-7]{1,3}", text[i + 1:])
                value = int(m.group(), 8)
                if value > 255:
                    raise self.error(line, ecol, f"octal escape \\{m.group()} is out of range")
                out.append(value)
                i += 1 + len(m.group())
            elif esc in ("x", "X"):
                m = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2:])
                if m is None:
                    raise self.error(line, ecol, "\\x must be followed by hex digits")
                out.append(int(m.group(), 16))
                i += 2 + len(m.group())
            elif esc in ("u", "U"):
                width = 4 if esc == "u" else 8
                digits = text[i + 2:i + 2 + width]
                if len(digits) != width or not re.fullmatch(r"[0-9a-fA-F]+", digits):
                    raise self.error(line, ecol, f"\\{esc} must be followed by {width} hex digits")
                try:
                    out += chr(int(digits, 16)).encode("utf-8")
                except (ValueError, UnicodeEncodeError):
                    raise self.error(line, ecol, f"\\{esc}{digits} is not a valid code point") from None
                i += 2 + width
            else:
                raise self.error(line, ecol, f"unknown escape sequence \\{esc}")
        try:
            value = out.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error(start_line, start_col,
                             "the string is not valid UTF-8 once its escapes are decoded") from None
        return value, i, line, line_start


# ---------------------------------------------------------------------------------------- parser
class _Parser:
    def __init__(self, text: str, file: str):
        self.file = file
        self.lexer = _Tokenizer(text, file)
        self.stream = self.lexer.tokens()
        self.tok = next(self.stream)
        self.depth = 0

    def loc(self, tok: _Tok) -> Location:
        return Location(self.file, tok.line, tok.col)

    def error(self, tok: _Tok, message: str) -> ConfigError:
        return self.lexer.error(tok.line, tok.col, message)

    def advance(self) -> _Tok:
        tok = self.tok
        self.tok = next(self.stream)
        return tok

    def is_punct(self, *chars: str) -> bool:
        return self.tok.kind == "punct" and self.tok.text in chars

    def message(self, close: str | None, opened: _Tok | None) -> Message:
        """Fields up to ``close`` (or the end of the file when None)."""
        start = opened or self.tok
        fields: list[Field] = []
        while True:
            tok = self.tok
            if close is None and tok.kind == "eof":
                break
            if close is not None and self.is_punct(close):
                self.advance()
                break
            if tok.kind == "eof":
                raise self.error(opened, f"this '{opened.text}' is never closed (missing '{close}' before the "
                                         "end of the file)")
            if tok.kind == "number" and tok.text.isidentifier():  # a field called inf or nan
                tok.kind, tok.value = "ident", Enum(tok.text)
            if tok.kind != "ident":
                if tok.kind == "punct" and tok.text in "}>":
                    raise self.error(tok, f"unexpected '{tok.text}' (no message is open here)")
                raise self.error(tok, f"expected a field name. Received: {tok.text}")
            fields.extend(self.field())
            if self.is_punct(",", ";"):
                self.advance()
        return Message(fields, self.loc(start))

    def field(self) -> list[Field]:
        name_tok = self.advance()
        name = str(name_tok.value)
        loc = self.loc(name_tok)
        colon = self.is_punct(":")
        if colon:
            self.advance()
        if self.is_punct("{", "<"):
            return [Field(name, self.block(), loc)]
        if not colon:
            raise self.error(self.tok, f"expected ':' or '{{' after the field name {name!r}. "
                                       f"Received: {self.tok.text}")
        if self.is_punct("["):
            return [Field(name, value, where) for value, where in self.list_value()]
        return [Field(name, self.scalar(), loc)]

    def block(self) -> Message:
        if self.depth >= MAX_DEPTH:
            raise self.error(self.tok, f"messages are nested more than {MAX_DEPTH} levels deep")
        opened = self.advance()
        self.depth += 1
        try:
            return self.message("}" if opened.text == "{" else ">", opened)
        finally:
            self.depth -= 1

    def list_value(self) -> list:
        """``[v, v, ...]``: (value, location) pairs."""
        self.advance()  # '['
        values: list = []
        if self.is_punct("]"):
            self.advance()
            return values
        while True:
            where = self.loc(self.tok)
            values.append((self.block() if self.is_punct("{", "<") else self.scalar(), where))
            if self.is_punct(","):
                self.advance()
                continue
            if self.is_punct("]"):
                self.advance()
                return values
            raise self.error(self.tok, f"expected ',' or ']' in a list. Received: {self.tok.text}")

    def scalar(self) -> Scalar:
        tok = self.tok
        if tok.kind == "string":
            parts = []
            while self.tok.kind == "string":  # "a" "b" is "ab", as in C
                parts.append(self.advance().value)
            return "".join(parts)
        if tok.kind in ("number", "ident"):
            self.advance()
            return tok.value
        raise self.error(tok, f"expected a value (a string, a number or an identifier). Received: {tok.text}")


def parse(text: str, file: str = "<string>") -> Message:
    """Parse protobuf text format; every :class:`Field` knows its ``file:line:column``."""
    if len(text) > MAX_BYTES:
        raise ConfigError(ConfigIssue(Location(file), "", f"the text has {len(text):,} characters: more than a "
                                      f".prototxt may ({MAX_BYTES:,})"))
    return _Parser(text, file).message(None, None)


def parse_file(path: str, display: str | None = None) -> Message:
    """Parse a ``.prototxt`` file; ``display`` is the name errors show (default: ``path``)."""
    import os
    import stat

    display = display or str(path)

    def fail(message: str) -> ConfigError:
        return ConfigError(ConfigIssue(Location(display), "", message))

    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > MAX_BYTES:
                raise fail(f"the file has {info.st_size:,} bytes: more than a .prototxt may ({MAX_BYTES:,}); "
                           "a binary .caffemodel goes to --weights")
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail("is a folder, not a .prototxt file") from None
    except NotADirectoryError:
        raise fail("no such file (a folder in its path is a file)") from None
    except PermissionError:
        raise fail("cannot be read: permission denied") from None
    except ValueError:  # a NUL byte in the name
        raise fail("cannot be read: its name contains a NUL byte") from None
    except OSError as e:
        raise fail(f"cannot be read: {(e.strerror or str(e)).lower()}") from None
    if len(raw) > MAX_BYTES:
        raise fail(f"more than {MAX_BYTES:,} bytes: too large for a .prototxt")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"not a text file (byte {e.start} is not UTF-8); a binary .caffemodel goes to "
                   "--weights") from None
    return parse(text, display)
