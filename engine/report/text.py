"""Text that reaches a terminal carries no control characters from the data it shows.

A patient id, a JSON key or a file's content can hold ANSI/OSC escape sequences (which recolour,
retitle or rewrite a terminal) or a newline that forges extra lines of an explanation; a file
name that is not UTF-8 holds lone surrogates (Python's surrogateescape), which no output can
encode (UnicodeEncodeError): a byte shows as `\\xff`, another lone surrogate as `\\udXXX`. Every
renderer of text passes data through `escape_control` (one string) or `printable` (a whole
result), which show such characters as visible escapes instead.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a file name that is not UTF-8 (surrogateescape): that byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    return _CONTROL.sub(_escape, text) if not text.isprintable() else text


ID_SHOWN = 60  # characters of a patient id a heading shows


def patient_label(patient_id: Any) -> str:
    """A patient id as a heading shows it: escaped, `(no id)` when there is none or it is blank,
    cut after ID_SHOWN characters with its length said (a 10 KB id filled the terminal)."""
    if not isinstance(patient_id, str) or not patient_id.strip():
        return "(no id)" if patient_id is None or isinstance(patient_id, str) else escape_control(repr(patient_id))
    shown = escape_control(patient_id)
    return shown if len(shown) <= ID_SHOWN else f"{shown[:ID_SHOWN]}… ({len(patient_id):,} characters)"


def printable(value: Any) -> Any:
    """A copy of a JSON value whose strings (keys too) have their control characters escaped."""
    if isinstance(value, str):
        return escape_control(value)
    if isinstance(value, dict):
        return {escape_control(str(k)): printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [printable(v) for v in value]
    return value
