"""Validate a patient record and read the values rules need from it.

Validation interprets schema/patient.schema.json directly (types, enums, ranges, required and
unknown keys) instead of calling jsonschema for every record: jsonschema costs about 110 µs a
record, this about a tenth of that, and a test checks that both accept exactly the same records.
The clinical cross-field rules of clinical-notes §3 (dose with status never, diastolic ≥
systolic, …) follow. Every problem is a KBError with a JSON pointer; none is fatal to the caller.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

from fsgs_kb.engine.errors import KBError, pointer_join
from fsgs_kb.engine.load.fields import FieldInfo, catalogue
from fsgs_kb.engine.load.schemas import load_schema
from fsgs_kb.engine.suggest import did_you_mean

UNKNOWN_ENUM = "unknown"
# With cyclosporine status 'never' none of these can be recorded (clinical-notes §3).
NEVER_CONTRADICTS = {
    "daily_dose": "daily dose",
    "months_on_therapy": "months on therapy",
    "best_response": "best response",
    "stop_reason": "stop reason",
    "trough_ng_ml": "trough level",
}
# Words a clinician writes for a value the record names otherwise (the hint of an enum error):
# the review's "idiopathic FSGS" is the record's primary etiology.
ENUM_SYNONYMS = {
    "/fsgs/etiology": {"idiopathic": "primary", "primary fsgs": "primary", "unclear": "undetermined"},
}
_ABSENT_IS_UNKNOWN = "leave the field out where it is not known: an absent field is read as unknown"
JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def json_key(value: Any) -> Any:
    """A hashable key equal for two JSON values exactly when they are equal as JSON Schema's
    `uniqueItems` compares them: objects whatever their key order, 1 and 1.0 alike, true
    never 1."""
    if isinstance(value, dict):
        return ("object", frozenset((k, json_key(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", tuple(json_key(v) for v in value))
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, int | float):
        return ("number", value)
    return ("string", value)


def unique_items(items: list[Any]) -> bool:
    """Whether no two items of a list are equal as JSON values."""
    return len({json_key(v) for v in items}) == len(items)


def _problem(pointer: str, code: str, message: str, hint: str | None = None) -> KBError:
    return KBError(code, f"{pointer or '/'}: {message}", pointer=pointer, hint=hint)


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, JSON_TYPES[expected])


def _describe(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else _json_name(value)
    return text if len(text) < 60 else text[:57] + "..."


def _json_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    return str(value)


class _SchemaWalker:
    def __init__(self) -> None:
        self.errors: list[KBError] = []

    def check(self, value: Any, schema: dict[str, Any], pointer: str) -> None:
        if "enum" in schema:
            if value not in schema["enum"] or isinstance(value, bool):
                choices = ", ".join(str(v) for v in schema["enum"])
                hint = _enum_hint(value, schema["enum"], pointer)
                self.errors.append(
                    _problem(pointer, "patient.enum", f"{_describe(value)} is not one of {choices}", hint)
                )
            return
        expected = schema.get("type")
        if expected is None:
            return
        if not _type_ok(value, expected):
            self.errors.append(
                _problem(
                    pointer,
                    "patient.type",
                    f"{_describe(value)} is not {_article(expected)}",
                    _write_as(schema) if value is not None else _ABSENT_IS_UNKNOWN,
                )
            )
            return
        getattr(self, f"_{expected}")(value, schema, pointer)

    def _number(self, value: Any, schema: dict[str, Any], pointer: str) -> None:
        if not math.isfinite(value):
            self.errors.append(_problem(pointer, "patient.range", f"{value} is not a finite number"))
            return
        unit = f" {schema['x-unit']}" if "x-unit" in schema else ""
        low, high = schema.get("minimum"), schema.get("maximum")
        above = schema.get("exclusiveMinimum")
        if (
            (low is not None and value < low)
            or (above is not None and value <= above)
            or (high is not None and value > high)
        ):
            bound = f"> {above}" if above is not None else f"≥ {low}"
            self.errors.append(
                _problem(
                    pointer,
                    "patient.range",
                    f"{_describe(value)}{unit} is out of range (must be {bound} and ≤ {high}{unit})",
                )
            )

    def _string(self, value: str, schema: dict[str, Any], pointer: str) -> None:
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
            self.errors.append(
                _problem(
                    pointer,
                    "patient.length",
                    f"text length {len(value)} is outside {schema.get('minLength', 0)}..{schema.get('maxLength', '∞')}",
                )
            )

    def _boolean(self, value: bool, schema: dict[str, Any], pointer: str) -> None:
        return

    def _array(self, value: list[Any], schema: dict[str, Any], pointer: str) -> None:
        if schema.get("uniqueItems") and not unique_items(value):
            self.errors.append(_problem(pointer, "patient.duplicate", "list has repeated items"))
        if len(value) > schema.get("maxItems", 10**9):
            self.errors.append(_problem(pointer, "patient.length", f"list has more than {schema['maxItems']} items"))
        for i, item in enumerate(value):
            self.check(item, schema.get("items", {}), pointer_join(pointer, i))

    def _object(self, value: dict[str, Any], schema: dict[str, Any], pointer: str) -> None:
        props = schema.get("properties")
        for key in schema.get("required", ()):
            if key not in value:
                wanted = (props or {}).get(key, {})
                self.errors.append(_problem(pointer, "patient.required", f"'{key}' is required", _add(key, wanted)))
        if props is None:
            return
        for key, item in value.items():
            child = pointer_join(pointer, key)
            if key in props:
                self.check(item, props[key], child)
            elif schema.get("additionalProperties") is False:
                hint = did_you_mean(str(key), set(props)) or (
                    "put site-specific data under 'ext'"
                    if pointer == ""
                    else f"allowed here: {', '.join(sorted(props))}"
                )
                self.errors.append(_problem(child, "patient.unknown_field", f"unknown field '{key}'", hint))


def _enum_hint(value: Any, choices: list[Any], pointer: str) -> str | None:
    if not isinstance(value, str):
        return None
    synonym = ENUM_SYNONYMS.get(pointer, {}).get(value.strip().lower())
    if synonym is not None:
        return f"write '{synonym}' ('{value}' is recorded as {synonym})"
    return did_you_mean(value, {str(v) for v in choices})


def _write_as(schema: dict[str, Any]) -> str:
    """How a value of this place is written (the hint of a value of the wrong JSON type: a
    number in quotes, "yes" for true, one object where a list is expected)."""
    kind = schema.get("type")
    unit = schema.get("x-unit")
    if kind == "number":
        return "write it as a number, without quotes" + (f" (in {unit})" if unit else "")
    if kind == "boolean":
        return "write true or false, without quotes"
    if kind == "array":
        return "write a list: [...] ([] where it was asked and there is none)"
    if kind == "object":
        keys = ", ".join(schema.get("properties", {}))
        return "write an object {...}" + (f" with: {keys}" if keys else "")
    return "write it as text, in quotes"


def _add(key: str, schema: dict[str, Any]) -> str:
    """The hint of a missing required key: what to write there."""
    title = schema.get("title")
    named = f"'{key}'" + (f" ({title})" if title and title != key.replace("_", " ") else "")
    if "enum" in schema:
        return f"add {named}: one of {', '.join(str(v) for v in schema['enum'])}"
    return f"add {named}; {_write_as(schema)}" if schema.get("type") else f"add {named}"


def _article(kind: str) -> str:
    return {
        "object": "an object",
        "array": "a list",
        "number": "a number",
        "string": "a string",
        "boolean": "true or false",
    }.get(kind, kind)


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    return load_schema("patient")


def _get(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _clinical_conflicts(record: dict[str, Any]) -> list[KBError]:
    """The cross-field rules of clinical-notes §3 that a schema cannot say."""
    out: list[KBError] = []
    csa = _mapping(record.get("cyclosporine"))
    status = csa.get("status")
    dose = _mapping(csa.get("daily_dose")).get("value")
    if status == "never":
        for key, label in NEVER_CONTRADICTS.items():
            if key in csa:
                out.append(
                    _problem(
                        f"/cyclosporine/{key}",
                        "patient.conflict",
                        f"status 'never' contradicts a recorded {label}",
                        "remove the value, or correct the status",
                    )
                )
    if status == "current" and "stop_reason" in csa:
        out.append(
            _problem(
                "/cyclosporine/stop_reason",
                "patient.conflict",
                "a stop reason contradicts status 'current'",
                "set status to 'stopped', or remove the stop reason",
            )
        )
    steroids = _mapping(record.get("steroids"))
    weeks = steroids.get("high_dose_weeks")
    if steroids.get("response") == "not_treated" and isinstance(weeks, (int, float)) and weeks > 0:
        out.append(
            _problem(
                "/steroids/high_dose_weeks",
                "patient.conflict",
                f"{weeks} weeks of high-dose steroid contradict the response 'not_treated'",
                "record the response to that course, or correct the weeks",
            )
        )
    if status == "current" and dose == 0:
        out.append(
            _problem(
                "/cyclosporine/daily_dose/value",
                "patient.conflict",
                "a current cyclosporine course with a daily dose of 0",
                "record the dose taken, or set status to 'stopped'",
            )
        )
    kidney = _mapping(record.get("kidney_function"))
    # eGFR is always per 1.73 m2 and `unit` is the creatinine clearance's (clinical-notes §3:
    # eGFR and/or a clearance in mL/min/1.73m2 or mL/min): a unit of mL/min says something only
    # of a clearance, and with an eGFR alone it can only be a mistaken eGFR unit.
    if "egfr" in kidney and "creatinine_clearance" not in kidney and kidney.get("unit") == "mL/min":
        out.append(
            _problem(
                "/kidney_function/unit",
                "patient.conflict",
                "an eGFR is per 1.73 m2, but the unit recorded is mL/min (and no creatinine clearance)",
                "record the unit mL/min/1.73m2, or the creatinine clearance in mL/min without the eGFR",
            )
        )
    bp = _mapping(record.get("blood_pressure"))
    systolic, diastolic = bp.get("systolic_mmHg"), bp.get("diastolic_mmHg")
    if isinstance(systolic, (int, float)) and isinstance(diastolic, (int, float)) and diastolic >= systolic:
        out.append(
            _problem(
                "/blood_pressure/diastolic_mmHg",
                "patient.conflict",
                f"diastolic {diastolic} mmHg is not below systolic {systolic} mmHg",
                "check that the two values are not swapped",
            )
        )
    return out


def validate_patient(record: Any) -> list[KBError]:
    """Every problem of a record, as pointer + message; [] when it can be evaluated."""
    if not isinstance(record, dict):
        return [_problem("", "patient.type", f"a patient record is a JSON object, not {_json_name(record)}")]
    walker = _SchemaWalker()
    walker.check(record, _schema(), "")
    return walker.errors + _clinical_conflicts(record)


def field_values(record: dict[str, Any], fields: tuple[FieldInfo, ...]) -> dict[str, Any]:
    """The values of the named fields, None where absent or recorded as 'unknown'."""
    out: dict[str, Any] = {}
    for info in fields:
        value = _get(record, info.keys)
        if info.item_key is not None and isinstance(value, list):
            value = [item[info.item_key] for item in value if isinstance(item, dict) and info.item_key in item]
        elif isinstance(value, list):  # a result shows it as a condition's actual: never the record's own list
            value = list(value)
        out[info.path] = None if value == UNKNOWN_ENUM and info.enum else value
    return out


def recorded_unknown(record: dict[str, Any], fields: tuple[FieldInfo, ...]) -> frozenset[str]:
    """The named enum fields the record holds as 'unknown': the engine reads them as it reads an
    absent field (`field_values`), but a reader told "not recorded" would look for a gap in the
    record where a clinician in fact wrote that it is not known."""
    return frozenset(info.path for info in fields if info.enum and _get(record, info.keys) == UNKNOWN_ENUM)


def used_fields(paths: set[str]) -> tuple[FieldInfo, ...]:
    """The fields read, with the sibling holding each one's unit (a creatinine's umol/L)."""
    table = catalogue()
    wanted = set(paths)
    for path in paths:
        info = table.get(path)
        if info is not None and info.unit_from:
            wanted.add(path.rsplit(".", 1)[0] + "." + info.unit_from)
    return tuple(table[p] for p in sorted(wanted) if p in table)


def clinical_conflicts(record: dict[str, Any]) -> list[KBError]:
    """The cross-field problems of a schema-valid record ([] when there are none)."""
    return _clinical_conflicts(record)
