"""What the map asks of a FHIR server, per patient field: resources, codes and their provenance.

Two readers need the map described rather than run: the export for CQL-based systems (each rule's
input data requirements, as FHIR DataRequirements with the map's codes) and the people who check
the map (the handbook page and `audit`, which list every code with where it was verified, or the
note saying it was not). Both come from here, so the listing and the requirements never disagree
with what the converter reads.
"""

from __future__ import annotations

import json
from typing import Any

from fsgs_kb.engine.fhir.codes import UCUM
from fsgs_kb.engine.fhir.fhirmap import FhirMap

KIND_TEXT = {
    "birthdate": "Patient.birthDate (age on the evaluation date)",
    "observation": "the latest coded Observation in the look-back window",
    "field_observation": "a field Observation (code urn:fsgs-kb:field|<field path>)",
    "condition": "a Condition whose code implies the value",
    "medication": "MedicationRequest / MedicationStatement of the drug",
    "medication_list": "orders of other immunosuppressants",
    "observation_before_course": "the last result before the latest course of the drug started",
}


def _coding(fmap: FhirMap, system: str, code: str) -> dict[str, Any]:
    info = fmap.code_info.get((system, code), {})
    return {"system": system, "code": code, **({"display": info["display"]} if info.get("display") else {})}


def _codes(fmap: FhirMap, code_sets: list[str]) -> list[dict[str, Any]]:
    """The usable codings of code sets, in map order (unverified ones only when the site uses them)."""
    out = []
    for name in code_sets:
        usable = fmap.code_sets[name]
        out += [
            _coding(fmap, c["system"], c["code"])
            for c in fmap.data["code_sets"][name]["codes"]
            if (c["system"], c["code"]) in usable
        ]
    return out


def _coded(rtype: str, path: str, codes: list[dict[str, Any]], lookback: int | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"type": rtype, "codeFilter": [{"path": path, "code": codes}]}
    if lookback is not None:
        req["dateFilter"] = [
            {"path": "effective", "valueDuration": {"value": lookback, "unit": "d", "system": UCUM, "code": "d"}}
        ]
    return req


def _drug(fmap: FhirMap, drug: str) -> list[dict[str, Any]]:
    spec = fmap.medications[drug]
    codes = _codes(fmap, spec["include"])
    return [_coded(rtype, "medication", codes) for rtype in spec["resources"]] if codes else []


def _source_requirements(fmap: FhirMap, path: str, src: dict[str, Any]) -> list[dict[str, Any]]:
    kind = src["kind"]
    if kind == "birthdate":
        return [{"type": "Patient", "mustSupport": ["birthDate"]}]
    if kind == "field_observation":
        code = {"system": fmap.settings["local_systems"]["field"], "code": path}
        return [_coded("Observation", "code", [code], src.get("lookback_days"))]
    if kind == "condition":
        codes = _codes(fmap, [v["code_set"] for v in src["values"]])
        return [_coded("Condition", "code", codes)] if codes else []
    if kind == "medication":
        return _drug(fmap, src["drug"])
    if kind == "medication_list":
        return [req for drug in src["drugs"].values() for req in _drug(fmap, drug)]
    out = []
    for match in src["match"]:
        codes = _codes(fmap, [match["code_set"]])
        if codes:
            lookback = src.get("lookback_days") if kind == "observation" else None
            out.append(_coded("Observation", "code", codes, lookback))
    return out + (_drug(fmap, src["drug"]) if kind == "observation_before_course" else [])


def data_requirements(fmap: FhirMap, paths: list[str] | None = None) -> list[dict[str, Any]]:
    """FHIR R4 DataRequirements for the map fields at paths (all fields when None), without repeats."""
    seen: set[str] = set()
    out = []
    for path in fmap.fields if paths is None else paths:
        for src in fmap.fields[path]["sources"]:
            for req in _source_requirements(fmap, path, src):
                key = json.dumps(req, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    out.append(req)
    return out


def map_fields_for(fmap: FhirMap, record_path: str) -> list[str]:
    """The map fields that fill a patient field (dotted), e.g. cyclosporine.daily_dose.value ->
    [cyclosporine.daily_dose], serum_creatinine.unit -> both creatinine fields."""
    out = []
    for path, spec in fmap.fields.items():
        if record_path == path or record_path.startswith(path + ".") or spec.get("unit_path") == record_path:
            out.append(path)
    return out


def _code_rows(fmap: FhirMap, code_sets: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in code_sets:
        for c in fmap.data["code_sets"][name]["codes"]:
            source = fmap.data["sources"].get(c.get("source") or "", {})
            rows.append(
                {
                    "code_set": name,
                    "system": c["system"],
                    "code": c["code"],
                    "display": c.get("display", ""),
                    "verified": c["verified"],
                    "used": (c["system"], c["code"]) in fmap.code_sets[name],
                    "provenance": (f"{source['title']} ({source['where']})" if source else c.get("note", "")),
                }
            )
    return rows


def _source_code_sets(fmap: FhirMap, src: dict[str, Any]) -> list[str]:
    sets = [m["code_set"] for m in src.get("match", [])] + [
        m["component"] for m in src.get("match", []) if "component" in m
    ]
    sets += [v["code_set"] for v in src.get("values", [])]
    drugs = [src["drug"]] if "drug" in src else list(src.get("drugs", {}).values())
    for drug in drugs:
        spec = fmap.medications[drug]
        sets += spec["include"] + spec.get("exclude", []) + spec.get("exclude_routes", [])
    return list(dict.fromkeys(sets))


def map_listing(fmap: FhirMap) -> list[dict[str, Any]]:
    """Per map field: how each source fills it, with every code and its provenance (verified or not)."""
    listing = []
    for path, spec in fmap.fields.items():
        sources = []
        for src in spec["sources"]:
            units = sorted({u for m in src.get("match", []) for u in m["convert"]} | set(src.get("convert", {})))
            sources.append(
                {
                    "kind": src["kind"],
                    "how": KIND_TEXT[src["kind"]],
                    "lookback_days": src.get("lookback_days"),
                    "units": units,
                    "codes": _code_rows(fmap, _source_code_sets(fmap, src)),
                    "note": src.get("note", ""),
                }
            )
        listing.append({"field": path, "in_patient_schema": spec.get("in_patient_schema", True), "sources": sources})
    return listing


def code_audit(fmap: FhirMap) -> dict[str, Any]:
    """Every code of the map once, with the fields it feeds and its provenance (for `audit`)."""
    used_by: dict[tuple[str, str], list[str]] = {}
    for item in map_listing(fmap):
        for src in item["sources"]:
            for c in src["codes"]:
                used_by.setdefault((c["system"], c["code"]), []).append(item["field"])
    codes = []
    for name, spec in fmap.data["code_sets"].items():
        for c in spec["codes"]:
            source = fmap.data["sources"].get(c.get("source") or "", {})
            codes.append(
                {
                    "code_set": name,
                    "system": c["system"],
                    "code": c["code"],
                    "display": c.get("display", ""),
                    "fields": list(dict.fromkeys(used_by.get((c["system"], c["code"]), []))),
                    "verified": c["verified"],
                    "source": source.get("title", "") if c["verified"] else "",
                    "where": source.get("where", "") if c["verified"] else "",
                    "note": c.get("note", ""),
                }
            )
    return {
        "version": fmap.version,
        "sha256": fmap.sha256,
        "file": fmap.file,
        "unverified_codes": fmap.settings["unverified_codes"],
        "codes": codes,
    }
