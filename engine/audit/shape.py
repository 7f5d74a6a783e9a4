"""Is a value a fsgs-kb result at all? The one shape check of a stored result.

A stored result is evidence anyone may have edited. Before trace walks it, replay re-evaluates
it or explain explains it, its shape is checked against the result schema
(schema/result.schema.json), so that what follows may rely on it: a malformed record is reported
with the JSON pointer of each problem (`trace.malformed`), never met as a crash halfway through.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.schemas import validator

MAX_PROBLEMS = 10


@cache
def _result_validator() -> Any:
    return validator("result")


def shape_problems(result: Any) -> list[KBError]:
    """What makes a value not a fsgs-kb result of any detail level (schema/result.schema.json),
    each located by its JSON pointer; [] for a well-formed result."""
    if not isinstance(result, dict):
        return [KBError("trace.malformed", "not a fsgs-kb result (not a JSON object)")]
    problems = []
    for error in sorted(_result_validator().iter_errors(result), key=_place):
        pointer = pointer_join("", *error.absolute_path)
        problems.append(KBError("trace.malformed", f"{pointer or '/'}: {error.message}", pointer=pointer))
    return problems[:MAX_PROBLEMS]


def _place(error: Any) -> list[tuple[int, int, str]]:
    """Sort by place: array indexes in numeric order, keys by name (never compared with each other)."""
    return [(0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in error.absolute_path]
