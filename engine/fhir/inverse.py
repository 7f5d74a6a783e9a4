"""record_to_bundle: an fsgs-kb patient record -> a FHIR R4 collection Bundle (the inverse map).

Used by tests and examples: a record becomes the resources a site would send, written with the
map's own first usable code for each field, so that bundle_to_record(record_to_bundle(r)) == r for
every field the map covers. Each value is written the standard way when the map has one (LOINC
Observation, Patient.birthDate, a cyclosporine MedicationRequest) and as a field Observation
otherwise. Dates are laid out backwards from the evaluation date so that every pick rule finds them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from fsgs_kb.engine.fhir.dates import birth_date_for, day_start, format_instant, today
from fsgs_kb.engine.fhir.fhirmap import FhirMap, default_map_path, load_map

STOPPED_DAYS_AGO = 60  # a stopped course ends this many days before the evaluation date
BASELINE_DAYS_BEFORE = 7  # the baseline result is taken this many days before the course start
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}\Z")


def _get(record: dict[str, Any], path: str) -> Any:
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _ucum_for(convert: dict[str, Any], unit: str) -> str | None:
    """The resource unit that maps to a record unit unchanged (factor 1)."""
    return next((u for u, rule in convert.items() if rule["to"] == unit and rule["factor"] == 1), None)


def _ucum(convert: dict[str, Any], unit: str) -> str:
    """As _ucum_for, for a unit the map must be able to write."""
    found = _ucum_for(convert, unit)
    if found is None:
        raise ValueError(f"the map has no unit that reads back as {unit!r}")
    return found


def _code(fmap: FhirMap, code_set: str) -> tuple[str, str]:
    """The first usable code of a set, which the map must have."""
    code = fmap.first_code(code_set)
    if code is None:
        raise ValueError(f"code set {code_set!r} has no usable (verified) code")
    return code


def _quantity(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


class _Writer:
    """Accumulates the resources of one bundle and hands out ids."""

    def __init__(self, fmap: FhirMap, record: dict[str, Any], as_of: date) -> None:
        self.fmap, self.record, self.as_of = fmap, record, as_of
        self.today = day_start(as_of)
        self.entries: list[dict[str, Any]] = []
        rid = str(record["id"])
        self.pid = rid if _FHIR_ID.match(rid) else "p-" + hashlib.sha1(rid.encode()).hexdigest()[:16]

    def add(self, resource: dict[str, Any]) -> None:
        resource["id"] = f"{resource['resourceType'].lower()}-{len(self.entries)}"
        if resource["resourceType"] != "Patient":
            resource["subject"] = {"reference": f"Patient/{self.pid}"}
        self.entries.append({"fullUrl": self.urn(str(len(self.entries))), "resource": resource})

    def urn(self, suffix: str) -> str:
        """A stable urn:uuid for an entry (a real UUID, as FHIR requires of urn:uuid)."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"urn:fsgs-kb:{self.pid}:{suffix}").urn

    def observation(self, coding: tuple[str, str], when: datetime, **value: Any) -> None:
        self.add(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": coding[0], "code": coding[1]}]},
                "effectiveDateTime": format_instant(when) if when != self.today else self.as_of.isoformat(),
                **value,
            }
        )


def _patient(w: _Writer) -> None:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": w.fmap.settings["record_id_system"], "value": str(w.record["id"])}],
    }
    age = w.record.get("age_years")
    spec = w.fmap.fields.get("age_years")
    if age is not None and spec:
        decimals = next(s["decimals"] for s in spec["sources"] if s["kind"] == "birthdate")
        patient["birthDate"] = birth_date_for(float(age), w.as_of, decimals).isoformat()
    w.add(patient)
    w.entries[-1]["resource"]["id"] = w.pid
    w.entries[-1]["fullUrl"] = w.urn("patient")


def _course_dates(w: _Writer) -> tuple[datetime | None, datetime | None]:
    """(start, end) of the cyclosporine course implied by the record; end None while current."""
    status, months = _get(w.record, "cyclosporine.status"), _get(w.record, "cyclosporine.months_on_therapy")
    if status not in ("current", "stopped") or months is None:
        return None, None
    end = None if status == "current" else w.today - timedelta(days=STOPPED_DAYS_AGO)
    span = timedelta(days=float(months) * float(w.fmap.settings["days_per_month"]))
    return (end or w.today) - span, end


def _medication(w: _Writer) -> None:
    status = _get(w.record, "cyclosporine.status")
    if status not in ("current", "stopped"):
        return
    spec = w.fmap.medications["cyclosporine"]
    code = _code(w.fmap, spec["include"][0])
    start, end = _course_dates(w)
    dosage: dict[str, Any] = {"timing": {"repeat": {}}}
    if start is not None:
        dosage["timing"]["repeat"]["boundsPeriod"] = {
            "start": format_instant(start),
            **({"end": format_instant(end)} if end else {}),
        }
    dose = _get(w.record, "cyclosporine.daily_dose")
    if dose:
        ucum = _ucum(spec["dose_units"], dose["unit"])
        dosage["timing"]["repeat"].update({"frequency": 2, "period": 1, "periodUnit": "d"})
        dosage["doseAndRate"] = [{"doseQuantity": _quantity(dose["value"] / 2, ucum)}]  # split in two: summed back
    w.add(
        {
            "resourceType": "MedicationRequest",
            "status": "active" if status == "current" else "stopped",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": code[0], "code": code[1]}]},
            "dosageInstruction": [dosage],
        }
    )


def _field_value(w: _Writer, spec: dict[str, Any], src: dict[str, Any], value: Any) -> dict[str, Any]:
    vsys = w.fmap.settings["local_systems"]["value"]
    kind = spec["type"]
    if kind == "enum":
        return {"valueCodeableConcept": {"coding": [{"system": vsys, "code": value}]}}
    if kind == "boolean":
        return {"valueBoolean": value}
    if kind == "string":
        return {"valueString": value}
    if kind == "enum_list":
        return {"component": [{"code": {"coding": [{"system": vsys, "code": v}]}, "valueBoolean": True} for v in value]}
    if kind == "object_list":
        item = spec["item"]
        return {
            "component": [
                {
                    "code": {"coding": [{"system": vsys, "code": v[item["key"]]}]},
                    "valueCodeableConcept": {"coding": [{"system": vsys, "code": v[item["value"]]}]},
                }
                for v in value
            ]
        }
    number, unit = value if isinstance(value, tuple) else (value, spec["unit"])
    return {"valueQuantity": _quantity(number, _ucum(src["convert"], unit))}


def _value_of(w: _Writer, path: str, spec: dict[str, Any]) -> Any:
    value = _get(w.record, path)
    if value is None:
        return None
    if spec["type"] == "quantity":
        return value["value"], value["unit"]
    if spec["type"] == "shared_unit":
        return value, _get(w.record, spec["unit_path"])
    return value


def _coded(w: _Writer, src: dict[str, Any], value: Any, when: datetime) -> bool:
    number, unit = value if isinstance(value, tuple) else (value, None)
    for match in src["match"]:
        if "component" in match:
            continue
        ucum = _ucum_for(match["convert"], unit) if unit else next(iter(match["convert"]))
        code = w.fmap.first_code(match["code_set"])
        if ucum and code:
            w.observation(code, when, valueQuantity=_quantity(number, ucum))
            return True
    return False


def _emit(w: _Writer, path: str, spec: dict[str, Any], value: Any) -> None:
    for src in spec["sources"]:
        kind = src["kind"]
        if kind == "observation" and _coded(w, src, value, w.today):
            return
        if kind == "observation_before_course":
            start, _ = _course_dates(w)
            if start is not None:
                when = min(start - timedelta(days=BASELINE_DAYS_BEFORE), _before_current_window(w))
                if _coded(w, src, value, when):
                    return
        if kind == "field_observation":
            w.observation(
                (w.fmap.settings["local_systems"]["field"], path), w.today, **_field_value(w, spec, src, value)
            )
            return
        if kind == "birthdate" or (kind == "medication" and _ordered(w)):
            return


def _ordered(w: _Writer) -> bool:
    """Whether the record's cyclosporine facts are written as a MedicationRequest (current or stopped)."""
    return _get(w.record, "cyclosporine.status") in ("current", "stopped")


def _before_current_window(w: _Writer) -> datetime:
    """A time older than the current-creatinine look-back, so a baseline never doubles as 'current'."""
    if _get(w.record, "serum_creatinine.current") is not None:
        return w.today
    src = w.fmap.fields["serum_creatinine.current"]["sources"][0]
    return w.today - timedelta(days=(src.get("lookback_days") or 0) + 1)


def record_to_bundle(
    record: dict[str, Any], fmap: FhirMap | None = None, *, as_of: date | None = None
) -> dict[str, Any]:
    """The FHIR R4 collection Bundle that the map reads back as this record (evaluation date `as_of`, default today)."""
    fmap = fmap or load_map(default_map_path())
    w = _Writer(fmap, record, as_of or today())
    _patient(w)
    _medication(w)
    for path, spec in fmap.fields.items():
        value = _value_of(w, path, spec)
        if value is not None and path != "age_years":
            _emit(w, path, spec, value)
    return {"resourceType": "Bundle", "type": "collection", "timestamp": format_instant(w.today), "entry": w.entries}
