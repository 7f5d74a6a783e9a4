"""A value the patient record cannot hold empties its own field, not the whole record.

The patient schema bounds every number (a body weight above 0 and at most 300 kg, an age from 0 to
120 years, …) and the length of free text. A FHIR value outside those bounds (a weight of 0 kg
entered for "not weighed", a result in a unit the sender mislabelled) would make the converted
record invalid, so no rule would run at all. Instead that one field is left empty (`out_of_range`
in `sources`), the resource is set aside with its value and the range the record allows, and the
rest of the record is evaluated: the rules that need the field are undetermined and say so.
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.fhir.errors import field_pointer
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.outcome import Found, Missing, Outcome
from fsgs_kb.engine.fhir.patientdata import PatientData
from fsgs_kb.engine.fhir.setaside import number_text
from fsgs_kb.engine.load.fields import FieldInfo, catalogue

# where the value of each map field type sits in the patient schema, and how to read it
_LEAF = {"number": "", "shared_unit": "", "quantity": ".value", "string": ""}


def allowed(info: FieldInfo, unit: str) -> str:
    """The range a number field allows, in words: `> 0 and ≤ 300 kg`."""
    parts = []
    if info.low is not None:
        parts.append(f"{'>' if info.exclusive_low else '≥'} {number_text(float(info.low))}")
    if info.high is not None:
        parts.append(f"≤ {number_text(float(info.high))}")
    return " and ".join(parts) + (f" {unit}" if unit else "")


def _number_problem(info: FieldInfo, value: float, unit: str) -> str | None:
    low_ok = info.low is None or (value > info.low if info.exclusive_low else value >= info.low)
    if low_ok and (info.high is None or value <= info.high):
        return None
    shown = f"{number_text(float(value))} {unit}".strip()
    return f"value {shown} is outside what the record allows for {info.pointer} ({allowed(info, unit)})"


def _problem(kind: str, info: FieldInfo, value: Any) -> str | None:
    if kind == "string":
        if info.max_length is None or len(value) <= info.max_length:
            return None
        return f"a text of {len(value)} characters is longer than {info.pointer} holds ({info.max_length})"
    number, unit = (value, info.unit or "") if kind == "number" else value
    return _number_problem(info, number, unit)


def check_ranges(fmap: FhirMap, outcomes: dict[str, Outcome], data: PatientData) -> None:
    """Replace, in place, each found value the patient schema's range excludes by `out_of_range`,
    setting its resource aside with the value and the allowed range."""
    fields = catalogue()
    for path, out in outcomes.items():
        kind = fmap.fields[path]["type"]
        info = fields.get(path + _LEAF[kind]) if kind in _LEAF else None
        if info is None or not isinstance(out, Found):
            continue
        why = _problem(kind, info, out.value)
        if why is None:
            continue
        outcomes[path] = Missing("out_of_range")
        resource = data.find(out.prov.get("resourceType"), out.prov.get("id"))
        if resource is not None:
            data.put_aside(resource, "out_of_range", why, field_pointer(path))
