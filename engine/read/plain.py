"""A record handed to the Python API, as plain JSON types before anything reads it.

The evaluators, the validator and the input hash read a record with Python's operators (`>`,
`==`, `len`, sorting keys). On a subclass of dict, list, str, int or float those run the
subclass's code, which may raise (an exception out of `evaluate`, documented never to raise) or
lie (a str whose `==` is always true was judged `never` while the input hash recorded
`current`, so replay could not reproduce the decision). So a record that is not exactly of JSON's
builtin types is first copied into them, read through the base types' own methods as
engine/read/canonical.py reads it for the hash (no code of the subclass runs): a str subclass as
its text, an int or float subclass as its number, a dict or list subclass as its entries, keys
included. A value JSON has no type for (a tuple, a Decimal, any object) refuses the record here,
located, as the shape check would, without calling the object's code; so is nesting deeper than
the shape check's limit, at the pointer the shape check would name (see `_Walk`).

A record of exact types, the common case (JSON parsed by json or orjson), is found so by orjson's
own type check (`OPT_PASSTHROUGH_SUBCLASS` refuses any subclass), well under a microsecond for a
record of the benchmark cohort, and returned as it is. The batch path, which parses JSON itself,
never comes here.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.read.canonical import scalar_text
from fsgs_kb.engine.read.shape import MAX_DEPTH, MAX_RECORD_BYTES, too_deep

_EXACT_ONLY = orjson.OPT_PASSTHROUGH_SUBCLASS
_TYPE_NAME = type.__dict__["__name__"]
VALUES = MAX_RECORD_BYTES // 2
_SAFE_REPR = (int, float, bool, type(None))  # builtin scalars: their repr runs no user code


class _Refused(Exception):
    def __init__(self, error: KBError) -> None:
        super().__init__(error.message)
        self.error = error


def plain_record(value: Any) -> tuple[Any, KBError | None]:
    """(the record in plain JSON types, None), or (the record as given, why it cannot be read
    as JSON data: an `input.*` error naming the JSON pointer). Never raises."""
    try:
        orjson.dumps(value, option=_EXACT_ONLY)
        return value, None  # exact types throughout
    except TypeError:
        pass  # a subclass, a foreign type, a non-string key, a big integer, deep or circular nesting
    except Exception:  # noqa: S110 - whatever orjson met, the walk below says where
        pass
    try:
        return _Walk().node(value, "", 0), None
    except _Refused as refused:
        return value, refused.error
    except Exception as exc:  # a base type's method on a broken object: still a located answer
        return value, KBError("input.not_json", f"/: the record cannot be read as JSON data ({type(exc).__name__})")


class _Walk:
    """The copy, depth first, the last entry of a container first: the order in which the shape
    check (engine/read/shape.py) meets problems, so that a nesting too deep is refused here at
    the pointer it would name, before anything is copied below it (a record that contains itself
    twice would unroll to 2**32 copies). At most VALUES values are copied: a record with more is
    larger than a record may be (each value of JSON text takes at least two bytes)."""

    def __init__(self) -> None:
        self.left = VALUES

    def node(self, node: Any, pointer: str, depth: int) -> Any:
        self.left -= 1
        if self.left < 0:
            raise _Refused(
                KBError(
                    "input.too_large",
                    f"/: the record holds more than {VALUES:,} values, more than a record of "
                    f"{MAX_RECORD_BYTES:,} bytes can",
                    hint="a patient record is a few kilobytes: is one list or object held many times over?",
                )
            )
        kind = type(node)  # not isinstance: that may read a __class__ the object defines
        if kind is str or kind is int or kind is float or kind is bool or node is None:
            return node
        if issubclass(kind, dict) or issubclass(kind, list):
            if depth >= MAX_DEPTH:
                raise _Refused(too_deep(pointer))
            return self._dict(node, pointer, depth) if issubclass(kind, dict) else self._list(node, pointer, depth)
        if issubclass(kind, str):
            return str.__str__(node)
        if issubclass(kind, int):
            return int.__index__(node)
        if issubclass(kind, float):
            return float.__float__(node)
        name = _TYPE_NAME.__get__(kind)  # type's own descriptor: a metaclass's __name__ does not run
        name = str.__str__(name) if isinstance(name, str) else "?"
        raise _Refused(KBError("input.not_json", f"{pointer or '/'}: a {name} is not JSON data", pointer=pointer))

    def _dict(self, node: Any, pointer: str, depth: int) -> dict[str, Any]:
        entries: dict[str, Any] = {}
        for key, item in dict.items(node):  # the keys first, in order, as the shape check
            name = _key(key, pointer)
            if name in entries:
                raise _Refused(
                    KBError(
                        "input.duplicate_key",
                        f"key {json.dumps(name, ensure_ascii=False)} appears twice in one object",
                        pointer=pointer_join(pointer, name),
                        hint="two keys of one object read as the same text (one of them a str subclass)",
                    )
                )
            entries[name] = item
        made = {
            name: self.node(item, pointer_join(pointer, name), depth + 1) for name, item in reversed(entries.items())
        }
        return {name: made[name] for name in entries}

    def _list(self, node: Any, pointer: str, depth: int) -> list[Any]:
        items = list(list.__iter__(node))
        made = [self.node(items[i], pointer_join(pointer, i), depth + 1) for i in reversed(range(len(items)))]
        made.reverse()
        return made


def _key(key: Any, pointer: str) -> Any:
    kind = type(key)
    if kind is str:
        return key
    if issubclass(kind, str):
        return str.__str__(key)
    said = repr(key) if kind in _SAFE_REPR else scalar_text(key)
    raise _Refused(KBError("input.not_json", f"{pointer or '/'}: key {said} is not a string", pointer=pointer))
