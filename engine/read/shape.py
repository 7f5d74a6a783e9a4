"""Limits on one record's shape, checked without recursion, so no input can exhaust the stack.

A patient record is a few kilobytes nested four levels deep. The limits are far above that and
far below what breaks Python (recursion ~1,000 levels, 4,300-digit integers) or durable-rules;
a record beyond them is `invalid` with its own code, never a crash, in every command and in the
Python API.
"""

from __future__ import annotations

import math
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join

MAX_RECORD_BYTES = 1 << 20  # one record (a JSON line, a CSV row, an array element, a file)
MAX_DEPTH = 32  # nesting of objects and arrays
MAX_INT = 1 << 64  # integers beyond 64 bits are not clinical data


def shape_problem(value: Any, max_depth: int = MAX_DEPTH) -> tuple[KBError | None, int]:
    """(the first problem, or None; the number of object keys), walking `value` iteratively.

    Checks what JSON text cannot express or what the limits forbid: non-JSON types, NaN and
    infinities, integers beyond 64 bits, strings with lone surrogates, nesting beyond MAX_DEPTH.
    The key count lets the reader detect duplicate keys in the text it parsed."""
    keys = 0
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, pointer, depth = stack.pop()
        if isinstance(node, dict):
            if depth >= max_depth:
                return too_deep(pointer, max_depth), keys
            keys += len(node)
            for key, item in node.items():
                if not isinstance(key, str):
                    return KBError(
                        "input.not_json", f"{pointer or '/'}: key {key!r} is not a string", pointer=pointer
                    ), keys
                if not key.isascii() and not valid_unicode(key):  # the test inline: every key of a walked record
                    return _bad_string(pointer), keys
                stack.append((item, pointer_join(pointer, key) if _printable_pointer(key) else pointer, depth + 1))
        elif isinstance(node, list):
            if depth >= max_depth:
                return too_deep(pointer, max_depth), keys
            stack.extend((item, pointer_join(pointer, i), depth + 1) for i, item in enumerate(node))
        elif isinstance(node, str):
            if not node.isascii() and not valid_unicode(node):
                return _bad_string(pointer), keys
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if not -MAX_INT < node < MAX_INT:
                return KBError(
                    "input.number_too_large", f"{pointer or '/'}: integer beyond 64 bits", pointer=pointer
                ), keys
        elif isinstance(node, float):
            if not math.isfinite(node):
                return KBError(
                    "input.not_json", f"{pointer or '/'}: {node} is not a JSON number", pointer=pointer
                ), keys
        else:
            return KBError(
                "input.not_json", f"{pointer or '/'}: a {type(node).__name__} is not JSON data", pointer=pointer
            ), keys
    return None, keys


def valid_unicode(text: str) -> bool:
    """Whether `text` is valid Unicode: no lone surrogate (JSON text cannot hold one; Python's
    strings, and so the Python API, can)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable_pointer(key: str) -> bool:
    """Pointers name keys only while they are valid text: a bad key is reported at its parent."""
    return valid_unicode(key)


def too_deep(pointer: str, max_depth: int = MAX_DEPTH) -> KBError:
    return KBError(
        "input.too_deep",
        f"{pointer or '/'}: nested deeper than {max_depth} levels",
        pointer=pointer,
        hint="a patient record is an object a few levels deep",
    )


def _bad_string(pointer: str) -> KBError:
    return KBError(
        "input.encoding", f"{pointer or '/'}: a string holds a lone surrogate (not Unicode text)", pointer=pointer
    )
