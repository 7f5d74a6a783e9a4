"""JSON text to Python values, exactly: the one parser of input records and request bodies.

orjson is fast and strict, but reads an integer beyond 64 bits (above 2**64 − 1 or below −2**63)
as a float, silently: `{"x": 10**30}` arrived as 1e+30, evaluated, with its input hash computed
over the float, where the detailed path (Python ints) calls the record invalid. Every such
integer is written with 19 digits or more, so a document that holds such a run of digits, and
only such a document, is read again by the standard library, which keeps integers exact; the
shape check (engine/read/shape.py) then refuses those beyond 64 bits, as it always meant to.
The document is already known to be valid JSON (orjson took it), and both libraries read every
float to the nearest double, so nothing else changes.

orjson, like the standard library, keeps the last of a key given twice in one object; which value
was meant is unknowable, so the readers refuse such a document (`duplicate_key`: the CLI's record
readers, the service's request bodies).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# Every digit as "0", every other byte as " ": a run of 19 digits is then a plain substring
# search (0.6 µs a 570-byte record, where a regular expression took 5).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_NINETEEN = b"0" * 19
_STRING_OR_KEY = re.compile(rb'"(?:[^"\\]|\\.)*"(\s*:)?')


# orjson refuses nesting beyond 1,024 levels; the standard library recurses and meets Python's
# recursion limit (1,000 frames, fewer when called deep in a stack) first: a document read again
# by it is first checked to be far shallower than that.
MAX_TEXT_DEPTH = 256


def loads(raw: bytes) -> Any:
    """orjson.loads, exact for every integer; raises orjson.JSONDecodeError as orjson does (also
    "depth limit exceeded" for a document nested deeper than orjson or MAX_TEXT_DEPTH allows when
    the standard library must read it again), never RecursionError."""
    value = orjson.loads(raw)
    if _NINETEEN in raw.translate(_DIGITS_AS_ZERO):
        if _deeper_than(value, MAX_TEXT_DEPTH):
            raise orjson.JSONDecodeError(f"depth limit exceeded ({MAX_TEXT_DEPTH} levels)", "", 0)
        value = json.loads(raw)  # orjson refuses a number of 309 digits or more, so int() can read any
    return value


def key_count(value: Any) -> int:
    """How many object keys a parsed JSON value holds, at every depth (walked without recursion)."""
    count, stack = 0, [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += len(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def duplicate_key(raw: bytes, keys: int) -> str | None:
    """The first key that `raw` gives twice in one object (its parsed value holds `keys` object
    keys), else None. Cheap when there is none: the text's key tokens are counted first."""
    if raw.count(b":") <= keys:  # colons beyond the keys: in strings, or a key given twice
        return None
    if sum(1 for m in _STRING_OR_KEY.finditer(raw) if m.group(1)) == keys:
        return None
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [k for k, _ in items]
        found.extend(k for i, k in enumerate(names) if k in names[:i])
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except RecursionError:  # deeper than Python's parser goes: the depth limits refuse it
        return None
    return found[0] if found else "?"


def _deeper_than(value: Any, limit: int) -> bool:
    """Is `value` nested more than `limit` arrays and objects deep? Walked without recursion."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= limit:
                return True
            stack.extend((item, depth + 1) for item in (node.values() if isinstance(node, dict) else node))
    return False
