"""Is a value a fsgs-kb result at all? The one shape check of a stored result.

A stored result is evidence anyone may have edited. Before trace walks it, replay re-evaluates
it or explain explains it, its shape is checked against the result schema
(schema/result.schema.json), so that what follows may rely on it: a malformed record is reported
with the JSON pointer of each problem (`trace.malformed`), never met as a crash halfway through.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.schemas import load_schema, part_validator, schema_regex, validator

MAX_PROBLEMS = 10
# What replay carries instead of recomputing (where the record was in the batch's input; how a
# FHIR Bundle was converted): an identical replay compares everything else byte for byte.
CARRIED = ("record", "line", "origin", "sources", "set_aside")
PLACE = ("record", "line")


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


@cache
def _carried_schema() -> dict[str, Any]:
    schema = load_schema("result")
    properties = schema["properties"]
    decision = properties["decision"]["properties"]
    return {
        "$defs": schema["$defs"],
        "type": "object",
        "properties": {
            **{name: properties[name] for name in CARRIED if name not in PLACE},
            "decision": {"type": "object", "properties": {"fhir": decision["fhir"]}},
        },
    }


@cache
def _carried_validator() -> Any:
    return part_validator(_carried_schema())


def carried_problems(result: dict[str, Any]) -> list[KBError]:
    """The shape check of a result's fields that replay carries rather than re-derives (CARRIED
    and decision.fhir), for a record whose every other field replays byte for byte: far cheaper
    than `shape_problems` (~35 ms a full result), so a replay of good records stays fast while a
    forged place or conversion account is still found. `record` and `line` must be integers of at
    least 1 (a float such as 3.0 is not what batch writes). The FHIR parts are checked against
    their schema by `_conforms` (~0.1 ms where jsonschema took 4 ms for 25 sources); only a part
    that does not conform is validated by jsonschema, for its messages."""
    problems = []
    for name in PLACE:
        if name in result:
            value = result[name]
            if type(value) is not int or value < 1:
                problems.append(
                    KBError(
                        "trace.malformed",
                        f"/{name}: {_json_text(value)} is not a {name} number (an integer of at least 1)",
                        pointer=f"/{name}",
                    )
                )
    decision = result.get("decision")
    fhir = isinstance(decision, dict) and "fhir" in decision
    if fhir or any(name in result for name in CARRIED if name not in PLACE):
        schema = _carried_schema()
        if not _conforms(result, schema, schema["$defs"]):
            for error in sorted(_carried_validator().iter_errors(result), key=_place):
                pointer = pointer_join("", *error.absolute_path)
                problems.append(KBError("trace.malformed", f"{pointer or '/'}: {error.message}", pointer=pointer))
            if len(problems) == 0:  # _conforms is stricter than the schema somewhere: say so, never pass it
                problems.append(KBError("trace.malformed", "/: the FHIR conversion's account is not well-formed"))
    return problems[:MAX_PROBLEMS]


_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: type(v) is int or (type(v) is float and v.is_integer()),
    "number": lambda v: type(v) in (int, float),
}
_ANNOTATIONS = {"description", "format"}  # format is not asserted (as by the jsonschema validator)


def _conforms(value: Any, schema: Any, defs: dict[str, Any]) -> bool:
    """Does `value` conform to `schema`, for the keywords the FHIR parts of the result schema use?
    A keyword outside them raises ValueError: the schema grew, and this must grow with it."""
    if schema is True or schema == {}:
        return True
    if schema is False:
        return False
    for key, rule in schema.items():
        if key == "$ref":
            if not _conforms(value, defs[rule.removeprefix("#/$defs/")], defs):
                return False
        elif key == "type":
            if not any(_TYPES[t](value) for t in ([rule] if isinstance(rule, str) else rule)):
                return False
        elif key == "enum":
            if not any(value == item and type(value) is type(item) for item in rule):
                return False
        elif key == "pattern":
            if isinstance(value, str) and schema_regex(rule).search(value) is None:
                return False
        elif key == "required":
            if isinstance(value, dict) and any(name not in value for name in rule):
                return False
        elif key == "properties":
            if isinstance(value, dict) and any(
                name in value and not _conforms(value[name], sub, defs) for name, sub in rule.items()
            ):
                return False
        elif key == "additionalProperties":
            if isinstance(value, dict):
                known = schema.get("properties", {})
                if any(name not in known and not _conforms(item, rule, defs) for name, item in value.items()):
                    return False
        elif key == "items":
            if isinstance(value, list) and not all(_conforms(item, rule, defs) for item in value):
                return False
        elif key == "oneOf":
            if sum(_conforms(value, sub, defs) for sub in rule) != 1:
                return False
        elif key not in _ANNOTATIONS and key != "$defs":
            raise ValueError(f"schema keyword {key!r} is not one _conforms knows")
    return True


def _json_text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _place(error: Any) -> list[tuple[int, int, str]]:
    """Sort by place: array indexes in numeric order, keys by name (never compared with each other)."""
    return [(0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in error.absolute_path]
