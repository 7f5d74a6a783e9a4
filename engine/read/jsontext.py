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
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(rb"\d{19}")


def loads(raw: bytes) -> Any:
    """orjson.loads, exact for every integer; raises orjson.JSONDecodeError as orjson does."""
    value = orjson.loads(raw)
    if _LONG_DIGITS.search(raw) is not None:
        value = json.loads(raw)  # orjson refuses a number of 309 digits or more, so int() can read any
    return value
