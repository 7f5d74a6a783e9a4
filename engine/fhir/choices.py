"""One type for each FHIR choice element ([x]): a resource that gives two says two things.

FHIR R4 lets a choice element (value[x], effective[x], medication[x], …) be given in exactly one
of its types. A resource that gives two (a valueQuantity and a valueString, an effectiveDateTime
and an effectivePeriod, a medicationCodeableConcept and a medicationReference) says two things,
and which one its sender meant cannot be told: reading either would be a guess. The reader sets
such a resource aside (bundle.py), naming the element and its two names, by one rule for every
choice element of the resources it reads, wherever in them it is (an Observation's component, an
order's dosage instructions).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fsgs_kb.engine.fhir.setaside import quoted

_DOSAGE = (
    ((), "asNeeded"),
    (("doseAndRate",), "dose"),
    (("doseAndRate",), "rate"),
    (("timing", "repeat"), "bounds"),
)

# Per resource type: (the path to the objects that hold it, the choice element's name). A step of
# the path that is a list (component, dosageInstruction, doseAndRate, ingredient) is each item.
CHOICES: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
    "Observation": (((), "value"), ((), "effective"), (("component",), "value")),
    "MedicationRequest": (
        ((), "medication"),
        ((), "reported"),
        (("substitution",), "allowed"),
        *((("dosageInstruction", *path), name) for path, name in _DOSAGE),
    ),
    "MedicationStatement": (
        ((), "medication"),
        ((), "effective"),
        *((("dosage", *path), name) for path, name in _DOSAGE),
    ),
    "Condition": (((), "onset"), ((), "abatement")),
    "Medication": ((("ingredient",), "item"),),
}


def choice_problem(resource: dict[str, Any]) -> tuple[str, str] | None:
    """(the choice element's name, why in words) for the first choice element the resource gives
    in two or more types (`value`, 'gives both valueQuantity and valueString (FHIR R4: one
    value[x])'); None when each is given once at most."""
    for path, name in CHOICES.get(str(resource.get("resourceType")), ()):
        for where, node in _objects(resource, path, ""):
            given = [quoted(k) for k in sorted(node) if _is_choice(k, name)]
            if len(given) > 1:
                said = (
                    f"both {given[0]} and {given[1]}" if len(given) == 2 else f"{', '.join(given[:-1])} and {given[-1]}"
                )
                return name, f"{where + ' ' if where else ''}gives {said} (FHIR R4: one {name}[x])"
    return None


def _is_choice(key: str, name: str) -> bool:
    """Whether a key is the choice element `name` in some type: the name, then a type's name
    (valueQuantity, effectiveDateTime; `_valueString`, a primitive's extension, is not)."""
    return len(key) > len(name) and key.startswith(name) and key[len(name)].isupper()


def _objects(node: dict[str, Any], path: tuple[str, ...], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The objects at `path` below `node`, each with where it is (`dosageInstruction[0].timing`);
    a step that holds a list is each of its objects (FHIR has no list of lists)."""
    if not path:
        yield where, node
        return
    step, here = path[0], f"{where}.{path[0]}" if where else path[0]
    child = node.get(step)
    if isinstance(child, dict):
        yield from _objects(child, path[1:], here)
    elif isinstance(child, list):
        for i, item in enumerate(child):
            if isinstance(item, dict):
                yield from _objects(item, path[1:], f"{here}[{i}]")
