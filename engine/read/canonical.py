"""The canonical text of any value handed to the Python API as a record, so that even a record
that is not JSON data has an input hash of its own (and so a decision id of its own).

A record the shape check refuses (engine/read/shape.py: NaN or an infinity, an integer beyond
64 bits, a lone surrogate, a key that is not a string, a value of a type JSON does not have,
nesting beyond MAX_DEPTH) cannot be written as canonical JSON. `canonical_text` writes it
anyway, deterministically (the same value gives the same text in every process: no object
addresses, no `hash()`), and for every value the shape check accepts it writes exactly
`canonical_json` (sorted keys, no spaces, UTF-8), so the hash of a valid record is unchanged:

- NaN, infinity and minus infinity as `NaN`, `Infinity`, `-Infinity` (what `json.dumps` writes);
- an integer as its decimal digits, or beyond BIG_INT_BITS bits as `0x…` hexadecimal digits
  (decimal conversion of a larger integer may be refused by the interpreter's digit limit);
- a lone surrogate in a string or key as its escape `\\udXXX`: valid text never holds one, so the
  escape cannot be mistaken for it;
- an object's keys that are not strings as their own text (`{1:…}`, `{null:…}`), after the string
  keys (those in code-point order, as `canonical_json`), in the order of their text; keys that
  write the same text (two NaNs) keep their order in the object;
- a value of any other type (a tuple, a set, bytes, `object()`, a date) as its type's name in
  angle brackets (`<tuple>`, `<mymodule.Patient>`), not its content: reading arbitrary objects
  would run their code;
- a list or object nested MAX_DEPTH levels deep or more (also what a record that contains itself
  unrolls to) as `<deeper than 32 levels>`;
- a text longer than MAX_RECORD_BYTES characters (also what a record that contains itself more than
  once unrolls to) is cut there and ends with `<longer than 1048576 characters>`: such records are
  told apart by their first MAX_RECORD_BYTES characters.

Every one of these marks (`NaN`, a bare integer beyond 64 bits, `\\udXXX`, a key outside quotes,
`<…>` outside a string) is one that canonical JSON of a valid record never writes, so the text of
an invalid record is never that of a valid one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from fsgs_kb.engine.read.shape import MAX_DEPTH, MAX_RECORD_BYTES, valid_unicode

BIG_INT_BITS = 2000  # 603 decimal digits at most: below the smallest digit limit Python allows (640)
TOO_DEEP = f"<deeper than {MAX_DEPTH} levels>"
CUT = f"<longer than {MAX_RECORD_BYTES} characters>"
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Full(Exception):
    """The text reached its limit: what is written so far stands for the record."""


def canonical_text(value: Any) -> str:
    """`value` as canonical JSON, extended to values that are not JSON data (see the module)."""
    out = _Text(MAX_RECORD_BYTES)
    try:
        out.value(value, 0)
    except _Full:
        return "".join(out.parts)[:MAX_RECORD_BYTES] + CUT
    return "".join(out.parts)


_TYPE_MODULE = type.__dict__["__module__"]
_TYPE_QUALNAME = type.__dict__["__qualname__"]


def value_sha256(value: Any) -> str:
    """sha256 of `canonical_text(value)`: the input hash of a record that is not JSON data. For a
    record that is, the same as `fingerprint.input_sha256` (which is faster)."""
    return hashlib.sha256(canonical_text(value).encode("utf-8")).hexdigest()


class _Text:
    """A writer of canonical text that stops once it holds more than `limit` characters. It reads
    dicts and lists through their base types' methods, so no code of a subclass runs."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.left = limit

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.left -= len(text)
        if self.left < 0:
            raise _Full

    def value(self, node: Any, depth: int) -> None:
        kind = type(node)  # not isinstance: an object cannot pass for a dict by its __class__
        if issubclass(kind, dict):
            if depth >= MAX_DEPTH:
                self.add(TOO_DEEP)
                return
            self.add("{")
            for i, (key, item) in enumerate(_entries(node)):
                self.add(("," if i else "") + key + ":")
                self.value(item, depth + 1)
            self.add("}")
        elif issubclass(kind, list):
            if depth >= MAX_DEPTH:
                self.add(TOO_DEEP)
                return
            self.add("[")
            for i, item in enumerate(list.__iter__(node)):
                if i:
                    self.add(",")
                self.value(item, depth + 1)
            self.add("]")
        elif issubclass(kind, str):
            text = str.__str__(node)  # the escaped text of a prefix is a prefix of the escaped text
            self.add(_string(text if len(text) <= self.left else text[: self.left + 1]))
        else:
            self.add(scalar_text(node))


def _entries(node: dict[Any, Any]) -> list[tuple[str, Any]]:
    """(key text, value) of an object's entries: string keys first, in code-point order (as
    `json.dumps(sort_keys=True)`), then the others by their text (a stable sort: equal texts keep
    their order)."""
    strings: list[tuple[str, Any]] = []
    others: list[tuple[str, Any]] = []
    for key, item in dict.items(node):
        if issubclass(type(key), str):
            strings.append((str.__str__(key), item))
        else:
            others.append((scalar_text(key), item))
    strings.sort(key=lambda entry: entry[0])
    others.sort(key=lambda entry: entry[0])
    return [(_string(key), item) for key, item in strings] + others


def _string(text: str) -> str:
    """A string (of type str exactly) as `json.dumps` writes it, lone surrogates escaped."""
    written = json.dumps(text, ensure_ascii=False)
    if valid_unicode(text):
        return written
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", written)


def scalar_text(node: Any) -> str:
    """The text of a value that is not a list, an object or a string (also of a key), read
    through the base types' methods."""
    kind = type(node)
    if node is None:
        return "null"
    if kind is bool:
        return "true" if node else "false"
    if issubclass(kind, int):
        number = int.__index__(node)  # an int, whatever the subclass says
        if number.bit_length() <= BIG_INT_BITS:
            return repr(number)
        return ("-0x" if number < 0 else "0x") + format(abs(number), "x")
    if issubclass(kind, float):
        real = float.__float__(node)
        if math.isnan(real):
            return "NaN"
        if math.isinf(real):
            return "Infinity" if real > 0 else "-Infinity"
        return repr(real)
    if issubclass(kind, str):
        return _string(str.__str__(node))
    # read through `type`'s own descriptors: `kind.__module__` would run a metaclass's code
    module = _TYPE_MODULE.__get__(kind)
    module = str.__str__(module) if isinstance(module, str) else "?"
    name = _TYPE_QUALNAME.__get__(kind)
    name = str.__str__(name) if isinstance(name, str) else "?"
    return f"<{name}>" if module == "builtins" else f"<{module}.{name}>"
