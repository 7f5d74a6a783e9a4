"""A generated accept-only patient check: the hot path's validator.

`accepts(record)` is straight-line Python generated from schema/patient.schema.json when first
used (types, enums, ranges, lengths, required and unknown keys, unique list items), followed by
the clinical cross-field rules of `patient.clinical_conflicts`. It answers one question, fast:
is this record certainly valid and within the reader's shape limits? It never explains. A
record it does not accept goes to the detailed validator (engine/evaluate/patient.py) and the
shape check (engine/read/shape.py), which give today's errors, or accept it after all (the
generated check is stricter where that is cheaper: exact `dict`/`str`/`int`/`float` types,
ASCII free text, a record with `ext` is always walked by the shape check).

Accepting implies both `validate_patient(record) == []` and `shape_problem(record)` finding
nothing; tests/test_fastpaths.py checks that on generated records, and that every valid record
of the benchmark cohort is accepted (else the fast path would be no faster).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from fsgs_kb.engine.evaluate.patient import clinical_conflicts, unique_items
from fsgs_kb.engine.load.schemas import load_schema
from fsgs_kb.engine.read.jsontext import loads
from fsgs_kb.engine.read.shape import MAX_RECORD_BYTES, shape_problem

Accept = Callable[[Any], bool]


class _Generator:
    """Writes the body of `accept(record)`: one `return False` per way to fail. `counting`: of
    `count(record)` instead, which fails with `return -1` and counts the object keys it meets."""

    def __init__(self, counting: bool = False) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.counter = 0
        self.counting = counting

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any) -> str:
        name = self.name("C")
        self.constants[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        if self.counting:
            line = line.replace("return False", "return -1")
        self.lines.append("    " * indent + line)

    def check(self, var: str, schema: dict[str, Any], indent: int) -> None:
        if "enum" in schema:
            allowed = self.constant(frozenset(v for v in schema["enum"] if isinstance(v, str)))
            self.emit(indent, f"if type({var}) is not str or {var} not in {allowed}: return False")
            return
        kind = schema.get("type")
        if kind is None:
            return
        if kind == "object":
            self._object(var, schema, indent)
        elif kind == "array":
            self._array(var, schema, indent)
        elif kind == "number":
            self._number(var, schema, indent)
        elif kind == "string":
            self._string(var, schema, indent)
        elif kind == "boolean":
            self.emit(indent, f"if type({var}) is not bool: return False")
        else:
            self.emit(indent, "return False")

    def _number(self, var: str, schema: dict[str, Any], indent: int) -> None:
        bounds = []
        if "minimum" in schema:
            bounds.append(f"{var} >= {schema['minimum']!r}")
        if "exclusiveMinimum" in schema:
            bounds.append(f"{var} > {schema['exclusiveMinimum']!r}")
        if "maximum" in schema:
            bounds.append(f"{var} <= {schema['maximum']!r}")
        if "exclusiveMaximum" in schema:
            bounds.append(f"{var} < {schema['exclusiveMaximum']!r}")
        if not any(k in schema for k in ("minimum", "exclusiveMinimum")) or not any(
            k in schema for k in ("maximum", "exclusiveMaximum")
        ):
            bounds.append(f"_isfinite({var})")  # a comparison with NaN is false: bounds on both sides reject it
        # exactly int or float (not bool), then within bounds: one test
        self.emit(indent, f"if type({var}) not in _NUMBER or not ({' and '.join(bounds)}): return False")

    def _string(self, var: str, schema: dict[str, Any], indent: int) -> None:
        low, high = schema.get("minLength", 0), schema.get("maxLength")
        length = f"{low} <= len({var})" + (f" <= {high}" if high is not None else "")
        self.emit(indent, f"if type({var}) is not str or not {var}.isascii() or not ({length}): return False")

    def _array(self, var: str, schema: dict[str, Any], indent: int) -> None:
        self.emit(indent, f"if type({var}) is not list: return False")
        if "maxItems" in schema:
            self.emit(indent, f"if len({var}) > {schema['maxItems']}: return False")
        item = self.name("i")
        self.emit(indent, f"for {item} in {var}:")
        items = schema.get("items", {})
        if items and ("enum" in items or "type" in items):
            self.check(item, items, indent + 1)
        else:
            self.emit(indent + 1, "return False  # items of any shape: the detailed path decides")
        if schema.get("uniqueItems"):
            if "enum" in items:
                self.emit(indent, f"if len(set({var})) != len({var}): return False")
            else:  # objects: by JSON equality, as the detailed validator
                self.emit(indent, f"if not _unique({var}): return False")

    def _object(self, var: str, schema: dict[str, Any], indent: int) -> None:
        self.emit(indent, f"if type({var}) is not dict: return False")
        if self.counting:
            self.emit(indent, f"n += len({var})")
        props: dict[str, Any] | None = schema.get("properties")
        for key in schema.get("required", ()):
            self.emit(indent, f"if {key!r} not in {var}: return False")
        if props is None:
            self.emit(indent, "shape = True  # free content: the shape check walks the record")
            return
        if schema.get("additionalProperties") is False:
            keys = self.constant(frozenset(props))
            self.emit(indent, f"if not {var}.keys() <= {keys}: return False")
        else:
            self.emit(indent, "shape = True  # other keys may hold anything: the shape check walks the record")
        for key, sub in props.items():
            child = self.name("v")
            self.emit(indent, f"{child} = {var}.get({key!r}, _ABSENT)")
            self.emit(indent, f"if {child} is not _ABSENT:")
            before = len(self.lines)
            self.check(child, sub, indent + 1)
            if len(self.lines) == before:
                self.emit(indent + 1, "pass")


def _unique(items: list[Any]) -> bool:
    if all(type(v) is str for v in items):  # the lists records hold: strings are equal exactly when equal as JSON
        return len(set(items)) == len(items)
    return unique_items(items)  # the detailed validator's own test: both paths agree


def generate_source(schema: dict[str, Any], counting: bool = False) -> tuple[str, dict[str, Any]]:
    """The source of `accept(record)` and the constants it refers to; `counting`: of
    `accept(record)` that gives the number of object keys at every depth of a record it takes
    (what `_keys` counts), -1 for one it does not take."""
    gen = _Generator(counting)
    gen.emit(1, "shape = False")
    if counting:
        gen.emit(1, "n = 0")
    gen.check("record", schema, 1)
    gen.emit(1, "if shape and _shape_problem(record)[0] is not None: return False")
    if counting:  # free content (`shape`): its keys were not counted on the way
        gen.emit(1, "if _clinical_conflicts(record): return False")
        gen.emit(1, "return _keys(record) if shape else n")
    else:
        gen.emit(1, "return not _clinical_conflicts(record)")
    return "def accept(record):\n" + "\n".join(gen.lines) + "\n", gen.constants


@lru_cache(maxsize=1)
def patient_accepter() -> Accept:
    """The generated check for the patient schema, compiled once per process."""
    accept: Accept = _compiled(False)
    return accept


@lru_cache(maxsize=1)
def patient_key_counter() -> Callable[[Any], int]:
    """The generated check that also counts a record's object keys (`generate_source`)."""
    count: Callable[[Any], int] = _compiled(True)
    return count


def _compiled(counting: bool) -> Any:
    source, constants = generate_source(load_schema("patient"), counting)
    namespace: dict[str, Any] = {
        **constants,
        "_ABSENT": object(),
        "_isfinite": math.isfinite,
        "_shape_problem": shape_problem,
        "_clinical_conflicts": clinical_conflicts,
        "_unique": _unique,
        "_keys": _keys,
        "_NUMBER": frozenset((int, float)),
    }
    name = "<fsgs-kb accept-only patient check, counting keys>" if counting else "<fsgs-kb accept-only patient check>"
    exec(compile(source, name, "exec"), namespace)  # noqa: S102 - our own source
    return namespace["accept"]


def accepts(record: Any) -> bool:
    """True only for a record that is certainly valid and within the shape limits."""
    return patient_accepter()(record)


def _keys(value: Any) -> int:
    """Object keys at every depth (of a record `accepts` took, so its depth is bounded)."""
    if type(value) is dict:
        return len(value) + sum(_keys(v) for v in value.values() if type(v) is dict or type(v) is list)
    if type(value) is list:
        return sum(_keys(v) for v in value if type(v) is dict or type(v) is list)
    return 0


def parse_accepted(raw: bytes) -> Any | None:
    """The record a line of JSON holds when it is certainly a valid patient within the reader's
    limits (no key given twice: as many colons as keys), else None: then the reader's
    `parse_json` and the detailed validator say what is wrong, as they always did. Skips the
    reader's shape walk, which costs more than evaluating the conditions."""
    if len(raw) > MAX_RECORD_BYTES:
        return None
    try:
        value = loads(raw)
    except orjson.JSONDecodeError:
        return None
    keys = (_counter[0] or _count_keys())(value)  # -1: not accepted
    if keys < 0 or raw.count(b":") > keys:
        return None
    return value


_counter: list[Callable[[Any], int] | None] = [None]  # patient_key_counter(), once it is made


def _count_keys() -> Callable[[Any], int]:
    count = _counter[0] = patient_key_counter()
    return count
