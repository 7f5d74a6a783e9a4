"""Read NDJSON one bounded line at a time; a bad line is a reported item, never an exception.

A bulk export is large and comes from another system: one line may be truncated, binary, a
10-million-bracket nesting bomb, or valid JSON that is not a FHIR resource. Each such line becomes
a LineError with file and line number, and reading goes on with the next line, with memory bounded
by the longest allowed line rather than by the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from fsgs_kb.engine.errors import KBErrors
from fsgs_kb.engine.read.jsontext import duplicate_key
from fsgs_kb.engine.read.record import skip_line
from fsgs_kb.engine.read.shape import shape_problem

EXPORT_FILES = "*.ndjson"  # the files of an export directory, each read as NDJSON (not its subdirectories)


@dataclass(frozen=True)
class LineError:
    """A line that could not be used: where it is and why."""

    file: str
    line: int
    message: str


def _parse(raw: bytes, max_depth: int) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = json.loads(raw.decode("utf-8").rstrip("\r\n"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except RecursionError:
        return None, "JSON nested too deeply"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})"
    except ValueError:
        return None, "not valid JSON"
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return None, "not a FHIR resource (no resourceType)"
    # What a Bundle line's reader refuses (engine/read/records.py parse_json), a bulk line is refused
    # for too: a lone surrogate (a Patient id holding one stopped the whole run, exit 3, when the
    # index stored it), NaN or an infinity, an integer beyond 64 bits, and a key given twice (the
    # last one was used: which value was meant is unknowable).
    problem, keys = shape_problem(value, max_depth)
    if problem is not None:
        if problem.code == "input.too_deep":
            return None, f"JSON nested deeper than {max_depth} levels"
        return None, problem.message
    key = duplicate_key(raw, keys)
    if key is not None:
        return None, f"key {json.dumps(key)} appears twice in one object: which value was meant is unknowable"
    return value, None


def read_ndjson(path: Path, max_line_bytes: int, max_depth: int) -> Iterator[tuple[int, dict[str, Any] | LineError]]:
    """(line number, resource or LineError) for each non-blank line of one NDJSON file."""
    with path.open("rb") as handle:
        number = 0
        while True:
            raw = handle.readline(max_line_bytes + 1)
            if not raw:
                return
            number += 1
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark, as Bundle input accepts it
                raw = raw[3:]
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                _skip_line(handle, number, raw, path)
                yield number, LineError(path.name, number, f"line longer than {max_line_bytes} bytes")
                continue
            if not raw.strip():
                continue
            resource, problem = _parse(raw, max_depth)
            yield number, resource if resource is not None else LineError(path.name, number, problem or "unusable")


def _skip_line(handle: BinaryIO, number: int, head: bytes, path: Path) -> None:
    """Read on to the end of an oversized line, as a JSON line's reader does: one that goes on past
    MAX_SKIP stops the run, naming the file. (It was cut off there and the rest of it read as more
    lines: bogus errors, and every line after it numbered wrong.)"""
    try:
        skip_line(handle, number, head)
    except KBErrors as exc:
        raise KBErrors([replace(error, file=str(path)) for error in exc.errors]) from None
