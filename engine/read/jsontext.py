"""JSON text to Python values, exactly: the one parser of input records and request bodies.

orjson is fast and strict, but reads an integer beyond 64 bits (above 2**64 − 1 or below −2**63)
as a float, silently: `{"x": 10**30}` arrived as 1e+30, evaluated, with its input hash computed
over the float, where the detailed path (Python ints) calls the record invalid. Every such
integer is written with 19 digits or more, so a document that holds such a run of digits, and
only such a document, is read again by the standard library, which keeps integers exact; the
shape check (engine/read/shape.py) then refuses those beyond 64 bits, as it always meant to.
The document is already known to be valid JSON (orjson took it), and both libraries read every
float to the nearest double, so nothing else changes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Every digit as "0", every other byte as " ": a run of 19 digits is then a plain substring
# search (0.6 µs a 570-byte record, where a regular expression took 5).
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_NINETEEN = b"0" * 19


def loads(raw: bytes) -> Any:
    """orjson.loads, exact for every integer; raises orjson.JSONDecodeError as orjson does."""
    value = orjson.loads(raw)
    if _NINETEEN in raw.translate(_DIGITS_AS_ZERO):
        value = json.loads(raw)  # orjson refuses a number of 309 digits or more, so int() can read any
    return value
