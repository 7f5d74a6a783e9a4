"""Field Observations: the carrier for facts no standard code holds.

Etiology, biopsy-proven, steroid response, best response, stop reason and the like have no LOINC
or SNOMED concept that says exactly what the knowledge base means. Rather than borrow a code that
almost fits, such a fact travels as an Observation coded with the project's own system and the
field's dotted path; its value is a valueCodeableConcept (enum), valueBoolean, valueQuantity or
valueString, and list fields carry one component per item. A value the field cannot hold (an
unknown enum code, a wrong value type) makes the field ambiguous instead of being dropped.
"""

from __future__ import annotations

from typing import Any

from fsgs_kb.engine.fhir.codes import as_dict, as_list, codings
from fsgs_kb.engine.fhir.effective import Window
from fsgs_kb.engine.fhir.fhirmap import FhirMap
from fsgs_kb.engine.fhir.patientdata import PatientData
from fsgs_kb.engine.fhir.pick import Candidate, Unusable, convert_quantity, eligible


def _enum(concept: Any, system: str, allowed: list[str]) -> str | None:
    codes = [code for sys, code in codings(concept) if sys == system]
    return codes[0] if len(codes) == 1 and codes[0] in allowed else None


def _enum_list(obs: dict[str, Any], spec: dict[str, Any], system: str) -> list[str] | None:
    items = []
    for comp in map(as_dict, as_list(obs.get("component"))):
        code = _enum(comp.get("code"), system, spec["values"])
        flag = comp.get("valueBoolean", True)
        if code is None or not isinstance(flag, bool):
            return None
        if flag and code not in items:
            items.append(code)
    return items


def _object_list(obs: dict[str, Any], spec: dict[str, Any], system: str) -> list[dict[str, str]] | None:
    item = spec["item"]
    out = []
    for comp in map(as_dict, as_list(obs.get("component"))):
        key = _enum(comp.get("code"), system, item["key_values"])
        val = _enum(comp.get("valueCodeableConcept"), system, item["value_values"])
        if key is None or val is None:
            return None
        out.append({item["key"]: key, item["value"]: val})
    return out


def _not_held(why: str) -> Unusable:
    return Unusable("ambiguous", "not_a_value", why)


def _value(
    obs: dict[str, Any], spec: dict[str, Any], source: dict[str, Any], system: str
) -> tuple[Any, Unusable | None]:
    kind = spec["type"]
    value: Any
    if kind == "enum":
        value = _enum(obs.get("valueCodeableConcept"), system, spec["values"])
    elif kind == "boolean":
        value = obs.get("valueBoolean") if isinstance(obs.get("valueBoolean"), bool) else None
    elif kind == "string":
        value = obs.get("valueString") if isinstance(obs.get("valueString"), str) else None
    elif kind in ("number", "shared_unit", "quantity"):
        if "convert" not in source:
            return None, _not_held("the map gives no unit conversion for this field")
        pair, problem = convert_quantity(obs, source["convert"])
        if pair is None:
            return None, problem or _not_held("no valueQuantity")
        return (pair[0] if kind == "number" else pair), None
    elif kind == "enum_list":
        value = _enum_list(obs, spec, system)
    else:
        value = _object_list(obs, spec, system)
    return (value, None) if value is not None else (None, _not_held(f"not a value this {kind} field can hold"))


def field_candidates(
    path: str,
    spec: dict[str, Any],
    source: dict[str, Any],
    data: PatientData,
    fmap: FhirMap,
    window: Window,
) -> list[Candidate]:
    """Candidates from Observations coded {local field system, path}, each with its value or problem."""
    systems = fmap.settings["local_systems"]
    coding = (systems["field"], path)
    out = []
    for obs, when, passed_over, unusable in eligible(data, fmap, window):
        if coding not in data.code_of(obs):
            continue
        if passed_over is not None:
            out.append(Candidate(when=when, resource=obs, coding=coding, rank=0, passed_over=passed_over))
            continue
        if unusable is not None:
            out.append(Candidate(when=when, resource=obs, coding=coding, rank=0, problem=unusable))
            continue
        value, problem = _value(obs, spec, source, systems["value"])
        out.append(Candidate(when=when, resource=obs, coding=coding, rank=0, value=value, problem=problem))
    return out
