"""Defensive reading of FHIR elements: CodeableConcepts, Quantities, references.

Input comes from other systems and may be hostile: a `coding` that is a string, a `value` that is a
boolean, a reference that is a number. Each helper returns a safe empty value for anything that is
not the shape FHIR R4 defines, so the converter never raises on bad data; it just finds nothing.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

UCUM = "http://unitsofmeasure.org"

Coding = tuple[str, str]


def as_list(value: Any) -> list[Any]:
    """The value if it is a list, else an empty list."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    """The value if it is an object, else an empty object."""
    return value if isinstance(value, dict) else {}


def codings(concept: Any) -> list[Coding]:
    """(system, code) pairs of a CodeableConcept, skipping malformed codings."""
    out = []
    for coding in as_list(as_dict(concept).get("coding")):
        c = as_dict(coding)
        if isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
            out.append((c["system"], c["code"]))
    return out


def first_match(concept: Any, code_set: frozenset[Coding]) -> Coding | None:
    """The first coding of a concept that belongs to a code set."""
    for pair in codings(concept):
        if pair in code_set:
            return pair
    return None


def texts(concept: Any) -> list[str]:
    """Human-readable strings of a concept (text and displays), for text-based exclusions."""
    c = as_dict(concept)
    out = [c["text"]] if isinstance(c.get("text"), str) else []
    out += [d for d in (as_dict(x).get("display") for x in as_list(c.get("coding"))) if isinstance(d, str)]
    return out


def number(value: Any) -> float | None:
    """A finite JSON number (booleans are not numbers here), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


class Quantity(NamedTuple):
    """A usable Quantity: its number, its UCUM unit, and whether it is a bound ('<5') not a value."""

    value: float
    unit: str
    bound: bool = False


def quantity(value: Any) -> Quantity | None:
    """The number and UCUM unit of a Quantity; None when it has no number or no trustworthy unit.

    The UCUM `code` is used when the system is UCUM or absent; otherwise the human `unit` string
    is not trusted as a code, and the quantity is unusable.
    """
    q = as_dict(value)
    v = number(q.get("value"))
    system = q.get("system")
    if v is None or system not in (None, UCUM):
        return None
    bound = q.get("comparator") is not None
    if isinstance(q.get("code"), str):
        return Quantity(v, q["code"], bound)
    if system is None and isinstance(q.get("unit"), str):
        return Quantity(v, q["unit"], bound)
    return None


def reference(value: Any) -> str | None:
    """The `reference` string of a Reference, else None."""
    ref = as_dict(value).get("reference")
    return ref if isinstance(ref, str) else None


def within_depth(value: Any, limit: int) -> bool:
    """Whether JSON nesting stays within `limit` levels, checked without recursion (nesting bombs)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True
